//! `bert` (BERT and its sentence-embedding descendants, e.g. all-MiniLM): an encoder.
//! Token + learned position + token-type embeddings, then a LayerNorm (`token_embd_norm`);
//! bidirectional attention with biased q/k/v/o; post-LN blocks (`x = LN(x + attn(x))` with
//! `attn_output_norm`, `x = LN(x + mlp(x))` with `layer_output_norm`); a plain erf-GELU MLP
//! with biases; no RoPE, no LM head (hidden states only). Norm epsilon from
//! `bert.attention.layer_norm_epsilon` (1e-12 in BERT configs). Token types from the batch
//! (pairs: 0 then 1). A cross-encoder (llama.cpp `pooling_type` 4, rank) adds a
//! classification head: pooler `cls` + tanh on the `[CLS]` row, then `cls.output`.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{Act, AttnDesc, BlockDesc, DecoderDesc, FfnKind, Mask, NormAt, NormKind};
use crate::error::Result;
use crate::hparams::HParams;

/// The BERT block.
pub fn block() -> BlockDesc {
    BlockDesc {
        norm: NormKind::Layer,
        attn_norm: NormAt::PostResidual,
        ffn_norm: NormAt::PostResidual,
        attn: AttnDesc {
            mask: Mask::Bidirectional,
            ..AttnDesc::default()
        },
        rope: None,
        ffn: FfnKind::Mlp { act: Act::GeluErf },
        ..BlockDesc::default()
    }
}

/// The BERT model of `n_layer` blocks.
pub fn desc(n_layer: usize) -> DecoderDesc {
    DecoderDesc {
        learned_positions: true,
        token_types: true,
        class_head: true,
        embd_norm: Some(NormKind::Layer),
        lm_head: false,
        final_norm: false,
        ..DecoderDesc::uniform(n_layer, block(), None)
    }
}

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "bert")?;
    let desc = desc(hp.n_layer);
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
