//! [`EngineOptions`]: how to load a model (threads, context, batch, KV type).

use model::KvType;

/// Largest context used when the caller does not ask for one (the model may allow more).
pub const DEFAULT_MAX_CTX: usize = 4096;

/// How to load a model.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Worker threads for the kernels (0 = all cores).
    pub threads: usize,
    /// Context size in tokens (0 = the model's, capped at [`DEFAULT_MAX_CTX`]).
    pub n_ctx: usize,
    /// Most prompt tokens per forward call.
    pub batch: usize,
    /// Element type of the KV cache: f16 (default, as llama.cpp's; half the memory) or f32.
    pub kv_type: KvType,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: 0,
            n_ctx: 0,
            batch: 512,
            kv_type: KvType::F16,
        }
    }
}
