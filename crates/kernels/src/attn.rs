//! Tile kernels of the prompt attention: [`RT`] query rows against a block of [`KB`] keys.
//!
//! Layouts are key-major so that nothing is transposed per key block (the queries are
//! transposed once per tile instead):
//! - [`scores`]: `S[j][i] = Σ_d K[j][d] · Qᵀ[d][i]` with `K`: `[KB, hd]` (the block's keys as
//!   cached), `Qᵀ`: `[hd, RT]`, `S`: `[KB, RT]`. The inner loop runs along the query rows.
//! - [`accumulate`]: `O[i][c] += Σ_j P[j][i] · V[j][c]` with `P`: `[KB, RT]`,
//!   `V`: `[KB, hdv]`, `O`: `[RT, hdv]`.
//!
//! Tiles come in several widths ([`ROW_TILES`]: [`RT`] rows for prompts, fewer for a decode
//! token's heads); `*_rows` functions take the width.
//!
//! One plain source is compiled per dispatch level (scalar, AVX2, AVX-512): the loops are
//! written so that the compiler vectorizes across independent rows / output columns only, and
//! Rust never contracts `a * b + c` into an FMA, so every level computes exactly the same
//! values in the same order as the scalar twin (the tests check bit equality).

use crate::cpu::{level, Level};

/// Keys per block.
pub const KB: usize = 64;
/// Query rows per tile (unused rows are zero and ignored by the caller).
pub const RT: usize = 32;
/// Output columns per register tile of [`accumulate`].
const C: usize = 64;
/// Query rows per register tile of [`accumulate`].
const R: usize = 4;

type ScoresFn = fn(&[f32], &[f32], usize, &mut [f32]);
type AccumFn = fn(&[f32], &[f32], usize, &mut [f32]);

#[inline(always)]
fn scores_body<const N: usize>(k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
    assert!(
        k.len() >= KB * hd && qt.len() >= hd * N && s.len() >= KB * N,
        "attn scores ({N} rows, hd {hd}): k has {} values ({} needed), qt has {} ({}), \
         s has {} ({})",
        k.len(),
        KB * hd,
        qt.len(),
        hd * N,
        s.len(),
        KB * N
    );
    for j in (0..KB).step_by(2) {
        scores_pair::<N>(&k[j * hd..(j + 2) * hd], qt, hd, &mut s[j * N..(j + 2) * N]);
    }
}

/// Two keys against every row: four partial sums over `d mod 4` per (key, row) (shorter
/// rounding chains than one running sum), added pairwise at the end.
#[inline(always)]
fn scores_pair<const N: usize>(k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
    let mut acc = [[[0f32; N]; 4]; 2];
    let mut d = 0;
    while d + 4 <= hd {
        for c in 0..4 {
            let q: &[f32; N] = qt[(d + c) * N..(d + c + 1) * N].try_into().expect("N");
            for (key, a) in acc.iter_mut().enumerate() {
                let kv = k[key * hd + d + c];
                for i in 0..N {
                    a[c][i] += kv * q[i];
                }
            }
        }
        d += 4;
    }
    while d < hd {
        let q: &[f32; N] = qt[d * N..(d + 1) * N].try_into().expect("N");
        for (key, a) in acc.iter_mut().enumerate() {
            let kv = k[key * hd + d];
            for i in 0..N {
                a[0][i] += kv * q[i];
            }
        }
        d += 1;
    }
    for (key, a) in acc.iter().enumerate() {
        for i in 0..N {
            s[key * N + i] = (a[0][i] + a[1][i]) + (a[2][i] + a[3][i]);
        }
    }
}

