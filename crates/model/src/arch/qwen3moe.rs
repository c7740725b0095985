//! `qwen3moe` (Qwen3-30B-A3B…): qwen3 attention (per-head q/k RMSNorm, NEOX RoPE) with a
//! mixture-of-experts feed-forward in every layer: softmax router `ffn_gate_inp`, top
//! `expert_used_count` of `expert_count` experts renormalised, experts stacked in
//! `ffn_{gate,up,down}_exps` of `expert_feed_forward_length` hidden units.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::{Decoder, DecoderOptions};
use crate::error::{ModelError, Result};
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "qwen3moe")?;
    if crate::layers::moe::MoeParams::read(file, "qwen3moe")?.is_none() {
        return Err(ModelError::BadHparam {
            key: "qwen3moe.expert_count".into(),
            msg: "missing or zero (a qwen3moe model has experts)".into(),
        });
    }
    let opts = DecoderOptions {
        rope_style: RopeStyle::Neox,
        require_qk_norm: true,
    };
    Ok(Box::new(Decoder::load(file, hp, opts)?))
}
