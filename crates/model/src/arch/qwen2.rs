//! `qwen2` (Qwen2, Qwen2.5): llama plus q/k/v biases, NEOX RoPE; usually tied embeddings.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::{Decoder, DecoderOptions};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "qwen2")?;
    let opts = DecoderOptions {
        rope_style: RopeStyle::Neox,
        ..DecoderOptions::default()
    };
    Ok(Box::new(Decoder::load(file, hp, opts)?))
}
