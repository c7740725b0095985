//! The CLIP text encoder of diffusion pipelines: loaded from a Hugging Face `text_encoder/` or
//! `text_encoder_2/` folder, run by the one decoder loop ([`crate::arch::clip`] states the
//! block), returning the hidden states a pipeline consumes.
//!
//! Map of this file:
//! - [`ClipTextEncoder::load_hf`]: `config.json` + `model.safetensors` (or diffusers'
//!   `model.fp16.safetensors`) → an in-memory GGUF image with lume's tensor names
//!   ([`gguf_from_hf`]; the name table is in [`crate::arch::clip`]) → [`Model`]. Every tensor is
//!   checked against the config's shapes; errors name the file and the key or tensor.
//! - [`ClipTextEncoder::encode`]: prompts of token ids (one length, usually 77: the tokenizer
//!   pads) in batches of whole prompts through [`Model::forward_hidden_layers`], one KV slot each,
//!   keeping the residual stream after the second-to-last layer.
//! - [`ClipTextOutput`]: `last_hidden_state` (after the final LayerNorm), the penultimate
//!   state raw and through the final LayerNorm, `pooled_output` (last hidden state at the EOS
//!   token) and `text_embeds` (the pooled output through `text_projection`, when the model
//!   has one).
//!
//! The EOS position follows transformers: with the legacy `eos_token_id` 2 of the original
//! SD 1.x configs, the position of the largest id (`<|endoftext|>` = 49407 is the largest of
//! CLIP's vocabulary); otherwise the first position of `eos_token_id` (position 0 when absent,
//! as transformers' `argmax` of an all-false mask gives).

use std::path::{Path, PathBuf};

use gguf::{GgmlType, GgufFile, GgufWriter, Value};

use crate::arch::clip as arch;
use crate::batch::{Batch, MAX_BATCH};
use crate::error::{ModelError, Result};
use crate::hparams::MAX_DIM;
use crate::layers::norm::layer_norm;
use crate::model::Model;
use crate::weights::{Linear, Loader};

/// The outputs of [`ClipTextEncoder::encode`] for `n_seq` prompts of `n_tok` tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClipTextOutput {
    pub n_seq: usize,
    pub n_tok: usize,
    /// `hidden_size`
    pub n_embd: usize,
    /// Width of `text_embeds` (`projection_dim`; 0 without a projection).
    pub n_proj: usize,
    /// `[n_seq, n_tok, n_embd]` after the final LayerNorm (every position, pads included).
    pub last_hidden_state: Vec<f32>,
    /// `[n_seq, n_tok, n_embd]` `hidden_states[-2]`: the output of the second-to-last layer,
    /// without the final LayerNorm (SDXL's prompt embeddings).
    pub penultimate_hidden_state: Vec<f32>,
    /// `[n_seq, n_tok, n_embd]` the penultimate state through the final LayerNorm (SD 1.x
    /// with `clip_skip`).
    pub penultimate_final_ln: Vec<f32>,
    /// `[n_seq, n_embd]` `last_hidden_state` at each prompt's EOS position.
    pub pooled_output: Vec<f32>,
    /// `[n_seq, n_proj]` `text_projection(pooled_output)` (SDXL's pooled prompt embeddings);
    /// `None` without a projection.
    pub text_embeds: Option<Vec<f32>>,
    /// `[n_seq]` the position pooled for each prompt.
    pub eos_index: Vec<usize>,
}

/// A loaded CLIP text encoder. Immutable; share it between threads.
pub struct ClipTextEncoder {
    model: Model,
    /// Final LayerNorm weight and bias, `[n_embd]` each (for the penultimate state).
    final_ln: (Vec<f32>, Vec<f32>),
    /// `[n_proj, n_embd]`, no bias.
    projection: Option<Linear>,
    /// `eos_token_id` of the config (see the module notes).
    eos_token_id: Option<u32>,
    /// `layer_norm_eps`.
    eps: f32,
    /// Where it was loaded from (for messages).
    source: PathBuf,
}

impl std::fmt::Debug for ClipTextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTextEncoder")
            .field("source", &self.source)
            .field("info", self.model.info())
            .field("n_proj", &self.n_proj())
            .finish()
    }
}

/// The legacy `eos_token_id` of SD 1.x text encoder configs: pool at the largest id instead.
const LEGACY_EOS: u32 = 2;

/// Safetensors tensors that are not weights (older checkpoints' position id buffer).
const SKIP: &[&str] = &["text_model.embeddings.position_ids"];

