//! AVX2 (+FMA, F16C) tile kernels; the `VNNI` variants replace `vpmaddubsw`+`vpmaddwd` in the
//! 32-value block dots with one `vpdpbusd` (AVX-512 VNNI, 256-bit, via inline asm).
//!
//! Integer products: `vpmaddubsw` multiplies unsigned weight bytes by signed activation bytes
//! and adds pairs into i16 (no overflow here: weights ≤ 63 or |w| ≤ 128 with |a| ≤ 127);
//! `vpmaddwd` then adds pairs into i32 (by 1, or by the sub-block scale for K-quants).

use std::arch::asm;
use std::arch::x86_64::*;
use std::marker::PhantomData;

use super::{drive, rd_f32, rd_u32, Micro, Region};
use crate::act::{A256x8, A32x8, A256, A32};
use crate::quants::{block_at, q6_k_scale, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};

/// Offset of the 16 scale bytes in a Q6_K block (read as raw bytes in the hot loops).
const Q6K_SCALES: usize = std::mem::offset_of!(BlockQ6K, scales);

/// `acc + Σ4 u·s` per i32 lane (`u` unsigned bytes, `s` signed bytes), EVEX `vpdpbusd`.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and AVX-512 VL.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    let mut acc = acc;
    // SAFETY: a register-only instruction (no memory, stack or flags touched); the caller
    // guarantees the CPU has AVX-512 VNNI and VL.
    unsafe {
        asm!(
            "vpdpbusd {acc}, {u}, {s}",
            acc = inout(ymm_reg) acc,
            u = in(ymm_reg) u,
            s = in(ymm_reg) s,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    acc
}

/// Broadcasts the 4 bytes at `p` to every 32-bit lane, as a load (`vpbroadcastd ymm, m32`).
///
/// Written as asm so that the compiler keeps unpacked weight blocks in memory and broadcasts
/// with load µops instead of turning each broadcast into register shuffles (which saturate
/// the shuffle ports in the prompt kernels).
///
/// # Safety
/// `p` must be readable for 4 bytes; the CPU must have AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bcast32(p: *const u8) -> __m256i {
    let out: __m256i;
    // SAFETY: reads the 4 bytes at `p` (readable: the caller's guarantee), nothing else; AVX2
    // is the caller's guarantee too.
    unsafe {
        asm!(
            "vpbroadcastd {out}, dword ptr [{p}]",
            out = out(ymm_reg) out,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags)
        )
    };
    out
}

#[inline(always)]
unsafe fn hsum_ps(v: __m256) -> f32 {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// A little-endian f16 to f32 with F16C.
#[inline(always)]
unsafe fn f16c(p: *const u8) -> f32 {
    // SAFETY: callers pass `p` readable for 2 bytes (a block's f16 field), on a CPU with F16C.
    unsafe {
        let bits = u16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2]));
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
}

/// 16 packed bytes to 32 nibbles: byte `j` low → value `j`, high → value `j + 16`.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: callers pass `p` readable for 16 bytes (a block's packed nibbles), on a CPU with
    // AVX2.
    unsafe {
        let x = _mm_loadu_si128(p as *const __m128i);
        let m = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(x, m);
        let hi = _mm_and_si128(_mm_srli_epi16(x, 4), m);
        _mm256_set_m128i(hi, lo)
    }
}

/// 0x10 in byte `i` where bit `i` of `qh` is set.
#[inline(always)]
unsafe fn fifth_bits(qh: u32) -> __m256i {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe {
        let v = _mm256_set1_epi32(qh as i32);
        let shuf = _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0x0000000000000000,
        );
        let bytes = _mm256_shuffle_epi8(v, shuf);
        let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// One 32-value weight block type: its bytes and how to unpack it to 32 bytes + scale + min.
pub trait Unpack32 {
    const WB: usize;
    /// The bytes are signed (Q8_0); otherwise unsigned.
    const SIGNED: bool;
    /// `(q, d, m)` with `w = d · q + m`.
    ///
    /// # Safety
    /// `p` points at one whole block; the CPU has AVX2 and F16C.
    unsafe fn unpack(p: *const u8) -> (__m256i, f32, f32);
    /// `[d, m, 0, 0]` in one vector (`m` as for VNNI when `vnni`).
    ///
    /// # Safety
    /// As [`Unpack32::unpack`].
    unsafe fn dm(p: *const u8, vnni: bool) -> __m128;
}

/// `[d, k·d, 0, 0]` for a block whose min is a multiple of its f16 scale at `p`.
#[inline(always)]
unsafe fn dm_scaled(p: *const u8, k: f32) -> __m128 {
    // SAFETY: callers pass `p` readable for 2 bytes (a block's f16 `d`), on a CPU with F16C.
    unsafe {
        let bits = u16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2]));
        let d = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
        _mm_mul_ps(_mm_shuffle_ps(d, d, 0), _mm_setr_ps(1.0, k, 0.0, 0.0))
    }
}

/// `[d, m, 0, 0]` from two consecutive f16 at `p`.
#[inline(always)]
unsafe fn dm_pair(p: *const u8) -> __m128 {
    // SAFETY: callers pass `p` readable for 4 bytes (a block's f16 `d` and `m`), on a CPU with
    // F16C.
    unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128(rd_u32(p) as i32)) }
}

pub struct Q4_0;
impl Unpack32 for Q4_0 {
    const WB: usize = 18;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn dm(p: *const u8, _vnni: bool) -> __m128 {
        // SAFETY: `p` points at one whole block (the trait's contract), whose first bytes are its
        // f16 `d` (and `m`); the CPU has F16C.
        unsafe { dm_scaled(p, -8.0) }
    }
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: `p` points at one whole block (the trait's contract) and every offset read is
        // inside that type's layout (`quants::blocks`); the CPU has AVX2 and F16C.
        unsafe {
            let d = f16c(p);
            (nibbles(p.add(2)), d, -8.0 * d)
        }
    }
}

