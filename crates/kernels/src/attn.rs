//! Tile kernels of the prompt attention: a tile of query rows against a block of [`KB`] keys.
//!
//! - [`scores`]: `S = Q · Kᵀ` for `rows` query rows (`[rows, hd]`) and one key block given
//!   transposed (`[hd, KB]`), so the inner loop runs along the keys.
//! - [`accumulate`]: `O += P · V` with `P`: `[rows, KB]`, `V`: `[KB, hdv]`, `O`: `[rows, hdv]`.
//!
//! One plain source is compiled per dispatch level (scalar, AVX2, AVX-512): the loops are
//! written so that the compiler vectorizes across independent keys / output columns only, and
//! Rust never contracts `a * b + c` into an FMA, so every level computes exactly the same
//! values in the same order as the scalar twin (the tests check bit equality).

use crate::cpu::{level, Level};

/// Keys per block.
pub const KB: usize = 64;
/// Query rows per register tile.
const R: usize = 4;
/// Output columns per register tile.
const C: usize = 64;

type ScoresFn = fn(&[f32], &[f32], usize, usize, &mut [f32]);
type AccumFn = fn(&[f32], &[f32], usize, usize, &mut [f32]);

#[inline(always)]
fn scores_body(q: &[f32], kt: &[f32], rows: usize, hd: usize, s: &mut [f32]) {
    assert!(q.len() >= rows * hd && kt.len() >= hd * KB && s.len() >= rows * KB);
    for i in 0..rows {
        scores_row(&q[i * hd..(i + 1) * hd], kt, &mut s[i * KB..(i + 1) * KB]);
    }
}

/// One query row against the key block: four partial sums over `d mod 4` (shorter rounding
/// chains than one running sum: closer to the exact dot), added pairwise at the end.
#[inline(always)]
fn scores_row(q: &[f32], kt: &[f32], s: &mut [f32]) {
    let hd = q.len();
    let mut acc = [[0f32; KB]; 4];
    let mut d = 0;
    while d + 4 <= hd {
        for (c, a) in acc.iter_mut().enumerate() {
            let qv = q[d + c];
            let k: &[f32; KB] = kt[(d + c) * KB..(d + c + 1) * KB]
                .try_into()
                .expect("KB keys");
            for j in 0..KB {
                a[j] += qv * k[j];
            }
        }
        d += 4;
    }
    while d < hd {
        let qv = q[d];
        let k: &[f32; KB] = kt[d * KB..(d + 1) * KB].try_into().expect("KB keys");
        for j in 0..KB {
            acc[0][j] += qv * k[j];
        }
        d += 1;
    }
    for j in 0..KB {
        s[j] = (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);
    }
}

#[inline(always)]
fn accum_body(p: &[f32], v: &[f32], rows: usize, hdv: usize, o: &mut [f32]) {
    assert!(p.len() >= rows * KB && v.len() >= KB * hdv && o.len() >= rows * hdv);
    let mut c0 = 0;
    while c0 < hdv {
        let w = C.min(hdv - c0);
        let mut i = 0;
        while i + R <= rows {
            if w == C {
                accum_tile::<R, C>(p, v, i, c0, hdv, o);
            } else {
                accum_tail::<R>(p, v, i, c0, w, hdv, o);
            }
            i += R;
        }
        while i < rows {
            if w == C {
                accum_tile::<1, C>(p, v, i, c0, hdv, o);
            } else {
                accum_tail::<1>(p, v, i, c0, w, hdv, o);
            }
            i += 1;
        }
        c0 += w;
    }
}

