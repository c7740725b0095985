//! `starcoder2`: gpt2's LayerNorm block with separate biased q/k/v/o, GQA, NEOX RoPE instead
//! of learned positions, a plain GELU(tanh) MLP with biases; usually tied output.

use gguf::GgufFile;

use super::Architecture;
use crate::desc::{Act, BlockDesc, FfnKind, NormKind};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "starcoder2")?;
    let block = BlockDesc {
        norm: NormKind::Layer,
        ffn: FfnKind::Mlp { act: Act::GeluTanh },
        ..BlockDesc::default()
    };
    super::uniform(file, hp, block, Some(RopeStyle::Neox))
}
