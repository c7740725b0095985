//! `gemma2` (Gemma 2): the gemma block of [`super::sandwich`] — pre- and post-norms,
//! GELU(tanh)-gated FFN, embeddings times `sqrt(n_embd)`, NEOX RoPE (`rope.freq_base`, default
//! 10000), query scale `1/sqrt(head_dim)` — with sliding-window attention on the even layers
//! and global attention on the odd ones (not stored in the file), attention-logit soft-cap
//! `attn_logit_softcapping` and final-logit soft-cap `final_logit_softcapping`. Norm weights
//! already include Gemma's `+1`; the output is tied to the embeddings. The 27B model (46 layers)
//! scales queries by `1/sqrt(n_embd / n_head)` (its `query_pre_attn_scalar`, not in the GGUF).

use gguf::GgufFile;

use super::sandwich::{read_softcap, read_window, Act, Sandwich, SandwichOptions, Swa};
use super::Architecture;
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

/// Layers of Gemma 2 27B.
const LAYERS_27B: usize = 46;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "gemma2")?;
    let swa = Swa {
        window: read_window(file, "gemma2", hp.n_ctx_train)?,
        pattern: 2,
        rope_base: hp.rope_base,
    };
    let opts = SandwichOptions {
        rope_style: RopeStyle::Neox,
        pre_norms: true,
        act: Act::GeluTanh,
        scale_embeddings: true,
        attn_softcap: read_softcap(file, "gemma2.attn_logit_softcapping")?,
        final_softcap: read_softcap(file, "gemma2.final_logit_softcapping")?,
        swa: Some(swa),
        require_qk_norm: false,
        attn_scale: (hp.n_layer == LAYERS_27B)
            .then(|| 1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()),
        rope_linear_global: None,
    };
    Ok(Box::new(Sandwich::load(file, hp, opts)?))
}
