//! Block layouts of every ggml quantization type.
//!
//! Each struct is the exact on-disk image of one block. All fields are `u8` or `[u8; N]`
//! (little-endian `f16`/`u16`/`u32`/`f32` values are kept as bytes and decoded with the
//! helpers below), so every struct has alignment 1 and no padding: a `&[u8]` from the mmap at
//! any address can be viewed as `&[Block]` (see [`cast_blocks`]) without unaligned references.

use gguf::GgmlType;
use half::f16;

/// A block type: `#[repr(C)]`, only byte fields, alignment 1, no padding, every bit pattern
/// valid.
///
/// # Safety
/// Implementors must uphold exactly that, and `size_of::<Self>() == TYPE.type_size()`;
/// [`cast_blocks`] relies on it.
pub unsafe trait Block: Sized + Copy {
    /// The ggml type this block belongs to.
    const TYPE: GgmlType;
    /// Values per block.
    const VALUES: usize;
}

/// Views `bytes` as blocks, at any address. Trailing bytes that do not make a whole block
/// are not included (callers check lengths first and report errors).
pub fn cast_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let size = std::mem::size_of::<B>();
    // SAFETY: `B: Block` has alignment 1, no padding and accepts any bit pattern, and the
    // slice covers `bytes.len() / size` whole blocks, all inside `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) }
}

/// Views the bytes at `p` (any address) as one block, for kernels that walk blocks through
/// raw pointers.
///
/// # Safety
/// `p` must point at `size_of::<B>()` bytes that stay readable, and are not written, for
/// `'a`.
#[inline(always)]
pub unsafe fn block_at<'a, B: Block>(p: *const u8) -> &'a B {
    // SAFETY: `B: Block` has alignment 1 and accepts any bit pattern, and the caller
    // guarantees that the `size_of::<B>()` bytes at `p` are readable and unchanging for `'a`.
    unsafe { &*p.cast::<B>() }
}

/// Mutable twin of [`cast_blocks`], for quantizers writing into a byte buffer.
pub fn cast_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    let size = std::mem::size_of::<B>();
    // SAFETY: as in `cast_blocks`; the exclusive borrow of `bytes` moves to the result.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size) }
}

/// A little-endian f16 stored as two bytes, as f32.
#[inline]
pub fn f16_le(b: [u8; 2]) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes(b))
}

/// Exact f16 → f32 from the bits, without the per-call CPU feature check of `half`.
/// Normal numbers re-bias the exponent; subnormals are built as `2^-14·(1 + m/1024)` and
/// then `2^-14` is subtracted (exact); infinities and NaNs keep their payload.
#[inline]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let exp = h & 0x7C00;
    let body = (h & 0x7FFF) << 13;
    let bits = if exp == 0x7C00 {
        body | 0x7F80_0000
    } else if exp == 0 {
        let base = f32::from_bits(113 << 23); // 2^-14
        (f32::from_bits(body + (113 << 23)) - base).to_bits()
    } else {
        body + ((127 - 15) << 23)
    };
    f32::from_bits(bits | sign)
}

