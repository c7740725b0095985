//! 8-bit activation blocks: each f32 activation row is quantized once per matmul so the weight
//! dots run on integers.
//!
//! - [`A32`] (for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 weights), 40 bytes per 32 values:
//!   `d: f32`, `s: f32 = d · Σ q`, `q: [i8; 32]`; `x ≈ d · q`, `|q| ≤ 127`.
//!   `s` lets weights with an offset or min (`w = dw · qw + mw`) add `mw · s` per block.
//! - [`A256`] (for the K-quants), 292 bytes per 256 values:
//!   `d: f32`, `bsums: [i16; 16]` (Σ q of each 16 values), `q: [i8; 256]`.
//!
//! As in GGUF's Q8_0/Q8_1 activation blocks, the A32 `d` is rounded to f16 precision (kept
//! as f32) after the values are quantized with the unrounded scale, which keeps lume's
//! results closest to the reference implementation. `s = d · Σ q` is stored exactly (an
//! 11-bit × 12-bit product fits f32), so offset corrections (Q4_0's −8, Q5_0's −16, Q8_0's
//! +128 under VNNI) are exact. (The reference's Q8_1 also rounds `s` to f16; doing that for
//! Q4_1/Q5_1 weights measured no closer on the real-model logit tests, so it is not done.)
//!
//! Rounding is to nearest, ties to even, in every implementation, so the SIMD quantizers are
//! bit-identical to the scalar ones.

/// Layout constants of the 32-value activation block.
pub struct A32;
impl A32 {
    pub const VALUES: usize = 32;
    pub const BYTES: usize = 40;
    /// Offset of `q` in the block.
    pub const Q: usize = 8;
}

/// Layout constants of the 256-value activation block.
pub struct A256;
impl A256 {
    pub const VALUES: usize = 256;
    pub const BYTES: usize = 292;
    /// Offset of `bsums`.
    pub const BSUMS: usize = 4;
    /// Offset of `q`.
    pub const Q: usize = 36;
}

/// `x` rounded to the nearest f16 value, as f32.
#[inline]
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// The max of |x| over the slice (scalar).
fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Panics unless `x` is a whole number of `values`-value blocks and `out` holds their
/// `bytes`-byte activation blocks: what every quantizer (scalar or SIMD) relies on.
#[inline]
pub(crate) fn check_quantize(what: &str, x: usize, out: usize, values: usize, bytes: usize) {
    assert!(
        x.is_multiple_of(values) && out >= x / values * bytes,
        "{what}: {x} values (a multiple of {values} needed) into {out} bytes ({} needed)",
        x / values * bytes
    );
}

/// Scalar: quantizes `x` (a multiple of 32 values) into `out` (`x.len() / 32 * 40` bytes).
/// Panics on a partial block or a short `out`.
pub fn quantize_a32_scalar(x: &[f32], out: &mut [u8]) {
    a32_scalar::<false>(x, out)
}

/// Scalar: [`quantize_a32_scalar`] with the block sum as GGUF's Q8_1 keeps it (for weights
/// with a true minimum, Q4_1 and Q5_1): `s = f16(d · Σq)` with the unrounded `d`.
pub fn quantize_a32m_scalar(x: &[f32], out: &mut [u8]) {
    a32_scalar::<true>(x, out)
}

/// `s` of one block: exact `d16 · Σq`, or Q8_1's f16 rounding of the unrounded `d · Σq`.
#[inline(always)]
fn block_sum<const Q8_1: bool>(d: f32, d16: f32, sum: i32) -> f32 {
    if Q8_1 {
        round_f16(d * sum as f32)
    } else {
        // Exact: an 11-bit d times |Σq| ≤ 4064 fits f32's 24 bits, so kernels may use s / d.
        d16 * sum as f32
    }
}

fn a32_scalar<const Q8_1: bool>(x: &[f32], out: &mut [u8]) {
    check_quantize("quantize_a32", x.len(), out.len(), A32::VALUES, A32::BYTES);
    for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(A32::BYTES)) {
        let d = amax(xb) / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (o, &v) in ob[A32::Q..].iter_mut().zip(xb) {
            let q = (v * id).round_ties_even() as i32;
            sum += q;
            *o = q as i8 as u8;
        }
        let d16 = round_f16(d);
        ob[0..4].copy_from_slice(&d16.to_le_bytes());
        ob[4..8].copy_from_slice(&block_sum::<Q8_1>(d, d16, sum).to_le_bytes());
    }
}

