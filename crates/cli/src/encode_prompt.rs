//! `lume encode-prompt PIPELINE_DIR PROMPT... -o prompt.safetensors`: the CLIP text encoders of
//! a Hugging Face diffusion pipeline turn prompts into the tensors its image model consumes.
//!
//! Map of this file:
//! - [`EncodePromptArgs`]: the arguments; its doc comment is the command's help, with the
//!   tensor names (also in README.md, "Prompt embeddings for image generators").
//! - [`encoders`]: which encoder folders the pipeline has (`text_encoder/`,
//!   `text_encoder_2/`) and the tokenizer folder of each (`tokenizer/`, `tokenizer_2/`).
//! - [`encode`]: tokenizes (each encoder with its own tokenizer: its own pad id), runs every
//!   encoder on all prompts in one call, and collects the named tensors.
//! - [`run`]: writes them with the `safetensors` crate, plus a metadata header.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use model::clip::{ClipTextEncoder, ClipTextOutput};
use tokenizer::clip::ClipTokenizer;

/// Encode prompts with a diffusion pipeline's CLIP text encoders into a safetensors file.
///
/// PIPELINE is a Hugging Face diffusion pipeline folder: `text_encoder/`, `text_encoder_2/`
/// (when present), `tokenizer/`, `tokenizer_2/` (when present); each encoder uses its own
/// tokenizer folder, falling back to `tokenizer/`. Prompts are tokenized, truncated and
/// padded to 77 tokens with each tokenizer's own pad id. For each encoder E (`text_encoder`,
/// `text_encoder_2`) and N prompts, the file holds:
///
///   E.input_ids                I64 [N, 77]     the token ids the encoder saw
///   E.last_hidden_state        F32 [N, 77, D]  after the final LayerNorm
///   E.penultimate_hidden_state F32 [N, 77, D]  hidden_states[-2], no final LayerNorm
///   E.penultimate_final_ln     F32 [N, 77, D]  hidden_states[-2] through the final LayerNorm
///   E.pooled_output            F32 [N, D]      last_hidden_state at the EOS token
///   E.text_embeds              F32 [N, P]      text_projection(pooled_output), when E has one
///
/// and what diffusers feeds the image model by default (clip_skip off):
///
///   prompt_embeds         SD 1.x/2.x (one encoder): text_encoder.last_hidden_state;
///                         SDXL (two): penultimate states of both, concatenated [N, 77, D1+D2]
///   pooled_prompt_embeds  SDXL only: text_encoder_2.text_embeds [N, P]
///
/// The header's metadata has `format` = `lume-prompt-embeds`, `prompts` (a JSON list) and
/// `encoders` (a JSON list of the encoder names). A `text_encoder_3/` (SD3's T5) is not read.
#[derive(Args, Clone, Debug)]
#[command(verbatim_doc_comment)]
pub struct EncodePromptArgs {
    /// The pipeline folder (with `text_encoder/` and `tokenizer/`).
    pub pipeline: PathBuf,
    /// One or more prompts (the empty string is the usual negative prompt).
    #[arg(required = true)]
    pub prompts: Vec<String>,
    /// The safetensors file to write.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// One text encoder of a pipeline and the tokenizer folder it goes with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderDirs {
    /// `text_encoder`, `text_encoder_2`
    pub name: &'static str,
    pub encoder: PathBuf,
    pub tokenizer: PathBuf,
}

/// The encoders of `pipeline`: `text_encoder/` with `tokenizer/`, and `text_encoder_2/` with
/// `tokenizer_2/` (or `tokenizer/` when the pipeline has no second tokenizer).
pub fn encoders(pipeline: &Path) -> Result<Vec<EncoderDirs>> {
    if !pipeline.is_dir() {
        bail!("{}: not a folder", pipeline.display());
    }
    let mut out = Vec::new();
    for (name, tok) in [
        ("text_encoder", "tokenizer"),
        ("text_encoder_2", "tokenizer_2"),
    ] {
        let enc = pipeline.join(name);
        if !enc.is_dir() {
            continue;
        }
        let mut tokenizer = pipeline.join(tok);
        if !tokenizer.is_dir() {
            tokenizer = pipeline.join("tokenizer");
        }
        if !tokenizer.is_dir() {
            let looked = if tok == "tokenizer" {
                "tokenizer/".to_string()
            } else {
                format!("{tok}/ and tokenizer/")
            };
            bail!(
                "{}: no tokenizer folder for {name}/ (looked for {looked})",
                pipeline.display()
            );
        }
        out.push(EncoderDirs {
            name,
            encoder: enc,
            tokenizer,
        });
    }
    if out.is_empty() {
        bail!(
            "{}: no CLIP text encoder folder (text_encoder/ or text_encoder_2/)",
            pipeline.display()
        );
    }
    Ok(out)
}

/// A named tensor for the output file.
pub struct Tensor {
    pub name: String,
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub data: Vec<u8>,
}

