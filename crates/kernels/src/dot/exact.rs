//! One-token kernels of the batch-invariant mode (see `crate::invariant`): for one token (or
//! each of a few, one at a time) they compute exactly what one lane of the interleaved xN
//! prompt kernels computes for that token, bit for bit, without the xN kernels' cost of
//! running 8 or 16 lanes where one is used.
//!
//! What a lane of the xN kernels computes, per weight row and token (all levels):
//! - 32-value types ([`super::avx2::X8`], [`super::avx512`] `X16`), per block `b` in order:
//!   `acc = fma(f32(s_b), dw·da, acc)`, then (types with an offset or min, and every type under
//!   VNNI) `acc = fma(mw, sa, acc)`. `s_b` is the block's integer dot (`Σ q·a`; Q8_0 under VNNI
//!   `Σ (q + 128)·a`, with `mw = −128·dw`).
//! - K-quants (`KX8`, `KX16`), per super-block in order: `dd = d·da`; then
//!   `acc = fma(f32(total − msum), dd, acc)` where the min is a fixed offset (Q3_K, Q6_K),
//!   else `acc = fma(f32(total), dd, acc)` and `acc = fma(−f32(msum), dmin·da, acc)`, with
//!   `total = Σ_s sc_s · Σ_{i∈s} q_i·a_i` and `msum = Σ_s m_s · bsum_s` integers.
//!
//! Integer sums are exact in any order (no intermediate saturates: see `super::avx2`), so
//! these kernels compute them however is fastest here (whole 32-byte rows, then horizontal
//! sums) and repeat only the f32 steps in the lanes' order. The batch-invariance tests
//! (`tests/batch_invariant.rs`) check the results against the xN lanes bit for bit; the xN
//! kernels are tested against the scalar twins (`tests/simd_matmul.rs`).
//!
//! Layout: 32-value types put 8 weight rows in the 8 lanes of the f32 accumulator (each row's
//! block dots are reduced across registers, 8 rows at once); K-quants walk one row at a time
//! (a super-block's 256 values amortise the scalar f32 steps).

use std::arch::x86_64::*;
use std::marker::PhantomData;

use super::avx2::{dpbusd, Unpack32, UnpackK, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use super::Region;
use crate::act::{A256, A32};

/// How a 32-value type's `mw` is formed.
pub trait Min32: Unpack32 {
    /// `Some(k)`: `mw = k · dw` (`k` for Q8_0 applies under VNNI only); `None`: the f16 stored
    /// after `dw` (Q4_1, Q5_1).
    const K: Option<f32>;
}
impl Min32 for Q4_0 {
    const K: Option<f32> = Some(-8.0);
}
impl Min32 for Q4_1 {
    const K: Option<f32> = None;
}
impl Min32 for Q5_0 {
    const K: Option<f32> = Some(-16.0);
}
impl Min32 for Q5_1 {
    const K: Option<f32> = None;
}
impl Min32 for Q8_0 {
    const K: Option<f32> = Some(-128.0);
}

/// Sums of each of 8 vectors' 8 i32 lanes, as lanes 0..8 of one vector.
#[inline(always)]
unsafe fn hsum_8x8(v: [__m256i; 8]) -> __m256i {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe {
        let h01 = _mm256_hadd_epi32(v[0], v[1]);
        let h23 = _mm256_hadd_epi32(v[2], v[3]);
        let h45 = _mm256_hadd_epi32(v[4], v[5]);
        let h67 = _mm256_hadd_epi32(v[6], v[7]);
        // Lanes (low half): v0..v3 over their lanes 0..4; high half: over lanes 4..8.
        let g0 = _mm256_hadd_epi32(h01, h23);
        let g1 = _mm256_hadd_epi32(h45, h67);
        _mm256_add_epi32(
            _mm256_permute2x128_si256(g0, g1, 0x20),
            _mm256_permute2x128_si256(g0, g1, 0x31),
        )
    }
}

/// Sum of the 8 i32 lanes.
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
        _mm_cvtsi128_si32(s)
    }
}

/// One-token kernel for the 32-value types, exact twin of a lane of `X8<U, VNNI>` /
/// `X16<U>` (`VNNI`).
pub struct Exact32<U, const VNNI: bool>(PhantomData<U>);

