//! `gpt2` (GPT-2 and its descendants): learned position embeddings (`position_embd`),
//! LayerNorm with bias, a fused `attn_qkv` with bias, a plain GELU(tanh) MLP with biases, no
//! RoPE, tied output.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{Act, BlockDesc, DecoderDesc, FfnKind, Layout, NormKind};
use crate::error::Result;
use crate::hparams::HParams;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "gpt2")?;
    let block = BlockDesc {
        norm: NormKind::Layer,
        qkv: Layout::Fused,
        rope: None,
        ffn: FfnKind::Mlp { act: Act::GeluTanh },
        ..BlockDesc::default()
    };
    let desc = DecoderDesc {
        learned_positions: true,
        ..DecoderDesc::uniform(hp.n_layer, block, None)
    };
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