/// An f32 rounded to f16 (nearest, ties to even), as little-endian bytes.
#[inline]
pub fn to_f16_le(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

macro_rules! block {
    ($(#[$doc:meta])* $name:ident, $ty:ident, $values:expr, $bytes:expr, { $($(#[$fdoc:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $($(#[$fdoc])* pub $f: $t,)*
        }
        const _: () = assert!(std::mem::size_of::<$name>() == $bytes);
        const _: () = assert!(std::mem::align_of::<$name>() == 1);
        // SAFETY: only u8 / [u8; N] fields (alignment 1, no padding, any bit pattern), and
        // the size is checked against the format table just above.
        unsafe impl Block for $name {
            const TYPE: GgmlType = GgmlType::$ty;
            const VALUES: usize = $values;
        }
    };
}

/// Values in a K-quant or IQ super-block.
pub const QK_K: usize = 256;

block!(
    /// Q4_0, 32 values in 18 bytes: `x[i] = d · (q[i] − 8)`. Byte `j` of `qs` holds `q[j]` in its
    /// low nibble and `q[j + 16]` in its high nibble.
    BlockQ4_0, Q4_0, 32, 18, { d: [u8; 2], qs: [u8; 16] }
);
block!(
    /// Q4_1, 32 values in 20 bytes: `x[i] = d · q[i] + m`, nibbles packed as in Q4_0.
    BlockQ4_1, Q4_1, 32, 20, { d: [u8; 2], m: [u8; 2], qs: [u8; 16] }
);
block!(
    /// Q5_0, 32 values in 22 bytes: `x[i] = d · (q[i] − 16)`; the 4 low bits of `q` are nibble
    /// packed as in Q4_0, bit `i` of the little-endian u32 `qh` is the 5th bit of `q[i]`.
    BlockQ5_0, Q5_0, 32, 22, { d: [u8; 2], qh: [u8; 4], qs: [u8; 16] }
);
block!(
    /// Q5_1, 32 values in 24 bytes: `x[i] = d · q[i] + m`, 5-bit `q` packed as in Q5_0.
    BlockQ5_1, Q5_1, 32, 24, { d: [u8; 2], m: [u8; 2], qh: [u8; 4], qs: [u8; 16] }
);
block!(
    /// Q8_0, 32 values in 34 bytes: `x[i] = d · qs[i]` (qs as i8).
    BlockQ8_0, Q8_0, 32, 34, { d: [u8; 2], qs: [u8; 32] }
);
block!(
    /// Q8_1, 32 values in 36 bytes: like Q8_0 plus `s = d · Σ qs` (an activation format).
    BlockQ8_1, Q8_1, 32, 36, { d: [u8; 2], s: [u8; 2], qs: [u8; 32] }
);
block!(
    /// Q2_K, 256 values in 84 bytes: 16 sub-blocks of 16. `scales[j]` holds the 4-bit scale
    /// (low nibble) and 4-bit min (high nibble) of sub-block j; `x = d·sc·q − dmin·m`.
    /// 2-bit `q`: for each 128-value half `h`, byte `qs[32h + l]` holds values
    /// `128h + 32s + l` at bits `2s` (s = 0..4).
    BlockQ2K, Q2_K, 256, 84, { scales: [u8; 16], qs: [u8; 64], d: [u8; 2], dmin: [u8; 2] }
);
block!(
    /// Q3_K, 256 values in 110 bytes: 16 sub-blocks of 16 with 6-bit signed scales (offset 32)
    /// packed in 12 bytes: low nibbles in bytes 0..8 (sub-blocks 0..8 low, 8..16 high nibble),
    /// 2 high bits of sub-block j in byte `8 + j%4` at bits `2·(j/4)`. Low 2 bits of `q` are packed
    /// as in Q2_K; bit `i/32` of `hmask[i % 32]` is the high bit, and a *clear* bit subtracts 4.
    /// `x = d · (sc − 32) · q`, q in −4..=3.
    BlockQ3K, Q3_K, 256, 110, { hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: [u8; 2] }
);
block!(
    /// Q4_K, 256 values in 144 bytes: 8 sub-blocks of 32 with 6-bit scale and min each, packed in
    /// 12 bytes (see `scale_min_k4`); `x = d·sc·q − dmin·m`. For each 64-value chunk `c`, byte
    /// `qs[32c + l]` holds value `64c + l` (low nibble) and `64c + 32 + l` (high nibble).
    BlockQ4K, Q4_K, 256, 144, { d: [u8; 2], dmin: [u8; 2], scales: [u8; 12], qs: [u8; 128] }
);
block!(
    /// Q5_K, 256 values in 176 bytes: Q4_K plus a 5th bit: bit `i/32` of `qh[i % 32]`.
    BlockQ5K, Q5_K, 256, 176, {
        d: [u8; 2], dmin: [u8; 2], scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]
    }
);
block!(
    /// Q6_K, 256 values in 210 bytes: 16 sub-blocks of 16 with i8 scales; `x = d·sc·(q − 32)`.
    /// For each 128-value half `h` and `l` in 0..32: `ql[64h + l]` holds values `l` (low nibble)
    /// and `l + 64` (high), `ql[64h + 32 + l]` values `l + 32` and `l + 96`; `qh[32h + l]`
    /// holds the 2 high bits of values `l, l+32, l+64, l+96` at bits 0, 2, 4, 6.
    BlockQ6K, Q6_K, 256, 210, { ql: [u8; 128], qh: [u8; 64], scales: [u8; 16], d: [u8; 2] }
);
block!(
    /// Q8_K, 256 values in 292 bytes: `x = d · qs` with an f32 `d`, plus i16 sums of each 16
    /// values (used by dot products).
    BlockQ8K, Q8_K, 256, 292, { d: [u8; 4], qs: [u8; 256], bsums: [u8; 32] }
);
block!(
    /// IQ4_NL, 32 values in 18 bytes: `x = d · KVALUES_IQ4NL[q]`, nibbles packed as in Q4_0.
    BlockIQ4NL, IQ4_NL, 32, 18, { d: [u8; 2], qs: [u8; 16] }
);
block!(
    /// IQ4_XS, 256 values in 136 bytes: 8 sub-blocks of 32, 6-bit scales (offset 32): low 4
    /// bits in nibble `j%2` of `scales_l[j/2]`, high 2 bits at bits `2j` of the u16
    /// `scales_h`. Sub-block j uses `qs[16j..16j+16]`, low nibbles first, then high.
    BlockIQ4XS, IQ4_XS, 256, 136, { d: [u8; 2], scales_h: [u8; 2], scales_l: [u8; 4], qs: [u8; 128] }
);
block!(
    /// TQ1_0 (ternary), 256 values in 54 bytes: 5 trits per byte in `qs`, 4 per byte in `qh`, stored
    /// as a fixed-point fraction so that trit k is `((b · 3^k) mod 256) · 3 >> 8`; value = d·(t − 1).
    BlockTQ1_0, TQ1_0, 256, 54, { qs: [u8; 48], qh: [u8; 4], d: [u8; 2] }
);
block!(
    /// TQ2_0 (ternary), 256 values in 66 bytes: 2 bits per value packed as in Q2_K; x = d·(q − 1).
    BlockTQ2_0, TQ2_0, 256, 66, { qs: [u8; 64], d: [u8; 2] }
);
block!(
    /// MXFP4, 32 values in 17 bytes: an E8M0 shared exponent `e` and 4-bit E2M1 codes packed as
    /// in Q4_0; `x = KVALUES_MXFP4[q] · 2^(e − 128)` (table values are doubled E2M1).
    BlockMXFP4, MXFP4, 32, 17, { e: u8, qs: [u8; 16] }
);
block!(
    /// IQ2_XXS, 256 values in 66 bytes: for each 32-value group, two u32: the first has four
    /// 8-bit grid indices (8 values each), the second four 7-bit sign indices (bits 0..28) and a
    /// 4-bit scale (bits 28..32). `x = d·(0.5 + s)·0.25 · grid · sign`.
    BlockIQ2XXS, IQ2_XXS, 256, 66, { d: [u8; 2], qs: [u8; 64] }
);
block!(
    /// IQ2_XS, 256 values in 74 bytes: 32 u16 `qs` (9-bit grid index, 7-bit sign index), a
    /// 4-bit scale per 16 values (`scales`, low nibble first).
    BlockIQ2XS, IQ2_XS, 256, 74, { d: [u8; 2], qs: [u8; 64], scales: [u8; 8] }
);
block!(
    /// IQ2_S, 256 values in 82 bytes: 10-bit grid indices (low 8 in `qs`, high 2 in `qh`),
    /// explicit sign bytes, a 4-bit scale per 16 values.
    BlockIQ2S, IQ2_S, 256, 82, {
        d: [u8; 2], qs: [u8; 32], signs: [u8; 32], qh: [u8; 8], scales: [u8; 8]
    }
);
block!(
    /// IQ3_XXS, 256 values in 98 bytes: 64 8-bit grid indices (4 values each), then 8 u32 with
    /// four 7-bit sign indices and a 4-bit scale: `x = d·(0.5 + s)·0.5 · grid · sign`.
    BlockIQ3XXS, IQ3_XXS, 256, 98, { d: [u8; 2], qs: [u8; 64], scales_signs: [u8; 32] }
);
block!(
    /// IQ3_S, 256 values in 110 bytes: 9-bit grid indices (low 8 in `qs`, 9th bit in `qh`),
    /// explicit sign bits, a 4-bit scale per 32 values: `x = d·(1 + 2s) · grid · sign`.
    BlockIQ3S, IQ3_S, 256, 110, {
        d: [u8; 2], qs: [u8; 64], qh: [u8; 8], signs: [u8; 32], scales: [u8; 4]
    }
);
block!(
    /// IQ1_S, 256 values in 50 bytes: 11-bit grid indices (low 8 in `qs`, 3 high bits per index
    /// in the u16 `qh` of its 32-value group, which also holds a 3-bit scale at bits 12..15 and
    /// the sign of a ±1/8 shift at bit 15): `x = d·(2s + 1)·(grid ± 1/8)`.
    BlockIQ1S, IQ1_S, 256, 50, { d: [u8; 2], qs: [u8; 32], qh: [u8; 16] }
);
block!(
    /// IQ1_M, 256 values in 56 bytes: 11-bit grid indices (high 3 bits and the shift sign in the
    /// nibbles of `qh`), 3-bit scales per 16 values in the four u16 of `scales`, whose top
    /// nibbles together form the f16 `d`.
    BlockIQ1M, IQ1_M, 256, 56, { qs: [u8; 32], qh: [u8; 16], scales: [u8; 8] }
);

