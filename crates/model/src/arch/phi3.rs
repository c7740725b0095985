//! `phi3` (Phi-3, Phi-3.5 mini): llama with fused projections — `attn_qkv` (q, k, v rows
//! stacked) and `ffn_up` holding the gate rows then the up rows — and NEOX RoPE; untied output.
//! The fused tensors are split into row views at load, so the shared decoder runs it unchanged.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::{Decoder, DecoderOptions};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "phi3")?;
    let opts = DecoderOptions {
        rope_style: RopeStyle::Neox,
        ..DecoderOptions::default()
    };
    Ok(Box::new(Decoder::load(file, hp, opts)?))
}