pub struct Q4_1;
impl Unpack32 for Q4_1 {
    const WB: usize = 20;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn dm(p: *const u8, _vnni: bool) -> __m128 {
        // SAFETY: `p` points at one whole block (the trait's contract), whose first bytes are its
        // f16 `d` (and `m`); the CPU has F16C.
        unsafe { dm_pair(p) }
    }
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: `p` points at one whole block (the trait's contract) and every offset read is
        // inside that type's layout (`quants::blocks`); the CPU has AVX2 and F16C.
        unsafe { (nibbles(p.add(4)), f16c(p), f16c(p.add(2))) }
    }
}

pub struct Q5_0;
impl Unpack32 for Q5_0 {
    const WB: usize = 22;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn dm(p: *const u8, _vnni: bool) -> __m128 {
        // SAFETY: `p` points at one whole block (the trait's contract), whose first bytes are its
        // f16 `d` (and `m`); the CPU has F16C.
        unsafe { dm_scaled(p, -16.0) }
    }
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: `p` points at one whole block (the trait's contract) and every offset read is
        // inside that type's layout (`quants::blocks`); the CPU has AVX2 and F16C.
        unsafe {
            let d = f16c(p);
            let q = _mm256_or_si256(nibbles(p.add(6)), fifth_bits(rd_u32(p.add(2))));
            (q, d, -16.0 * d)
        }
    }
}

pub struct Q5_1;
impl Unpack32 for Q5_1 {
    const WB: usize = 24;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn dm(p: *const u8, _vnni: bool) -> __m128 {
        // SAFETY: `p` points at one whole block (the trait's contract), whose first bytes are its
        // f16 `d` (and `m`); the CPU has F16C.
        unsafe { dm_pair(p) }
    }
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: `p` points at one whole block (the trait's contract) and every offset read is
        // inside that type's layout (`quants::blocks`); the CPU has AVX2 and F16C.
        unsafe {
            let q = _mm256_or_si256(nibbles(p.add(8)), fifth_bits(rd_u32(p.add(4))));
            (q, f16c(p), f16c(p.add(2)))
        }
    }
}

pub struct Q8_0;
impl Unpack32 for Q8_0 {
    const WB: usize = 34;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn dm(p: *const u8, vnni: bool) -> __m128 {
        // SAFETY: `p` points at one whole block (the trait's contract), whose first bytes are its
        // f16 `d` (and `m`); the CPU has F16C.
        unsafe { dm_scaled(p, if vnni { -128.0 } else { 0.0 }) }
    }
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: `p` points at one whole block (the trait's contract) and every offset read is
        // inside that type's layout (`quants::blocks`); the CPU has AVX2 and F16C.
        unsafe { (_mm256_loadu_si256(p.add(2) as *const __m256i), f16c(p), 0.0) }
    }
}

/// Tile kernel for the 32-value block types.
pub struct B32<U, const VNNI: bool>(PhantomData<U>);