#[inline(always)]
fn accum_body<const N: usize>(p: &[f32], v: &[f32], hdv: usize, o: &mut [f32]) {
    assert!(
        p.len() >= KB * N && v.len() >= KB * hdv && o.len() >= N * hdv,
        "attn accumulate ({N} rows, hdv {hdv}): p has {} values ({} needed), v has {} ({}), \
         o has {} ({})",
        p.len(),
        KB * N,
        v.len(),
        KB * hdv,
        o.len(),
        N * hdv
    );
    assert!(N.is_multiple_of(R), "rows per tile: a multiple of {R}");
    let mut c0 = 0;
    while c0 < hdv {
        let w = C.min(hdv - c0);
        for i in (0..N).step_by(R) {
            match w {
                C => accum_tile::<N, C>(p, v, i, c0, hdv, o),
                // Heads of 32 and 16 columns (MiniLM, small encoders) keep registers too.
                32 => accum_tile::<N, 32>(p, v, i, c0, hdv, o),
                16 => accum_tile::<N, 16>(p, v, i, c0, hdv, o),
                _ => accum_tail::<N>(p, v, i, c0, w, hdv, o),
            }
        }
        c0 += w;
    }
}

/// Columns `c0..c0 + W` of rows `i0..i0 + R`, held in registers over the key block.
#[inline(always)]
fn accum_tile<const N: usize, const W: usize>(
    p: &[f32],
    v: &[f32],
    i0: usize,
    c0: usize,
    hdv: usize,
    o: &mut [f32],
) {
    let mut acc = [[0f32; W]; R];
    for (r, a) in acc.iter_mut().enumerate() {
        a.copy_from_slice(&o[(i0 + r) * hdv + c0..][..W]);
    }
    for j in 0..KB {
        let vr: &[f32; W] = v[j * hdv + c0..][..W].try_into().expect("W columns");
        for (r, a) in acc.iter_mut().enumerate() {
            let pv = p[j * N + i0 + r];
            for x in 0..W {
                a[x] += pv * vr[x];
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        o[(i0 + r) * hdv + c0..][..W].copy_from_slice(a);
    }
}

/// Columns `c0..c0 + w` (any `w < C`), same order of operations as [`accum_tile`].
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
    for r in 0..R {
        let orow = &mut o[(i0 + r) * hdv + c0..][..w];
        for j in 0..KB {
            let pv = p[j * N + i0 + r];
            let vr = &v[j * hdv + c0..][..w];
            for x in 0..w {
                orow[x] += pv * vr[x];
            }
        }
    }
}

mod scalar {
    pub fn scores<const N: usize>(k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
        super::scores_body::<N>(k, qt, hd, s)
    }
    pub fn accum<const N: usize>(p: &[f32], v: &[f32], hdv: usize, o: &mut [f32]) {
        super::accum_body::<N>(p, v, hdv, o)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scores_avx2<const N: usize>(k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
        super::scores_body::<N>(k, qt, hd, s)
    }
    /// # Safety
    /// As [`scores_avx2`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn accum_avx2<const N: usize>(p: &[f32], v: &[f32], hdv: usize, o: &mut [f32]) {
        super::accum_body::<N>(p, v, hdv, o)
    }
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn scores_avx512<const N: usize>(k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
        super::scores_body::<N>(k, qt, hd, s)
    }
    /// # Safety
    /// As [`scores_avx512`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn accum_avx512<const N: usize>(p: &[f32], v: &[f32], hdv: usize, o: &mut [f32]) {
        super::accum_body::<N>(p, v, hdv, o)
    }
}

fn fns<const N: usize>(level: Level) -> (ScoresFn, AccumFn) {
    assert!(
        level.available(),
        "{level} kernels are not available on this CPU"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if level >= Level::Avx512 {
            // AVX-512 levels are only available with AVX-512F present (checked above).
            return (
                // SAFETY: AVX-512F, AVX2 and FMA are present (above).
                |k, q, h, s| unsafe { x86::scores_avx512::<N>(k, q, h, s) },
                // SAFETY: as above.
                |p, v, h, o| unsafe { x86::accum_avx512::<N>(p, v, h, o) },
            );
        }
        if level >= Level::Avx2 {
            // The Avx2 level is only available with AVX2 and FMA present (checked above).
            return (
                // SAFETY: AVX2 and FMA are present (above).
                |k, q, h, s| unsafe { x86::scores_avx2::<N>(k, q, h, s) },
                // SAFETY: as above.
                |p, v, h, o| unsafe { x86::accum_avx2::<N>(p, v, h, o) },
            );
        }
    }
    (scalar::scores::<N>, scalar::accum::<N>)
}

