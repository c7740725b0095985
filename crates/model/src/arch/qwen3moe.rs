//! `qwen3moe` (Qwen3-30B-A3B…): qwen3 attention (per-head q/k RMSNorm, NEOX RoPE) with a
//! mixture-of-experts feed-forward in every layer: softmax router `ffn_gate_inp`, top
//! `expert_used_count` of `expert_count` experts renormalised, experts stacked in
//! `ffn_{gate,up,down}_exps` of `expert_feed_forward_length` hidden units.

use gguf::GgufFile;

use super::Architecture;
use crate::desc::{BlockDesc, FfnKind, QkNormKind};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "qwen3moe")?;
    let block = BlockDesc {
        qk_norm: QkNormKind::PerHead,
        ffn: FfnKind::Moe,
        ..BlockDesc::default()
    };
    super::uniform(file, hp, block, Some(RopeStyle::Neox))
}
