//! `gemma3` (Gemma 3 text models): pre- and post-norms around both sub-layers, GELU(tanh)-gated
//! FFN, embeddings times `sqrt(n_embd)`, per-head q/k RMSNorm before NEOX RoPE, query scale
//! `1/sqrt(head_dim)` — with five sliding-window layers for each global one (`i % 6 == 5` is
//! global; the pattern is not stored in the file). Global layers use `rope.freq_base`, sliding
//! ones `rope.freq_base_swa` (default 10000) and see the last `attention.sliding_window`
//! positions. Norm weights already include Gemma's `+1` (the converter folds it in); the
//! output is tied to the embeddings. No soft-caps (Gemma 3 dropped them).
//!
//! Larger models: linear RoPE scaling (`rope.scaling.type` "linear", `rope.scaling.factor`)
//! applies to the global layers only; the 27B model (62 layers) scales queries by
//! `1/sqrt(n_embd / n_head)` instead of `1/sqrt(head_dim)` (its `query_pre_attn_scalar`, which
//! the GGUF does not store).

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{
    slides, Act, AttnDesc, BlockDesc, DecoderDesc, FfnKind, Layout, NormAt, QkNormKind, RopeDesc,
};
use crate::error::{ModelError, Result};
use crate::hparams::{read_linear_rope_scaling, read_window, HParams, Meta};
use crate::layers::rope::RopeStyle;

/// Every `PATTERN`-th layer (`i % PATTERN == PATTERN - 1`) is global.
pub const PATTERN: usize = 6;
/// Layers of Gemma 3 27B.
const LAYERS_27B: usize = 62;
/// RoPE indices: the global layers' and the sliding layers'.
const GLOBAL: usize = 0;
const LOCAL: usize = 1;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "gemma3")?;
    let meta = Meta {
        file,
        arch: "gemma3",
    };
    let swa_base = meta.f32_opt("rope.freq_base_swa")?.unwrap_or(10000.0);
    if swa_base <= 0.0 {
        return Err(ModelError::BadHparam {
            key: meta.key("rope.freq_base_swa"),
            msg: format!("{swa_base} is not positive"),
        });
    }
    let window = read_window(file, "gemma3", hp.n_ctx_train)?;
    let scale = (hp.n_layer == LAYERS_27B).then(|| 1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt());
    let block = |i: usize| {
        let local = slides(i, PATTERN);
        BlockDesc {
            attn_norm: NormAt::Both,
            ffn_norm: NormAt::Both,
            qk_norm: QkNormKind::PerHead,
            attn: AttnDesc {
                window: local.then_some(window),
                scale,
                ..AttnDesc::default()
            },
            rope: Some(if local { LOCAL } else { GLOBAL }),
            ffn: FfnKind::Gated {
                act: Act::GeluTanh,
                gate_up: Layout::Separate,
            },
            ..BlockDesc::default()
        }
    };
    let rope = |base, linear_scale| RopeDesc {
        style: RopeStyle::Neox,
        base,
        linear_scale,
    };
    let desc = DecoderDesc {
        embd_scale: Some((hp.n_embd as f32).sqrt()),
        ropes: vec![
            rope(hp.rope_base, read_linear_rope_scaling(file, "gemma3")?),
            rope(swa_base, None),
        ],
        layers: (0..hp.n_layer).map(block).collect(),
        ..DecoderDesc::default()
    };
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
