//! `olmo2` (OLMo 2): no pre-norms — an RMSNorm on the attention output and on the MLP output
//! before each residual add (`post_attention_norm`, `post_ffw_norm`, see [`super::sandwich`]);
//! RMSNorm over the whole q and k projections (`attn_q_norm` `[n_head*head_dim]`, `attn_k_norm`
//! `[n_head_kv*head_dim]`) before NEOX RoPE; SwiGLU; untied output.

use gguf::GgufFile;

use super::sandwich::{Act, Sandwich, SandwichOptions};
use super::Architecture;
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "olmo2")?;
    let opts = SandwichOptions {
        rope_style: RopeStyle::Neox,
        pre_norms: false,
        act: Act::Silu,
        scale_embeddings: false,
        attn_softcap: None,
        final_softcap: None,
        swa: None,
        require_qk_norm: true,
        attn_scale: None,
        rope_linear_global: None,
    };
    Ok(Box::new(Sandwich::load(file, hp, opts)?))
}
