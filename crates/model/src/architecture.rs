//! [`Architecture`]: what [`crate::Model`] needs of a loaded model. The one implementation is
//! [`crate::decoder::Decoder`]; the registry ([`crate::arch`]) maps names to constructors.

use gguf::GgufFile;

use crate::batch::Batch;
use crate::cache::Scratch;
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::kv_cache::KvStore;

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

    /// Whether [`Architecture::forward`] can give logits (false for encoders).
    fn has_lm_head(&self) -> bool {
        true
    }

    /// Outputs of the sequence-classification head (0: none).
    fn n_labels(&self) -> usize {
        0
    }

    /// The classification head on `n` rows (`rows`: `[n, n_embd]`, each a sequence's first
    /// hidden row), into `out` (`[n, n_labels]`, exactly that long); `tmp` is scratch.
    fn classify(
        &self,
        _file: &GgufFile,
        _rows: &[f32],
        _n: usize,
        _tmp: &mut Vec<f32>,
        _out: &mut [f32],
    ) -> Result<()> {
        Err(crate::error::ModelError::BadBatch(format!(
            "this {} model has no classification head",
            self.hparams().arch
        )))
    }

    /// Like [`Architecture::forward`], but writes the final hidden state of every batch token
    /// (after the final norm where the model has one) into `hidden` (`[n, n_embd]`, exactly
    /// that long) instead of logits; `after_layer(l, x)` sees the residual stream `x`
    /// (`[n, n_embd]`) after each layer `l` (CLIP keeps its penultimate state from it).
    fn forward_hidden(
        &self,
        _file: &GgufFile,
        _batch: &Batch,
        _kv: &mut KvStore,
        _scratch: &mut Scratch,
        _after_layer: &mut dyn FnMut(usize, &[f32]),
        _hidden: &mut [f32],
    ) -> Result<()> {
        Err(crate::error::ModelError::BadBatch(format!(
            "architecture '{}' gives no hidden states",
            self.hparams().arch
        )))
    }
}

/// Loads an architecture from an open GGUF file.
pub type Constructor = fn(&GgufFile) -> Result<Box<dyn Architecture>>;
