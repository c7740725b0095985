//! `starcoder2`: gpt2's LayerNorm block with separate biased q/k/v/o, GQA, NEOX RoPE instead
//! of learned positions, a plain GELU(tanh) MLP with biases; usually tied output.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{Act, BlockDesc, DecoderDesc, FfnKind, NormKind, RopeDesc};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "starcoder2")?;
    let block = BlockDesc {
        norm: NormKind::Layer,
        rope: Some(0),
        ffn: FfnKind::Mlp { act: Act::GeluTanh },
        ..BlockDesc::default()
    };
    let rope = RopeDesc {
        style: RopeStyle::Neox,
        base: hp.rope_base,
        linear_scale: None,
    };
    let desc = DecoderDesc {
        output_norm: NormKind::Layer,
        ..DecoderDesc::uniform(hp.n_layer, block, Some(rope))
    };
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
