//! Quantized KV-cache rows: Q8_0 and Q4_0 blocks of [`QK`] values along a head.
//!
//! Layouts are the GGUF block types ([`BlockQ8_0`]: f16 scale `d` + 32 signed codes,
//! `x = d·q`; [`BlockQ4_0`]: f16 scale + 16 bytes of nibbles, `x = d·(n − 8)`, byte `j` holding
//! value `j` low and value `j + 16` high). Rows are quantized when written with the reference
//! rounding of [`crate::quantize_row`] (`d = amax/127` for Q8_0, `d = max/−8` for Q4_0).
//!
//! Kernels (every one with its scalar twin in this file, chosen once per process):
//! - [`dot_q8_0`] / [`dot_q4_0`]: `Σ_d q[d]·k[d]` of a query head already rounded to Q8_0
//!   against a Q8_0 / Q4_0 key head. Per block the integer sum `Σ qa·qk` is exact (AVX2:
//!   `vpsignb` + `vpmaddubsw` + `vpmaddwd`; AVX-512 VNNI: 256-bit `vpdpbusd`), then
//!   `acc += isum · (d_q·d_k)` in f32, block after block, in the same order at every level: the
//!   levels are bit-identical to the scalar twin (tested).
//! - [`dot_f32_q8_0`] / [`dot_f32_q4_0`]: the same dot with the query kept in f32, each key
//!   block dequantized in registers (16 lanes, one plain source per level, bit-identical).
//!   The model's decode attention uses these: rounding the query to 8 bits too costs
//!   accuracy (smollm2, teacher-forced: one argmax flip at a 0.8-nat margin with the integer
//!   dot, none with the f32 query) and buys nothing measurable, decode attention being bound
//!   by reading the cache.
//! - [`axpy_q8_0`] / [`axpy_q4_0`]: `out[i] += w·v[i]` dequantizing on the fly
//!   (`(w·d)·q` per value), and [`dequantize_q8_0`] / [`dequantize_q4_0`]: one plain source
//!   compiled per level, element-wise (no FMA contraction in Rust): bit-identical too.

use crate::cpu::{level, Level};
use crate::quants::blocks::f16_le;
use crate::quants::legacy::{quant_q4_0, quant_q8_0};
pub use crate::quants::{BlockQ4_0, BlockQ8_0};

/// Values per block.
pub const QK: usize = 32;

fn check_blocks(values: usize, blocks: usize, what: &str) {
    assert!(
        values == blocks * QK,
        "{what}: {values} values for {blocks} blocks of {QK}"
    );
}

/// Rounds `src` (a multiple of [`QK`] values) to `src.len() / 32` Q8_0 blocks.
pub fn quantize_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    check_blocks(src.len(), dst.len(), "quantize_q8_0");
    for (x, b) in src.chunks_exact(QK).zip(dst) {
        quant_q8_0(x, b);
    }
}

/// Rounds `src` (a multiple of [`QK`] values) to `src.len() / 32` Q4_0 blocks.
pub fn quantize_q4_0(src: &[f32], dst: &mut [BlockQ4_0]) {
    check_blocks(src.len(), dst.len(), "quantize_q4_0");
    for (x, b) in src.chunks_exact(QK).zip(dst) {
        quant_q4_0(x, b);
    }
}

// ------------------------------------------------------------------ plain sources

#[inline(always)]
fn isum_q8_scalar(a: &BlockQ8_0, b: &[i8; QK]) -> i32 {
    let mut s = 0i32;
    for (x, y) in a.qs.iter().zip(b) {
        s += (*x as i8 as i32) * (*y as i32);
    }
    s
}

#[inline(always)]
fn codes_q8(b: &BlockQ8_0) -> [i8; QK] {
    b.qs.map(|x| x as i8)
}

#[inline(always)]
fn codes_q4(b: &BlockQ4_0) -> [i8; QK] {
    let mut c = [0i8; QK];
    for (j, &x) in b.qs.iter().enumerate() {
        c[j] = (x & 0x0F) as i8 - 8;
        c[j + 16] = (x >> 4) as i8 - 8;
    }
    c
}

fn dot_q8_0_scalar(q: &[BlockQ8_0], k: &[BlockQ8_0]) -> f32 {
    let mut acc = 0f32;
    for (a, b) in q.iter().zip(k) {
        let s = isum_q8_scalar(a, &codes_q8(b));
        acc += s as f32 * (f16_le(a.d) * f16_le(b.d));
    }
    acc
}

