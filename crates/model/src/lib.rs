//! # model: the transformer forward pass
//!
//! Map of the crate:
//! - [`model`]: [`Model`] (load a GGUF file, [`Model::forward`] a [`Batch`]) and [`ModelInfo`].
//! - [`batch`]: [`Batch`] — tokens, positions, KV-cache slots and logits flags of one pass; the
//!   prompt goes in as one batch, then one token per step (several sequences may share a batch).
//! - [`cache`]: [`KvCache`] — the KV store of several independent slots plus the scratch
//!   buffers (allocated once, grown to the largest batch: no allocation per token).
//! - [`arch`]: one file per architecture and the registry [`arch::ARCHITECTURES`].
//! - [`decoder`]: the llama-style decoder most architectures configure.
//! - [`layers`]: shared pieces — norms, RoPE (both layouts), attention, KV store, FFN activations.
//! - [`hparams`]: hyper-parameters from `{arch}.*` metadata; [`weights`]: tensor lookup with
//!   shape/type checks (weights stay quantized in the file mapping).
//! - [`ops`]: small vector helpers; [`error`]: [`ModelError`].
//!
//! Numerics (matmul, dequantization) come from the `kernels` crate.

pub mod arch;
pub mod batch;
pub mod cache;
pub mod decoder;
pub mod error;
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
