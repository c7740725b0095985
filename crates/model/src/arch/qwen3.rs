//! `qwen3`: qwen2 without biases, plus a per-head RMSNorm on q and k before RoPE
//! (`attn_q_norm`/`attn_k_norm`, `[head_dim]`); head_dim may differ from `n_embd / n_head`.

use gguf::GgufFile;

use super::Architecture;
use crate::desc::{BlockDesc, QkNormKind};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "qwen3")?;
    let block = BlockDesc {
        qk_norm: QkNormKind::PerHead,
        ..BlockDesc::default()
    };
    super::uniform(file, hp, block, Some(RopeStyle::Neox))
}