impl<U: Unpack32, const VNNI: bool> Micro for B32<U, VNNI> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        a: [*const u8; T],
        nb: usize,
    ) -> [[f32; T]; R] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a[j]` at `nb` activation blocks (the
        // trait's contract): block `b < nb` lies at `b` times the block size, and each read stays
        // inside its block; the CPU has the instructions used.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let mut macc = [[0f32; T]; R];
            let ones = _mm256_set1_epi16(1);
            for b in 0..nb {
                let ab: [*const u8; T] = std::array::from_fn(|j| a[j].add(b * A32::BYTES));
                for i in 0..R {
                    let (mut q, dw, mut mw) = U::unpack(w[i].add(b * U::WB));
                    if VNNI && U::SIGNED {
                        // q + 128 as unsigned; the offset comes back through the block sum.
                        q = _mm256_xor_si256(q, _mm256_set1_epi8(-128));
                        mw = -128.0 * dw;
                    }
                    for j in 0..T {
                        let qa = _mm256_loadu_si256(ab[j].add(A32::Q) as *const __m256i);
                        let p = if VNNI {
                            dpbusd(_mm256_setzero_si256(), q, qa)
                        } else if U::SIGNED {
                            let s =
                                _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(qa, q));
                            _mm256_madd_epi16(s, ones)
                        } else {
                            _mm256_madd_epi16(_mm256_maddubs_epi16(q, qa), ones)
                        };
                        let da = rd_f32(ab[j]);
                        acc[i][j] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(p),
                            _mm256_set1_ps(dw * da),
                            acc[i][j],
                        );
                        if VNNI || !U::SIGNED {
                            macc[i][j] += mw * rd_f32(ab[j].add(4));
                        }
                    }
                }
            }
            let mut out = [[0f32; T]; R];
            for i in 0..R {
                for j in 0..T {
                    out[i][j] = hsum_ps(acc[i][j]) + macc[i][j];
                }
            }
            out
        }
    }
}

impl<U: Unpack32, const VNNI: bool> B32<U, VNNI> {
    /// One token: rows one after another (a single linear stream through the weights, which
    /// the hardware prefetchers follow best), 2 independent accumulators per row.
    #[inline(always)]
    unsafe fn region_1tok(g: &Region) {
        // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row
        // pointer, the activation blocks of every token, the outputs), and every offset below stays
        // inside it; the CPU has the features used.
        unsafe {
            let has_min = VNNI || !U::SIGNED;
            for r in 0..g.rows {
                let w = g.w.add(r * g.w_stride);
                let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                // Lane 1 accumulates m·sa.
                let (mut m0, mut m1) = (_mm_setzero_ps(), _mm_setzero_ps());
                let mut b = 0;
                while b + 2 <= g.nb {
                    Self::blk1(w, g.a, b, &mut a0, &mut m0);
                    Self::blk1(w, g.a, b + 1, &mut a1, &mut m1);
                    b += 2;
                }
                if b < g.nb {
                    Self::blk1(w, g.a, b, &mut a0, &mut m0);
                }
                let m = _mm_add_ps(m0, m1);
                let mv = _mm_cvtss_f32(_mm_shuffle_ps(m, m, 1));
                *g.y.add(r) = hsum_ps(_mm256_add_ps(a0, a1)) + if has_min { mv } else { 0.0 };
            }
        }
    }

    /// Block `b` of one row and one token into `acc` (and `[·, m·sa]` into `macc`).
    #[inline(always)]
    unsafe fn blk1(w: *const u8, a: *const u8, b: usize, acc: &mut __m256, macc: &mut __m128) {
        // SAFETY: `w` and `a` point at a row's weight blocks and a token's activation blocks, and
        // `b` is below their count (the callers' loops over `nb`); the CPU has the features used.
        unsafe {
            let ab = a.add(b * A32::BYTES);
            let wb = w.add(b * U::WB);
            let mut q = U::unpack(wb).0;
            if VNNI && U::SIGNED {
                q = _mm256_xor_si256(q, _mm256_set1_epi8(-128));
            }
            // [dw·da, mw·sa]
            let ds = _mm_castpd_ps(_mm_load_sd(ab as *const f64));
            let prod = _mm_mul_ps(U::dm(wb, VNNI), ds);
            let qa = _mm256_loadu_si256(ab.add(A32::Q) as *const __m256i);
            let p = if VNNI {
                dpbusd(_mm256_setzero_si256(), q, qa)
            } else if U::SIGNED {
                let s = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(qa, q));
                _mm256_madd_epi16(s, _mm256_set1_epi16(1))
            } else {
                _mm256_madd_epi16(_mm256_maddubs_epi16(q, qa), _mm256_set1_epi16(1))
            };
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(prod), *acc);
            if VNNI || !U::SIGNED {
                *macc = _mm_add_ps(*macc, prod);
            }
        }
    }
}

/// Prefetches the super-block two ahead of `p` (`wb` bytes each) into L1.
#[inline(always)]
unsafe fn prefetch_ahead(p: *const u8, wb: usize) {
    // SAFETY: prefetches are hints that never fault, whatever the address (formed with
    // `wrapping_add`, outside the object being fine).
    unsafe {
        let q = p.wrapping_add(2 * wb);
        let mut o = 0;
        while o < wb {
            _mm_prefetch(q.wrapping_add(o) as *const i8, _MM_HINT_T0);
            o += 64;
        }
    }
}

/// Activation bytes `i .. i + 32` of an A256 block.
#[inline(always)]
unsafe fn aq32(a: *const u8, i: usize) -> __m256i {
    // SAFETY: callers pass `a` pointing at one whole A256 block and `i + 32 ≤ 256`, on a CPU with
    // AVX2.
    unsafe { _mm256_loadu_si256(a.add(A256::Q + i) as *const __m256i) }
}

/// The 16 activation sums of an A256 block as i16 lanes.
#[inline(always)]
unsafe fn bsums(a: *const u8) -> __m256i {
    // SAFETY: callers pass `a` pointing at one whole A256 block (its 16 i16 sums), on a CPU with
    // AVX2.
    unsafe { _mm256_loadu_si256(a.add(A256::BSUMS) as *const __m256i) }
}

/// Two sub-block scales as i16 lanes: `lo` in lanes 0..8, `hi` in lanes 8..16 (matching the
/// i16 outputs of `vpmaddubsw` on 16 + 16 bytes).
#[inline(always)]
unsafe fn scale_pair(lo: i32, hi: i32) -> __m256i {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe { _mm256_set_m128i(_mm_set1_epi16(hi as i16), _mm_set1_epi16(lo as i16)) }
}

/// `Σ (q·a) · scale` per i32 lane for 32 unsigned bytes `q`.
#[inline(always)]
unsafe fn qdot_scaled(q: __m256i, a: __m256i, scale: __m256i) -> __m256i {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), scale) }
}

// The K-quant values in registers: one unpacker per layout (see `quants::blocks` for the
// layouts and the scalar `values()` they match), shared by the tile kernels below and the
// unpack-to-buffer kernels (`UnpackK`) of the prompt and exact paths.

/// Chunk `c` (0..4) of a Q4_K / Q5_K block at `p`: values `64c .. 64c + 32` (`lo`) and
/// `64c + 32 .. 64c + 64` (`hi`) as bytes. Q5_K (`FIFTH`) adds the 5th bits from `hbits`, its
/// 32 `qh` bytes.
///
/// # Safety
/// `p` points at one whole block of the type; the CPU has AVX2.
#[inline(always)]
unsafe fn q45_chunk<const FIFTH: bool>(
    p: *const u8,
    c: usize,
    hbits: __m256i,
) -> (__m256i, __m256i) {
    // SAFETY: callers pass `p` pointing at one whole Q4_K (or, `FIFTH`, Q5_K) block and `c < 4`, so
    // the 32 bytes read at `qs + 32c` are inside its `qs`; the CPU has AVX2.
    unsafe {
        let qs_off = if FIFTH { 48 } else { 16 };
        let m4 = _mm256_set1_epi8(0x0F);
        let x = _mm256_loadu_si256(p.add(qs_off + 32 * c) as *const __m256i);
        let mut lo = _mm256_and_si256(x, m4);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
        if FIFTH {
            let h16 = _mm256_set1_epi8(0x10);
            let bl = _mm256_set1_epi8((1u8 << (2 * c)) as i8);
            let bh = _mm256_set1_epi8((1u8 << (2 * c + 1)) as i8);
            let sl = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bl), bl);
            let sh = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bh), bh);
            lo = _mm256_or_si256(lo, _mm256_and_si256(sl, h16));
            hi = _mm256_or_si256(hi, _mm256_and_si256(sh, h16));
        }
        (lo, hi)
    }
}

/// Half `h` (0..2) of a Q6_K block at `p`: values `128h + 32k .. 128h + 32k + 32` for
/// `k = 0..4`, as the stored 6 bits (0..=63, the −32 offset not applied).
///
/// # Safety
/// `p` points at one whole Q6_K block; the CPU has AVX2.
#[inline(always)]
unsafe fn q6_half(p: *const u8, h: usize) -> [__m256i; 4] {
    // SAFETY: callers pass `p` pointing at one whole Q6_K block and `h < 2`: the reads are inside
    // its `ql` and `qh`; the CPU has AVX2.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(0x30);
        let l0 = _mm256_loadu_si256(p.add(64 * h) as *const __m256i);
        let l1 = _mm256_loadu_si256(p.add(64 * h + 32) as *const __m256i);
        let hb = _mm256_loadu_si256(p.add(128 + 32 * h) as *const __m256i);
        [
            _mm256_or_si256(
                _mm256_and_si256(l0, m4),
                _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2),
            ),
            _mm256_or_si256(
                _mm256_and_si256(l1, m4),
                _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                _mm256_and_si256(hb, m2),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2),
            ),
        ]
    }
}

/// Values `128h + 32s .. 128h + 32s + 32` of a Q2_K / Q3_K block from `q`, the 32 `qs` bytes
/// of half `h`: the 2-bit values, and for Q3_K (`THREE`) plus 4 where the `hmask` bit is set
/// (`hm`: the 32 `hmask` bytes), so 0..=7 for the stored −4..=3.
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
unsafe fn q23_part<const THREE: bool>(q: __m256i, hm: __m256i, h: usize, s: usize) -> __m256i {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let mut v = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * s as i32)), m3);
        if THREE {
            let bit = _mm256_set1_epi8((1u8 << (4 * h + s)) as i8);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
            v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(4)));
        }
        v
    }
}

/// The scale and min of sub-block `s` (0..8) of the Q4_K (`FIFTH` = false) or Q5_K block at
/// `p`, decoded by the block layout.
///
/// # Safety
/// `p` points at one whole block of the type.
#[inline(always)]
unsafe fn k45_scale_min<const FIFTH: bool>(p: *const u8, s: usize) -> (u8, u8) {
    // SAFETY: callers pass `p` pointing at one whole block of the type, which `block_at` needs.
    unsafe {
        if FIFTH {
            block_at::<BlockQ5K>(p).scale_min(s)
        } else {
            block_at::<BlockQ4K>(p).scale_min(s)
        }
    }
}

/// Q4_K and Q5_K (`FIFTH` = Q5_K): 8 sub-blocks of 32 with 6-bit scales and mins.
pub struct K45<const FIFTH: bool>;

impl<const FIFTH: bool> Micro for K45<FIFTH> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        a: [*const u8; T],
        nb: usize,
    ) -> [[f32; T]; R] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a[j]` at `nb` activation blocks (the
        // trait's contract): block `b < nb` lies at `b` times the block size, and each read stays
        // inside its block; the CPU has the instructions used.
        unsafe {
            let wb = if FIFTH { 176 } else { 144 };
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let ab: [*const u8; T] = std::array::from_fn(|j| a[j].add(b * A256::BYTES));
                for i in 0..R {
                    let p = w[i].add(b * wb);
                    prefetch_ahead(p, wb);
                    let mut sc = [0i32; 8];
                    let mut mins = [0i16; 16];
                    for s in 0..8 {
                        let (c, m) = k45_scale_min::<FIFTH>(p, s);
                        sc[s] = c as i32;
                        mins[2 * s] = m as i16;
                        mins[2 * s + 1] = m as i16;
                    }
                    let mins = _mm256_loadu_si256(mins.as_ptr() as *const __m256i);
                    let hbits = if FIFTH {
                        _mm256_loadu_si256(p.add(16) as *const __m256i)
                    } else {
                        _mm256_setzero_si256()
                    };
                    let mut isum = [_mm256_setzero_si256(); T];
                    for c in 0..4 {
                        let (lo, hi) = q45_chunk::<FIFTH>(p, c, hbits);
                        let sl = _mm256_set1_epi16(sc[2 * c] as i16);
                        let sh = _mm256_set1_epi16(sc[2 * c + 1] as i16);
                        for j in 0..T {
                            let pl = qdot_scaled(lo, aq32(ab[j], 64 * c), sl);
                            let ph = qdot_scaled(hi, aq32(ab[j], 64 * c + 32), sh);
                            isum[j] = _mm256_add_epi32(isum[j], _mm256_add_epi32(pl, ph));
                        }
                    }
                    let d = f16c(p);
                    let dmin = f16c(p.add(2));
                    for j in 0..T {
                        let da = rd_f32(ab[j]);
                        let msum = _mm256_madd_epi16(bsums(ab[j]), mins);
                        acc[i][j] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(isum[j]),
                            _mm256_set1_ps(d * da),
                            acc[i][j],
                        );
                        acc[i][j] = _mm256_fnmadd_ps(
                            _mm256_cvtepi32_ps(msum),
                            _mm256_set1_ps(dmin * da),
                            acc[i][j],
                        );
                    }
                }
            }
            finish(acc)
        }
    }
}