// ---------------------------------------------------------------- K-quant decoding
//
// The one decoding of each K-quant layout: the dequantizers (`kquants`) and the scalar dot
// twins (`dot::scalar`) use all of it; the SIMD unpackers (`dot::avx2`, shared by
// `dot::avx512` and `dot::exact`) decode the sub-block scales and mins here and only the
// values themselves in registers (the same bits as `values()` below, tested against it
// through the scalar twins).

/// Scale and min (6 bits each) of sub-block `j` (0..8) of a Q4_K / Q5_K block. Bytes 0..4 hold
/// the scales of sub-blocks 0..4 (low 6 bits), bytes 4..8 their mins; sub-blocks 4..8 keep
/// their low 4 bits in the nibbles of bytes 8..12 and their top 2 bits in the top bits of
/// bytes 0..8.
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 signed 6-bit sub-block scales of a Q3_K block (already minus 32), from its 12 packed
/// bytes (layout: [`BlockQ3K`]).
#[inline(always)]
pub fn q3_k_scales(s: &[u8; 12]) -> [i8; 16] {
    // Sub-block j < 8 takes the low nibble of byte j and bits 2·(j/4) of byte 8 + j%4;
    // sub-block j + 8 the high nibble of byte j and bits 2·(j/4 + 2) of the same byte.
    let mut out = [0i8; 16];
    for j in 0..8 {
        let high = s[8 + j % 4];
        let hi_lo = (high >> (2 * (j / 4))) & 3;
        let hi_hi = (high >> (2 * (j / 4 + 2))) & 3;
        out[j] = ((s[j] & 0x0F) | (hi_lo << 4)) as i8 - 32;
        out[j + 8] = ((s[j] >> 4) | (hi_hi << 4)) as i8 - 32;
    }
    out
}

