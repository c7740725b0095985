//! # model: the transformer forward pass
//!
//! Map of the crate:
//! - [`model`]: [`Model`] (load a GGUF file, [`Model::forward`] a [`Batch`]) and [`ModelInfo`].
//! - [`batch`]: [`Batch`] — tokens, positions, KV-cache slots and logits flags of one pass; the
//!   prompt goes in as one batch, then one token per step (several sequences may share a batch).
//! - [`cache`]: [`KvCache`] — the KV store of several independent slots plus the scratch
//!   buffers (allocated once, grown to the largest batch: no allocation per token).
//!   [`Model::new_cache_windowed`] keeps only the window of sliding-window layers (ring buffers).
//! - [`arch`]: one file per architecture and the registry [`arch::ARCHITECTURES`] (llama incl.
//!   Mixtral, qwen2, qwen3, qwen3moe, phi3, gpt2, starcoder2, gemma2, gemma3, olmo2, and the
//!   encoder bert): each
//!   states its facts as a [`desc::DecoderDesc`] and loads the one decoder with it.
//! - [`desc`]: the block description (norms and where they stand, attention mask/window/
//!   soft-cap/scale, RoPE per layer or learned positions, projection layout, feed-forward kind,
//!   residual scale, output soft-cap), with llama defaults.
//! - [`decoder`]: [`decoder::Decoder`], the one layer loop every architecture runs (the hot
//!   path: `Decoder::forward`), and the batched attention dispatch.
//! - [`clip`]: [`clip::ClipTextEncoder`], CLIP's text encoder from a Hugging Face folder
//!   (converted to a `clip_text` GGUF image in memory), returning hidden states rather than
//!   logits ([`Model::forward_hidden_layers`]).
//! - [`architecture`]: the [`architecture::Architecture`] trait [`Model`] calls.
//! - [`layers`]: shared pieces — norms, RoPE (both layouts), attention, KV store, FFN activations,
//!   mixture of experts (`layers::moe`).
//! - [`hparams`]: hyper-parameters from `{arch}.*` metadata; [`weights`]: tensor lookup with
//!   shape/type checks (weights stay quantized in the file mapping).
//! - [`embed`]: [`embed::Embedder`] — sentence embeddings: sequences as slots of one batch,
//!   final hidden states ([`Model::forward_hidden`]) pooled (mean, CLS, last), L2-normalised.
//! - [`hf`]: Hugging Face folders (`config.json` + safetensors via the `hf` crate) loaded as an
//!   in-memory GGUF image under llama.cpp's names (BERT).
//! - [`ops`]: small vector helpers; [`error`]: [`ModelError`].
//!
//! Numerics (matmul, dequantization) come from the `kernels` crate.
//!
//! ```no_run
//! use model::{Batch, Model};
//! # fn main() -> model::Result<()> {
//! let m = Model::load("model.gguf")?;
//! let mut cache = m.new_cache(1, 2048)?; // one sequence of up to 2048 positions
//! let mut logits = Vec::new();
//! let prompt = [1u32, 2, 3];
//! // The prompt as one batch (split it into chunks of at most `m.info().max_batch`).
//! m.forward(&Batch::from_tokens(&prompt, 0, 0, false), &mut cache, &mut logits)?;
//! // logits: [1, vocab] for the last prompt token; then one token per step:
//! let mut batch = Batch::new();
//! let next = 42;
//! batch.push(next, cache.len(0) as u32, 0, true);
//! m.forward(&batch, &mut cache, &mut logits)?;
//! # Ok(())
//! # }
//! ```

pub mod arch;
pub mod architecture;
pub mod batch;
pub mod cache;
pub mod clip;
pub mod decoder;
pub mod desc;
pub mod embed;
pub mod error;
pub mod hf;
pub mod hparams;
pub mod layers;
pub mod model;
pub mod ops;
pub mod weights;

pub use batch::Batch;
pub use cache::KvCache;
pub use error::{ModelError, Result};
pub use layers::kv_cache::KvType;
pub use model::{Model, ModelInfo, MAX_BATCH};

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Model>();
        check::<crate::KvCache>();
    }
}
