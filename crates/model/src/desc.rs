//! The block description: every fact about a decoder that the one layer loop
//! ([`crate::decoder::Decoder`]) needs, stated by an architecture file and never guessed from
//! tensor names.
//!
//! A model is a [`DecoderDesc`]: how tokens enter (embedding scale, learned positions), the
//! RoPE variants its layers use, one [`BlockDesc`] per layer, and how logits leave (final
//! norm, soft-cap). A block is:
//!
//! ```text
//! h = attn_norm?(x)                 (NormAt::Pre or Both; else h = x)
//! q, k, v = proj(h)                 (Layout: separate or fused; biases when the file has them)
//! q, k = rope?(qk_norm?(q, k))      (QkNormKind; rope: an index into DecoderDesc::ropes)
//! h = o( attention(q, k, v) )       (Mask: causal or bidirectional; window, soft-cap, scale)
//! x += residual_scale · post_attn_norm?(h)     (NormAt::Post or Both)
//! h = ffn_norm?(x)
//! h = ffn(h)                        (FfnKind: gated SiLU/GELU, plain MLP, mixture of experts)
//! x += residual_scale · post_ffn_norm?(h)
//! ```
//!
//! Encoders (BERT) state a few more facts, each off by default: a LayerNorm on the embeddings
//! (`DecoderDesc::embd_norm`), token-type embeddings (`DecoderDesc::token_types`), norms *after*
//! the residual add (`NormAt::PostResidual`: `x = norm(x + sublayer(x))`), erf GELU
//! (`Act::GeluErf`), and no LM head (`DecoderDesc::lm_head` false: the model gives hidden
//! states only, [`crate::Model::forward_hidden`]).
//!
//! Every struct has a default: the llama block (pre-RMSNorms, separate projections, causal,
//! RoPE 0, SwiGLU). An architecture changes only the fields where it differs.

use crate::layers::rope::RopeStyle;

/// Which normalisation a block's norms (and the final norm) are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NormKind {
    /// RMSNorm with a weight (`{name}.weight`).
    #[default]
    Rms,
    /// LayerNorm with a weight and a bias (`{name}.weight`, `{name}.bias`).
    Layer,
}

/// Where a sub-layer's norms stand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NormAt {
    /// Before the sub-layer only (`attn_norm`, `ffn_norm`): llama.
    #[default]
    Pre,
    /// On the sub-layer's output only, before the residual add (`post_attention_norm`,
    /// `post_ffw_norm`): olmo2.
    Post,
    /// Both: gemma2, gemma3.
    Both,
    /// After the residual add, on the residual stream itself: `x = norm(x + sublayer(x))`
    /// (BERT's post-LN: `attn_output_norm`, `layer_output_norm`); no norm before.
    PostResidual,
}

impl NormAt {
    pub fn pre(self) -> bool {
        matches!(self, NormAt::Pre | NormAt::Both)
    }
    pub fn post(self) -> bool {
        matches!(self, NormAt::Post | NormAt::Both)
    }
    /// Whether the norm follows the residual add ([`NormAt::PostResidual`]).
    pub fn residual(self) -> bool {
        self == NormAt::PostResidual
    }
}

/// RMSNorms on the queries and keys before RoPE (`attn_q_norm`, `attn_k_norm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QkNormKind {
    #[default]
    None,
    /// `[head_dim]`, applied to each head (qwen3, gemma3).
    PerHead,
    /// `[n_head*head_dim]` and `[n_head_kv*head_dim]`, over the whole projection (olmo2).
    Whole,
}

/// How projections that run on the same input are stored: the query, key and value
/// projections (`attn_q`, `attn_k`, `attn_v` or one `attn_qkv` of q, k, v rows stacked), and
/// a gated feed-forward's gate and up projections (`ffn_gate`, `ffn_up` or one `ffn_up` of
/// the gate rows then the up rows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// Separate tensors.
    #[default]
    Separate,
    /// One fused tensor (gpt2's `attn_qkv`).
    Fused,
    /// Fused when the file has the fused tensor and not the separate ones (phi3: llama.cpp
    /// accepts both).
    FusedOrSeparate,
}

/// Which keys a query sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mask {
    /// Its own position and the ones before it (decoders).
    #[default]
    Causal,
    /// Every position of its own sequence in the batch (encoders); sequences in different
    /// slots never see each other, so a batch of several needs no padding mask.
    Bidirectional,
}

/// The attention of one block.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttnDesc {
    pub mask: Mask,
    /// Sliding window: a query sees at most this many positions, its own included.
    pub window: Option<usize>,
    /// Attention-logit soft-cap `cap · tanh(s / cap)` (gemma2).
    pub softcap: Option<f32>,
    /// Multiplies `q·k`; `None`: `1/sqrt(head_dim)`.
    pub scale: Option<f32>,
}

/// An activation of a feed-forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Act {
    #[default]
    Silu,
    /// GELU, tanh approximation.
    GeluTanh,
    /// GELU with the exact error function, `x · (1 + erf(x/√2)) / 2` (BERT's `gelu`, CLIP's
    /// `text_encoder_2`).
    GeluErf,
    /// `x · sigmoid(1.702·x)` (Hugging Face `quick_gelu`: OpenAI's CLIP text encoders).
    QuickGelu,
}