fn dot_q4_0_scalar(q: &[BlockQ8_0], k: &[BlockQ4_0]) -> f32 {
    let mut acc = 0f32;
    for (a, b) in q.iter().zip(k) {
        let s = isum_q8_scalar(a, &codes_q4(b));
        acc += s as f32 * (f16_le(a.d) * f16_le(b.d));
    }
    acc
}

/// `Σ q·k` of an f32 query against Q8_0 keys: per block 16 lanes `q[i]·k[i] + q[i+16]·k[i+16]`
/// scaled by the block's `d` into 16 running sums, added in order at the end (element-wise
/// lanes: the same operations at every level).
#[inline(always)]
fn dotf_q8_body(q: &[f32], k: &[BlockQ8_0]) -> f32 {
    let mut acc = [0f32; 16];
    for (x, b) in q.chunks_exact(QK).zip(k) {
        let d = f16_le(b.d);
        for i in 0..16 {
            let t = x[i] * (b.qs[i] as i8 as f32) + x[i + 16] * (b.qs[i + 16] as i8 as f32);
            acc[i] += d * t;
        }
    }
    reduce16(&acc)
}

/// As [`dotf_q8_body`] for Q4_0 keys (byte `i` holds values `i` and `i + 16`).
#[inline(always)]
fn dotf_q4_body(q: &[f32], k: &[BlockQ4_0]) -> f32 {
    let mut acc = [0f32; 16];
    for (x, b) in q.chunks_exact(QK).zip(k) {
        let d = f16_le(b.d);
        for i in 0..16 {
            let lo = ((b.qs[i] & 0x0F) as i32 - 8) as f32;
            let hi = ((b.qs[i] >> 4) as i32 - 8) as f32;
            acc[i] += d * (x[i] * lo + x[i + 16] * hi);
        }
    }
    reduce16(&acc)
}

