//! `phi3` (Phi-3, Phi-3.5 mini): llama with fused projections — `attn_qkv` (q, k, v rows
//! stacked; separate q/k/v are accepted too) and `ffn_up` holding the gate rows then the up
//! rows — and NEOX RoPE; untied output. The fused tensors are split into row views at load.
//!
//! `phi3.attention.sliding_window` > 0 (Phi-3-mini: 2047) limits every layer's attention to
//! that many positions, the query's own included. LongRoPE models (`rope_factors_long` /
//! `rope_factors_short` tensors: the 128k variants, Phi-3.5, Phi-4-mini) are refused at load
//! rather than run with the wrong rotation.

use gguf::GgufFile;

use super::Architecture;
use crate::desc::{Act, AttnDesc, BlockDesc, FfnKind, Layout};
use crate::error::{ModelError, Result};
use crate::hparams::{HParams, Meta};
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "phi3")?;
    for t in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if file.tensor_info(t).is_some() {
            return Err(ModelError::BadHparam {
                key: "phi3.rope.scaling".into(),
                msg: format!("LongRoPE scaling (tensor '{t}') is not supported yet"),
            });
        }
    }
    let meta = Meta { file, arch: "phi3" };
    let window = if meta.has("attention.sliding_window")
        && file.get_u32("phi3.attention.sliding_window")? > 0
    {
        Some(meta.dim("attention.sliding_window")?)
    } else {
        None
    };
    let block = BlockDesc {
        qkv: Layout::FusedOrSeparate,
        attn: AttnDesc {
            window,
            ..AttnDesc::default()
        },
        ffn: FfnKind::Gated {
            act: Act::Silu,
            gate_up: Layout::FusedOrSeparate,
        },
        ..BlockDesc::default()
    };
    super::uniform(file, hp, block, Some(RopeStyle::Neox))
}
