//! [`Model`]: a GGUF file plus its architecture; [`ModelInfo`]: what callers need to know.

use std::path::Path;

use gguf::GgufFile;

use crate::arch;
use crate::architecture::Architecture;
use crate::batch::Batch;
pub use crate::batch::MAX_BATCH;
use crate::cache::KvCache;
use crate::error::{ModelError, Result};
use crate::layers::kv_cache::{KvStore, KvType};

/// Facts about a loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// `general.architecture`
    pub arch: String,
    /// `general.name`, when present
    pub name: Option<String>,
    pub vocab: usize,
    /// `{arch}.context_length`: the context the model was trained for
    pub n_ctx_train: usize,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    /// Most tokens per forward call ([`MAX_BATCH`]).
    pub max_batch: usize,
    /// Whether the model gives logits; encoders (BERT) give hidden states only
    /// ([`Model::forward_hidden`]).
    pub lm_head: bool,
}

/// A loaded model. Immutable and shareable across threads; each conversation state lives in
/// a [`KvCache`].
pub struct Model {
    file: GgufFile,
    arch: Box<dyn Architecture>,
    info: ModelInfo,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("file", &self.file.path())
            .field("info", &self.info)
            .finish()
    }
}

impl Model {
    /// Opens and loads the GGUF model at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::from_gguf(GgufFile::open(path)?)
    }

    /// Loads a model from an open GGUF file (validates every tensor it uses).
    pub fn from_gguf(file: GgufFile) -> Result<Model> {
        let arch = arch::load(&file)?;
        Ok(Model::from_architecture(file, arch))
    }

    /// A model from a file and an architecture already loaded from it, e.g. a
    /// [`crate::decoder::Decoder`] with a description of the caller's own
    /// ([`crate::desc::DecoderDesc`]). `arch` must have been loaded from `file`.
    pub fn from_architecture(file: GgufFile, arch: Box<dyn Architecture>) -> Model {
        let hp = arch.hparams();
        let info = ModelInfo {
            arch: hp.arch.clone(),
            name: file.get_str("general.name").ok().map(str::to_string),
            vocab: arch.vocab(),
            n_ctx_train: hp.n_ctx_train,
            n_layer: hp.n_layer,
            n_embd: hp.n_embd,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            n_ff: hp.n_ff,
            max_batch: MAX_BATCH,
            lm_head: arch.has_lm_head(),
        };
        Model { file, arch, info }
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The underlying file (tokenizer metadata, chat template…).
    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    /// A cache of `n_slots` sequences of up to `n_ctx` positions each (f32).
    pub fn new_cache(&self, n_slots: usize, n_ctx: usize) -> Result<KvCache> {
        self.new_cache_typed(n_slots, n_ctx, KvType::F32)
    }

    /// Like [`Model::new_cache`] with the element type of the cache chosen.
    pub fn new_cache_typed(&self, n_slots: usize, n_ctx: usize, ty: KvType) -> Result<KvCache> {
        let hp = self.arch.hparams();
        ty.check_heads(hp.head_dim, hp.head_dim_v)?;
        let (kd, vd) = self.arch.kv_dims();
        let kv = KvStore::new(self.info.n_layer, n_slots, n_ctx, kd, vd, ty)?;
        Ok(KvCache::new(kv))
    }

    /// Like [`Model::new_cache_typed`], but the sliding-window layers (gemma2, gemma3) keep
    /// only their window plus one batch ([`MAX_BATCH`]) of positions, in a ring buffer, instead
    /// of `n_ctx`: for gemma3 that is 5 layers in 6 holding about 1k positions whatever the
    /// context. The results are the same; the price is that [`KvCache::truncate`] can no
    /// longer go back further than the ring remembers (check [`KvCache::can_truncate`]).
    /// For models without sliding-window layers this is [`Model::new_cache_typed`].
    pub fn new_cache_windowed(&self, n_slots: usize, n_ctx: usize, ty: KvType) -> Result<KvCache> {
        let hp = self.arch.hparams();
        ty.check_heads(hp.head_dim, hp.head_dim_v)?;
        let (kd, vd) = self.arch.kv_dims();
        let windows: Vec<Option<usize>> = (0..self.info.n_layer)
            .map(|l| self.arch.kv_window(l))
            .collect();
        let kv = KvStore::with_windows(n_slots, n_ctx, kd, vd, ty, &windows)?;
        Ok(KvCache::new(kv))
    }

    /// Evaluates `batch`, appending its keys/values to `cache`, and writes the logits rows of
    /// the flagged tokens (in batch order) to `logits_out`, resized to `[n_out, vocab]`.
    ///
    /// On error nothing is written to the cache.
    pub fn forward(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        logits_out: &mut Vec<f32>,
    ) -> Result<()> {
        self.validate(batch, cache)?;
        let n_out = batch.n_outputs();
        if n_out > 0 && !self.info.lm_head {
            return Err(ModelError::BadBatch(format!(
                "{n_out} tokens ask for logits, but this {} model has no LM head (it gives \
                 hidden states: Model::forward_hidden)",
                self.info.arch
            )));
        }
        logits_out.resize(n_out * self.info.vocab, 0.0);
        if batch.is_empty() {
            return Ok(());
        }
        let KvCache { kv, scratch } = cache;
        self.arch
            .forward(&self.file, batch, kv, scratch, logits_out)?;
        Self::advance(batch, kv);
        Ok(())
    }

    /// Evaluates `batch` like [`Model::forward`], but writes the final hidden state of every
    /// batch token (after the final norm where the model has one; for BERT the last layer's
    /// output LayerNorm) to `hidden_out`, resized to `[n, n_embd]`. The logits flags are
    /// ignored. Several sequences go in one batch as several slots; with bidirectional
    /// attention a slot's tokens see exactly their own sequence, so no padding is involved.
    pub fn forward_hidden(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        hidden_out: &mut Vec<f32>,
    ) -> Result<()> {
        self.forward_hidden_layers(batch, cache, &mut |_, _| {}, hidden_out)
    }

    /// [`Model::forward_hidden`], calling `after_layer(l, x)` with the residual stream `x`
    /// (`[n, n_embd]`) after each layer `l`: CLIP's penultimate state ([`crate::clip`]).
    pub fn forward_hidden_layers(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        after_layer: &mut dyn FnMut(usize, &[f32]),
        hidden_out: &mut Vec<f32>,
    ) -> Result<()> {
        self.validate(batch, cache)?;
        hidden_out.resize(batch.len() * self.info.n_embd, 0.0);
        if batch.is_empty() {
            return Ok(());
        }
        let KvCache { kv, scratch } = cache;
        self.arch
            .forward_hidden(&self.file, batch, kv, scratch, after_layer, hidden_out)?;
        Self::advance(batch, kv);
        Ok(())
    }

    /// Width of the sequence-classification head's output (0 without one).
    pub fn n_labels(&self) -> usize {
        self.arch.n_labels()
    }

    /// Runs the classification head on `n` first rows of sequences (`rows`: `[n, n_embd]`
    /// from [`Model::forward_hidden`]) into `out`, resized to `[n, n_labels]`; `tmp` is scratch.
    pub fn classify(
        &self,
        rows: &[f32],
        n: usize,
        tmp: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let d = self.info.n_embd;
        if rows.len() != n * d {
            return Err(ModelError::BadBatch(format!(
                "classify: {} values for {n} rows of {d}",
                rows.len()
            )));
        }
        out.resize(n * self.arch.n_labels(), 0.0);
        self.arch.classify(&self.file, rows, n, tmp, out)
    }

    /// Grows each slot's length to cover the positions `batch` filled.
    fn advance(batch: &Batch, kv: &mut KvStore) {
        for (t, &slot) in batch.seq_ids.iter().enumerate() {
            let end = batch.positions[t] as usize + 1;
            if end > kv.len(slot) {
                kv.set_len(slot, end);
            }
        }
    }

    fn validate(&self, batch: &Batch, cache: &mut KvCache) -> Result<()> {
        let n = batch.len();
        if batch.positions.len() != n || batch.seq_ids.len() != n || batch.logits.len() != n {
            return Err(ModelError::BadBatch(format!(
                "field lengths differ: {} tokens, {} positions, {} seq_ids, {} logits flags",
                n,
                batch.positions.len(),
                batch.seq_ids.len(),
                batch.logits.len()
            )));
        }
        if !batch.types.is_empty() && batch.types.len() != n {
            return Err(ModelError::BadBatch(format!(
                "{} token types for {n} tokens (give one per token, or none)",
                batch.types.len()
            )));
        }
        if n > MAX_BATCH {
            return Err(ModelError::BadBatch(format!(
                "{n} tokens is more than the maximum batch of {MAX_BATCH}; split it"
            )));
        }
        let n_slots = cache.kv.n_slots;
        let n_ctx = cache.kv.n_ctx;
        let (kd, vd) = self.arch.kv_dims();
        let ring_mismatch = || {
            (cache.kv.windows().iter().enumerate())
                .any(|(l, w)| w.is_some() && *w != self.arch.kv_window(l))
        };
        if cache.kv.n_layer != self.info.n_layer
            || cache.kv.k_dim != kd
            || cache.kv.v_dim != vd
            || ring_mismatch()
        {
            return Err(ModelError::BadCache(
                "this cache was made for a different model".into(),
            ));
        }
        let next = &mut cache.scratch.next_pos;
        next.clear();
        next.extend((0..n_slots).map(|s| cache.kv.len(s)));
        for i in 0..n {
            let tok = batch.tokens[i];
            if tok as usize >= self.info.vocab {
                return Err(ModelError::TokenOutOfRange {
                    token: tok,
                    index: i,
                    vocab: self.info.vocab,
                });
            }
            let slot = batch.seq_ids[i];
            if slot >= n_slots {
                return Err(ModelError::BadBatch(format!(
                    "token {i}: slot {slot} does not exist (the cache has {n_slots} slots)"
                )));
            }
            let pos = batch.positions[i] as usize;
            if pos != next[slot] {
                return Err(ModelError::BadBatch(format!(
                    "token {i}: position {pos} in slot {slot}, expected {} (positions must continue the slot)",
                    next[slot]
                )));
            }
            if pos >= n_ctx {
                return Err(ModelError::ContextFull { slot, pos, n_ctx });
            }
            next[slot] += 1;
        }
        Ok(())
    }
}
