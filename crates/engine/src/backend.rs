//! The real model behind the [`Forward`] trait: a `model::Model`, its one-slot KV cache and a
//! reusable batch.

use std::path::PathBuf;

use gguf::GgufFile;
use model::{Batch, KvCache, Model, ModelError};

use crate::options::{EngineOptions, DEFAULT_MAX_CTX};
use crate::session::Forward;
use crate::EngineError;

/// Largest context for a model that does not state its training context.
const FALLBACK_CTX_LIMIT: usize = 32768;

/// The KV-cache slot every request uses (the engine serves one conversation at a time).
const SLOT: usize = 0;

pub struct ModelBackend {
    model: Model,
    cache: KvCache,
    batch: Batch,
    /// Logits of one chunk when a long evaluation is split.
    chunk_logits: Vec<f32>,
    path: PathBuf,
}

impl ModelBackend {
    pub fn load(file: GgufFile, opts: &EngineOptions) -> Result<ModelBackend, EngineError> {
        let path = file.path().to_path_buf();
        let model = Model::from_gguf(file).map_err(|e| model_err(&path, e))?;
        let n_ctx = context_size(&model, opts.n_ctx, &path)?;
        // Sliding-window layers (gemma2/3) keep a ring of their window instead of n_ctx rows.
        let cache = model
            .new_cache_windowed(1, n_ctx, opts.kv_type)
            .map_err(|e| model_err(&path, e))?;
        Ok(ModelBackend {
            model,
            cache,
            batch: Batch::new(),
            chunk_logits: Vec::new(),
            path,
        })
    }

    /// Whether the cache can go back to `pos` keeping everything before it.
    pub fn can_rewind(&self, pos: usize) -> bool {
        pos <= self.cache.len(SLOT) && self.cache.can_truncate(SLOT, pos)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
}

/// The context to allocate when `asked` (0 = the model's, capped at [`DEFAULT_MAX_CTX`]) is
/// requested. A context larger than the model was trained for is refused: it would only cost
/// memory (the KV cache is allocated up front) for positions the model cannot use.
pub fn context_size(
    model: &Model,
    asked: usize,
    path: &std::path::Path,
) -> Result<usize, EngineError> {
    let info = model.info();
    let limit = if info.n_ctx_train > 0 {
        info.n_ctx_train
    } else {
        FALLBACK_CTX_LIMIT
    };
    if asked > limit {
        return Err(EngineError::ContextTooLarge {
            path: path.to_path_buf(),
            n_ctx: asked,
            limit,
        });
    }
    Ok(if asked > 0 {
        asked
    } else if info.n_ctx_train > 0 {
        info.n_ctx_train.min(DEFAULT_MAX_CTX)
    } else {
        DEFAULT_MAX_CTX
    })
}

/// Model errors name the key or tensor; add the file (GGUF errors carry it already).
pub fn model_err(path: &std::path::Path, e: ModelError) -> EngineError {
    match e {
        ModelError::Gguf(g) => EngineError::Gguf(g),
        other => EngineError::Model {
            path: path.to_path_buf(),
            error: other,
        },
    }
}

impl Forward for ModelBackend {
    fn n_vocab(&self) -> usize {
        self.model.info().vocab
    }

    fn n_ctx(&self) -> usize {
        self.cache.n_ctx()
    }

    fn truncate(&mut self, pos: usize) -> usize {
        let mut len = self.cache.len(SLOT).min(pos);
        if !self.cache.can_truncate(SLOT, len) {
            // A ring has overwritten the window before `len`: start again from nothing.
            len = 0;
        }
        // Cannot fail: the slot exists, `len` is at most its length and reachable.
        let _ = self.cache.truncate(SLOT, len);
        len
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        all: bool,
        logits: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        let max = self.model.info().max_batch.max(1);
        logits.clear();
        let n_chunks = tokens.len().div_ceil(max);
        for (c, chunk) in tokens.chunks(max).enumerate() {
            let start = pos0 + c * max;
            let last = c + 1 == n_chunks;
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                let want = all || (last && i + 1 == chunk.len());
                self.batch.push(t, (start + i) as u32, SLOT, want);
            }
            if all || last {
                // With one chunk (the usual case) the model writes straight into `logits`.
                if n_chunks == 1 {
                    self.model
                        .forward(&self.batch, &mut self.cache, logits)
                        .map_err(|e| model_err(&self.path, e))?;
                } else {
                    self.model
                        .forward(&self.batch, &mut self.cache, &mut self.chunk_logits)
                        .map_err(|e| model_err(&self.path, e))?;
                    logits.extend_from_slice(&self.chunk_logits);
                }
            } else {
                self.model
                    .forward(&self.batch, &mut self.cache, &mut self.chunk_logits)
                    .map_err(|e| model_err(&self.path, e))?;
            }
        }
        Ok(())
    }
}