impl<U: Min32, const VNNI: bool> Exact32<U, VNNI> {
    /// Rows `r0 .. r0 + nr` (`1 ≤ nr ≤ 8`) for token `t`.
    #[inline(always)]
    unsafe fn group(g: &Region, r0: usize, nr: usize, t: usize) {
        // SAFETY: rows `r0 .. r0 + nr` (`nr ≥ 1`) and token `t` lie inside the region (the caller's
        // contract): lanes past `nr` repeat row `r0 + nr − 1`, the gather reads each row's first 4
        // bytes of block `b < nb`, and the prefetches are hints that never fault; the CPU has the
        // features used.
        unsafe {
            // Lanes past `nr` repeat the last row (computed, not stored).
            let w: [*const u8; 8] =
                std::array::from_fn(|i| g.w.add((r0 + i.min(nr - 1)) * g.w_stride));
            let s = g.w_stride as i32;
            let last = nr as i32 - 1;
            let idx = _mm256_setr_epi32(
                0,
                s * 1.min(last),
                s * 2.min(last),
                s * 3.min(last),
                s * 4.min(last),
                s * 5.min(last),
                s * 6.min(last),
                s * 7.min(last),
            );
            let a = g.a.add(t * g.a_stride);
            let has_min = VNNI || !U::SIGNED;
            let ones = _mm256_set1_epi16(1);
            let mut acc = _mm256_setzero_ps();
            // The 8 rows are one contiguous stretch of `8 · w_stride` bytes, read 8 blocks at a
            // time: prefetch the stretch two groups ahead at the same pace (`8 · WB` bytes per
            // block), so memory sees one linear stream.
            let ahead = g.w.add(r0 * g.w_stride).wrapping_add(16 * g.w_stride);
            for b in 0..g.nb {
                let pf = ahead.wrapping_add(b * 8 * U::WB);
                let mut o = 0;
                while o < 8 * U::WB {
                    _mm_prefetch(pf.wrapping_add(o) as *const i8, _MM_HINT_T0);
                    o += 64;
                }
                let ab = a.add(b * A32::BYTES);
                let qa = _mm256_loadu_si256(ab.add(A32::Q) as *const __m256i);
                let mut p = [_mm256_setzero_si256(); 8];
                for i in 0..8 {
                    let mut q = U::unpack(w[i].add(b * U::WB)).0;
                    if VNNI && U::SIGNED {
                        q = _mm256_xor_si256(q, _mm256_set1_epi8(-128));
                    }
                    p[i] = if VNNI {
                        dpbusd(_mm256_setzero_si256(), q, qa)
                    } else if U::SIGNED {
                        let m = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(qa, q));
                        _mm256_madd_epi16(m, ones)
                    } else {
                        _mm256_madd_epi16(_mm256_maddubs_epi16(q, qa), ones)
                    };
                }
                let sums = _mm256_cvtepi32_ps(hsum_8x8(p));
                // The first 4 bytes of each row's block: f16 `d`, then (Q4_1, Q5_1) f16 `m`.
                let dm = _mm256_i32gather_epi32::<1>(w[0].add(b * U::WB) as *const i32, idx);
                let lo = _mm256_and_si256(dm, _mm256_set1_epi32(0xFFFF));
                let hi = _mm256_srli_epi32(dm, 16);
                // [d0..3, m0..3 | d4..7, m4..7] as u16, then [d0..7 | m0..7].
                let packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0b11_01_10_00);
                let dw = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
                let da = _mm256_set1_ps(super::rd_f32(ab));
                acc = _mm256_fmadd_ps(sums, _mm256_mul_ps(dw, da), acc);
                if has_min {
                    let mw = match U::K {
                        Some(k) => _mm256_mul_ps(dw, _mm256_set1_ps(k)),
                        None => _mm256_cvtph_ps(_mm256_extracti128_si256(packed, 1)),
                    };
                    acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(super::rd_f32(ab.add(4))), acc);
                }
            }
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), acc);
            for (i, v) in out.iter().enumerate().take(nr) {
                *g.y.add(t * g.y_stride + r0 + i) = *v;
            }
        }
    }

    #[inline(always)]
    unsafe fn region(g: &Region) {
        // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row
        // pointer, the activation blocks of every token, the outputs), and every offset below stays
        // inside it; the CPU has the features used.
        unsafe {
            // The gather offsets of 8 rows are i32.
            assert!(g.w_stride <= i32::MAX as usize / 8, "weight rows too long");
            for t in 0..g.tokens {
                let mut r0 = 0;
                while r0 < g.rows {
                    let nr = 8.min(g.rows - r0);
                    Self::group(g, r0, nr, t);
                    r0 += nr;
                }
            }
        }
    }
}

