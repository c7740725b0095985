//! Architectures: one file each, plus one line in [`ARCHITECTURES`].
//!
//! An architecture reads its hyper-parameters and tensors at load (validating shapes and types)
//! and implements [`Architecture::forward`]. Llama-like models only pick options of the shared
//! [`crate::decoder::Decoder`]; others may combine the pieces of [`crate::layers`] themselves.

use gguf::GgufFile;

use crate::batch::Batch;
use crate::cache::Scratch;
use crate::error::{ModelError, Result};
use crate::hparams::HParams;
use crate::layers::kv_cache::KvStore;

pub mod gemma2;
pub mod gemma3;
pub mod gpt2;
pub mod llama;
pub mod olmo2;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3moe;
pub mod sandwich;
pub mod starcoder2;

/// A loaded model of one architecture. The weights stay in `file` (passed to each call).
pub trait Architecture: Send + Sync {
    /// Declared hyper-parameters.
    fn hparams(&self) -> &HParams;

    /// Vocabulary size (rows of the logits).
    fn vocab(&self) -> usize;

    /// Widths of one cached key row and one value row per layer: `(k_dim, v_dim)`.
    fn kv_dims(&self) -> (usize, usize) {
        let hp = self.hparams();
        (hp.k_dim(), hp.v_dim())
    }

    /// The sliding window of `layer`, when its queries see only the last positions: a
    /// windowed cache ([`crate::Model::new_cache_windowed`]) keeps only those for it.
    fn kv_window(&self, _layer: usize) -> Option<usize> {
        None
    }

    /// Runs `batch` (already validated by [`crate::Model::forward`]: tokens in range, positions
    /// continuing each slot, below `n_ctx`), writing its keys/values into `kv` and the logits of
    /// the flagged tokens, in batch order, into `logits` (`[n_out, vocab]`, exactly that long).
    /// It must not change the slot lengths of `kv`: the caller does.
    fn forward(
        &self,
        file: &GgufFile,
        batch: &Batch,
        kv: &mut KvStore,
        scratch: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<()>;
}

/// Loads an architecture from an open GGUF file.
pub type Constructor = fn(&GgufFile) -> Result<Box<dyn Architecture>>;

/// The registry: `general.architecture` value → constructor.
pub const ARCHITECTURES: &[(&str, Constructor)] = &[
    ("llama", llama::load),
    ("qwen2", qwen2::load),
    ("qwen3", qwen3::load),
    ("phi3", phi3::load),
    ("qwen3moe", qwen3moe::load),
    ("gemma2", gemma2::load),
    ("gemma3", gemma3::load),
    ("olmo2", olmo2::load),
    ("gpt2", gpt2::load),
    ("starcoder2", starcoder2::load),
];

/// Names of the supported architectures, comma-separated.
pub fn supported() -> String {
    ARCHITECTURES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the constructor for `file`'s `general.architecture`.
pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let arch = file.architecture()?;
    match ARCHITECTURES.iter().find(|(n, _)| *n == arch) {
        Some((_, ctor)) => ctor(file),
        None => Err(ModelError::UnsupportedArch {
            arch: arch.to_string(),
            supported: supported(),
        }),
    }
}