#[inline(always)]
unsafe fn finish<const R: usize, const T: usize>(acc: [[__m256; T]; R]) -> [[f32; T]; R] {
    // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need (this
    // is inlined into `#[target_feature]` kernels).
    unsafe {
        let mut out = [[0f32; T]; R];
        for i in 0..R {
            for j in 0..T {
                out[i][j] = hsum_ps(acc[i][j]);
            }
        }
        out
    }
}

/// Q6_K: 16 sub-blocks of 16, i8 scales, 6-bit values offset by 32.
pub struct K6;

impl Micro for K6 {
    #[inline(always)]
    unsafe fn tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        a: [*const u8; T],
        nb: usize,
    ) -> [[f32; T]; R] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a[j]` at `nb` activation blocks (the
        // trait's contract): block `b < nb` lies at `b` times the block size, and each read stays
        // inside its block; the CPU has the instructions used.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let ab: [*const u8; T] = std::array::from_fn(|j| a[j].add(b * A256::BYTES));
                for i in 0..R {
                    let p = w[i].add(b * 210);
                    prefetch_ahead(p, 210);
                    let sc8 = p.add(Q6K_SCALES);
                    // The 16 i8 scales (`q6_k_scale`) sign-extended in one register, for the
                    // offset term below.
                    let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(sc8 as *const __m128i));
                    let mut isum = [_mm256_setzero_si256(); T];
                    for h in 0..2 {
                        let v = q6_half(p, h);
                        for (k, vk) in v.iter().enumerate() {
                            let s = 8 * h + 2 * k;
                            let sv = scale_pair(
                                q6_k_scale(*sc8.add(s)) as i32,
                                q6_k_scale(*sc8.add(s + 1)) as i32,
                            );
                            for j in 0..T {
                                let pq = qdot_scaled(*vk, aq32(ab[j], 128 * h + 32 * k), sv);
                                isum[j] = _mm256_add_epi32(isum[j], pq);
                            }
                        }
                    }
                    let d = f16c(p.add(208));
                    for j in 0..T {
                        // The −32 offset: 32 · Σ sc · bsum.
                        let off = _mm256_slli_epi32(_mm256_madd_epi16(bsums(ab[j]), sc16), 5);
                        let s = _mm256_sub_epi32(isum[j], off);
                        let da = rd_f32(ab[j]);
                        acc[i][j] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(s),
                            _mm256_set1_ps(d * da),
                            acc[i][j],
                        );
                    }
                }
            }
            finish(acc)
        }
    }
}

/// Q2_K (`THREE` = false) and Q3_K (`THREE` = true): 16 sub-blocks of 16, 2-bit low values.
pub struct K23<const THREE: bool>;

impl<const THREE: bool> Micro for K23<THREE> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        a: [*const u8; T],
        nb: usize,
    ) -> [[f32; T]; R] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a[j]` at `nb` activation blocks (the
        // trait's contract): block `b < nb` lies at `b` times the block size, and each read stays
        // inside its block; the CPU has the instructions used.
        unsafe {
            let wb = if THREE { 110 } else { 84 };
            let qs_off = if THREE { 32 } else { 16 };
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let ab: [*const u8; T] = std::array::from_fn(|j| a[j].add(b * A256::BYTES));
                for i in 0..R {
                    let p = w[i].add(b * wb);
                    prefetch_ahead(p, wb);
                    // Scales (i32) and, for Q2_K, mins as i16 lanes.
                    let mut sc = [0i32; 16];
                    let mut mins = [0i16; 16];
                    if THREE {
                        for (s, v) in sc.iter_mut().zip(block_at::<BlockQ3K>(p).scales()) {
                            *s = v as i32;
                        }
                    } else {
                        let blk = block_at::<BlockQ2K>(p);
                        for s in 0..16 {
                            let (c, m) = blk.scale_min(s);
                            sc[s] = c as i32;
                            mins[s] = m as i16;
                        }
                    }
                    let hm = if THREE {
                        _mm256_loadu_si256(p as *const __m256i)
                    } else {
                        _mm256_setzero_si256()
                    };
                    let mut isum = [_mm256_setzero_si256(); T];
                    for h in 0..2 {
                        let q = _mm256_loadu_si256(p.add(qs_off + 32 * h) as *const __m256i);
                        for s in 0..4 {
                            let v = q23_part::<THREE>(q, hm, h, s);
                            let k = 8 * h + 2 * s;
                            let sv = scale_pair(sc[k], sc[k + 1]);
                            for j in 0..T {
                                let pq = qdot_scaled(v, aq32(ab[j], 128 * h + 32 * s), sv);
                                isum[j] = _mm256_add_epi32(isum[j], pq);
                            }
                        }
                    }
                    let (d, dmin) = if THREE {
                        (f16c(p.add(108)), 0.0)
                    } else {
                        (f16c(p.add(80)), f16c(p.add(82)))
                    };
                    let sc16 = if THREE {
                        let mut s16 = [0i16; 16];
                        for (o, s) in s16.iter_mut().zip(sc) {
                            *o = s as i16;
                        }
                        _mm256_loadu_si256(s16.as_ptr() as *const __m256i)
                    } else {
                        _mm256_loadu_si256(mins.as_ptr() as *const __m256i)
                    };
                    for j in 0..T {
                        let da = rd_f32(ab[j]);
                        let bs = _mm256_madd_epi16(bsums(ab[j]), sc16);
                        if THREE {
                            // Values are stored +4: subtract 4 · Σ sc · bsum.
                            let s = _mm256_sub_epi32(isum[j], _mm256_slli_epi32(bs, 2));
                            acc[i][j] = _mm256_fmadd_ps(
                                _mm256_cvtepi32_ps(s),
                                _mm256_set1_ps(d * da),
                                acc[i][j],
                            );
                        } else {
                            acc[i][j] = _mm256_fmadd_ps(
                                _mm256_cvtepi32_ps(isum[j]),
                                _mm256_set1_ps(d * da),
                                acc[i][j],
                            );
                            acc[i][j] = _mm256_fnmadd_ps(
                                _mm256_cvtepi32_ps(bs),
                                _mm256_set1_ps(dmin * da),
                                acc[i][j],
                            );
                        }
                    }
                }
            }
            finish(acc)
        }
    }
}