/// One-token kernel for the K-quants, exact twin of a lane of `KX8<U, _>` / `KX16<U>` (the
/// same at every level: their integer sums do not depend on VNNI).
pub struct ExactK<U>(PhantomData<U>);

impl<U: UnpackK> ExactK<U> {
    #[inline(always)]
    unsafe fn row(g: &Region, r: usize, t: usize, buf: &mut [u8; 256]) {
        // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row
        // pointer, the activation blocks of every token, the outputs), and every offset below stays
        // inside it; the CPU has the features used.
        unsafe {
            let w = g.w.add(r * g.w_stride);
            let a = g.a.add(t * g.a_stride);
            let mut acc = 0f32;
            for b in 0..g.nb {
                let ab = a.add(b * A256::BYTES);
                let wb = w.add(b * U::WB);
                // The next super-block of this row (one linear stream through the weights).
                _mm_prefetch(wb.wrapping_add(2 * U::WB) as *const i8, _MM_HINT_T0);
                _mm_prefetch(wb.wrapping_add(2 * U::WB + 64) as *const i8, _MM_HINT_T0);
                _mm_prefetch(wb.wrapping_add(2 * U::WB + 128) as *const i8, _MM_HINT_T0);
                let kf = U::unpack(wb, buf.as_mut_ptr());
                let mut isum = _mm256_setzero_si256();
                for c in 0..8 {
                    let q = _mm256_loadu_si256(buf.as_ptr().add(32 * c) as *const __m256i);
                    let av = _mm256_loadu_si256(ab.add(A256::Q + 32 * c) as *const __m256i);
                    // i16 lanes 0..8: sub-block 2c, 8..16: sub-block 2c + 1.
                    let sc = _mm256_set_m128i(
                        _mm_set1_epi16(kf.sc[2 * c + 1] as i16),
                        _mm_set1_epi16(kf.sc[2 * c] as i16),
                    );
                    isum =
                        _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), sc));
                }
                let total = hsum_i32(isum);
                // `mp` holds the 16 mins as consecutive i16, matching the 16 bsums.
                let mins = _mm256_loadu_si256(kf.mp.as_ptr() as *const __m256i);
                let bs = _mm256_loadu_si256(ab.add(A256::BSUMS) as *const __m256i);
                let msum = hsum_i32(_mm256_madd_epi16(bs, mins));
                let da = super::rd_f32(ab);
                let dd = kf.d * da;
                if U::SAME_D {
                    acc = (total.wrapping_sub(msum) as f32).mul_add(dd, acc);
                } else {
                    acc = (total as f32).mul_add(dd, acc);
                    acc = (-(msum as f32)).mul_add(kf.dmin * da, acc);
                }
            }
            *g.y.add(t * g.y_stride + r) = acc;
        }
    }

    #[inline(always)]
    unsafe fn region(g: &Region) {
        // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row
        // pointer, the activation blocks of every token, the outputs), and every offset below stays
        // inside it; the CPU has the features used.
        unsafe {
            let mut buf = [0u8; 256];
            for t in 0..g.tokens {
                for r in 0..g.rows {
                    Self::row(g, r, t, &mut buf);
                }
            }
        }
    }
}

/// The exact one-token kernel of a 32-value type: a lane of [`super::avx2::x8`]`::<U, false>`,
/// or (`VNNI`) of [`super::avx512::x16`]`::<U>`.
///
/// # Safety
/// As [`super::RegionFn`] (plain, not interleaved, activations); needs AVX2, FMA, F16C (and AVX-512
/// VNNI/VL when `VNNI`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn e32<U: Min32, const VNNI: bool>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe { Exact32::<U, VNNI>::region(g) }
}

/// The exact one-token kernel of a K-quant: a lane of [`super::avx2::kx8`] and of
/// [`super::avx512::kx16`] (the same at every level).
///
/// # Safety
/// As [`super::RegionFn`] (plain, not interleaved, activations); needs AVX2, FMA, F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn ek<U: UnpackK>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe { ExactK::<U>::region(g) }
}
