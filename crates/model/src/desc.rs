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
}

impl NormAt {
    pub fn pre(self) -> bool {
        matches!(self, NormAt::Pre | NormAt::Both)
    }
    pub fn post(self) -> bool {
        matches!(self, NormAt::Post | NormAt::Both)
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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecoderDesc {
    /// Multiplies the token embeddings (gemma: `sqrt(n_embd)`).
    pub embd_scale: Option<f32>,
    /// Add `position_embd[pos]` to the embeddings (gpt2).
    pub learned_positions: bool,
    pub ropes: Vec<RopeDesc>,
    /// Multiplies each sub-layer's output before the residual add.
    pub residual_scale: Option<f32>,
    /// Kind of the final norm (`output_norm`).
    pub output_norm: NormKind,
    /// Soft-cap of the output logits (gemma2).
    pub output_softcap: Option<f32>,
    pub layers: Vec<BlockDesc>,
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
