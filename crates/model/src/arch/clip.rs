//! `clip_text`: the text Transformer of CLIP (the prompt encoder of Stable Diffusion 1.x / 2.x,
//! SDXL and SD3): learned position embeddings, pre-LayerNorm blocks with biases everywhere,
//! separate q/k/v projections, a causal mask (although it is an encoder), a plain MLP with
//! quick-GELU (OpenAI's checkpoints) or GELU(erf) (OpenCLIP's, SDXL's `text_encoder_2`), and a
//! final LayerNorm. No RoPE, no output projection to the vocabulary: the outputs are hidden
//! states ([`crate::clip`]).
//!
//! Not in [`super::ARCHITECTURES`] (it has no logits to generate with); [`crate::clip`] loads
//! it from a Hugging Face folder, converted to these GGUF names and keys in memory:
//!
//! | GGUF                                      | Hugging Face `CLIPTextModel`                              |
//! |-------------------------------------------|-----------------------------------------------------------|
//! | `token_embd.weight`, `position_embd.weight` | `text_model.embeddings.{token,position}_embedding.weight` |
//! | `blk.N.attn_norm`, `blk.N.ffn_norm`       | `text_model.encoder.layers.N.layer_norm1`, `layer_norm2`  |
//! | `blk.N.attn_{q,k,v,output}`               | `...layers.N.self_attn.{q,k,v,out}_proj`                  |
//! | `blk.N.ffn_up`, `blk.N.ffn_down`          | `...layers.N.mlp.fc1`, `mlp.fc2`                          |
//! | `output_norm`                             | `text_model.final_layer_norm`                             |
//! | `text_projection.weight`                  | `text_projection.weight` (`CLIPTextModelWithProjection`)  |
//! | `clip_text.block_count`, `embedding_length`, `feed_forward_length`, `attention.head_count`, `context_length`, `attention.layer_norm_epsilon` | `num_hidden_layers`, `hidden_size`, `intermediate_size`, `num_attention_heads`, `max_position_embeddings`, `layer_norm_eps` |
//! | `clip_text.hidden_act` (string)           | `hidden_act`                                              |
//! | `clip_text.eos_token_id` (optional)       | `eos_token_id`                                            |

use gguf::GgufFile;

use crate::decoder::Decoder;
use crate::desc::{Act, BlockDesc, DecoderDesc, FfnKind, NormKind};
use crate::error::{ModelError, Result};
use crate::hparams::HParams;

/// `general.architecture` of a CLIP text encoder.
pub const ARCH: &str = "clip_text";

/// The activation named by Hugging Face's `hidden_act` (`quick_gelu`, `gelu`, or the tanh
/// forms `gelu_new` / `gelu_pytorch_tanh`).
pub fn activation(hidden_act: &str) -> Option<Act> {
    match hidden_act {
        "quick_gelu" => Some(Act::QuickGelu),
        "gelu" => Some(Act::GeluErf),
        "gelu_new" | "gelu_pytorch_tanh" => Some(Act::GeluTanh),
        _ => None,
    }
}

/// The block description: pre-LayerNorm, causal, no RoPE, plain MLP with `act`.
pub fn desc(n_layer: usize, act: Act) -> DecoderDesc {
    let block = BlockDesc {
        norm: NormKind::Layer,
        rope: None,
        ffn: FfnKind::Mlp { act },
        ..BlockDesc::default()
    };
    DecoderDesc {
        learned_positions: true,
        // Hidden states only, through the final LayerNorm (`output_norm`).
        lm_head: false,
        final_norm: true,
        ..DecoderDesc::uniform(n_layer, block, None)
    }
}

/// Loads the text Transformer of a `clip_text` GGUF image.
pub fn load(file: &GgufFile) -> Result<Decoder> {
    let hp = HParams::read(file, ARCH)?;
    let key = format!("{ARCH}.hidden_act");
    let name = file.get_str(&key)?;
    let act = activation(name).ok_or_else(|| ModelError::BadHparam {
        key: key.clone(),
        msg: format!("activation '{name}' is not supported (quick_gelu, gelu, gelu_new)"),
    })?;
    let n_layer = hp.n_layer;
    Decoder::load(file, hp, desc(n_layer, act))
}