/// Pairwise sum of 16 lanes in a fixed order.
#[inline(always)]
fn reduce16(a: &[f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = a[i] + a[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

#[inline(always)]
fn axpy_q8_body(out: &mut [f32], w: f32, v: &[BlockQ8_0]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(v) {
        let s = w * f16_le(b.d);
        for (y, &q) in o.iter_mut().zip(&b.qs) {
            *y += s * (q as i8 as f32);
        }
    }
}

#[inline(always)]
fn axpy_q4_body(out: &mut [f32], w: f32, v: &[BlockQ4_0]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(v) {
        let s = w * f16_le(b.d);
        let (lo, hi) = o.split_at_mut(16);
        for j in 0..16 {
            lo[j] += s * (((b.qs[j] & 0x0F) as i32 - 8) as f32);
            hi[j] += s * (((b.qs[j] >> 4) as i32 - 8) as f32);
        }
    }
}

#[inline(always)]
fn deq_q8_body(src: &[BlockQ8_0], dst: &mut [f32]) {
    for (o, b) in dst.chunks_exact_mut(QK).zip(src) {
        let d = f16_le(b.d);
        for (y, &q) in o.iter_mut().zip(&b.qs) {
            *y = (q as i8 as f32) * d;
        }
    }
}

#[inline(always)]
fn deq_q4_body(src: &[BlockQ4_0], dst: &mut [f32]) {
    for (o, b) in dst.chunks_exact_mut(QK).zip(src) {
        let d = f16_le(b.d);
        let (lo, hi) = o.split_at_mut(16);
        for j in 0..16 {
            lo[j] = (((b.qs[j] & 0x0F) as i32 - 8) as f32) * d;
            hi[j] = (((b.qs[j] >> 4) as i32 - 8) as f32) * d;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// Horizontal sum of eight i32 lanes (exact).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// The 32 Q4_0 codes of `b` minus 8, as signed bytes in value order.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn q4_codes(b: &BlockQ4_0) -> __m256i {
        // SAFETY: `qs` is 16 readable bytes; unaligned load.
        let x = unsafe { _mm_loadu_si128(b.qs.as_ptr() as *const __m128i) };
        let m = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(x, m);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), m);
        _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8))
    }

    /// `Σ a·b` over 32 signed bytes with `vpmaddubsw` (|b| unsigned × sign-adjusted a: pair
    /// sums at most 2·127·128, no saturation; Q8_0 codes are within ±127).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn isum_avx2(a: __m256i, b: __m256i) -> i32 {
        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(b), _mm256_sign_epi8(a, b));
        hsum(_mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }

    /// `Σ a·b` over 32 signed bytes with 256-bit `vpdpbusd` (|b| unsigned × sign-adjusted a).
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    #[inline]
    fn isum_vnni(a: __m256i, b: __m256i) -> i32 {
        let p = _mm256_dpbusd_epi32(
            _mm256_setzero_si256(),
            _mm256_abs_epi8(b),
            _mm256_sign_epi8(a, b),
        );
        hsum(p)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn load(b: &[u8; 32]) -> __m256i {
        // SAFETY: 32 readable bytes; unaligned load.
        unsafe { _mm256_loadu_si256(b.as_ptr() as *const __m256i) }
    }

    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8_0_avx2(q: &[BlockQ8_0], k: &[BlockQ8_0]) -> f32 {
        let mut acc = 0f32;
        for (a, b) in q.iter().zip(k) {
            let s = isum_avx2(load(&a.qs), load(&b.qs));
            acc += s as f32 * (f16_le(a.d) * f16_le(b.d));
        }
        acc
    }

    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_0_avx2(q: &[BlockQ8_0], k: &[BlockQ4_0]) -> f32 {
        let mut acc = 0f32;
        for (a, b) in q.iter().zip(k) {
            let s = isum_avx2(load(&a.qs), q4_codes(b));
            acc += s as f32 * (f16_le(a.d) * f16_le(b.d));
        }
        acc
    }

    /// # Safety
    /// The CPU has AVX-512F/VL and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn dot_q8_0_vnni(q: &[BlockQ8_0], k: &[BlockQ8_0]) -> f32 {
        let mut acc = 0f32;
        for (a, b) in q.iter().zip(k) {
            let s = isum_vnni(load(&a.qs), load(&b.qs));
            acc += s as f32 * (f16_le(a.d) * f16_le(b.d));
        }
        acc
    }

    /// # Safety
    /// As [`dot_q8_0_vnni`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn dot_q4_0_vnni(q: &[BlockQ8_0], k: &[BlockQ4_0]) -> f32 {
        let mut acc = 0f32;
        for (a, b) in q.iter().zip(k) {
            let s = isum_vnni(load(&a.qs), q4_codes(b));
            acc += s as f32 * (f16_le(a.d) * f16_le(b.d));
        }
        acc
    }

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dotf_q8_avx2(q: &[f32], k: &[BlockQ8_0]) -> f32 {
        dotf_q8_body(q, k)
    }
    /// # Safety
    /// As [`dotf_q8_avx2`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dotf_q4_avx2(q: &[f32], k: &[BlockQ4_0]) -> f32 {
        dotf_q4_body(q, k)
    }
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn dotf_q8_avx512(q: &[f32], k: &[BlockQ8_0]) -> f32 {
        dotf_q8_body(q, k)
    }
    /// # Safety
    /// As [`dotf_q8_avx512`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn dotf_q4_avx512(q: &[f32], k: &[BlockQ4_0]) -> f32 {
        dotf_q4_body(q, k)
    }
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_q8_avx2(out: &mut [f32], w: f32, v: &[BlockQ8_0]) {
        axpy_q8_body(out, w, v)
    }
    /// # Safety
    /// As [`axpy_q8_avx2`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_q4_avx2(out: &mut [f32], w: f32, v: &[BlockQ4_0]) {
        axpy_q4_body(out, w, v)
    }
    /// # Safety
    /// As [`axpy_q8_avx2`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn deq_q8_avx2(src: &[BlockQ8_0], dst: &mut [f32]) {
        deq_q8_body(src, dst)
    }
    /// # Safety
    /// As [`axpy_q8_avx2`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn deq_q4_avx2(src: &[BlockQ4_0], dst: &mut [f32]) {
        deq_q4_body(src, dst)
    }
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn axpy_q8_avx512(out: &mut [f32], w: f32, v: &[BlockQ8_0]) {
        axpy_q8_body(out, w, v)
    }
    /// # Safety
    /// As [`axpy_q8_avx512`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn axpy_q4_avx512(out: &mut [f32], w: f32, v: &[BlockQ4_0]) {
        axpy_q4_body(out, w, v)
    }
    /// # Safety
    /// As [`axpy_q8_avx512`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn deq_q8_avx512(src: &[BlockQ8_0], dst: &mut [f32]) {
        deq_q8_body(src, dst)
    }
    /// # Safety
    /// As [`axpy_q8_avx512`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn deq_q4_avx512(src: &[BlockQ4_0], dst: &mut [f32]) {
        deq_q4_body(src, dst)
    }
}

// ------------------------------------------------------------------ dispatch