/// Query rows per tile the kernels come in: [`RT`] and narrower tiles for a few rows (one
/// decode token's query heads). Row `i` of a tile is computed by the same operations in the
/// same order whatever the tile width and whatever the other rows hold (every loop over rows
/// is element-wise), so a row's results are bit-identical in every width (tested).
pub const ROW_TILES: [usize; 4] = [4, 8, 16, 32];

/// The narrowest of [`ROW_TILES`] holding `rows` rows (at most [`RT`]).
pub fn row_tile(rows: usize) -> usize {
    assert!(rows <= RT, "{rows} query rows, at most {RT} per tile");
    ROW_TILES
        .into_iter()
        .find(|&w| w >= rows)
        .expect("RT is the widest")
}

fn fns_n(level: Level, n: usize) -> (ScoresFn, AccumFn) {
    match n {
        4 => fns::<4>(level),
        8 => fns::<8>(level),
        16 => fns::<16>(level),
        32 => fns::<32>(level),
        _ => panic!("attention tiles of {n} rows: one of {ROW_TILES:?}"),
    }
}

/// `s[j·RT + i] = Σ_d k[j·hd + d] · qt[d·RT + i]` for `j < KB`, `i < RT`, at `level`.
pub fn scores_at(level: Level, k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
    (fns::<RT>(level).0)(k, qt, hd, s)
}

/// `o[i·hdv + c] += Σ_j p[j·RT + i] · v[j·hdv + c]` for `i < RT`, `c < hdv`, at `level`.
pub fn accumulate_at(level: Level, p: &[f32], v: &[f32], hdv: usize, o: &mut [f32]) {
    (fns::<RT>(level).1)(p, v, hdv, o)
}

/// [`scores_at`] for tiles of `n` rows (one of [`ROW_TILES`]): `qt`: `[hd, n]`, `s`: `[KB, n]`.
pub fn scores_rows_at(level: Level, n: usize, k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
    (fns_n(level, n).0)(k, qt, hd, s)
}

/// [`accumulate_at`] for tiles of `n` rows (one of [`ROW_TILES`]): `p`: `[KB, n]`,
/// `o`: `[n, hdv]`.
pub fn accumulate_rows_at(level: Level, n: usize, p: &[f32], v: &[f32], hdv: usize, o: &mut [f32]) {
    (fns_n(level, n).1)(p, v, hdv, o)
}

/// The dispatch-level functions of every tile width, chosen once.
fn current(n: usize) -> (ScoresFn, AccumFn) {
    use std::sync::OnceLock;
    static F: OnceLock<[(ScoresFn, AccumFn); 4]> = OnceLock::new();
    let f = F.get_or_init(|| ROW_TILES.map(|w| fns_n(level(), w)));
    match n {
        4 => f[0],
        8 => f[1],
        16 => f[2],
        32 => f[3],
        _ => panic!("attention tiles of {n} rows: one of {ROW_TILES:?}"),
    }
}

/// [`scores_at`] at the process-wide level.
#[inline]
pub fn scores(k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
    (current(RT).0)(k, qt, hd, s)
}

/// [`accumulate_at`] at the process-wide level.
#[inline]
pub fn accumulate(p: &[f32], v: &[f32], hdv: usize, o: &mut [f32]) {
    (current(RT).1)(p, v, hdv, o)
}

/// [`scores_rows_at`] at the process-wide level.
#[inline]
pub fn scores_rows(n: usize, k: &[f32], qt: &[f32], hd: usize, s: &mut [f32]) {
    (current(n).0)(k, qt, hd, s)
}

/// [`accumulate_rows_at`] at the process-wide level.
#[inline]
pub fn accumulate_rows(n: usize, p: &[f32], v: &[f32], hdv: usize, o: &mut [f32]) {
    (current(n).1)(p, v, hdv, o)
}
