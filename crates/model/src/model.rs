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
        logits_out.resize(n_out * self.info.vocab, 0.0);
        if batch.is_empty() {
            return Ok(());
        }
        let KvCache { kv, scratch } = cache;
        self.arch
            .forward(&self.file, batch, kv, scratch, logits_out)?;
        for (t, &slot) in batch.seq_ids.iter().enumerate() {
            let end = batch.positions[t] as usize + 1;
            if end > kv.len(slot) {
                kv.set_len(slot, end);
            }
        }
        Ok(())
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
