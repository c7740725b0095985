//! `gemma3` (Gemma 3 text models): the gemma block of [`super::sandwich`] — pre- and post-norms,
//! GELU(tanh)-gated FFN, embeddings times `sqrt(n_embd)`, per-head q/k RMSNorm before NEOX RoPE,
//! query scale `1/sqrt(head_dim)` — with five sliding-window layers for each global one
//! (`i % 6 == 5` is global; the pattern is not stored in the file). Global layers use
//! `rope.freq_base`, sliding ones `rope.freq_base_swa` (default 10000) and see the last
//! `attention.sliding_window` positions. Norm weights already include Gemma's `+1` (the converter
//! folds it in); the output is tied to the embeddings. No soft-caps (Gemma 3 dropped them).
//!
//! Larger models: linear RoPE scaling (`rope.scaling.type` "linear", `rope.scaling.factor`)
//! applies to the global layers only; the 27B model (62 layers) scales queries by
//! `1/sqrt(n_embd / n_head)` instead of `1/sqrt(head_dim)` (its `query_pre_attn_scalar`, which
//! the GGUF does not store).

use gguf::GgufFile;

use super::sandwich::{read_linear_rope_scaling, read_window, Act, Sandwich, SandwichOptions, Swa};
use super::Architecture;
use crate::error::Result;
use crate::hparams::{HParams, Meta};
use crate::layers::rope::RopeStyle;

/// Every `PATTERN`-th layer (`i % PATTERN == PATTERN - 1`) is global.
pub const PATTERN: usize = 6;
/// Layers of Gemma 3 27B.
const LAYERS_27B: usize = 62;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "gemma3")?;
    let meta = Meta {
        file,
        arch: "gemma3",
    };
    let rope_base = meta.f32_opt("rope.freq_base_swa")?.unwrap_or(10000.0);
    if rope_base <= 0.0 {
        return Err(crate::ModelError::BadHparam {
            key: meta.key("rope.freq_base_swa"),
            msg: format!("{rope_base} is not positive"),
        });
    }
    let swa = Swa {
        window: read_window(file, "gemma3", hp.n_ctx_train)?,
        pattern: PATTERN,
        rope_base,
    };
    let opts = SandwichOptions {
        rope_style: RopeStyle::Neox,
        pre_norms: true,
        act: Act::GeluTanh,
        scale_embeddings: true,
        attn_softcap: None,
        final_softcap: None,
        swa: Some(swa),
        require_qk_norm: true,
        attn_scale: (hp.n_layer == LAYERS_27B)
            .then(|| 1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()),
        rope_linear_global: read_linear_rope_scaling(file, "gemma3")?,
    };
    Ok(Box::new(Sandwich::load(file, hp, opts)?))
}