/// Converts a Hugging Face CLIP text encoder folder (`config.json` + safetensors) into an
/// in-memory GGUF image with lume's tensor names and `clip_text.*` keys (the table in
/// [`crate::arch::clip`]). Tensors keep their type (F32, F16 or BF16).
pub fn gguf_from_hf(dir: &Path) -> Result<GgufFile> {
    let folder = hf::HfFolder::open(dir)?;
    let cfg = &folder.config;
    let model_type = cfg.opt_str("model_type")?;
    if let Some(t) = model_type.filter(|t| *t != "clip_text_model") {
        return Err(ModelError::from(hf::HfError::BadKey {
            path: cfg.path.clone(),
            key: "model_type".into(),
            msg: format!("'{t}' is not a CLIP text encoder (clip_text_model)"),
        }));
    }
    let dim = |key: &str| -> Result<usize> {
        let v = cfg.usize(key)?;
        if v == 0 || v > MAX_DIM {
            return Err(ModelError::from(hf::HfError::BadKey {
                path: cfg.path.clone(),
                key: key.into(),
                msg: format!("{v} is outside 1..={MAX_DIM}"),
            }));
        }
        Ok(v)
    };
    let d = dim("hidden_size")?;
    let ff = dim("intermediate_size")?;
    let n_head = dim("num_attention_heads")?;
    let n_layer = dim("num_hidden_layers")?;
    let n_pos = dim("max_position_embeddings")?;
    let vocab = dim("vocab_size")?;
    let eps = cfg.opt_f64("layer_norm_eps")?.unwrap_or(1e-5);
    // CLIPTextConfig's default activation.
    let act = cfg.opt_str("hidden_act")?.unwrap_or("quick_gelu");
    if arch::activation(act).is_none() {
        return Err(ModelError::from(hf::HfError::BadKey {
            path: cfg.path.clone(),
            key: "hidden_act".into(),
            msg: format!("activation '{act}' is not supported (quick_gelu, gelu, gelu_new)"),
        }));
    }
    let eos = cfg.opt_usize("eos_token_id")?;
    let projection_dim = cfg.opt_usize("projection_dim")?;

    let st = hf::SafeTensors::open(&folder.weights, SKIP)?;
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String(arch::ARCH.into()));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    w.add("general.name", Value::String(name));
    let key = |s: &str| format!("{}.{s}", arch::ARCH);
    w.add(key("block_count"), Value::U32(n_layer as u32));
    w.add(key("embedding_length"), Value::U32(d as u32));
    w.add(key("feed_forward_length"), Value::U32(ff as u32));
    w.add(key("attention.head_count"), Value::U32(n_head as u32));
    w.add(key("context_length"), Value::U32(n_pos as u32));
    w.add(key("attention.layer_norm_epsilon"), Value::F32(eps as f32));
    w.add(key("hidden_act"), Value::String(act.into()));
    if let Some(e) = eos {
        w.add(key("eos_token_id"), Value::U32(e as u32));
    }

    let mut copy = |from: &str, to: &str, shape: &[usize], why: &str| -> Result<()> {
        let shape: Vec<u64> = shape.iter().map(|&x| x as u64).collect();
        let t = st.require_shape(from, &shape, why)?;
        let ty = match t.dtype {
            hf::Dtype::F32 => GgmlType::F32,
            hf::Dtype::F16 => GgmlType::F16,
            hf::Dtype::BF16 => GgmlType::BF16,
            other => {
                return Err(ModelError::from(hf::HfError::UnsupportedDtype {
                    path: st.path().to_path_buf(),
                    tensor: from.into(),
                    dtype: other.name().into(),
                }))
            }
        };
        // GGUF lists dimensions innermost first; the bytes are the same row-major data.
        let dims: Vec<u64> = shape.iter().rev().copied().collect();
        w.add_tensor(to, &dims, ty, st.bytes(t).to_vec())?;
        Ok(())
    };
    let hd = format!("config.json hidden_size {d}");
    let tm = "text_model";
    copy(
        &format!("{tm}.embeddings.token_embedding.weight"),
        "token_embd.weight",
        &[vocab, d],
        &format!("config.json vocab_size {vocab}, hidden_size {d}"),
    )?;
    copy(
        &format!("{tm}.embeddings.position_embedding.weight"),
        "position_embd.weight",
        &[n_pos, d],
        &format!("config.json max_position_embeddings {n_pos}, hidden_size {d}"),
    )?;
    let ffs = format!("config.json hidden_size {d}, intermediate_size {ff}");
    for i in 0..n_layer {
        let hf_l = format!("{tm}.encoder.layers.{i}");
        let ours = format!("blk.{i}");
        for (from, to) in [("layer_norm1", "attn_norm"), ("layer_norm2", "ffn_norm")] {
            for part in ["weight", "bias"] {
                copy(
                    &format!("{hf_l}.{from}.{part}"),
                    &format!("{ours}.{to}.{part}"),
                    &[d],
                    &hd,
                )?;
            }
        }
        for (from, to) in [
            ("q_proj", "attn_q"),
            ("k_proj", "attn_k"),
            ("v_proj", "attn_v"),
            ("out_proj", "attn_output"),
        ] {
            let (f, t) = (format!("{hf_l}.self_attn.{from}"), format!("{ours}.{to}"));
            copy(&format!("{f}.weight"), &format!("{t}.weight"), &[d, d], &hd)?;
            copy(&format!("{f}.bias"), &format!("{t}.bias"), &[d], &hd)?;
        }
        let (f, t) = (format!("{hf_l}.mlp.fc1"), format!("{ours}.ffn_up"));
        copy(
            &format!("{f}.weight"),
            &format!("{t}.weight"),
            &[ff, d],
            &ffs,
        )?;
        copy(&format!("{f}.bias"), &format!("{t}.bias"), &[ff], &ffs)?;
        let (f, t) = (format!("{hf_l}.mlp.fc2"), format!("{ours}.ffn_down"));
        copy(
            &format!("{f}.weight"),
            &format!("{t}.weight"),
            &[d, ff],
            &ffs,
        )?;
        copy(&format!("{f}.bias"), &format!("{t}.bias"), &[d], &ffs)?;
    }
    for part in ["weight", "bias"] {
        copy(
            &format!("{tm}.final_layer_norm.{part}"),
            &format!("output_norm.{part}"),
            &[d],
            &hd,
        )?;
    }
    if st.get("text_projection.weight").is_some() {
        let rows = st.require("text_projection.weight")?.shape[0] as usize;
        let p = projection_dim.unwrap_or(rows);
        copy(
            "text_projection.weight",
            "text_projection.weight",
            &[p, d],
            &format!("config.json projection_dim {p}, hidden_size {d}"),
        )?;
    }
    let bytes = w.to_bytes();
    Ok(GgufFile::from_bytes(folder.weights.clone(), bytes)?)
}

