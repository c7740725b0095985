//! `olmo2` (OLMo 2): no pre-norms — an RMSNorm on the attention output and on the MLP output
//! before each residual add (`post_attention_norm`, `post_ffw_norm`); RMSNorm over the whole q
//! and k projections (`attn_q_norm` `[n_head*head_dim]`, `attn_k_norm` `[n_head_kv*head_dim]`)
//! before NEOX RoPE; SwiGLU; untied output.

use gguf::GgufFile;

use super::Architecture;
use crate::desc::{BlockDesc, NormAt, QkNormKind};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "olmo2")?;
    let block = BlockDesc {
        attn_norm: NormAt::Post,
        ffn_norm: NormAt::Post,
        qk_norm: QkNormKind::Whole,
        ..BlockDesc::default()
    };
    super::uniform(file, hp, block, Some(RopeStyle::Neox))
}
