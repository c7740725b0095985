//! `qwen3moe` (Qwen3-30B-A3B…): qwen3 attention (per-head q/k RMSNorm, NEOX RoPE) with a
//! mixture-of-experts feed-forward in every layer: softmax router `ffn_gate_inp`, top
//! `expert_used_count` of `expert_count` experts renormalised, experts stacked in
//! `ffn_{gate,up,down}_exps` of `expert_feed_forward_length` hidden units.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{BlockDesc, DecoderDesc, FfnKind, QkNormKind, RopeDesc};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "qwen3moe")?;
    let block = BlockDesc {
        qk_norm: QkNormKind::PerHead,
        rope: Some(0),
        ffn: FfnKind::Moe,
        ..BlockDesc::default()
    };
    let rope = RopeDesc {
        style: RopeStyle::Neox,
        base: hp.rope_base,
        linear_scale: None,
    };
    let desc = DecoderDesc::uniform(hp.n_layer, block, Some(rope));
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
