//! Float matrix products: `y[t, r] = Σ_c x[t, c] · W[r, c]` for F32, F16 and BF16 weights.
//!
//! Shapes: `W`: `[rows, cols]` in its file type (row-major, as stored), `x`: `[n, cols]` f32,
//! `y`: `[n, rows]` f32.
//!
//! ## The arithmetic (the same at every level, for every `n`)
//! Every output is computed alone, in one fixed order: 16 partial sums, partial `j` the chain
//! of fused multiply-adds `p_j = fma(W[r, c], x[t, c], p_j)` over `c ≡ j (mod 16)` in increasing
//! `c` (the last block padded with zeros to 16 columns), then the fixed tree
//! `s8[j] = p[j] + p[j+8]`, `s4[j] = s8[j] + s8[j+4]`, `s2[j] = s4[j] + s4[j+2]`,
//! `y = s2[0] + s2[1]`. [`scalar`] spells it out one output at a time; the SIMD levels hold
//! the 16 partials in one AVX-512 register or two AVX2 registers and compute a tile of
//! rows × tokens at once ([`TILE_512`], [`TILE_256`]) (each weight vector serves `T` tokens, each activation
//! vector `R` rows), but every output still sees exactly the same operations, so a token's
//! results never depend on `n`, on the tile it lands in, on the thread split or on the level
//! (tests check bit equality with the scalar twin).
//!
//! ## The loop
//! Tasks on the kernels pool are (token chunk × row part): a row part is [`ROW_PART`] rows
//! (its weights stay in L2 while a chunk of tokens goes past), a token chunk as many tokens
//! as keep their activations within [`CHUNK_BYTES`]. Inside a task: tiles of `R × T`, tails
//! with narrower tiles.

use half::{bf16, f16};

use crate::cpu::Level;
use crate::pool::{num_threads, parallel_for};

/// Most matrices one multi-product ([`gemm_multi_at`], `matmul_multi`) takes at once.
pub const MAX_MULTI: usize = 4;

/// Rows × tokens of a register tile at the AVX-512 levels (24 accumulators of 32).
pub const TILE_512: (usize, usize) = (4, 6);
/// Rows × tokens of a register tile at the AVX2 level (12 accumulators of 16, two registers
/// each).
pub const TILE_256: (usize, usize) = (2, 3);
/// Token chunks are a multiple of this (a multiple of every tile's tokens).
const T: usize = 6;
/// Partial sums per output (one AVX-512 register).
pub const LANES: usize = 16;
/// Rows per task.
const ROW_PART: usize = 64;
/// Activation bytes one task's token chunk may hold.
const CHUNK_BYTES: usize = 192 * 1024;

/// Weight element types of the float path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatType {
    F32,
    F16,
    Bf16,
}

impl FloatType {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            FloatType::F32 => 4,
            FloatType::F16 | FloatType::Bf16 => 2,
        }
    }
}

