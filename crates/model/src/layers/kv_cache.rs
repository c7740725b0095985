//! The KV cache storage: per layer, per slot, per position one key row and one value row,
//! stored as f32, f16, or in 32-value Q8_0 / Q4_0 blocks along each head ([`KvType`]).
//!
//! Layout: per layer, keys `[n_slots, cap, k_dim]` and values `[n_slots, cap, v_dim]`, the layers
//! one after the other. `cap` is `n_ctx` for every layer of a plain cache; in a windowed cache
//! ([`KvStore::with_windows`]) a sliding-window layer keeps only `window + MAX_BATCH - 1` rows
//! and position `p` lives in row `p % cap` (a ring buffer: a batch of up to `MAX_BATCH` tokens
//! writes its keys before any of its queries reads, and the oldest query still needs
//! `window - 1` earlier positions). `lens[s]` positions of slot `s` are valid (the same for every
//! layer; in a ring only the last `cap` of them are still stored).

use half::f16;
use kernels::kvq::{BlockQ4_0, BlockQ8_0, QK};
use kernels::quants::Block;

use crate::batch::MAX_BATCH;
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
    /// 8.5 bits a value: blocks of 32 along each head, one f16 scale and 32 signed codes
    /// (`x = d·q`, `d = amax/127`). Needs head sizes that are multiples of 32.
    Q8_0,
    /// 4.5 bits a value: blocks of 32, one f16 scale and 32 nibbles (`x = d·(n − 8)`).
    Q4_0,
}

impl KvType {
    /// The llama.cpp spelling (`-ctk`/`-ctv`, llama-bench's `type_k`).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }

    /// Whether rows are stored in blocks of [`QK`] values (head sizes must be multiples).
    pub fn is_quantized(self) -> bool {
        matches!(self, KvType::Q8_0 | KvType::Q4_0)
    }

    /// Bytes of `n` stored values (`n` a multiple of 32 for the block types).
    pub fn bytes(self, n: usize) -> usize {
        match self {
            KvType::F32 => n * 4,
            KvType::F16 => n * 2,
            KvType::Q8_0 => n / QK * std::mem::size_of::<BlockQ8_0>(),
            KvType::Q4_0 => n / QK * std::mem::size_of::<BlockQ4_0>(),
        }
    }

    /// Checks that heads of `head_dim` keys and `head_dim_v` values can be stored.
    pub fn check_heads(self, head_dim: usize, head_dim_v: usize) -> Result<()> {
        if self.is_quantized() && (!head_dim.is_multiple_of(QK) || !head_dim_v.is_multiple_of(QK)) {
            return Err(ModelError::BadCache(format!(
                "a {} KV cache stores blocks of {QK} values along each head, but this model's \
                 heads have {head_dim} key and {head_dim_v} value dimensions; use --kv-type \
                 f16 or f32",
                self.name()
            )));
        }
        if self.is_quantized() && head_dim > MAX_QUANT_HEAD {
            return Err(ModelError::BadCache(format!(
                "a {} KV cache supports key heads of up to {MAX_QUANT_HEAD} dimensions (this \
                 model's have {head_dim}); use --kv-type f16 or f32",
                self.name()
            )));
        }
        Ok(())
    }
}

/// Largest key head of a quantized cache (the query head is rounded into a stack buffer).
pub const MAX_QUANT_HEAD: usize = 1024;

#[derive(Clone, Debug)]
enum Buf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
}

/// `n` all-zero blocks from zeroed memory (see [`zeroed_f16`]).
fn zeroed_blocks<B: Block>(n: usize) -> Vec<B> {
    let mut v = std::mem::ManuallyDrop::new(vec![0u8; n * std::mem::size_of::<B>()]);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    assert!(len == cap, "zeroed blocks: exact allocation");
    // SAFETY: `Block` types are `repr(C)` of bytes only (alignment 1, no padding, every bit
    // pattern valid), so the allocation of `n · size_of::<B>()` bytes with alignment 1 is
    // exactly the layout of `n` blocks; it moves from `v` (not dropped) to the result.
    unsafe { Vec::from_raw_parts(ptr as *mut B, n, n) }
}

