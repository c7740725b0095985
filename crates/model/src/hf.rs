//! Models in a Hugging Face folder (`config.json` + `model.safetensors`, read by the `hf`
//! crate), loaded through the same loader and layer loop as GGUF files.
//!
//! At load the safetensors tensors are renamed to llama.cpp's GGUF names and written, with the
//! hyper-parameters from `config.json` as `{arch}.*` metadata, into a GGUF image in memory;
//! [`crate::Model::from_gguf`] then loads it like a file (same shape and type checks). Only
//! BERT is mapped so far ([`bert_gguf`]). Every shape is checked against `config.json` first,
//! so an error names the safetensors file, the tensor and the config key.
//!
//! | Hugging Face (`bert.` prefix optional)                | GGUF                         |
//! |-------------------------------------------------------|------------------------------|
//! | `embeddings.word_embeddings.weight`                   | `token_embd.weight`          |
//! | `embeddings.position_embeddings.weight`               | `position_embd.weight`       |
//! | `embeddings.token_type_embeddings.weight`             | `token_types.weight`         |
//! | `embeddings.LayerNorm.{weight,bias}`                  | `token_embd_norm.*`          |
//! | `encoder.layer.N.attention.self.{query,key,value}.*`  | `blk.N.attn_{q,k,v}.*`       |
//! | `encoder.layer.N.attention.output.dense.*`            | `blk.N.attn_output.*`        |
//! | `encoder.layer.N.attention.output.LayerNorm.*`        | `blk.N.attn_output_norm.*`   |
//! | `encoder.layer.N.intermediate.dense.*`                | `blk.N.ffn_up.*`             |
//! | `encoder.layer.N.output.dense.*`                      | `blk.N.ffn_down.*`           |
//! | `encoder.layer.N.output.LayerNorm.*`                  | `blk.N.layer_output_norm.*`  |
//!
//! A cross-encoder (`BertForSequenceClassification`: a top-level `classifier.weight`) also
//! maps its head, as llama.cpp's rerankers (`bert.pooling_type` 4, rank):
//!
//! | Hugging Face                       | GGUF                   |
//! |------------------------------------|------------------------|
//! | `bert.pooler.dense.{weight,bias}`  | `cls.{weight,bias}`    |
//! | `classifier.{weight,bias}`         | `cls.output.*`         |
//!
//! with `classifier.weight` `[num_labels, hidden_size]` (num_labels: `id2label`'s size, else
//! 2 as transformers). `embeddings.position_ids` (I64, not a weight) is skipped, and so is
//! `pooler.*` of a model without a classifier (unused by sentence embeddings).

use std::path::Path;

use gguf::{GgmlType, GgufFile, GgufWriter, Value};
use hf::{Dtype, HfFolder, JsonFile, PoolingMode, SafeTensors};

use crate::error::{ModelError, Result};
use crate::model::Model;

/// Non-weight tensors a BERT safetensors file may hold.
const SKIP: &[&str] = &["embeddings.position_ids", "bert.embeddings.position_ids"];

fn bad_config(cfg: &JsonFile, key: &str, msg: impl Into<String>) -> ModelError {
    ModelError::from(hf::HfError::BadKey {
        path: cfg.path.clone(),
        key: key.to_string(),
        msg: msg.into(),
    })
}

/// The GGUF pooling type (`{arch}.pooling_type`, llama.cpp's numbering) of a mode.
pub fn gguf_pooling_type(mode: PoolingMode) -> u32 {
    match mode {
        PoolingMode::Mean => 1,
        PoolingMode::Cls => 2,
        PoolingMode::Last => 3,
    }
}

/// Loads the model of a Hugging Face folder.
pub fn load_folder(dir: &Path) -> Result<(Model, HfFolder)> {
    let folder = HfFolder::open(dir)?;
    let file = bert_gguf(&folder)?;
    Ok((Model::from_gguf(file)?, folder))
}