/// A float weight matrix as stored: `rows * cols` values of `ty`, row-major, any alignment.
#[derive(Clone, Copy, Debug)]
pub struct FloatMatrix<'a> {
    pub ty: FloatType,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl FloatMatrix<'_> {
    /// Value `(r, c)` widened to f32 (exact for every type).
    #[inline(always)]
    fn get(&self, r: usize, c: usize) -> f32 {
        let i = r * self.cols + c;
        match self.ty {
            FloatType::F32 => {
                f32::from_le_bytes(self.data[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            }
            FloatType::F16 => {
                f16::from_le_bytes(self.data[2 * i..2 * i + 2].try_into().expect("2 bytes"))
                    .to_f32()
            }
            FloatType::Bf16 => {
                bf16::from_le_bytes(self.data[2 * i..2 * i + 2].try_into().expect("2 bytes"))
                    .to_f32()
            }
        }
    }
}

/// Panics unless the shapes fit: what the unsafe kernels rely on.
fn check(w: &FloatMatrix, x: &[f32], n: usize, y: &[f32]) {
    let need = w
        .rows
        .checked_mul(w.cols)
        .and_then(|v| v.checked_mul(w.ty.size()))
        .expect("gemm: rows x cols overflows");
    assert!(
        w.data.len() >= need,
        "gemm: {:?} weights [{}, {}] need {need} bytes, the data has {}",
        w.ty,
        w.rows,
        w.cols,
        w.data.len()
    );
    assert_eq!(
        Some(x.len()),
        n.checked_mul(w.cols),
        "gemm: x has {} values, not [n = {n}, cols = {}]",
        x.len(),
        w.cols
    );
    assert_eq!(
        Some(y.len()),
        n.checked_mul(w.rows),
        "gemm: y has {} values, not [n = {n}, rows = {}]",
        y.len(),
        w.rows
    );
}

/// `y = x · Wᵀ` at `level` (which must be available), threaded on the kernels pool.
/// Panics on mismatched shapes.
pub fn gemm_at(level: Level, w: &FloatMatrix, x: &[f32], n: usize, y: &mut [f32]) {
    gemm_multi_at(level, std::slice::from_ref(w), x, n, &mut [y])
}

/// Several products of one input, `ys[i] = x · ws[i]ᵀ` (q, k and v), as one job on the pool:
/// the same arithmetic as [`gemm_at`] for each (same bits), one hand-off instead of one per
/// matrix. At most [`MAX_MULTI`] matrices (nothing is allocated). Panics on mismatched
/// shapes or counts.
pub fn gemm_multi_at(level: Level, ws: &[FloatMatrix], x: &[f32], n: usize, ys: &mut [&mut [f32]]) {
    assert!(
        level.available(),
        "{level} kernels are not available on this CPU"
    );
    assert_eq!(
        ws.len(),
        ys.len(),
        "gemm: {} matrices, {} outputs",
        ws.len(),
        ys.len()
    );
    for (w, y) in ws.iter().zip(ys.iter()) {
        check(w, x, n, y);
    }
    if n == 0 {
        return;
    }
    if level == Level::Scalar {
        for (w, y) in ws.iter().zip(ys.iter_mut()) {
            scalar::gemm(w, x, n, y);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // All matrices share `cols` only if the caller says so; each gets its own chunking.
        struct Job<'a> {
            w: FloatMatrix<'a>,
            out: OutPtr,
            chunk: usize,
            n_parts: usize,
            first: usize,
        }
        let mut jobs: [Option<Job>; MAX_MULTI] = [None, None, None, None];
        let mut n_jobs = 0;
        let mut n_tasks = 0;
        for (w, y) in ws.iter().zip(ys.iter_mut()) {
            if w.rows == 0 {
                continue;
            }
            let chunk = (CHUNK_BYTES / (4 * w.cols.max(1)) / T * T).max(T);
            let n_parts = w.rows.div_ceil(ROW_PART);
            jobs[n_jobs] = Some(Job {
                w: *w,
                out: OutPtr(y.as_mut_ptr()),
                chunk,
                n_parts,
                first: n_tasks,
            });
            n_jobs += 1;
            n_tasks += n.div_ceil(chunk) * n_parts;
        }
        let task = |i: usize| {
            let j = jobs[..n_jobs]
                .iter()
                .flatten()
                .rev()
                .find(|j| j.first <= i)
                .expect("task 0 belongs to the first job");
            let i = i - j.first;
            let (c, p) = (i / j.n_parts, i % j.n_parts);
            let (t0, t1) = (c * j.chunk, ((c + 1) * j.chunk).min(n));
            let (r0, r1) = (p * ROW_PART, ((p + 1) * ROW_PART).min(j.w.rows));
            // SAFETY: shapes checked above (`check`); this task writes only
            // ys[job][t0..t1, r0..r1], disjoint from every other task's; the level's features
            // are present (asserted).
            unsafe { x86::region(level, &j.w, x, j.out.0, t0, t1, r0, r1) };
        };
        if n_tasks <= 1 || num_threads() == 1 {
            (0..n_tasks).for_each(task);
        } else {
            parallel_for(n_tasks, &task);
        }
    }
}

/// A raw output pointer the tasks share (each writes a disjoint set of elements).
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements and `parallel_for` returns only after all finished.
unsafe impl Sync for OutPtr {}
// SAFETY: as above.
unsafe impl Send for OutPtr {}

/// The scalar twin: the arithmetic of the module documentation, one output at a time.
pub mod scalar {
    use super::{FloatMatrix, LANES};

    /// One output `Σ_c W[r, c] · x[c]` in the fixed order (16 fma chains, then the tree).
    pub fn dot(w: &FloatMatrix, r: usize, x: &[f32]) -> f32 {
        let cols = w.cols;
        let mut p = [0f32; LANES];
        let mut c0 = 0;
        while c0 < cols {
            for (j, pj) in p.iter_mut().enumerate() {
                let c = c0 + j;
                // The last block is padded with zeros: fma(0, 0, p) as the SIMD levels do.
                let (a, b) = if c < cols {
                    (w.get(r, c), x[c])
                } else {
                    (0.0, 0.0)
                };
                *pj = a.mul_add(b, *pj);
            }
            c0 += LANES;
        }
        let mut s8 = [0f32; 8];
        for j in 0..8 {
            s8[j] = p[j] + p[j + 8];
        }
        let mut s4 = [0f32; 4];
        for j in 0..4 {
            s4[j] = s8[j] + s8[j + 4];
        }
        let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
        s2[0] + s2[1]
    }

    /// The whole product, one thread.
    pub fn gemm(w: &FloatMatrix, x: &[f32], n: usize, y: &mut [f32]) {
        super::check(w, x, n, y);
        for t in 0..n {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            for r in 0..w.rows {
                y[t * w.rows + r] = dot(w, r, xt);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{FloatMatrix, FloatType, TILE_256, TILE_512};
    use crate::cpu::Level;

    /// Outputs `y[t0..t1, r0..r1]` (row stride `w.rows`).
    ///
    /// # Safety
    /// `w.data` holds `rows * cols` values of `w.ty`, `x` is `[n, cols]` with `t1 <= n`,
    /// `y` points to `[n, rows]` values with `r1 <= rows`, nothing else writes that region
    /// meanwhile, and the CPU has the features of `level` (AVX2+FMA+F16C; AVX-512F+BW+VL for
    /// the AVX-512 levels).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn region(
        level: Level,
        w: &FloatMatrix,
        x: &[f32],
        y: *mut f32,
        t0: usize,
        t1: usize,
        r0: usize,
        r1: usize,
    ) {
        let (tr, tt) = if level >= Level::Avx512 {
            TILE_512
        } else {
            TILE_256
        };
        // A tile's tokens stay in L1 while the part's weight rows stream past (from L2).
        let mut t = t0;
        while t < t1 {
            let nt = tt.min(t1 - t);
            let mut r = r0;
            while r < r1 {
                let nr = tr.min(r1 - r);
                // SAFETY: the tile lies inside the region (nr, nt clipped), the caller's
                // contract covers the rest.
                unsafe { tile_any(level, w, x, y, t, nt, r, nr) };
                r += nr;
            }
            t += nt;
        }
    }

    macro_rules! dispatch {
        ($f:ident, $nr:expr, $nt:expr, $($args:expr),*) => {
            match ($nr, $nt) {
                (4, 6) => $f::<4, 6>($($args),*),
                (4, 5) => $f::<4, 5>($($args),*),
                (4, 4) => $f::<4, 4>($($args),*),
                (4, 3) => $f::<4, 3>($($args),*),
                (4, 2) => $f::<4, 2>($($args),*),
                (4, 1) => $f::<4, 1>($($args),*),
                (3, 6) => $f::<3, 6>($($args),*),
                (3, 5) => $f::<3, 5>($($args),*),
                (3, 4) => $f::<3, 4>($($args),*),
                (3, 3) => $f::<3, 3>($($args),*),
                (3, 2) => $f::<3, 2>($($args),*),
                (3, 1) => $f::<3, 1>($($args),*),
                (2, 6) => $f::<2, 6>($($args),*),
                (2, 5) => $f::<2, 5>($($args),*),
                (2, 4) => $f::<2, 4>($($args),*),
                (2, 3) => $f::<2, 3>($($args),*),
                (2, 2) => $f::<2, 2>($($args),*),
                (2, 1) => $f::<2, 1>($($args),*),
                (1, 6) => $f::<1, 6>($($args),*),
                (1, 5) => $f::<1, 5>($($args),*),
                (1, 4) => $f::<1, 4>($($args),*),
                (1, 3) => $f::<1, 3>($($args),*),
                (1, 2) => $f::<1, 2>($($args),*),
                _ => $f::<1, 1>($($args),*),
            }
        };
    }

    /// One tile of `nr <= 4` rows from `r`, `nt <= 6` tokens from `t`.
    ///
    /// # Safety
    /// As [`region`], for the tile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_any(
        level: Level,
        w: &FloatMatrix,
        x: &[f32],
        y: *mut f32,
        t: usize,
        nt: usize,
        r: usize,
        nr: usize,
    ) {
        let rows = w.rows;
        let cols = w.cols;
        // SAFETY: token t < n, so x[t * cols..] starts inside x (the caller's contract).
        let xp = unsafe { x.as_ptr().add(t * cols) };
        // SAFETY: t < n and r < rows: inside the [n, rows] output.
        let yp = unsafe { y.add(t * rows + r) };
        // SAFETY: r < rows: row r starts inside the rows * cols weights.
        let wb = unsafe { w.data.as_ptr().add(r * cols * w.ty.size()) };
        if level >= Level::Avx512 {
            // SAFETY: AVX-512F/BW/VL present (the caller's contract for these levels).
            unsafe {
                match w.ty {
                    FloatType::F32 => dispatch!(tile512_f32, nr, nt, wb, xp, yp, cols, rows),
                    FloatType::F16 => dispatch!(tile512_f16, nr, nt, wb, xp, yp, cols, rows),
                    FloatType::Bf16 => dispatch!(tile512_bf16, nr, nt, wb, xp, yp, cols, rows),
                }
            }
        } else {
            // SAFETY: AVX2, FMA and F16C present (the caller's contract).
            unsafe {
                match w.ty {
                    FloatType::F32 => dispatch!(tile256_f32, nr, nt, wb, xp, yp, cols, rows),
                    FloatType::F16 => dispatch!(tile256_f16, nr, nt, wb, xp, yp, cols, rows),
                    FloatType::Bf16 => dispatch!(tile256_bf16, nr, nt, wb, xp, yp, cols, rows),
                }
            }
        }
    }

    /// The tree of the module documentation on the 16 partials `lo` (0..8) and `hi` (8..16).
    #[inline(always)]
    unsafe fn tree(lo: __m256, hi: __m256) -> f32 {
        // SAFETY: register-only AVX/SSE operations (AVX2 is present in every caller).
        unsafe {
            let s8 = _mm256_add_ps(lo, hi);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
            _mm_cvtss_f32(s1)
        }
    }

    /// Defines an AVX-512 tile for one weight type: `$load(ptr, k, mask)` gives 16 weights
    /// widened to f32 (`mask` selects the valid lanes of a last, partial block).
    macro_rules! tile512 {
        ($name:ident, $size:expr, $load:ident) => {
            /// # Safety
            /// `wb` points to `NR` rows of `cols` weights (row stride `cols`), `xp` to `NT`
            /// rows of `cols` activations, `yp` to `NT` output rows of stride `rows` with `NR`
            /// writable values each; AVX-512F/BW/VL and F16C are present.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
            unsafe fn $name<const NR: usize, const NT: usize>(
                wb: *const u8,
                xp: *const f32,
                yp: *mut f32,
                cols: usize,
                rows: usize,
            ) {
                let mut acc = [[_mm512_setzero_ps(); NT]; NR];
                let mut k = 0;
                while k < cols {
                    let left = cols - k;
                    let mask: __mmask16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
                    let mut xv = [_mm512_setzero_ps(); NT];
                    for (tt, v) in xv.iter_mut().enumerate() {
                        // SAFETY: lanes k..k+16 of token tt, masked to the row's end.
                        *v = unsafe { _mm512_maskz_loadu_ps(mask, xp.add(tt * cols + k)) };
                    }
                    for (rr, a) in acc.iter_mut().enumerate() {
                        // SAFETY: as above for weight row rr (byte offsets of `$size`-byte values).
                        let wv = unsafe { $load(wb.add((rr * cols + k) * $size), mask) };
                        for (tt, at) in a.iter_mut().enumerate() {
                            *at = _mm512_fmadd_ps(wv, xv[tt], *at);
                        }
                    }
                    k += 16;
                }
                for (rr, a) in acc.iter().enumerate() {
                    for (tt, at) in a.iter().enumerate() {
                        let lo = _mm512_castps512_ps256(*at);
                        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(*at), 1));
                        // SAFETY: output (token tt, row rr) of the tile, inside `y`.
                        unsafe { *yp.add(tt * rows + rr) = tree(lo, hi) };
                    }
                }
            }
        };
    }

    /// 16 f32 weights (masked lanes read as 0).
    #[inline(always)]
    unsafe fn load512_f32(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: the caller's tile contract (masked lanes are not read).
        unsafe { _mm512_maskz_loadu_ps(mask, p as *const f32) }
    }

    /// 16 f16 weights widened (masked lanes read as 0).
    #[inline(always)]
    unsafe fn load512_f16(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: as above; f16 → f32 is exact.
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p as *const i16)) }
    }

    /// 16 bf16 weights widened (masked lanes read as 0).
    #[inline(always)]
    unsafe fn load512_bf16(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: as above; bf16 → f32 is a 16-bit shift.
        unsafe {
            let h = _mm256_maskz_loadu_epi16(mask, p as *const i16);
            _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
        }
    }

    tile512!(tile512_f32, 4, load512_f32);
    tile512!(tile512_f16, 2, load512_f16);
    tile512!(tile512_bf16, 2, load512_bf16);

    /// Lanes `k..k + 16` of a row of `cols` values, as (lanes 0..8, lanes 8..16), zeros past
    /// the end, through `load8(ptr, count)`.
    macro_rules! tile256 {
        ($name:ident, $size:expr, $load:ident) => {
            /// # Safety
            /// As the AVX-512 tiles, with AVX2, FMA and F16C present.
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn $name<const NR: usize, const NT: usize>(
                wb: *const u8,
                xp: *const f32,
                yp: *mut f32,
                cols: usize,
                rows: usize,
            ) {
                let mut acc = [[[_mm256_setzero_ps(); 2]; NT]; NR];
                let mut k = 0;
                while k < cols {
                    let left = cols - k;
                    let n0 = left.min(8);
                    let n1 = left.saturating_sub(8).min(8);
                    let mut xv = [[_mm256_setzero_ps(); 2]; NT];
                    for (tt, v) in xv.iter_mut().enumerate() {
                        // SAFETY: n0 + n1 values from lane k of token tt, inside its row.
                        unsafe {
                            let p = xp.add(tt * cols + k);
                            v[0] = load8_f32(p as *const u8, n0);
                            v[1] = load8_f32(p.add(8) as *const u8, n1);
                        }
                    }
                    for (rr, a) in acc.iter_mut().enumerate() {
                        // SAFETY: as above for weight row rr.
                        let (w0, w1) = unsafe {
                            let p = wb.add((rr * cols + k) * $size);
                            ($load(p, n0), $load(p.add(8 * $size), n1))
                        };
                        for (tt, at) in a.iter_mut().enumerate() {
                            at[0] = _mm256_fmadd_ps(w0, xv[tt][0], at[0]);
                            at[1] = _mm256_fmadd_ps(w1, xv[tt][1], at[1]);
                        }
                    }
                    k += 16;
                }
                for (rr, a) in acc.iter().enumerate() {
                    for (tt, at) in a.iter().enumerate() {
                        // SAFETY: output (token tt, row rr) of the tile, inside `y`.
                        unsafe { *yp.add(tt * rows + rr) = tree(at[0], at[1]) };
                    }
                }
            }
        };
    }

    /// `count <= 8` f32 values from `p`, zeros after them.
    #[inline(always)]
    unsafe fn load8_f32(p: *const u8, count: usize) -> __m256 {
        // SAFETY: `count` values are readable at p (the caller's contract); fewer than 8 go
        // through a stack copy so nothing past them is read.
        unsafe {
            if count == 8 {
                _mm256_loadu_ps(p as *const f32)
            } else {
                let mut b = [0f32; 8];
                std::ptr::copy_nonoverlapping(p as *const f32, b.as_mut_ptr(), count);
                _mm256_loadu_ps(b.as_ptr())
            }
        }
    }

    /// `count <= 8` f16 values from `p` widened, zeros after them.
    #[inline(always)]
    unsafe fn load8_f16(p: *const u8, count: usize) -> __m256 {
        // SAFETY: as [`load8_f32`] for 2-byte values.
        unsafe {
            if count == 8 {
                _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
            } else {
                let mut b = [0u16; 8];
                std::ptr::copy_nonoverlapping(p as *const u16, b.as_mut_ptr(), count);
                _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr() as *const __m128i))
            }
        }
    }

    /// `count <= 8` bf16 values from `p` widened, zeros after them.
    #[inline(always)]
    unsafe fn load8_bf16(p: *const u8, count: usize) -> __m256 {
        // SAFETY: as [`load8_f32`] for 2-byte values.
        unsafe {
            let h = if count == 8 {
                _mm_loadu_si128(p as *const __m128i)
            } else {
                let mut b = [0u16; 8];
                std::ptr::copy_nonoverlapping(p as *const u16, b.as_mut_ptr(), count);
                _mm_loadu_si128(b.as_ptr() as *const __m128i)
            };
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
        }
    }

    tile256!(tile256_f32, 4, load8_f32);
    tile256!(tile256_f16, 2, load8_f16);
    tile256!(tile256_bf16, 2, load8_bf16);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn weights(ty: FloatType, rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rows * cols {
            let v = lcg(seed);
            match ty {
                FloatType::F32 => out.extend_from_slice(&v.to_le_bytes()),
                FloatType::F16 => out.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
                FloatType::Bf16 => out.extend_from_slice(&bf16::from_f32(v).to_le_bytes()),
            }
        }
        out
    }

    /// Every level and every tile shape against the scalar twin, bit for bit; odd shapes.
    #[test]
    fn levels_match_the_scalar_twin_bit_for_bit() {
        let mut seed = 7;
        for ty in [FloatType::F32, FloatType::F16, FloatType::Bf16] {
            for (rows, cols, n) in [
                (1, 1, 1),
                (5, 17, 7),
                (67, 384, 13),
                (130, 40, 1),
                (9, 33, 64),
            ] {
                let data = weights(ty, rows, cols, &mut seed);
                let w = FloatMatrix {
                    ty,
                    data: &data,
                    rows,
                    cols,
                };
                let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
                let mut want = vec![0f32; n * rows];
                scalar::gemm(&w, &x, n, &mut want);
                for level in Level::ALL.into_iter().filter(|l| l.available()) {
                    let mut got = vec![f32::NAN; n * rows];
                    gemm_at(level, &w, &x, n, &mut got);
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            e.to_bits(),
                            "{ty:?} [{rows}, {cols}] n {n} {level} at {i}"
                        );
                    }
                }
            }
        }
    }

    /// A token's outputs are the same bits alone and among others.
    #[test]
    fn a_token_alone_equals_the_token_in_a_batch() {
        let mut seed = 11;
        let (rows, cols, n) = (70, 96, 23);
        let data = weights(FloatType::F32, rows, cols, &mut seed);
        let w = FloatMatrix {
            ty: FloatType::F32,
            data: &data,
            rows,
            cols,
        };
        let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
        let level = crate::cpu::level();
        let mut all = vec![0f32; n * rows];
        gemm_at(level, &w, &x, n, &mut all);
        for t in 0..n {
            let mut one = vec![0f32; rows];
            gemm_at(level, &w, &x[t * cols..(t + 1) * cols], 1, &mut one);
            assert_eq!(one, all[t * rows..(t + 1) * rows], "token {t}");
        }
    }

    /// Close to the f64 product (the order is fixed, the accuracy that of f32 sums).
    #[test]
    fn close_to_f64() {
        let mut seed = 3;
        let (rows, cols, n) = (8, 1000, 3);
        let data = weights(FloatType::F32, rows, cols, &mut seed);
        let w = FloatMatrix {
            ty: FloatType::F32,
            data: &data,
            rows,
            cols,
        };
        let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
        let mut y = vec![0f32; n * rows];
        gemm_at(crate::cpu::level(), &w, &x, n, &mut y);
        for t in 0..n {
            for r in 0..rows {
                let e: f64 = (0..cols)
                    .map(|c| w.get(r, c) as f64 * x[t * cols + c] as f64)
                    .sum();
                assert!((y[t * rows + r] as f64 - e).abs() < 1e-4, "{t} {r}");
            }
        }
    }

    /// Several matrices in one job: the same bits as one call each.
    #[test]
    fn multi_equals_one_call_each() {
        let mut seed = 5;
        let cols = 48;
        let shapes = [
            (70usize, FloatType::F32),
            (3, FloatType::F16),
            (130, FloatType::Bf16),
        ];
        let data: Vec<Vec<u8>> = shapes
            .iter()
            .map(|&(r, ty)| weights(ty, r, cols, &mut seed))
            .collect();
        let ws: Vec<FloatMatrix> = shapes
            .iter()
            .zip(&data)
            .map(|(&(rows, ty), d)| FloatMatrix {
                ty,
                data: d,
                rows,
                cols,
            })
            .collect();
        for n in [1, 7, 40] {
            let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
            for level in Level::ALL.into_iter().filter(|l| l.available()) {
                let mut outs: Vec<Vec<f32>> =
                    ws.iter().map(|w| vec![f32::NAN; n * w.rows]).collect();
                let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
                gemm_multi_at(level, &ws, &x, n, &mut refs);
                for (w, got) in ws.iter().zip(&outs) {
                    let mut want = vec![0f32; n * w.rows];
                    gemm_at(level, w, &x, n, &mut want);
                    assert_eq!(got, &want, "{level} n {n} rows {}", w.rows);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "gemm: x has")]
    fn short_input_panics_with_the_shape() {
        let data = vec![0u8; 4 * 6];
        let w = FloatMatrix {
            ty: FloatType::F32,
            data: &data,
            rows: 2,
            cols: 3,
        };
        let mut y = vec![0f32; 2];
        gemm_at(Level::Scalar, &w, &[0.0; 2], 1, &mut y);
    }
}
