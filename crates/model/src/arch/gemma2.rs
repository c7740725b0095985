//! `gemma2` (Gemma 2): pre- and post-norms around both sub-layers, GELU(tanh)-gated FFN,
//! embeddings times `sqrt(n_embd)`, NEOX RoPE (`rope.freq_base`, default 10000), query scale
//! `1/sqrt(head_dim)`, with sliding-window attention on the even layers and global attention
//! on the odd ones (not stored in the file), attention-logit soft-cap `attn_logit_softcapping`
//! and final-logit soft-cap `final_logit_softcapping`. Norm weights already include Gemma's
//! `+1`; the output is tied to the embeddings. The 27B model (46 layers) scales queries by
//! `1/sqrt(n_embd / n_head)` (its `query_pre_attn_scalar`, not in the GGUF).

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{
    slides, Act, AttnDesc, BlockDesc, DecoderDesc, FfnKind, Layout, NormAt, RopeDesc,
};
use crate::error::Result;
use crate::hparams::{read_softcap, read_window, HParams};
use crate::layers::rope::RopeStyle;

/// Layer `i` slides when `i % PATTERN < PATTERN - 1`: the even layers.
const PATTERN: usize = 2;
/// Layers of Gemma 2 27B.
const LAYERS_27B: usize = 46;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "gemma2")?;
    let window = read_window(file, "gemma2", hp.n_ctx_train)?;
    let attn = AttnDesc {
        softcap: read_softcap(file, "gemma2.attn_logit_softcapping")?,
        scale: (hp.n_layer == LAYERS_27B).then(|| 1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()),
        ..AttnDesc::default()
    };
    let block = |i: usize| BlockDesc {
        attn_norm: NormAt::Both,
        ffn_norm: NormAt::Both,
        attn: AttnDesc {
            window: slides(i, PATTERN).then_some(window),
            ..attn
        },
        rope: Some(0),
        ffn: FfnKind::Gated {
            act: Act::GeluTanh,
            gate_up: Layout::Separate,
        },
        ..BlockDesc::default()
    };
    let desc = DecoderDesc {
        embd_scale: Some((hp.n_embd as f32).sqrt()),
        ropes: vec![RopeDesc::new(RopeStyle::Neox, hp.rope_base)],
        output_softcap: read_softcap(file, "gemma2.final_logit_softcapping")?,
        layers: (0..hp.n_layer).map(block).collect(),
        ..DecoderDesc::default()
    };
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