#[inline(always)]
fn accum_tile<const N: usize, const W: usize>(
    p: &[f32],
    v: &[f32],
    i0: usize,
    c0: usize,
    hdv: usize,
    o: &mut [f32],
) {
    let mut acc = [[0f32; W]; N];
    for (r, a) in acc.iter_mut().enumerate() {
        a.copy_from_slice(&o[(i0 + r) * hdv + c0..][..W]);
    }
    for j in 0..KB {
        let vr: &[f32; W] = v[j * hdv + c0..][..W].try_into().expect("W columns");
        for (r, a) in acc.iter_mut().enumerate() {
            let pv = p[(i0 + r) * KB + j];
            for x in 0..W {
                a[x] += pv * vr[x];
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        o[(i0 + r) * hdv + c0..][..W].copy_from_slice(a);
    }
}

/// Columns `c0..c0 + w` (`w < C`), same order of operations as [`accum_tile`].
#[inline(always)]
fn accum_tail<const N: usize>(
    p: &[f32],
    v: &[f32],
    i0: usize,
    c0: usize,
    w: usize,
    hdv: usize,
    o: &mut [f32],
) {
    for r in 0..N {
        let orow = &mut o[(i0 + r) * hdv + c0..][..w];
        for j in 0..KB {
            let pv = p[(i0 + r) * KB + j];
            let vr = &v[j * hdv + c0..][..w];
            for x in 0..w {
                orow[x] += pv * vr[x];
            }
        }
    }
}

mod scalar {
    pub fn scores(q: &[f32], kt: &[f32], rows: usize, hd: usize, s: &mut [f32]) {
        super::scores_body(q, kt, rows, hd, s)
    }
    pub fn accum(p: &[f32], v: &[f32], rows: usize, hdv: usize, o: &mut [f32]) {
        super::accum_body(p, v, rows, hdv, o)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scores_avx2(q: &[f32], kt: &[f32], rows: usize, hd: usize, s: &mut [f32]) {
        super::scores_body(q, kt, rows, hd, s)
    }
    /// # Safety
    /// As [`scores_avx2`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn accum_avx2(p: &[f32], v: &[f32], rows: usize, hdv: usize, o: &mut [f32]) {
        super::accum_body(p, v, rows, hdv, o)
    }
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn scores_avx512(q: &[f32], kt: &[f32], rows: usize, hd: usize, s: &mut [f32]) {
        super::scores_body(q, kt, rows, hd, s)
    }
    /// # Safety
    /// As [`scores_avx512`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn accum_avx512(p: &[f32], v: &[f32], rows: usize, hdv: usize, o: &mut [f32]) {
        super::accum_body(p, v, rows, hdv, o)
    }
}

fn fns(level: Level) -> (ScoresFn, AccumFn) {
    assert!(
        level.available(),
        "{level} kernels are not available on this CPU"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if level >= Level::Avx512 {
            // SAFETY (both): AVX-512 levels are only available with AVX-512F present.
            return (
                |q, k, r, h, s| unsafe { x86::scores_avx512(q, k, r, h, s) },
                |p, v, r, h, o| unsafe { x86::accum_avx512(p, v, r, h, o) },
            );
        }
        if level >= Level::Avx2 {
            // SAFETY (both): the Avx2 level requires AVX2 and FMA.
            return (
                |q, k, r, h, s| unsafe { x86::scores_avx2(q, k, r, h, s) },
                |p, v, r, h, o| unsafe { x86::accum_avx2(p, v, r, h, o) },
            );
        }
    }
    (scalar::scores, scalar::accum)
}

/// `s[i·KB + j] = Σ_d q[i·hd + d] · kt[d·KB + j]` for `i < rows`, `j < KB`, at `level`.
pub fn scores_at(level: Level, q: &[f32], kt: &[f32], rows: usize, hd: usize, s: &mut [f32]) {
    (fns(level).0)(q, kt, rows, hd, s)
}

/// `o[i·hdv + c] += Σ_j p[i·KB + j] · v[j·hdv + c]` for `i < rows`, `c < hdv`, at `level`.
pub fn accumulate_at(level: Level, p: &[f32], v: &[f32], rows: usize, hdv: usize, o: &mut [f32]) {
    (fns(level).1)(p, v, rows, hdv, o)
}

/// The dispatch-level functions, chosen once.
fn current() -> (ScoresFn, AccumFn) {
    use std::sync::OnceLock;
    static F: OnceLock<(ScoresFn, AccumFn)> = OnceLock::new();
    *F.get_or_init(|| fns(level()))
}

/// [`scores_at`] at the process-wide level.
#[inline]
pub fn scores(q: &[f32], kt: &[f32], rows: usize, hd: usize, s: &mut [f32]) {
    (current().0)(q, kt, rows, hd, s)
}

/// [`accumulate_at`] at the process-wide level.
#[inline]
pub fn accumulate(p: &[f32], v: &[f32], rows: usize, hdv: usize, o: &mut [f32]) {
    (current().1)(p, v, rows, hdv, o)
}