/// The region kernel of a 32-value type: one token streams rows ([`B32::region_1tok`]),
/// more take `4 × 2` tiles.
///
/// # Safety
/// As [`super::RegionFn`]; needs AVX2, FMA, F16C (and AVX-512 VNNI/VL when `VNNI`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn b32<U: Unpack32, const VNNI: bool>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe {
        if g.tokens == 1 {
            B32::<U, VNNI>::region_1tok(g)
        } else {
            drive::<B32<U, VNNI>, 4, 2>(g)
        }
    }
}

/// The region kernel of a K-quant tile `M`: `1 × 1` tiles for one token, `2 × 2` for more.
///
/// # Safety
/// As [`super::RegionFn`]; needs AVX2, FMA, F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn k<M: Micro>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe {
        if g.tokens < 2 {
            drive::<M, 1, 1>(g)
        } else {
            drive::<M, 2, 2>(g)
        }
    }
}

/// Prompt kernel for the 32-value block types over [`A32x8`] activations: each SIMD lane is
/// one of 8 tokens, so one weight block (unpacked once, its 4-byte groups broadcast) is
/// multiplied with 8 tokens at a time and the scales apply as whole vectors.
pub struct X8<U, const VNNI: bool>(PhantomData<U>);

impl<U: Unpack32, const VNNI: bool> X8<U, VNNI> {
    /// `R` rows × the 8 tokens of the group at `a`: lane `t` of result `r` is row `r`, token
    /// `t`.
    #[inline(always)]
    unsafe fn tile<const R: usize>(w: [*const u8; R], a: *const u8, nb: usize) -> [__m256; R] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a` at `nb` interleaved [`A32x8`]
        // blocks of one token group (the caller's region): block `b < nb` lies at `b` times the
        // block size, each read stays inside its block, `buf[i]` holds the 32 bytes `x8_step`
        // reads; the CPU has the instructions used.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); R];
            let mut buf = [[0u8; 32]; R];
            for b in 0..nb {
                let ab = a.add(b * A32x8::BYTES);
                let dav = _mm256_loadu_ps(ab.add(A32x8::D) as *const f32);
                let sav = _mm256_loadu_ps(ab.add(A32x8::S) as *const f32);
                let mut dw = [0f32; R];
                let mut mw = [0f32; R];
                for i in 0..R {
                    let (mut q, d, mut m) = U::unpack(w[i].add(b * U::WB));
                    if VNNI && U::SIGNED {
                        q = _mm256_xor_si256(q, _mm256_set1_epi8(-128));
                        m = -128.0 * d;
                    }
                    _mm256_storeu_si256(buf[i].as_mut_ptr() as *mut __m256i, q);
                    dw[i] = d;
                    mw[i] = m;
                }
                let mut isum0 = [_mm256_setzero_si256(); R];
                let mut isum1 = [_mm256_setzero_si256(); R];
                // Written out 8 times (not a loop) so the accumulators stay in registers.
                x8_step::<U, VNNI, R>(ab, &buf, 0, &mut isum0);
                x8_step::<U, VNNI, R>(ab, &buf, 1, &mut isum1);
                x8_step::<U, VNNI, R>(ab, &buf, 2, &mut isum0);
                x8_step::<U, VNNI, R>(ab, &buf, 3, &mut isum1);
                x8_step::<U, VNNI, R>(ab, &buf, 4, &mut isum0);
                x8_step::<U, VNNI, R>(ab, &buf, 5, &mut isum1);
                x8_step::<U, VNNI, R>(ab, &buf, 6, &mut isum0);
                x8_step::<U, VNNI, R>(ab, &buf, 7, &mut isum1);
                for i in 0..R {
                    let s = _mm256_add_epi32(isum0[i], isum1[i]);
                    let scale = _mm256_mul_ps(_mm256_set1_ps(dw[i]), dav);
                    acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[i]);
                    if VNNI || !U::SIGNED {
                        acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(mw[i]), sav, acc[i]);
                    }
                }
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn store(g: &Region, r0: usize, t0: usize, v: __m256) {
        // SAFETY: lanes `t < tokens − t0` of row `r0` are outputs of the region (the caller's
        // contract).
        unsafe {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), v);
            for (t, l) in lanes.iter().enumerate().take(g.tokens - t0) {
                *g.y.add((t0 + t) * g.y_stride + r0) = *l;
            }
        }
    }

    /// A region whose `a` points at groups of 8 tokens (`a_stride` bytes apart).
    #[inline(always)]
    unsafe fn region<const R: usize>(g: &Region) {
        // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row
        // pointer, the activation blocks of every token, the outputs), and every offset below stays
        // inside it; the CPU has the features used.
        unsafe {
            for gi in 0..g.tokens.div_ceil(8) {
                let a = g.a.add(gi * g.a_stride);
                let t0 = 8 * gi;
                let mut r0 = 0;
                while r0 + R <= g.rows {
                    let w: [*const u8; R] = std::array::from_fn(|i| g.w.add((r0 + i) * g.w_stride));
                    let out = Self::tile::<R>(w, a, g.nb);
                    for (i, v) in out.iter().enumerate() {
                        Self::store(g, r0 + i, t0, *v);
                    }
                    r0 += R;
                }
                while r0 < g.rows {
                    let out = Self::tile::<1>([g.w.add(r0 * g.w_stride)], a, g.nb);
                    Self::store(g, r0, t0, out[0]);
                    r0 += 1;
                }
            }
        }
    }
}

/// One 4-value group `k` of an [`X8`] block: every row's 4 weight bytes (broadcast) times the
/// 8 tokens' 4 activation bytes.
#[inline(always)]
unsafe fn x8_step<U: Unpack32, const VNNI: bool, const R: usize>(
    ab: *const u8,
    buf: &[[u8; 32]; R],
    k: usize,
    isum: &mut [__m256i; R],
) {
    // SAFETY: `ab` points at one whole `A32x8` block and `k < 8`, so the 32 bytes read at `Q + 32k`
    // are inside it; `buf[i]` holds 32 bytes; the CPU has AVX2 (and VNNI when `VNNI`).
    unsafe {
        let av = _mm256_loadu_si256(ab.add(A32x8::Q + 32 * k) as *const __m256i);
        for i in 0..R {
            let wv = bcast32(buf[i].as_ptr().add(4 * k));
            isum[i] = if VNNI {
                dpbusd(isum[i], wv, av)
            } else if U::SIGNED {
                let p = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
                _mm256_add_epi32(isum[i], _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
            } else {
                let p = _mm256_maddubs_epi16(wv, av);
                _mm256_add_epi32(isum[i], _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
            };
        }
    }
}

/// The 8-token prompt kernel of a 32-value type over [`A32x8`] activations (4-row tiles).
///
/// # Safety
/// As [`super::RegionFn`] with [`A32x8`] activations; needs AVX2, FMA, F16C (and AVX-512 VNNI/VL
/// when `VNNI`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn x8<U: Unpack32, const VNNI: bool>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe { X8::<U, VNNI>::region::<4>(g) }
}

/// A K-quant super-block in a uniform form for the prompt kernel: 256 unsigned values in
/// natural order and 16 sub-blocks of 16 with `w = d · sc · q − dmin · m`.
#[derive(Clone, Copy, Default)]
pub struct KForm {
    pub(crate) d: f32,
    pub(crate) dmin: f32,
    pub(crate) sc: [i32; 16],
    /// `m[2p] | m[2p + 1] << 16` (i16 pairs, matching the activation bsum pairs).
    pub(crate) mp: [i32; 8],
}

/// Unpacks one K-quant super-block to [`KForm`] and its 256 values into `buf`.
pub trait UnpackK {
    const WB: usize;
    /// `dmin == d` (the "min" is a fixed offset): combine in integers.
    const SAME_D: bool;
    /// # Safety
    /// `p` points at one whole super-block, `buf` at 256 writable bytes; the CPU has AVX2
    /// and F16C.
    unsafe fn unpack(p: *const u8, buf: *mut u8) -> KForm;
}

#[inline(always)]
fn pairs(m: &[i32; 16]) -> [i32; 8] {
    std::array::from_fn(|p| (m[2 * p] & 0xFFFF) | (m[2 * p + 1] << 16))
}

#[inline(always)]
unsafe fn st(buf: *mut u8, off: usize, v: __m256i) {
    // SAFETY: callers pass `buf` writable for `off + 32` bytes (`off + 32 ≤ 256` in the unpackers),
    // on a CPU with AVX2.
    unsafe {
        _mm256_storeu_si256(buf.add(off) as *mut __m256i, v);
    }
}

pub struct UQ4K<const FIFTH: bool>;
impl<const FIFTH: bool> UnpackK for UQ4K<FIFTH> {
    const WB: usize = if FIFTH { 176 } else { 144 };
    const SAME_D: bool = false;
    #[inline(always)]
    unsafe fn unpack(p: *const u8, buf: *mut u8) -> KForm {
        // SAFETY: `p` points at one whole block (the trait's contract) and every offset read is
        // inside that type's layout (`quants::blocks`); the CPU has AVX2 and F16C.
        unsafe {
            let hbits = _mm256_loadu_si256(p.add(16) as *const __m256i);
            for c in 0..4 {
                let (lo, hi) = q45_chunk::<FIFTH>(p, c, hbits);
                st(buf, 64 * c, lo);
                st(buf, 64 * c + 32, hi);
            }
            let mut sc = [0i32; 16];
            let mut m = [0i32; 16];
            for j in 0..8 {
                let (s, mm) = k45_scale_min::<FIFTH>(p, j);
                sc[2 * j] = s as i32;
                sc[2 * j + 1] = s as i32;
                m[2 * j] = mm as i32;
                m[2 * j + 1] = mm as i32;
            }
            KForm {
                d: f16c(p),
                dmin: f16c(p.add(2)),
                sc,
                mp: pairs(&m),
            }
        }
    }
}

pub struct UQ6K;
impl UnpackK for UQ6K {
    const WB: usize = 210;
    const SAME_D: bool = true;
    #[inline(always)]
    unsafe fn unpack(p: *const u8, buf: *mut u8) -> KForm {
        // SAFETY: `p` points at one whole block (the trait's contract) and every offset read is
        // inside that type's layout (`quants::blocks`); the CPU has AVX2 and F16C.
        unsafe {
            for h in 0..2 {
                let v = q6_half(p, h);
                for (k, vk) in v.into_iter().enumerate() {
                    st(buf, 128 * h + 32 * k, vk);
                }
            }
            let sc: [i32; 16] = std::array::from_fn(|i| q6_k_scale(*p.add(Q6K_SCALES + i)) as i32);
            let m: [i32; 16] = std::array::from_fn(|i| 32 * sc[i]);
            let d = f16c(p.add(208));
            KForm {
                d,
                dmin: d,
                sc,
                mp: pairs(&m),
            }
        }
    }
}

pub struct UQ23K<const THREE: bool>;
impl<const THREE: bool> UnpackK for UQ23K<THREE> {
    const WB: usize = if THREE { 110 } else { 84 };
    const SAME_D: bool = THREE;
    #[inline(always)]
    unsafe fn unpack(p: *const u8, buf: *mut u8) -> KForm {
        // SAFETY: `p` points at one whole block (the trait's contract) and every offset read is
        // inside that type's layout (`quants::blocks`); the CPU has AVX2 and F16C.
        unsafe {
            let qs_off = if THREE { 32 } else { 16 };
            let hm = _mm256_loadu_si256(p as *const __m256i);
            for h in 0..2 {
                let q = _mm256_loadu_si256(p.add(qs_off + 32 * h) as *const __m256i);
                for s in 0..4 {
                    st(buf, 128 * h + 32 * s, q23_part::<THREE>(q, hm, h, s));
                }
            }
            if THREE {
                let s8 = block_at::<BlockQ3K>(p).scales();
                let sc: [i32; 16] = std::array::from_fn(|i| s8[i] as i32);
                let m: [i32; 16] = std::array::from_fn(|i| 4 * sc[i]);
                let d = f16c(p.add(108));
                KForm {
                    d,
                    dmin: d,
                    sc,
                    mp: pairs(&m),
                }
            } else {
                let blk = block_at::<BlockQ2K>(p);
                let sc: [i32; 16] = std::array::from_fn(|i| blk.scale_min(i).0 as i32);
                let m: [i32; 16] = std::array::from_fn(|i| blk.scale_min(i).1 as i32);
                KForm {
                    d: f16c(p.add(80)),
                    dmin: f16c(p.add(82)),
                    sc,
                    mp: pairs(&m),
                }
            }
        }
    }
}

/// Prompt kernel for the K-quants over [`A256x8`] activations (one token per lane).
pub struct KX8<U, const VNNI: bool>(PhantomData<U>);

impl<U: UnpackK, const VNNI: bool> KX8<U, VNNI> {
    #[inline(always)]
    unsafe fn tile<const R: usize>(w: [*const u8; R], a: *const u8, nb: usize) -> [__m256; R] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a` at `nb` interleaved [`A256x8`]
        // blocks of one token group (the caller's region): block `b < nb` lies at `b` times the
        // block size, each read stays inside its block, `buf[i]` holds the 256 bytes the unpacker
        // writes and `kx8_step` reads; the CPU has the instructions used.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); R];
            let mut buf = [[0u8; 256]; R];
            for b in 0..nb {
                let ab = a.add(b * A256x8::BYTES);
                let dav = _mm256_loadu_ps(ab.add(A256x8::D) as *const f32);
                let mut kf = [KForm::default(); R];
                for i in 0..R {
                    kf[i] = U::unpack(w[i].add(b * U::WB), buf[i].as_mut_ptr());
                }
                let mut total = [_mm256_setzero_si256(); R];
                for s in 0..16 {
                    let mut part = [_mm256_setzero_si256(); R];
                    kx8_step::<VNNI, R>(ab, &buf, 4 * s, &mut part);
                    kx8_step::<VNNI, R>(ab, &buf, 4 * s + 1, &mut part);
                    kx8_step::<VNNI, R>(ab, &buf, 4 * s + 2, &mut part);
                    kx8_step::<VNNI, R>(ab, &buf, 4 * s + 3, &mut part);
                    for i in 0..R {
                        let sc = _mm256_set1_epi32(kf[i].sc[s]);
                        total[i] = _mm256_add_epi32(total[i], _mm256_mullo_epi32(part[i], sc));
                    }
                }
                for i in 0..R {
                    let mut msum = _mm256_setzero_si256();
                    for p in 0..8 {
                        let bs =
                            _mm256_loadu_si256(ab.add(A256x8::BSUMS + 32 * p) as *const __m256i);
                        let mv = _mm256_set1_epi32(kf[i].mp[p]);
                        msum = _mm256_add_epi32(msum, _mm256_madd_epi16(bs, mv));
                    }
                    let dd = _mm256_mul_ps(_mm256_set1_ps(kf[i].d), dav);
                    if U::SAME_D {
                        let s = _mm256_sub_epi32(total[i], msum);
                        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), dd, acc[i]);
                    } else {
                        let dm = _mm256_mul_ps(_mm256_set1_ps(kf[i].dmin), dav);
                        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total[i]), dd, acc[i]);
                        acc[i] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), dm, acc[i]);
                    }
                }
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn region<const R: usize>(g: &Region) {
        // SAFETY: the caller guarantees the region (`# Safety`: `nb` weight blocks at each row
        // pointer, the activation blocks of every token, the outputs), and every offset below stays
        // inside it; the CPU has the features used.
        unsafe {
            for gi in 0..g.tokens.div_ceil(8) {
                let a = g.a.add(gi * g.a_stride);
                let t0 = 8 * gi;
                let mut r0 = 0;
                while r0 + R <= g.rows {
                    let w: [*const u8; R] = std::array::from_fn(|i| g.w.add((r0 + i) * g.w_stride));
                    let out = Self::tile::<R>(w, a, g.nb);
                    for (i, v) in out.iter().enumerate() {
                        store_lanes(g, r0 + i, t0, *v);
                    }
                    r0 += R;
                }
                while r0 < g.rows {
                    let out = Self::tile::<1>([g.w.add(r0 * g.w_stride)], a, g.nb);
                    store_lanes(g, r0, t0, out[0]);
                    r0 += 1;
                }
            }
        }
    }
}