type DotQ8 = fn(&[BlockQ8_0], &[BlockQ8_0]) -> f32;
type DotQ4 = fn(&[BlockQ8_0], &[BlockQ4_0]) -> f32;
type DotF8 = fn(&[f32], &[BlockQ8_0]) -> f32;
type DotF4 = fn(&[f32], &[BlockQ4_0]) -> f32;
type AxpyQ8 = fn(&mut [f32], f32, &[BlockQ8_0]);
type AxpyQ4 = fn(&mut [f32], f32, &[BlockQ4_0]);
type DeqQ8 = fn(&[BlockQ8_0], &mut [f32]);
type DeqQ4 = fn(&[BlockQ4_0], &mut [f32]);

/// The kernels of one level.
#[derive(Clone, Copy)]
struct Fns {
    dot8: DotQ8,
    dot4: DotQ4,
    dotf8: DotF8,
    dotf4: DotF4,
    axpy8: AxpyQ8,
    axpy4: AxpyQ4,
    deq8: DeqQ8,
    deq4: DeqQ4,
}

fn fns(level: Level) -> Fns {
    assert!(
        level.available(),
        "{level} kernels are not available on this CPU"
    );
    let mut f = Fns {
        dot8: dot_q8_0_scalar,
        dot4: dot_q4_0_scalar,
        dotf8: dotf_q8_body,
        dotf4: dotf_q4_body,
        axpy8: axpy_q8_body,
        axpy4: axpy_q4_body,
        deq8: deq_q8_body,
        deq4: deq_q4_body,
    };
    #[cfg(target_arch = "x86_64")]
    {
        // Every level at or above Avx2 has AVX2 and FMA; Avx512 adds AVX-512F/BW/VL and
        // Avx512Vnni VNNI (`level.available()` checked above).
        if level >= Level::Avx2 {
            // SAFETY: AVX2 and FMA are present (above), for this and the next seven.
            f.dot8 = |q, k| unsafe { x86::dot_q8_0_avx2(q, k) };
            // SAFETY: as above.
            f.dot4 = |q, k| unsafe { x86::dot_q4_0_avx2(q, k) };
            // SAFETY: as above.
            f.dotf8 = |q, k| unsafe { x86::dotf_q8_avx2(q, k) };
            // SAFETY: as above.
            f.dotf4 = |q, k| unsafe { x86::dotf_q4_avx2(q, k) };
            // SAFETY: as above.
            f.axpy8 = |o, w, v| unsafe { x86::axpy_q8_avx2(o, w, v) };
            // SAFETY: as above.
            f.axpy4 = |o, w, v| unsafe { x86::axpy_q4_avx2(o, w, v) };
            // SAFETY: as above.
            f.deq8 = |s, d| unsafe { x86::deq_q8_avx2(s, d) };
            // SAFETY: as above.
            f.deq4 = |s, d| unsafe { x86::deq_q4_avx2(s, d) };
        }
        if level >= Level::Avx512 {
            // SAFETY: AVX-512F is present (above), for this and the next five.
            f.dotf8 = |q, k| unsafe { x86::dotf_q8_avx512(q, k) };
            // SAFETY: as above.
            f.dotf4 = |q, k| unsafe { x86::dotf_q4_avx512(q, k) };
            // SAFETY: as above.
            f.axpy8 = |o, w, v| unsafe { x86::axpy_q8_avx512(o, w, v) };
            // SAFETY: as above.
            f.axpy4 = |o, w, v| unsafe { x86::axpy_q4_avx512(o, w, v) };
            // SAFETY: as above.
            f.deq8 = |s, d| unsafe { x86::deq_q8_avx512(s, d) };
            // SAFETY: as above.
            f.deq4 = |s, d| unsafe { x86::deq_q4_avx512(s, d) };
        }
        if level >= Level::Avx512Vnni {
            // SAFETY: AVX-512F/BW/VL and VNNI are present (above).
            f.dot8 = |q, k| unsafe { x86::dot_q8_0_vnni(q, k) };
            // SAFETY: as above.
            f.dot4 = |q, k| unsafe { x86::dot_q4_0_vnni(q, k) };
        }
    }
    f
}

fn current() -> &'static Fns {
    use std::sync::OnceLock;
    static F: OnceLock<Fns> = OnceLock::new();
    F.get_or_init(|| fns(level()))
}

fn check_dot(q: usize, k: usize) {
    assert!(q == k, "quantized KV dot: {q} query blocks, {k} key blocks");
}

/// `Σ q·k` over `q.len()` blocks (as many as `k`), at `level`.
pub fn dot_q8_0_at(level: Level, q: &[BlockQ8_0], k: &[BlockQ8_0]) -> f32 {
    check_dot(q.len(), k.len());
    (fns(level).dot8)(q, k)
}

