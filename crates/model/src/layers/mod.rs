//! Building blocks shared by every architecture: norms, RoPE, attention, KV cache, feed-forward.
//!
//! Each piece works on row-major activation buffers (`[n_tokens, width]`) and knows nothing of
//! GGUF names, so a new architecture combines them in its own file under `src/arch/`.

pub mod attention;
pub mod ffn;
pub mod kv_cache;
pub mod moe;
pub mod norm;
pub mod rope;
