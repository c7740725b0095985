//! `llama` (Llama 2/3, SmolLM2, Mistral without sliding window, Mixtral): RMSNorm, SwiGLU, GQA,
//! RoPE in the adjacent-pairs layout (the GGUF converter permuted the q/k rows for it). With
//! `llama.expert_count` > 0 (Mixtral) the feed-forward is a mixture of experts
//! ([`crate::layers::moe`]).

use gguf::GgufFile;

use super::Architecture;
use crate::desc::{BlockDesc, FfnKind};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::moe::MoeParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "llama")?;
    let block = BlockDesc {
        ffn: match MoeParams::read(file, "llama")? {
            Some(_) => FfnKind::Moe,
            None => FfnKind::default(),
        },
        ..BlockDesc::default()
    };
    super::uniform(file, hp, block, Some(RopeStyle::Norm))
}