/// Scalar: quantizes `x` (a multiple of 256 values) into `out` (`x.len() / 256 * 292` bytes).
/// Panics on a partial block or a short `out`.
pub fn quantize_a256_scalar(x: &[f32], out: &mut [u8]) {
    check_quantize(
        "quantize_a256",
        x.len(),
        out.len(),
        A256::VALUES,
        A256::BYTES,
    );
    for (xb, ob) in x.chunks_exact(256).zip(out.chunks_exact_mut(A256::BYTES)) {
        let d = amax(xb) / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (i, &v) in xb.iter().enumerate() {
            ob[A256::Q + i] = (v * id).round_ties_even() as i32 as i8 as u8;
        }
        finish_a256(d, ob);
    }
}

/// Writes `d` and the 16-value sums of an A256 block whose `q` is filled in.
fn finish_a256(d: f32, ob: &mut [u8]) {
    ob[0..4].copy_from_slice(&d.to_le_bytes());
    for j in 0..16 {
        let s: i32 = ob[A256::Q + 16 * j..A256::Q + 16 * j + 16]
            .iter()
            .map(|&q| q as i8 as i32)
            .sum();
        ob[A256::BSUMS + 2 * j..A256::BSUMS + 2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// Quantizes 32 values at `x` into `q` (32 i8) with `id`, returns Σ q.
    #[inline(always)]
    unsafe fn quant32(x: *const f32, id: __m256, q: *mut u8) -> i32 {
        // SAFETY: callers pass `x` readable for 32 f32 and `q` writable for 32 bytes, on a CPU with
        // AVX2 and FMA (this is inlined into the `#[target_feature]` quantizers).
        unsafe {
            let mut v = [_mm256_setzero_si256(); 4];
            for (k, vk) in v.iter_mut().enumerate() {
                let f = _mm256_mul_ps(_mm256_loadu_ps(x.add(8 * k)), id);
                let r = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                *vk = _mm256_cvtps_epi32(r);
            }
            // i32 -> i16 -> i8 with saturation (values are within ±127 already); packs work per
            // 128-bit lane, a final permute restores the order.
            let a = _mm256_packs_epi32(v[0], v[1]);
            let b = _mm256_packs_epi32(v[2], v[3]);
            let c = _mm256_packs_epi16(a, b);
            let c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(q as *mut __m256i, c);
            let s = _mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3]));
            hsum_i32(s)
        }
    }

    #[inline(always)]
    pub(crate) unsafe fn hsum_i32(v: __m256i) -> i32 {
        // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need
        // (this is inlined into `#[target_feature]` kernels).
        unsafe {
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
            _mm_cvtsi128_si32(s)
        }
    }

    #[inline(always)]
    pub(crate) unsafe fn hmax_ps(v: __m256) -> f32 {
        // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need
        // (this is inlined into `#[target_feature]` kernels).
        unsafe {
            let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_max_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }
    }

    #[inline(always)]
    unsafe fn amax_n(x: *const f32, n: usize) -> f32 {
        // SAFETY: callers pass `x` readable for `n` f32 (`n` a multiple of 8), on a CPU with AVX2.
        unsafe {
            let sign = _mm256_set1_ps(-0.0);
            let mut m = _mm256_setzero_ps();
            for k in 0..n / 8 {
                m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * k))));
            }
            hmax_ps(m)
        }
    }

    /// AVX2 twin of [`quantize_a32_scalar`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_a32(x: &[f32], out: &mut [u8]) {
        // SAFETY: `a32` needs AVX2 and FMA: the caller's guarantee, enabled here.
        unsafe { a32::<false>(x, out) }
    }

    /// [`super::quantize_a32m_scalar`] with AVX2 (bit-identical).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_a32m(x: &[f32], out: &mut [u8]) {
        // SAFETY: `a32` needs AVX2 and FMA: the caller's guarantee, enabled here.
        unsafe { a32::<true>(x, out) }
    }

    #[inline(always)]
    unsafe fn a32<const Q8_1: bool>(x: &[f32], out: &mut [u8]) {
        // SAFETY: `check_quantize` made `x` a whole number `nb` of blocks and `out` at least `nb ·
        // 40` bytes, so block `b < nb` reads 32 f32 at `32b` and writes 40 bytes at `40b`, inside
        // both; the CPU has AVX2 and FMA (the caller's contract).
        unsafe {
            check_quantize("quantize_a32", x.len(), out.len(), A32::VALUES, A32::BYTES);
            let nb = x.len() / 32;
            for b in 0..nb {
                let xp = x.as_ptr().add(32 * b);
                let op = out.as_mut_ptr().add(A32::BYTES * b);
                let d = amax_n(xp, 32) / 127.0;
                let id = if d > 0.0 { 1.0 / d } else { 0.0 };
                let sum = quant32(xp, _mm256_set1_ps(id), op.add(A32::Q));
                let d16 = round_f16(d);
                std::ptr::copy_nonoverlapping(d16.to_le_bytes().as_ptr(), op, 4);
                let s = super::block_sum::<Q8_1>(d, d16, sum);
                std::ptr::copy_nonoverlapping(s.to_le_bytes().as_ptr(), op.add(4), 4);
            }
        }
    }

    /// AVX2 twin of [`quantize_a256_scalar`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_a256(x: &[f32], out: &mut [u8]) {
        // SAFETY: `check_quantize` made `x` a whole number `nb` of blocks and `out` at least `nb ·
        // 292` bytes, so block `b < nb` reads 256 f32 at `256b` and writes 292 bytes at `292b`,
        // inside both; AVX2 and FMA are the caller's guarantee, enabled here.
        unsafe {
            check_quantize(
                "quantize_a256",
                x.len(),
                out.len(),
                A256::VALUES,
                A256::BYTES,
            );
            let nb = x.len() / 256;
            for b in 0..nb {
                let xp = x.as_ptr().add(256 * b);
                let op = out.as_mut_ptr().add(A256::BYTES * b);
                let d = amax_n(xp, 256) / 127.0;
                let id = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
                for k in 0..8 {
                    quant32(xp.add(32 * k), id, op.add(A256::Q + 32 * k));
                }
                // 16-value sums: sign-extend to i16 and add pairs with vpmaddubsw-free math.
                let ones = _mm256_set1_epi16(1);
                for k in 0..8 {
                    let q = _mm_loadu_si128(op.add(A256::Q + 32 * k) as *const __m128i);
                    let q2 = _mm_loadu_si128(op.add(A256::Q + 32 * k + 16) as *const __m128i);
                    let s1 = hsum_i32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(q), ones));
                    let s2 = hsum_i32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(q2), ones));
                    let bs = op.add(A256::BSUMS + 4 * k);
                    std::ptr::copy_nonoverlapping((s1 as i16).to_le_bytes().as_ptr(), bs, 2);
                    std::ptr::copy_nonoverlapping((s2 as i16).to_le_bytes().as_ptr(), bs.add(2), 2);
                }
                std::ptr::copy_nonoverlapping(d.to_le_bytes().as_ptr(), op, 4);
            }
        }
    }
}