fn f32_tensor(name: String, shape: Vec<usize>, v: &[f32]) -> Tensor {
    debug_assert_eq!(shape.iter().product::<usize>(), v.len());
    Tensor {
        name,
        dtype: safetensors::Dtype::F32,
        shape,
        data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Tokenizes and encodes `prompts` with every encoder of `pipeline`; the tensors in the order
/// they are written.
pub fn encode(pipeline: &Path, prompts: &[String]) -> Result<Vec<Tensor>> {
    let mut tensors = Vec::new();
    let mut outs: Vec<(&'static str, ClipTextOutput)> = Vec::new();
    for e in encoders(pipeline)? {
        let tok = ClipTokenizer::from_dir(&e.tokenizer)
            .with_context(|| format!("tokenizer of {}", e.name))?;
        let enc = ClipTextEncoder::load_hf(&e.encoder).with_context(|| e.name.to_string())?;
        if tok.max_length() > enc.max_len() {
            bail!(
                "{}: model_max_length {} is more than the {} positions of {}",
                e.tokenizer.display(),
                tok.max_length(),
                enc.max_len(),
                e.name
            );
        }
        // [N, 77]
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tok.encode_padded(p)).collect();
        let out = enc.encode(&ids).with_context(|| e.name.to_string())?;
        let (n, t, d) = (out.n_seq, out.n_tok, out.n_embd);
        let name = |s: &str| format!("{}.{s}", e.name);
        tensors.push(Tensor {
            name: name("input_ids"),
            dtype: safetensors::Dtype::I64,
            shape: vec![n, t],
            data: ids
                .iter()
                .flatten()
                .flat_map(|&i| (i as i64).to_le_bytes())
                .collect(),
        });
        tensors.push(f32_tensor(
            name("last_hidden_state"),
            vec![n, t, d],
            &out.last_hidden_state,
        ));
        tensors.push(f32_tensor(
            name("penultimate_hidden_state"),
            vec![n, t, d],
            &out.penultimate_hidden_state,
        ));
        tensors.push(f32_tensor(
            name("penultimate_final_ln"),
            vec![n, t, d],
            &out.penultimate_final_ln,
        ));
        tensors.push(f32_tensor(
            name("pooled_output"),
            vec![n, d],
            &out.pooled_output,
        ));
        if let Some(te) = &out.text_embeds {
            tensors.push(f32_tensor(name("text_embeds"), vec![n, out.n_proj], te));
        }
        outs.push((e.name, out));
    }
    // What diffusers passes on by default.
    match outs.as_slice() {
        [(_, one)] => tensors.push(f32_tensor(
            "prompt_embeds".into(),
            vec![one.n_seq, one.n_tok, one.n_embd],
            &one.last_hidden_state,
        )),
        [(_, a), (_, b)] => {
            let (n, t) = (a.n_seq, a.n_tok);
            let (da, db) = (a.n_embd, b.n_embd);
            // [N, 77, D1 + D2]: each position's te1 row, then its te2 row.
            let mut cat = Vec::with_capacity(n * t * (da + db));
            for r in 0..n * t {
                cat.extend_from_slice(&a.penultimate_hidden_state[r * da..(r + 1) * da]);
                cat.extend_from_slice(&b.penultimate_hidden_state[r * db..(r + 1) * db]);
            }
            tensors.push(f32_tensor(
                "prompt_embeds".into(),
                vec![n, t, da + db],
                &cat,
            ));
            if let Some(te) = &b.text_embeds {
                tensors.push(f32_tensor(
                    "pooled_prompt_embeds".into(),
                    vec![n, b.n_proj],
                    te,
                ));
            }
        }
        _ => {}
    }
    Ok(tensors)
}

pub fn run(a: &EncodePromptArgs) -> Result<()> {
    let tensors = encode(&a.pipeline, &a.prompts)?;
    if a.pipeline.join("text_encoder_3").is_dir() {
        eprintln!("note: text_encoder_3/ (SD3's T5 encoder) is not read; only the CLIP encoders are encoded");
    }
    let mut names: Vec<&str> = Vec::new();
    for t in &tensors {
        if let Some(e) = t.name.split_once('.').map(|(e, _)| e) {
            if !names.contains(&e) {
                names.push(e);
            }
        }
    }
    let metadata = HashMap::from([
        ("format".to_string(), "lume-prompt-embeds".to_string()),
        ("prompts".to_string(), serde_json::to_string(&a.prompts)?),
        ("encoders".to_string(), serde_json::to_string(&names)?),
    ]);
    let views = tensors
        .iter()
        .map(|t| {
            let v = safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .with_context(|| format!("tensor {}", t.name))?;
            Ok((t.name.clone(), v))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, Some(metadata), &a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let mut out = std::io::stdout().lock();
    for t in &tensors {
        writeln!(out, "{:40} {:?} {:?}", t.name, t.dtype, t.shape)?;
    }
    writeln!(out, "wrote {}", a.output.display())?;
    Ok(())
}
