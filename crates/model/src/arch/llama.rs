//! `llama` (Llama 2/3, SmolLM2, Mistral without sliding window, Mixtral): RMSNorm, SwiGLU, GQA,
//! RoPE in the adjacent-pairs layout (the GGUF converter permuted the q/k rows for it). With
//! `llama.expert_count` > 0 (Mixtral) the feed-forward is a mixture of experts: the shared
//! decoder picks [`crate::layers::moe`] itself when it finds the expert keys.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::{Decoder, DecoderOptions};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "llama")?;
    let opts = DecoderOptions {
        rope_style: RopeStyle::Norm,
        ..DecoderOptions::default()
    };
    Ok(Box::new(Decoder::load(file, hp, opts)?))
}