/// One 4-value group `g` of a [`KX8`] super-block for every row.
#[inline(always)]
unsafe fn kx8_step<const VNNI: bool, const R: usize>(
    ab: *const u8,
    buf: &[[u8; 256]; R],
    g: usize,
    part: &mut [__m256i; R],
) {
    // SAFETY: `ab` points at one whole `A256x8` block and `g < 64`, so the 32 bytes read at `Q +
    // 32g` are inside it; `buf[i]` holds 256 bytes; the CPU has AVX2 (and VNNI when `VNNI`).
    unsafe {
        let av = _mm256_loadu_si256(ab.add(A256x8::Q + 32 * g) as *const __m256i);
        for i in 0..R {
            let wv = bcast32(buf[i].as_ptr().add(4 * g));
            part[i] = if VNNI {
                dpbusd(part[i], wv, av)
            } else {
                let p = _mm256_maddubs_epi16(wv, av);
                _mm256_add_epi32(part[i], _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
            };
        }
    }
}

/// Stores lane `t` of `v` to `y[t0 + t, r]` for the tokens that exist.
#[inline(always)]
unsafe fn store_lanes(g: &Region, r: usize, t0: usize, v: __m256) {
    // SAFETY: lanes `t < tokens − t0` of row `r` are outputs of the region (the caller's contract).
    unsafe {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        for (t, l) in lanes.iter().enumerate().take(g.tokens - t0) {
            *g.y.add((t0 + t) * g.y_stride + r) = *l;
        }
    }
}

/// The 8-token prompt kernel of a K-quant over [`A256x8`] activations (4-row tiles).
///
/// # Safety
/// As [`super::RegionFn`] with [`A256x8`] activations; needs AVX2, FMA, F16C (and AVX-512 VNNI/VL
/// when `VNNI`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn kx8<U: UnpackK, const VNNI: bool>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe { KX8::<U, VNNI>::region::<4>(g) }
}
