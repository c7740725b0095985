//! Architectures: one file each, plus one line in [`ARCHITECTURES`].
//!
//! An architecture file is a page of facts: it reads its hyper-parameters from the GGUF
//! metadata, states its block as a [`crate::desc::DecoderDesc`], and loads the one
//! [`crate::decoder::Decoder`] with it. Nothing here runs a forward pass.

use gguf::GgufFile;

pub use crate::architecture::{Architecture, Constructor};
use crate::decoder::Decoder;
use crate::desc::{BlockDesc, DecoderDesc, RopeDesc};
use crate::error::{ModelError, Result};
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub mod bert;
pub mod clip;
pub mod gemma2;
pub mod gemma3;
pub mod gpt2;
pub mod llama;
pub mod olmo2;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3moe;
pub mod starcoder2;

/// The registry: `general.architecture` value → constructor.
pub const ARCHITECTURES: &[(&str, Constructor)] = &[
    ("llama", llama::load),
    ("qwen2", qwen2::load),
    ("qwen3", qwen3::load),
    ("phi3", phi3::load),
    ("qwen3moe", qwen3moe::load),
    ("gemma2", gemma2::load),
    ("gemma3", gemma3::load),
    ("olmo2", olmo2::load),
    ("gpt2", gpt2::load),
    ("starcoder2", starcoder2::load),
    ("bert", bert::load),
];

/// Names of the supported architectures, comma-separated.
pub fn supported() -> String {
    ARCHITECTURES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the constructor for `file`'s `general.architecture`.
pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let arch = file.architecture()?;
    match ARCHITECTURES.iter().find(|(n, _)| *n == arch) {
        Some((_, ctor)) => ctor(file),
        None => Err(ModelError::UnsupportedArch {
            arch: arch.to_string(),
            supported: supported(),
        }),
    }
}

/// Loads a model whose every layer is `block`, rotated by one RoPE of `style` at
/// `{arch}.rope.freq_base` (every layer's `rope` is set to it), or by none.
pub fn uniform(
    file: &GgufFile,
    hp: HParams,
    block: BlockDesc,
    rope: Option<RopeStyle>,
) -> Result<Box<dyn Architecture>> {
    let block = BlockDesc {
        rope: rope.map(|_| 0),
        ..block
    };
    let rope = rope.map(|style| RopeDesc::new(style, hp.rope_base));
    let desc = DecoderDesc::uniform(hp.n_layer, block, rope);
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