/// `model_max_length` of the folder's `tokenizer_config.json`, the truncation length a
/// cross-encoder (sentence-transformers' `CrossEncoder`) uses when no
/// `sentence_bert_config.json` says otherwise. `None` when the file or key is missing, or the
/// value is transformers' "no limit" (a huge float). A file that is not JSON is an error.
pub fn tokenizer_max_len(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let cfg = JsonFile::open(&path)?;
    Ok(cfg
        .get("model_max_length")
        .and_then(|v| v.as_u64())
        .and_then(|n| usize::try_from(n).ok()))
}

/// A BERT folder as an in-memory GGUF image of architecture `bert`.
pub fn bert_gguf(folder: &HfFolder) -> Result<GgufFile> {
    let cfg = &folder.config;
    let model_type = cfg.opt_str("model_type")?.unwrap_or("");
    if model_type != "bert" {
        return Err(bad_config(
            cfg,
            "model_type",
            format!("\"{model_type}\": lume reads Hugging Face folders of BERT models only"),
        ));
    }
    let act = cfg.opt_str("hidden_act")?.unwrap_or("gelu");
    if act != "gelu" {
        return Err(bad_config(
            cfg,
            "hidden_act",
            format!("\"{act}\" is not supported (BERT's erf \"gelu\" is)"),
        ));
    }
    let pos_type = cfg
        .opt_str("position_embedding_type")?
        .unwrap_or("absolute");
    if pos_type != "absolute" {
        return Err(bad_config(
            cfg,
            "position_embedding_type",
            format!("\"{pos_type}\" is not supported (\"absolute\" is)"),
        ));
    }
    let d = cfg.usize("hidden_size")?;
    let n_layer = cfg.usize("num_hidden_layers")?;
    let n_head = cfg.usize("num_attention_heads")?;
    let ff = cfg.usize("intermediate_size")?;
    let n_pos = cfg.usize("max_position_embeddings")?;
    let vocab = cfg.usize("vocab_size")?;
    let n_types = cfg.opt_usize("type_vocab_size")?.unwrap_or(2);
    let eps = cfg.opt_f64("layer_norm_eps")?.unwrap_or(1e-12);
    if n_head == 0 || d % n_head != 0 {
        return Err(bad_config(
            cfg,
            "num_attention_heads",
            format!("hidden_size {d} is not a multiple of {n_head} heads"),
        ));
    }
    if n_types == 0 {
        return Err(bad_config(cfg, "type_vocab_size", "0 token types"));
    }
    for (key, v) in [
        ("hidden_size", d),
        ("num_hidden_layers", n_layer),
        ("intermediate_size", ff),
        ("max_position_embeddings", n_pos),
        ("vocab_size", vocab),
    ] {
        if v == 0 || v > crate::hparams::MAX_DIM {
            return Err(bad_config(cfg, key, format!("{v} is outside 1..=2^20")));
        }
    }

    let st = SafeTensors::open(&folder.weights, SKIP)?;
    let prefix = if st.get("bert.embeddings.word_embeddings.weight").is_some() {
        "bert."
    } else {
        ""
    };
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("bert".into()));
    if let Some(name) = cfg.opt_str("_name_or_path")? {
        w.add("general.name", Value::String(name.to_string()));
    }
    let u32v = |v: usize| Value::U32(v as u32);
    w.add("bert.block_count", u32v(n_layer));
    w.add("bert.context_length", u32v(n_pos));
    w.add("bert.embedding_length", u32v(d));
    w.add("bert.feed_forward_length", u32v(ff));
    w.add("bert.attention.head_count", u32v(n_head));
    w.add("bert.attention.layer_norm_epsilon", Value::F32(eps as f32));
    w.add("bert.attention.causal", Value::Bool(false));
    let classifier = st.get("classifier.weight").is_some();
    if classifier {
        w.add("bert.pooling_type", Value::U32(4));
    } else if let Some(mode) = folder.sentence.as_ref().and_then(|s| s.pooling) {
        w.add("bert.pooling_type", Value::U32(gguf_pooling_type(mode)));
    }
    let n_labels = match cfg.get("id2label") {
        Some(v) => match v.as_object() {
            Some(o) if !o.is_empty() => o.len(),
            _ => return Err(bad_config(cfg, "id2label", "not a non-empty object")),
        },
        None => 2,
    };

    let (d64, ff64) = (d as u64, ff as u64);
    let mut copy = |hf_name: &str, gguf_name: &str, shape: &[u64], why: &str| -> Result<()> {
        // The classifier sits beside `bert.`, not under it.
        let name = match hf_name.strip_prefix('/') {
            Some(top) => top.to_string(),
            None => format!("{prefix}{hf_name}"),
        };
        let t = st.require_shape(&name, shape, why)?;
        let ty = match t.dtype {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::BF16,
            other => unreachable!("the hf crate refuses {other} at open"),
        };
        let dims: Vec<u64> = t.shape.iter().rev().copied().collect();
        w.add_tensor(gguf_name, &dims, ty, st.bytes(t).to_vec())?;
        Ok(())
    };
    let hd = format!("config.json hidden_size {d}");
    let cfg_why = |k: &str, v: usize| format!("config.json {k} {v}, hidden_size {d}");
    copy(
        "embeddings.word_embeddings.weight",
        "token_embd.weight",
        &[vocab as u64, d64],
        &cfg_why("vocab_size", vocab),
    )?;
    copy(
        "embeddings.position_embeddings.weight",
        "position_embd.weight",
        &[n_pos as u64, d64],
        &cfg_why("max_position_embeddings", n_pos),
    )?;
    copy(
        "embeddings.token_type_embeddings.weight",
        "token_types.weight",
        &[n_types as u64, d64],
        &cfg_why("type_vocab_size", n_types),
    )?;
    for part in ["weight", "bias"] {
        copy(
            &format!("embeddings.LayerNorm.{part}"),
            &format!("token_embd_norm.{part}"),
            &[d64],
            &hd,
        )?;
    }
    let ffw = format!("config.json intermediate_size {ff}, hidden_size {d}");
    for i in 0..n_layer {
        let hfp = format!("encoder.layer.{i}");
        let linears: [(&str, &str, [u64; 2], &str); 6] = [
            ("attention.self.query", "attn_q", [d64, d64], &hd),
            ("attention.self.key", "attn_k", [d64, d64], &hd),
            ("attention.self.value", "attn_v", [d64, d64], &hd),
            ("attention.output.dense", "attn_output", [d64, d64], &hd),
            ("intermediate.dense", "ffn_up", [ff64, d64], &ffw),
            ("output.dense", "ffn_down", [d64, ff64], &ffw),
        ];
        for (hf_name, g, shape, why) in linears {
            copy(
                &format!("{hfp}.{hf_name}.weight"),
                &format!("blk.{i}.{g}.weight"),
                &shape,
                why,
            )?;
            copy(
                &format!("{hfp}.{hf_name}.bias"),
                &format!("blk.{i}.{g}.bias"),
                &shape[..1],
                why,
            )?;
        }
        for (hf_name, g) in [
            ("attention.output.LayerNorm", "attn_output_norm"),
            ("output.LayerNorm", "layer_output_norm"),
        ] {
            for part in ["weight", "bias"] {
                copy(
                    &format!("{hfp}.{hf_name}.{part}"),
                    &format!("blk.{i}.{g}.{part}"),
                    &[d64],
                    &hd,
                )?;
            }
        }
    }
    if classifier {
        for part in ["weight", "bias"] {
            let shape: &[u64] = if part == "weight" {
                &[d64, d64]
            } else {
                &[d64]
            };
            copy(
                &format!("pooler.dense.{part}"),
                &format!("cls.{part}"),
                shape,
                &hd,
            )?;
            let nl = n_labels as u64;
            let shape: &[u64] = if part == "weight" { &[nl, d64] } else { &[nl] };
            copy(
                &format!("/classifier.{part}"),
                &format!("cls.output.{part}"),
                shape,
                &format!("config.json id2label ({n_labels} labels), hidden_size {d}"),
            )?;
        }
    }
    let name = folder.weights.with_extension("safetensors (as GGUF)");
    Ok(GgufFile::from_bytes(name, w.to_bytes())?)
}
