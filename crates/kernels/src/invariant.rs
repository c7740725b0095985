//! The batch-invariant mode: a process-wide switch under which every kernel computes a token's
//! results with the same arithmetic whatever else shares its call (how many tokens a matrix
//! product has, which other sequences share an attention batch), so a sequence's logits are
//! bit-identical however it is batched or cut into chunks.
//!
//! Off by default; [`set_batch_invariant`] switches it, and the environment variable
//! `LUME_BATCH_INVARIANT=1` (also `true`, `on`, `yes`) turns it on, read once at the first
//! call of [`batch_invariant`] unless [`set_batch_invariant`] was called before.
//!
//! What it changes:
//! - [`crate::matmul()`] (and `matmul_multi`): 4 or more tokens run the interleaved xN
//!   kernels (`xn` of `dot::kernels`; a partial group's other lanes are zeros), whose lanes each
//!   do one token's operations in the same order whatever the other lanes hold; 1..=3 tokens
//!   run `dot::exact`, one token at a time through exactly the f32 steps of an xN lane
//!   (integer sums, exact in any order, are computed the fast way). So neither the one-token
//!   kernels nor the 256-bit tiles of 2..7 tokens run. Where a type has no xN kernel (the
//!   scalar level, float weights, types without an integer kernel) the path is already per
//!   token (one independent dot per row and token, whatever the token count).
//! - [`crate::attn`]: nothing here; the model's attention sends every token through the tile
//!   kernels (a lone token in a narrow tile, see [`crate::attn::ROW_TILES`]), whose rows are
//!   computed independently of each other.
//!
//! Cost (2026-12-01, smollm2-135m Q4_1, `lume bench -p 512 -n 128 -t 2 -r 3`, 2-vCPU AVX2
//! machine, three runs each way interleaved): pp512 347–370 t/s off vs 329–395 on (within
//! the machine's noise), tg128 92–95 off vs 102–114 on (the exact one-token kernels prefetch
//! their 8-row stretch and come out ahead of the default one-token kernels here). The
//! AVX-512 VNNI variants are exercised only on CPUs that have it (the tests run every level
//! available).

use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not decided yet (the environment is read on first use), 1: off, 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Turns the batch-invariant mode on or off for the whole process (overrides
/// `LUME_BATCH_INVARIANT`). Switch it before a forward pass, not during one.
pub fn set_batch_invariant(on: bool) {
    STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Whether the batch-invariant mode is on (see the module docs).
#[inline]
pub fn batch_invariant() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => from_env(),
        s => s == 2,
    }
}

#[cold]
fn from_env() -> bool {
    let on = std::env::var("LUME_BATCH_INVARIANT").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "on" | "yes"
        )
    });
    // A concurrent `set_batch_invariant` wins over the environment.
    let _ = STATE.compare_exchange(
        0,
        if on { 2 } else { 1 },
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    STATE.load(Ordering::Relaxed) == 2
}
