//! `starcoder2`: gpt2's LayerNorm decoder ([`super::gpt2::LnDecoder`]) with separate biased
//! q/k/v/o, GQA, NEOX RoPE instead of learned positions, a plain GELU(tanh) MLP with biases;
//! usually tied output.

use gguf::GgufFile;

use super::gpt2::{LnDecoder, PosKind};
use super::Architecture;
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "starcoder2")?;
    Ok(Box::new(LnDecoder::load(
        file,
        hp,
        PosKind::Rope(RopeStyle::Neox),
    )?))
}
