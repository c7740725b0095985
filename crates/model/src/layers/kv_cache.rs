//! The KV cache storage: per layer, per slot, per position one key row and one value row,
//! stored as f32 or f16 ([`KvType`]).
//!
//! Layout: keys are `[n_layer, n_slots, n_ctx, k_dim]`, values `[n_layer, n_slots, n_ctx, v_dim]`.
//! `lens[s]` positions of slot `s` are valid (the same for every layer).

use half::f16;

use crate::error::{ModelError, Result};

/// Largest cache, in values, we agree to allocate (2^36 values: a sanity bound).
const MAX_CACHE_VALUES: usize = 1 << 36;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// Exact (default).
    #[default]
    F32,
    /// Half the memory; rounds keys and values to IEEE half.
    F16,
}

#[derive(Clone, Debug)]
enum Buf {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Buf {
    fn new(ty: KvType, n: usize) -> Buf {
        match ty {
            KvType::F32 => Buf::F32(vec![0.0; n]),
            KvType::F16 => Buf::F16(vec![f16::ZERO; n]),
        }
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Buf::F32(b) => b[at..at + src.len()].copy_from_slice(src),
            Buf::F16(b) => kernels::f32_to_f16_slice(src, &mut b[at..at + src.len()]),
        }
    }

    fn rows(&self, start: usize, end: usize) -> Rows<'_> {
        match self {
            Buf::F32(b) => Rows::F32(&b[start..end]),
            Buf::F16(b) => Rows::F16(&b[start..end]),
        }
    }
}

/// A read-only view of cached rows (`[n_ctx, dim]`) in the cache's element type.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

#[derive(Clone, Debug)]
pub struct KvStore {
    pub n_layer: usize,
    pub n_slots: usize,
    pub n_ctx: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    pub ty: KvType,
    /// `[n_layer, n_slots, n_ctx, k_dim]`
    k: Buf,
    /// `[n_layer, n_slots, n_ctx, v_dim]`
    v: Buf,
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
        ty: KvType,
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
            ty,
            k: Buf::new(ty, nk),
            v: Buf::new(ty, nv),
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

    /// Stores the key (`[k_dim]`) and value (`[v_dim]`) rows of `slot` at `pos` in `layer`.
    pub fn write(&mut self, layer: usize, slot: usize, pos: usize, k: &[f32], v: &[f32]) {
        let row = self.base(layer, slot) + pos;
        self.k.write(row * self.k_dim, &k[..self.k_dim]);
        self.v.write(row * self.v_dim, &v[..self.v_dim]);
    }

    /// All key rows of `slot` in `layer`: `[n_ctx, k_dim]` (rows past the slot's length are stale).
    pub fn keys(&self, layer: usize, slot: usize) -> Rows<'_> {
        let b = self.base(layer, slot);
        self.k.rows(b * self.k_dim, (b + self.n_ctx) * self.k_dim)
    }

    /// All value rows of `slot` in `layer`: `[n_ctx, v_dim]`.
    pub fn values(&self, layer: usize, slot: usize) -> Rows<'_> {
        let b = self.base(layer, slot);
        self.v.rows(b * self.v_dim, (b + self.n_ctx) * self.v_dim)
    }
}