/// Layout of `L` tokens' A32 blocks interleaved (for the prompt kernels, where each SIMD
/// lane is one token; `L` = 8 for 256-bit registers, 16 for 512-bit): per block index,
/// `d[L]: f32`, `s[L]: f32`, then for each 4-value group `k` (0..8) the 4 bytes of token 0,
/// token 1, … token L−1 (`4L` bytes).
pub struct A32xN<const L: usize>;
impl<const L: usize> A32xN<L> {
    pub const BYTES: usize = L * A32::BYTES;
    pub const D: usize = 0;
    pub const S: usize = 4 * L;
    pub const Q: usize = 8 * L;
}
/// Eight tokens per group (256-bit kernels).
pub type A32x8 = A32xN<8>;
/// Sixteen tokens per group (512-bit kernels).
pub type A32x16 = A32xN<16>;

/// Interleaves `n` rows of `nb` A32 blocks (`src`, row-major) into `n.div_ceil(lanes)` groups
/// of `nb` `A32xN<lanes>` blocks. Missing tokens of the last group are zero (d = 0).
pub fn interleave_a32(src: &[u8], n: usize, nb: usize, lanes: usize, dst: &mut [u8]) {
    let row = nb * A32::BYTES;
    let gbytes = lanes * A32::BYTES;
    let groups = n.div_ceil(lanes);
    assert!(
        src.len() >= n * row && dst.len() >= groups * nb * gbytes,
        "interleave_a32: {n} rows of {nb} blocks need {} source and {} destination bytes, \
         got {} and {}",
        n * row,
        groups * nb * gbytes,
        src.len(),
        dst.len()
    );
    let (d_off, s_off, q_off) = (0, 4 * lanes, 8 * lanes);
    for g in 0..groups {
        for b in 0..nb {
            let o = &mut dst[(g * nb + b) * gbytes..][..gbytes];
            for t in 0..lanes {
                let tok = lanes * g + t;
                let zero = [0u8; A32::BYTES];
                let s = if tok < n {
                    &src[tok * row + b * A32::BYTES..][..A32::BYTES]
                } else {
                    &zero[..]
                };
                o[d_off + 4 * t..][..4].copy_from_slice(&s[0..4]);
                o[s_off + 4 * t..][..4].copy_from_slice(&s[4..8]);
                for k in 0..8 {
                    o[q_off + 4 * lanes * k + 4 * t..][..4]
                        .copy_from_slice(&s[A32::Q + 4 * k..A32::Q + 4 * k + 4]);
                }
            }
        }
    }
}