impl ClipTextEncoder {
    /// Loads a Hugging Face CLIP text encoder folder (`CLIPTextModel` or
    /// `CLIPTextModelWithProjection`: `config.json` and `model.safetensors` or
    /// `model.fp16.safetensors`).
    pub fn load_hf(dir: impl AsRef<Path>) -> Result<ClipTextEncoder> {
        let dir = dir.as_ref();
        let file = gguf_from_hf(dir)?;
        let mut enc = Self::from_gguf(file)?;
        enc.source = dir.to_path_buf();
        Ok(enc)
    }

    /// Loads a `clip_text` GGUF image (what [`gguf_from_hf`] makes).
    pub fn from_gguf(file: GgufFile) -> Result<ClipTextEncoder> {
        let dec = arch::load(&file)?;
        let hp = dec.hp.clone();
        if hp.n_layer < 2 {
            return Err(ModelError::BadHparam {
                key: format!("{}.block_count", arch::ARCH),
                msg: "a CLIP text encoder needs at least 2 layers (the penultimate state is the output of the second-to-last)".into(),
            });
        }
        let ld = Loader::new(&file);
        let d = hp.n_embd;
        let final_ln = (
            ld.vector("output_norm.weight", d)?,
            ld.vector("output_norm.bias", d)?,
        );
        let projection = if ld.has("text_projection.weight") {
            let w = ld.matrix_any_rows("text_projection.weight", d, MAX_DIM)?;
            Some(Linear { w, b: None })
        } else {
            None
        };
        let key = format!("{}.eos_token_id", arch::ARCH);
        let eos_token_id = match file.get(&key) {
            Some(_) => Some(file.get_u32(&key)?),
            None => None,
        };
        let source = file.path().to_path_buf();
        Ok(ClipTextEncoder {
            model: Model::from_architecture(file, Box::new(dec)),
            final_ln,
            projection,
            eos_token_id,
            eps: hp.norm_eps,
            source,
        })
    }

    /// The underlying model (hyper-parameters in `info()`).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// `hidden_size`.
    pub fn n_embd(&self) -> usize {
        self.model.info().n_embd
    }

    /// Width of `text_embeds` (0 without a projection).
    pub fn n_proj(&self) -> usize {
        self.projection.as_ref().map_or(0, |p| p.rows())
    }

