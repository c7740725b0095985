//! `qwen3`: qwen2 without biases, plus a per-head RMSNorm on q and k before RoPE
//! (`attn_q_norm`/`attn_k_norm`, `[head_dim]`); head_dim may differ from `n_embd / n_head`.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{BlockDesc, DecoderDesc, QkNormKind, RopeDesc};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "qwen3")?;
    let block = BlockDesc {
        qk_norm: QkNormKind::PerHead,
        rope: Some(0),
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