/// `n` zero f16 values from zeroed memory (`vec![f16::ZERO; n]` would write every element,
/// making the whole cache resident up front; zeroed pages are only touched as positions fill).
fn zeroed_f16(n: usize) -> Vec<f16> {
    let mut v = std::mem::ManuallyDrop::new(vec![0u16; n]);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: `half::f16` is `#[repr(transparent)]` over `u16` (same size and alignment, every
    // bit pattern valid, 0 is +0.0); the allocation moves from `v` (not dropped) to the result.
    unsafe { Vec::from_raw_parts(ptr as *mut f16, len, cap) }
}

impl Buf {
    fn new(ty: KvType, n: usize) -> Buf {
        match ty {
            KvType::F32 => Buf::F32(vec![0.0; n]),
            KvType::F16 => Buf::F16(zeroed_f16(n)),
            KvType::Q8_0 => Buf::Q8_0(zeroed_blocks(n / QK)),
            KvType::Q4_0 => Buf::Q4_0(zeroed_blocks(n / QK)),
        }
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Buf::F32(b) => b[at..at + src.len()].copy_from_slice(src),
            Buf::F16(b) => kernels::f32_to_f16_slice(src, &mut b[at..at + src.len()]),
            Buf::Q8_0(b) => {
                kernels::kvq::quantize_q8_0(src, &mut b[at / QK..(at + src.len()) / QK])
            }
            Buf::Q4_0(b) => {
                kernels::kvq::quantize_q4_0(src, &mut b[at / QK..(at + src.len()) / QK])
            }
        }
    }

    fn rows(&self, start: usize, end: usize) -> Rows<'_> {
        match self {
            Buf::F32(b) => Rows::F32(&b[start..end]),
            Buf::F16(b) => Rows::F16(&b[start..end]),
            Buf::Q8_0(b) => Rows::Q8_0(&b[start / QK..end / QK]),
            Buf::Q4_0(b) => Rows::Q4_0(&b[start / QK..end / QK]),
        }
    }
}