    /// `max_position_embeddings`: the longest prompt (77).
    pub fn max_len(&self) -> usize {
        self.model.info().n_ctx_train
    }

    /// The position CLIP pools for a prompt (see the module notes).
    pub fn eos_index(&self, ids: &[u32]) -> usize {
        match self.eos_token_id {
            Some(e) if e != LEGACY_EOS => ids.iter().position(|&i| i == e).unwrap_or(0),
            _ => {
                // The first position of the largest id (torch's argmax).
                let mut best = 0;
                for (i, &id) in ids.iter().enumerate() {
                    if id > ids[best] {
                        best = i;
                    }
                }
                best
            }
        }
    }

    /// Runs the prompts `ids` (each a full token sequence, BOS ... EOS and padding, all of
    /// one length of at most [`ClipTextEncoder::max_len`]); the result does not depend on how
    /// many prompts go in one call.
    pub fn encode<S: AsRef<[u32]>>(&self, ids: &[S]) -> Result<ClipTextOutput> {
        let n_seq = ids.len();
        let d = self.n_embd();
        let n_layer = self.model.info().n_layer;
        let n_tok = ids.first().map_or(0, |s| s.as_ref().len());
        for (i, s) in ids.iter().enumerate() {
            let len = s.as_ref().len();
            if len != n_tok {
                return Err(ModelError::BadBatch(format!(
                    "prompt {i} has {len} tokens, prompt 0 has {n_tok}: CLIP encodes prompts of one length (pad them)"
                )));
            }
        }
        if n_tok == 0 && n_seq > 0 {
            return Err(ModelError::BadBatch("a prompt of no tokens".into()));
        }
        if n_tok > self.max_len() {
            return Err(ModelError::BadBatch(format!(
                "{n_tok} tokens is more than the encoder's {} positions (truncate the prompt)",
                self.max_len()
            )));
        }
        let mut out = ClipTextOutput {
            n_seq,
            n_tok,
            n_embd: d,
            n_proj: self.n_proj(),
            last_hidden_state: vec![0.0; n_seq * n_tok * d],
            penultimate_hidden_state: vec![0.0; n_seq * n_tok * d],
            penultimate_final_ln: vec![0.0; n_seq * n_tok * d],
            pooled_output: vec![0.0; n_seq * d],
            text_embeds: None,
            eos_index: ids.iter().map(|s| self.eos_index(s.as_ref())).collect(),
        };
        if n_seq == 0 {
            out.text_embeds = self.projection.as_ref().map(|_| Vec::new());
            return Ok(out);
        }
        // Whole prompts per forward pass, one KV slot each.
        let per_pass = (MAX_BATCH / n_tok).max(1).min(n_seq);
        let mut cache = self.model.new_cache(per_pass, n_tok)?;
        let mut batch = Batch::new();
        let mut hidden = Vec::new(); // [count * n_tok, n_embd] after the final LayerNorm
        let row = n_tok * d;
        let mut first = 0;
        while first < n_seq {
            let count = per_pass.min(n_seq - first);
            cache.clear();
            batch.clear();
            for (slot, s) in ids[first..first + count].iter().enumerate() {
                batch.push_seq(s.as_ref(), 0, slot, false);
            }
            // [count, n_tok, n_embd] each
            let pen = &mut out.penultimate_hidden_state[first * row..(first + count) * row];
            let mut keep = |l: usize, x: &[f32]| {
                if l + 2 == n_layer {
                    pen.copy_from_slice(x);
                }
            };
            self.model
                .forward_hidden_layers(&batch, &mut cache, &mut keep, &mut hidden)?;
            out.last_hidden_state[first * row..(first + count) * row].copy_from_slice(&hidden);
            first += count;
        }
        let (w, b) = &self.final_ln;
        let eps = self.eps;
        layer_norm(
            &out.penultimate_hidden_state,
            w,
            Some(b),
            eps,
            &mut out.penultimate_final_ln,
        );
        for (p, &e) in out.eos_index.iter().enumerate() {
            let src = &out.last_hidden_state[(p * n_tok + e) * d..(p * n_tok + e + 1) * d];
            out.pooled_output[p * d..(p + 1) * d].copy_from_slice(src);
        }
        if let Some(proj) = &self.projection {
            let mut te = vec![0.0; n_seq * proj.rows()]; // [n_seq, n_proj]
            proj.forward(self.model.gguf(), &out.pooled_output, n_seq, &mut te);
            out.text_embeds = Some(te);
        }
        Ok(out)
    }
}
