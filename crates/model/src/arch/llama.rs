//! `llama` (Llama 2/3, SmolLM2, Mistral without sliding window, Mixtral): RMSNorm, SwiGLU, GQA,
//! RoPE in the adjacent-pairs layout (the GGUF converter permuted the q/k rows for it). With
//! `llama.expert_count` > 0 (Mixtral) the feed-forward is a mixture of experts
//! ([`crate::layers::moe`]).

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{BlockDesc, DecoderDesc, FfnKind, RopeDesc};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::moe::MoeParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "llama")?;
    let block = BlockDesc {
        rope: Some(0),
        ffn: match MoeParams::read(file, "llama")? {
            Some(_) => FfnKind::Moe,
            None => FfnKind::default(),
        },
        ..BlockDesc::default()
    };
    let rope = RopeDesc {
        style: RopeStyle::Norm,
        base: hp.rope_base,
        linear_scale: None,
    };
    let desc = DecoderDesc::uniform(hp.n_layer, block, Some(rope));
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