/// Layout of `L` tokens' A256 blocks interleaved (prompt kernels for K-quants, one token per
/// SIMD lane): `d[L]: f32`; for each pair `p` of 16-value sums (0..8), token `t`'s
/// `[bsum[2p], bsum[2p+1]]: [i16; 2]` at `BSUMS + 4Lp + 4t`; for each 4-value group `k`
/// (0..64), token `t`'s 4 bytes at `Q + 4Lk + 4t`.
pub struct A256xN<const L: usize>;
impl<const L: usize> A256xN<L> {
    pub const BYTES: usize = L * A256::BYTES;
    pub const D: usize = 0;
    pub const BSUMS: usize = 4 * L;
    pub const Q: usize = 36 * L;
}
/// Eight tokens per group (256-bit kernels).
pub type A256x8 = A256xN<8>;
/// Sixteen tokens per group (512-bit kernels).
pub type A256x16 = A256xN<16>;

/// Interleaves `n` rows of `nb` A256 blocks into `n.div_ceil(lanes)` groups of `nb`
/// `A256xN<lanes>` blocks; missing tokens of the last group are zero.
pub fn interleave_a256(src: &[u8], n: usize, nb: usize, lanes: usize, dst: &mut [u8]) {
    let row = nb * A256::BYTES;
    let gbytes = lanes * A256::BYTES;
    let groups = n.div_ceil(lanes);
    assert!(
        src.len() >= n * row && dst.len() >= groups * nb * gbytes,
        "interleave_a256: {n} rows of {nb} blocks need {} source and {} destination bytes, \
         got {} and {}",
        n * row,
        groups * nb * gbytes,
        src.len(),
        dst.len()
    );
    let (bs_off, q_off) = (4 * lanes, 36 * lanes);
    for g in 0..groups {
        for b in 0..nb {
            let o = &mut dst[(g * nb + b) * gbytes..][..gbytes];
            for t in 0..lanes {
                let tok = lanes * g + t;
                let zero = [0u8; A256::BYTES];
                let s = if tok < n {
                    &src[tok * row + b * A256::BYTES..][..A256::BYTES]
                } else {
                    &zero[..]
                };
                o[4 * t..][..4].copy_from_slice(&s[0..4]);
                for p in 0..8 {
                    o[bs_off + 4 * lanes * p + 4 * t..][..4]
                        .copy_from_slice(&s[A256::BSUMS + 4 * p..A256::BSUMS + 4 * p + 4]);
                }
                for k in 0..64 {
                    o[q_off + 4 * lanes * k + 4 * t..][..4]
                        .copy_from_slice(&s[A256::Q + 4 * k..A256::Q + 4 * k + 4]);
                }
            }
        }
    }
}