/// `Σ q·k` of Q8_0 query blocks against Q4_0 key blocks, at `level`.
pub fn dot_q4_0_at(level: Level, q: &[BlockQ8_0], k: &[BlockQ4_0]) -> f32 {
    check_dot(q.len(), k.len());
    (fns(level).dot4)(q, k)
}

/// `Σ q·k` of an f32 query (`k.len() · 32` values) against Q8_0 keys, dequantizing per
/// block, at `level`.
pub fn dot_f32_q8_0_at(level: Level, q: &[f32], k: &[BlockQ8_0]) -> f32 {
    check_blocks(q.len(), k.len(), "dot_f32_q8_0");
    (fns(level).dotf8)(q, k)
}

/// `Σ q·k` of an f32 query against Q4_0 keys, at `level`.
pub fn dot_f32_q4_0_at(level: Level, q: &[f32], k: &[BlockQ4_0]) -> f32 {
    check_blocks(q.len(), k.len(), "dot_f32_q4_0");
    (fns(level).dotf4)(q, k)
}

/// [`dot_f32_q8_0_at`] at the process-wide level.
#[inline]
pub fn dot_f32_q8_0(q: &[f32], k: &[BlockQ8_0]) -> f32 {
    check_blocks(q.len(), k.len(), "dot_f32_q8_0");
    (current().dotf8)(q, k)
}

/// [`dot_f32_q4_0_at`] at the process-wide level.
#[inline]
pub fn dot_f32_q4_0(q: &[f32], k: &[BlockQ4_0]) -> f32 {
    check_blocks(q.len(), k.len(), "dot_f32_q4_0");
    (current().dotf4)(q, k)
}

/// `out[i] += w·v[i]` (`out`: `v.len() · 32` values), at `level`.
pub fn axpy_q8_0_at(level: Level, out: &mut [f32], w: f32, v: &[BlockQ8_0]) {
    check_blocks(out.len(), v.len(), "axpy_q8_0");
    (fns(level).axpy8)(out, w, v)
}

/// `out[i] += w·v[i]` for Q4_0 values, at `level`.
pub fn axpy_q4_0_at(level: Level, out: &mut [f32], w: f32, v: &[BlockQ4_0]) {
    check_blocks(out.len(), v.len(), "axpy_q4_0");
    (fns(level).axpy4)(out, w, v)
}

/// `dst = src` as f32 (`dst`: `src.len() · 32` values), at `level`.
pub fn dequantize_q8_0_at(level: Level, src: &[BlockQ8_0], dst: &mut [f32]) {
    check_blocks(dst.len(), src.len(), "dequantize_q8_0");
    (fns(level).deq8)(src, dst)
}

/// `dst = src` as f32 for Q4_0 blocks, at `level`.
pub fn dequantize_q4_0_at(level: Level, src: &[BlockQ4_0], dst: &mut [f32]) {
    check_blocks(dst.len(), src.len(), "dequantize_q4_0");
    (fns(level).deq4)(src, dst)
}

/// [`dot_q8_0_at`] at the process-wide level.
#[inline]
pub fn dot_q8_0(q: &[BlockQ8_0], k: &[BlockQ8_0]) -> f32 {
    check_dot(q.len(), k.len());
    (current().dot8)(q, k)
}

/// [`dot_q4_0_at`] at the process-wide level.
#[inline]
pub fn dot_q4_0(q: &[BlockQ8_0], k: &[BlockQ4_0]) -> f32 {
    check_dot(q.len(), k.len());
    (current().dot4)(q, k)
}

/// [`axpy_q8_0_at`] at the process-wide level.
#[inline]
pub fn axpy_q8_0(out: &mut [f32], w: f32, v: &[BlockQ8_0]) {
    check_blocks(out.len(), v.len(), "axpy_q8_0");
    (current().axpy8)(out, w, v)
}

/// [`axpy_q4_0_at`] at the process-wide level.
#[inline]
pub fn axpy_q4_0(out: &mut [f32], w: f32, v: &[BlockQ4_0]) {
    check_blocks(out.len(), v.len(), "axpy_q4_0");
    (current().axpy4)(out, w, v)
}

/// [`dequantize_q8_0_at`] at the process-wide level.
#[inline]
pub fn dequantize_q8_0(src: &[BlockQ8_0], dst: &mut [f32]) {
    check_blocks(dst.len(), src.len(), "dequantize_q8_0");
    (current().deq8)(src, dst)
}

/// [`dequantize_q4_0_at`] at the process-wide level.
#[inline]
pub fn dequantize_q4_0(src: &[BlockQ4_0], dst: &mut [f32]) {
    check_blocks(dst.len(), src.len(), "dequantize_q4_0");
    (current().deq4)(src, dst)
}