impl BlockQ2K {
    /// The 4-bit scale and min of sub-block `j` (0..16).
    #[inline(always)]
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        (self.scales[j] & 0x0F, self.scales[j] >> 4)
    }

    /// The 256 2-bit values (0..=3) in order.
    #[inline(always)]
    pub fn values(&self) -> [u8; QK_K] {
        let mut v = [0u8; QK_K];
        for h in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    v[128 * h + 32 * s + l] = (self.qs[32 * h + l] >> (2 * s)) & 3;
                }
            }
        }
        v
    }
}

impl BlockQ3K {
    /// The 16 signed sub-block scales (already minus 32).
    #[inline(always)]
    pub fn scales(&self) -> [i8; 16] {
        q3_k_scales(&self.scales)
    }

    /// The 256 values (−4..=3) in order: the low 2 bits as in Q2_K, minus 4 where the
    /// `hmask` bit is clear.
    #[inline(always)]
    pub fn values(&self) -> [i8; QK_K] {
        let mut v = [0i8; QK_K];
        for h in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    let low = ((self.qs[32 * h + l] >> (2 * s)) & 3) as i8;
                    let high_clear = (self.hmask[l] >> (4 * h + s)) & 1 == 0;
                    v[128 * h + 32 * s + l] = low - if high_clear { 4 } else { 0 };
                }
            }
        }
        v
    }
}