/// The feed-forward of one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnKind {
    /// `down(act(gate(h)) · up(h))`, gate and up stored as `gate_up` says.
    Gated { act: Act, gate_up: Layout },
    /// `down(act(up(h)))` (gpt2, starcoder2).
    Mlp { act: Act },
    /// A mixture of SwiGLU experts (`{arch}.expert_*` keys, [`crate::layers::moe`]).
    Moe,
}

impl Default for FfnKind {
    fn default() -> Self {
        FfnKind::Gated {
            act: Act::Silu,
            gate_up: Layout::Separate,
        }
    }
}

/// One RoPE variant; layers pick one by index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeDesc {
    pub style: RopeStyle,
    /// `base^(-2i/n_rot)` frequencies.
    pub base: f32,
    /// Linear scaling: every angle divided by this (position interpolation).
    pub linear_scale: Option<f32>,
}

impl Default for RopeDesc {
    /// llama's: adjacent pairs, base 10000, no scaling.
    fn default() -> Self {
        RopeDesc::new(RopeStyle::Norm, 10000.0)
    }
}

impl RopeDesc {
    /// A RoPE without scaling.
    pub fn new(style: RopeStyle, base: f32) -> RopeDesc {
        RopeDesc {
            style,
            base,
            linear_scale: None,
        }
    }
}

/// Everything about one layer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockDesc {
    pub norm: NormKind,
    pub attn_norm: NormAt,
    pub ffn_norm: NormAt,
    pub qk_norm: QkNormKind,
    pub qkv: Layout,
    pub attn: AttnDesc,
    /// Index into [`DecoderDesc::ropes`]; `None`: no rotary positions in this layer.
    pub rope: Option<usize>,
    pub ffn: FfnKind,
}

/// Everything about one model.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderDesc {
    /// Multiplies the token embeddings (gemma: `sqrt(n_embd)`).
    pub embd_scale: Option<f32>,
    /// Add `position_embd[pos]` to the embeddings (gpt2).
    pub learned_positions: bool,
    /// Add row `type` of `token_types.weight` to each token's embedding (BERT; the batch's
    /// [`crate::Batch::types`], type 0 when it has none).
    pub token_types: bool,
    /// The model may end in a sequence-classification head (a cross-encoder reranker:
    /// BERT's pooler `cls` + tanh on the first row, then `cls.output`), loaded when the file
    /// has `cls.output.weight` ([`crate::decoder::ClsHead`]).
    pub class_head: bool,
    /// A norm on the summed embeddings (`token_embd_norm`, BERT).
    pub embd_norm: Option<NormKind>,
    /// An LM head (`output` or tied): decoders. Without it (encoders) the model gives hidden
    /// states only.
    pub lm_head: bool,
    /// A final norm (`output_norm`, of kind [`DecoderDesc::output_norm`]) before the LM head
    /// and on the hidden states; an encoder without an LM head may keep it (CLIP's
    /// `final_layer_norm`) or not (BERT, whose blocks end in a norm).
    pub final_norm: bool,
    pub ropes: Vec<RopeDesc>,
    /// Multiplies each sub-layer's output before the residual add.
    pub residual_scale: Option<f32>,
    /// Kind of the final norm (`output_norm`).
    pub output_norm: NormKind,
    /// Soft-cap of the output logits (gemma2).
    pub output_softcap: Option<f32>,
    pub layers: Vec<BlockDesc>,
}

impl Default for DecoderDesc {
    fn default() -> Self {
        DecoderDesc {
            embd_scale: None,
            learned_positions: false,
            token_types: false,
            class_head: false,
            embd_norm: None,
            lm_head: true,
            final_norm: true,
            ropes: Vec::new(),
            residual_scale: None,
            output_norm: NormKind::default(),
            output_softcap: None,
            layers: Vec::new(),
        }
    }
}

impl DecoderDesc {
    /// `n_layer` copies of `block`, with one RoPE (index 0) when `rope` is given; the final
    /// norm is of the blocks' kind.
    pub fn uniform(n_layer: usize, block: BlockDesc, rope: Option<RopeDesc>) -> DecoderDesc {
        DecoderDesc {
            ropes: rope.into_iter().collect(),
            output_norm: block.norm,
            layers: vec![block; n_layer],
            ..DecoderDesc::default()
        }
    }
}

/// Sliding-window layers in a repeating pattern: layer `i` slides when
/// `i % pattern < pattern - 1` (gemma2: pattern 2, the even layers slide; gemma3: pattern 6,
/// every 6th layer is global).
pub fn slides(layer: usize, pattern: usize) -> bool {
    layer % pattern < pattern - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_patterns() {
        let g2: Vec<bool> = (0..4).map(|i| slides(i, 2)).collect();
        assert_eq!(g2, [true, false, true, false]);
        let global: Vec<usize> = (0..12).filter(|&i| !slides(i, 6)).collect();
        assert_eq!(global, [5, 11]);
    }

    #[test]
    fn defaults_are_the_llama_block() {
        let b = BlockDesc::default();
        assert_eq!(b.norm, NormKind::Rms);
        assert!(b.attn_norm.pre() && !b.attn_norm.post());
        assert_eq!(b.attn.mask, Mask::Causal);
        assert_eq!(
            b.ffn,
            FfnKind::Gated {
                act: Act::Silu,
                gate_up: Layout::Separate
            }
        );
        assert_eq!(b.rope, None);
    }
}
