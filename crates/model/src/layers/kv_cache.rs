//! The KV cache storage: per layer, per slot, per position one key row and one value row (f32).
//!
//! Layout: `k` is `[n_layer, n_slots, n_ctx, k_dim]`, `v` is `[n_layer, n_slots, n_ctx, v_dim]`.
//! `lens[s]` positions of slot `s` are valid (the same for every layer).

use crate::error::{ModelError, Result};

/// Largest cache, in values, we agree to allocate (2^36 f32 = 256 GiB, i.e. a sanity bound).
const MAX_CACHE_VALUES: usize = 1 << 36;

#[derive(Clone, Debug)]
pub struct KvStore {
    pub n_layer: usize,
    pub n_slots: usize,
    pub n_ctx: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    /// `[n_layer, n_slots, n_ctx, k_dim]`
    k: Vec<f32>,
    /// `[n_layer, n_slots, n_ctx, v_dim]`
    v: Vec<f32>,
    /// `[n_slots]`: filled positions per slot.
    lens: Vec<usize>,
}

impl KvStore {
    pub fn new(
        n_layer: usize,
        n_slots: usize,
        n_ctx: usize,
        k_dim: usize,
        v_dim: usize,
    ) -> Result<KvStore> {
        if n_slots == 0 || n_ctx == 0 {
            return Err(ModelError::BadCache(format!(
                "a cache needs at least one slot and one position (asked for {n_slots} slots of {n_ctx})"
            )));
        }
        let size = |d: usize| {
            n_layer
                .checked_mul(n_slots)
                .and_then(|x| x.checked_mul(n_ctx))
                .and_then(|x| x.checked_mul(d))
                .filter(|&x| x <= MAX_CACHE_VALUES)
                .ok_or_else(|| {
                    ModelError::BadCache(format!(
                        "{n_slots} slots of {n_ctx} positions x {n_layer} layers x {d} values is too large"
                    ))
                })
        };
        let (nk, nv) = (size(k_dim)?, size(v_dim)?);
        Ok(KvStore {
            n_layer,
            n_slots,
            n_ctx,
            k_dim,
            v_dim,
            k: vec![0.0; nk],
            v: vec![0.0; nv],
            lens: vec![0; n_slots],
        })
    }

    /// Filled positions of `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    /// Whether every slot is empty.
    pub fn is_empty(&self) -> bool {
        self.lens.iter().all(|&l| l == 0)
    }

    pub(crate) fn set_len(&mut self, slot: usize, len: usize) {
        self.lens[slot] = len;
    }

    fn base(&self, layer: usize, slot: usize) -> usize {
        (layer * self.n_slots + slot) * self.n_ctx
    }

    /// Stores the key and value rows of `slot` at `pos` in `layer`.
    pub fn write(&mut self, layer: usize, slot: usize, pos: usize, k: &[f32], v: &[f32]) {
        let row = self.base(layer, slot) + pos;
        self.k[row * self.k_dim..(row + 1) * self.k_dim].copy_from_slice(k);
        self.v[row * self.v_dim..(row + 1) * self.v_dim].copy_from_slice(v);
    }

    /// All key rows of `slot` in `layer`: `[n_ctx, k_dim]` (rows past the slot's length are stale).
    pub fn keys(&self, layer: usize, slot: usize) -> &[f32] {
        let b = self.base(layer, slot);
        &self.k[b * self.k_dim..(b + self.n_ctx) * self.k_dim]
    }

    /// All value rows of `slot` in `layer`: `[n_ctx, v_dim]`.
    pub fn values(&self, layer: usize, slot: usize) -> &[f32] {
        let b = self.base(layer, slot);
        &self.v[b * self.v_dim..(b + self.n_ctx) * self.v_dim]
    }
}