impl BlockQ4K {
    /// The 6-bit scale and min of sub-block `j` (0..8), see [`scale_min_k4`].
    #[inline(always)]
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        scale_min_k4(j, &self.scales)
    }

    /// The 256 4-bit values (0..=15) in order.
    #[inline(always)]
    pub fn values(&self) -> [u8; QK_K] {
        let mut v = [0u8; QK_K];
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                v[64 * c + l] = b & 0x0F;
                v[64 * c + 32 + l] = b >> 4;
            }
        }
        v
    }
}

impl BlockQ5K {
    /// The 6-bit scale and min of sub-block `j` (0..8), see [`scale_min_k4`].
    #[inline(always)]
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        scale_min_k4(j, &self.scales)
    }

    /// The 256 5-bit values (0..=31) in order.
    #[inline(always)]
    pub fn values(&self) -> [u8; QK_K] {
        let mut v = [0u8; QK_K];
        for c in 0..4 {
            for l in 0..32 {
                let b = self.qs[32 * c + l];
                let h = self.qh[l];
                v[64 * c + l] = (b & 0x0F) | (((h >> (2 * c)) & 1) << 4);
                v[64 * c + 32 + l] = (b >> 4) | (((h >> (2 * c + 1)) & 1) << 4);
            }
        }
        v
    }
}

/// A Q6_K sub-block scale from its stored byte: an i8 (the SIMD kernels read the 16 bytes of
/// `BlockQ6K::scales` through this too).
#[inline(always)]
pub fn q6_k_scale(b: u8) -> i8 {
    b as i8
}

impl BlockQ6K {
    /// The signed scale of sub-block `j` (0..16).
    #[inline(always)]
    pub fn scale(&self, j: usize) -> i8 {
        q6_k_scale(self.scales[j])
    }

    /// The 256 values (−32..=31, the stored 6 bits minus 32) in order.
    #[inline(always)]
    pub fn values(&self) -> [i8; QK_K] {
        let mut v = [0i8; QK_K];
        for h in 0..2 {
            for l in 0..32 {
                let (l0, l1) = (self.ql[64 * h + l], self.ql[64 * h + 32 + l]);
                let hb = self.qh[32 * h + l];
                let o = 128 * h + l;
                v[o] = ((l0 & 0x0F) | ((hb & 3) << 4)) as i8 - 32;
                v[o + 32] = ((l1 & 0x0F) | (((hb >> 2) & 3) << 4)) as i8 - 32;
                v[o + 64] = ((l0 >> 4) | (((hb >> 4) & 3) << 4)) as i8 - 32;
                v[o + 96] = ((l1 >> 4) | (((hb >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        v
    }
}

/// Packs 8 (scale, min) 6-bit pairs into the 12-byte Q4_K / Q5_K layout (inverse of
/// [`scale_min_k4`]).
pub fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4);
            q[j - 4] |= (ls[j] >> 4) << 6;
            q[j] |= (lm[j] >> 4) << 6;
        }
    }
    q
}