/// A read-only view of cached rows (`[n_ctx, dim]`) in the cache's element type (the block
/// types hold `dim / 32` blocks a row).
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Q8_0(&'a [BlockQ8_0]),
    Q4_0(&'a [BlockQ4_0]),
}

#[derive(Clone, Debug)]
pub struct KvStore {
    pub n_layer: usize,
    pub n_slots: usize,
    pub n_ctx: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    pub ty: KvType,
    /// `[n_layer]`: the sliding window of each ring-buffered layer (`None`: every position kept)
    windows: Vec<Option<usize>>,
    /// `[n_layer]`: rows kept per slot (`n_ctx`, or fewer for a ring-buffered sliding layer)
    caps: Vec<usize>,
    /// `[n_layer]`: first row of each layer (`Σ n_slots · caps` of the layers before)
    offs: Vec<usize>,
    /// Per layer `[n_slots, cap, k_dim]`
    k: Buf,
    /// Per layer `[n_slots, cap, v_dim]`
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
        KvStore::with_windows(n_slots, n_ctx, k_dim, v_dim, ty, &vec![None; n_layer])
    }

    /// Rows a layer needs per slot: `n_ctx`, or for a sliding window of `w` positions
    /// `w + MAX_BATCH - 1` when that is smaller.
    pub fn rows_for(n_ctx: usize, window: Option<usize>) -> usize {
        match window {
            Some(w) => n_ctx.min(w.max(1).saturating_add(MAX_BATCH - 1)),
            None => n_ctx,
        }
    }

    /// A cache whose layer `l` keeps only the rows [`KvStore::rows_for`]`(n_ctx, windows[l])`
    /// (`windows.len()` layers): sliding-window layers become ring buffers.
    pub fn with_windows(
        n_slots: usize,
        n_ctx: usize,
        k_dim: usize,
        v_dim: usize,
        ty: KvType,
        windows: &[Option<usize>],
    ) -> Result<KvStore> {
        let n_layer = windows.len();
        if n_slots == 0 || n_ctx == 0 {
            return Err(ModelError::BadCache(format!(
                "a cache needs at least one slot and one position (asked for {n_slots} slots of {n_ctx})"
            )));
        }
        if ty.is_quantized() && (!k_dim.is_multiple_of(QK) || !v_dim.is_multiple_of(QK)) {
            return Err(ModelError::BadCache(format!(
                "a {} KV cache stores blocks of {QK} values: key rows of {k_dim} and value rows \
                 of {v_dim} values are not multiples; use f16 or f32",
                ty.name()
            )));
        }
        let caps: Vec<usize> = windows.iter().map(|&w| Self::rows_for(n_ctx, w)).collect();
        let mut offs = Vec::with_capacity(n_layer);
        let mut rows = 0usize;
        for &cap in &caps {
            offs.push(rows);
            rows = n_slots
                .checked_mul(cap)
                .and_then(|x| x.checked_add(rows))
                .unwrap_or(usize::MAX);
        }
        let size = |d: usize| {
            rows.checked_mul(d)
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
            windows: windows.to_vec(),
            caps,
            offs,
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

    /// Rows kept per slot in `layer`: `n_ctx`, or fewer when the layer is a ring buffer
    /// (position `p` in row `p % cap`).
    pub fn cap(&self, layer: usize) -> usize {
        self.caps[layer]
    }

    /// Values stored (keys and values of every layer and slot): the cache's size in elements.
    pub fn n_values(&self) -> usize {
        let rows: usize = self.caps.iter().map(|c| c * self.n_slots).sum();
        rows * (self.k_dim + self.v_dim)
    }

    fn base(&self, layer: usize, slot: usize) -> usize {
        self.offs[layer] + slot * self.caps[layer]
    }

    /// Stores the key (`[k_dim]`) and value (`[v_dim]`) rows of `slot` at `pos` in `layer`.
    pub fn write(&mut self, layer: usize, slot: usize, pos: usize, k: &[f32], v: &[f32]) {
        let row = self.base(layer, slot) + pos % self.caps[layer];
        self.k.write(row * self.k_dim, &k[..self.k_dim]);
        self.v.write(row * self.v_dim, &v[..self.v_dim]);
    }

    /// All key rows of `slot` in `layer`: `[cap, k_dim]`, position `p` in row `p % cap` (rows
    /// past the slot's length are stale).
    pub fn keys(&self, layer: usize, slot: usize) -> Rows<'_> {
        let (b, cap) = (self.base(layer, slot), self.caps[layer]);
        self.k.rows(b * self.k_dim, (b + cap) * self.k_dim)
    }

    /// All value rows of `slot` in `layer`: `[cap, v_dim]`, like [`KvStore::keys`].
    pub fn values(&self, layer: usize, slot: usize) -> Rows<'_> {
        let (b, cap) = (self.base(layer, slot), self.caps[layer]);
        self.v.rows(b * self.v_dim, (b + cap) * self.v_dim)
    }

    /// The window each layer was sized for (`None`: the layer keeps every position).
    pub fn windows(&self) -> &[Option<usize>] {
        &self.windows
    }

    /// Whether `slot` can be cut back to `len` positions (at most its length): every
    /// ring-buffered layer must still hold the positions a query at `len` reads, i.e. the last
    /// `window - 1` before it must not have been overwritten by later ones.
    pub fn can_truncate(&self, slot: usize, len: usize) -> bool {
        let cur = self.lens[slot];
        (0..self.n_layer).all(|l| {
            let cap = self.caps[l];
            if len == 0 || cur <= cap {
                return true;
            }
            // Positions below `cur - cap` were overwritten.
            let first_kept = cur - cap;
            let first_needed = match self.windows[l] {
                Some(w) => (len + 1).saturating_sub(w),
                None => 0,
            };
            first_needed >= first_kept
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q8_0 / Q4_0 caches store each written row as blocks (read back within the format's
    /// step), ring-buffered layers included, and report their size in bytes.
    #[test]
    fn quantized_rows_round_trip_in_plain_and_ring_layers() {
        let (kd, vd) = (64, 96);
        for (ty, step) in [(KvType::Q8_0, 1.0 / 127.0), (KvType::Q4_0, 1.0 / 7.0)] {
            let mut kv = KvStore::with_windows(2, 300, kd, vd, ty, &[None, Some(4)]).unwrap();
            assert_eq!(kv.cap(1), KvStore::rows_for(300, Some(4)));
            let row = |pos: usize, n: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| ((pos * 7 + i) as f32 * 0.37).sin())
                    .collect()
            };
            for pos in 0..300 {
                for layer in 0..2 {
                    kv.write(layer, 1, pos, &row(pos, kd), &row(pos + 1, vd));
                }
            }
            for layer in 0..2 {
                let cap = kv.cap(layer);
                let keys = kv.keys(layer, 1);
                let (Rows::Q8_0(_) | Rows::Q4_0(_)) = keys else {
                    panic!("{ty:?} rows")
                };
                for pos in [299, 298, 297] {
                    let r = pos % cap;
                    let mut got = vec![0f32; kd];
                    match keys {
                        Rows::Q8_0(b) => {
                            kernels::kvq::dequantize_q8_0(&b[r * kd / QK..][..kd / QK], &mut got)
                        }
                        Rows::Q4_0(b) => {
                            kernels::kvq::dequantize_q4_0(&b[r * kd / QK..][..kd / QK], &mut got)
                        }
                        _ => unreachable!(),
                    }
                    for (g, w) in got.iter().zip(row(pos, kd)) {
                        assert!(
                            (g - w).abs() <= step + 1e-3,
                            "{ty:?} layer {layer} pos {pos}"
                        );
                    }
                }
            }
            let bytes = kv.n_values() / QK
                * match ty {
                    KvType::Q8_0 => 34,
                    _ => 18,
                };
            assert_eq!(ty.bytes(kv.n_values()), bytes);
        }
    }

    #[test]
    fn quantized_caches_need_rows_and_heads_of_blocks() {
        assert!(KvStore::new(1, 1, 8, 80, 64, KvType::Q8_0).is_err());
        assert!(KvStore::new(1, 1, 8, 80, 80, KvType::F16).is_ok());
        let e = KvType::Q4_0.check_heads(80, 80).unwrap_err().to_string();
        assert!(e.contains("f16 or f32"), "{e}");
        assert!(KvType::Q8_0.check_heads(64, 256).is_ok());
    }
}
