//! Causal grouped-query attention of one query token over one cache slot.
//!
//! Query head `h` reads KV head `h / (n_head / n_head_kv)`. A query at position `p` sees the keys
//! at positions `start..=p` of its own slot, where `start` is 0, or `p + 1 - window` with a
//! sliding window. Scores are `q·k · scale`, optionally soft-capped (`cap · tanh(s / cap)`).
//! Position `p` is read from row `p % rows` of the slot's cached rows, so a sliding-window
//! layer's ring buffer (fewer rows than positions, see `kv_cache`) works unchanged; with a
//! full-size cache that is row `p`.

use crate::layers::kv_cache::Rows;
use crate::ops;

/// The shape and variant of an attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnParams {
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Size of a query/key head.
    pub head_dim: usize,
    /// Size of a value head.
    pub head_dim_v: usize,
    /// Multiplies `q·k` (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// Attention logit soft-cap (gemma2), applied after `scale`.
    pub softcap: Option<f32>,
    /// Sliding window: a query sees at most this many positions, its own included.
    pub window: Option<usize>,
}

impl AttnParams {
    /// The first key position a query at `pos` may see.
    #[inline]
    pub fn first_key(&self, pos: usize) -> usize {
        match self.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        }
    }
}

/// An element of the KV cache, read as f32, with the fast dot/axpy of `kernels`.
pub trait KvElem: Copy {
    fn get(self) -> f32;
    /// `Σ q[i]·k[i]` (SIMD kernel).
    fn dot(q: &[f32], k: &[Self]) -> f32;
    /// `out[i] += w·v[i]` (SIMD kernel).
    fn axpy(w: f32, v: &[Self], out: &mut [f32]);
    /// `dst[i] = src[i]` as f32 (SIMD for f16).
    fn widen(src: &[Self], dst: &mut [f32]);
}

impl KvElem for f32 {
    #[inline(always)]
    fn get(self) -> f32 {
        self
    }
    #[inline(always)]
    fn dot(q: &[f32], k: &[f32]) -> f32 {
        kernels::dot_f32(k, q)
    }
    #[inline(always)]
    fn axpy(w: f32, v: &[f32], out: &mut [f32]) {
        kernels::axpy_f32(out, w, v)
    }
    #[inline(always)]
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src)
    }
}

impl KvElem for half::f16 {
    #[inline(always)]
    fn get(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn dot(q: &[f32], k: &[half::f16]) -> f32 {
        kernels::dot_f16_f32(k, q)
    }
    #[inline(always)]
    fn axpy(w: f32, v: &[half::f16], out: &mut [f32]) {
        kernels::axpy_f16(out, w, v)
    }
    #[inline(always)]
    fn widen(src: &[half::f16], dst: &mut [f32]) {
        kernels::f16_to_f32_slice(src, dst)
    }
}

/// `Σ q[i]·k[i]` with eight partial sums (scalar twin for the reference [`attend`]).
#[inline]
fn dot_kv<K: KvElem>(q: &[f32], k: &[K]) -> f32 {
    let mut acc = [0f32; 8];
    let (cq, ck) = (q.chunks_exact(8), k.chunks_exact(8));
    let (rq, rk) = (cq.remainder(), ck.remainder());
    for (a, b) in cq.zip(ck) {
        for i in 0..8 {
            acc[i] += a[i] * b[i].get();
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in rq.iter().zip(rk) {
        s += a * b.get();
    }
    s
}

/// `out[i] += w·v[i]`.
#[inline]
fn axpy_kv<V: KvElem>(w: f32, v: &[V], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += w * x.get();
    }
}

/// Attention for one query token at position `pos`: the plain two-pass reference (scores,
/// softmax, weighted sum) that the fused [`attend_head`] is tested against.
///
/// - `q`: `[n_head * head_dim]`, already rotated.
/// - `keys`: the slot's keys, `[>= pos+1, n_head_kv * head_dim]`.
/// - `values`: the slot's values, `[>= pos+1, n_head_kv * head_dim_v]`.
/// - `scores`: scratch of at least `pos + 1` values.
/// - `out`: `[n_head * head_dim_v]`.
pub fn attend(
    p: &AttnParams,
    q: &[f32],
    keys: Rows,
    values: Rows,
    pos: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    match (keys, values) {
        (Rows::F32(k), Rows::F32(v)) => attend_impl(p, q, k, v, pos, scores, out),
        (Rows::F16(k), Rows::F16(v)) => attend_impl(p, q, k, v, pos, scores, out),
        (Rows::F32(k), Rows::F16(v)) => attend_impl(p, q, k, v, pos, scores, out),
        (Rows::F16(k), Rows::F32(v)) => attend_impl(p, q, k, v, pos, scores, out),
    }
}

fn attend_impl<K: KvElem, V: KvElem>(
    p: &AttnParams,
    q: &[f32],
    keys: &[K],
    values: &[V],
    pos: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let group = p.n_head / p.n_head_kv;
    let (kd, vd) = (p.n_head_kv * p.head_dim, p.n_head_kv * p.head_dim_v);
    let first = p.first_key(pos);
    let n_keys = pos + 1 - first;
    let rows = keys.len() / kd;
    let scores = &mut scores[..n_keys]; // [n_keys]
    for h in 0..p.n_head {
        let kvh = h / group;
        let qh = &q[h * p.head_dim..(h + 1) * p.head_dim];
        for (j, s) in scores.iter_mut().enumerate() {
            let kpos = (first + j) % rows;
            let k = &keys[kpos * kd + kvh * p.head_dim..][..p.head_dim];
            let mut v = dot_kv(qh, k) * p.scale;
            if let Some(cap) = p.softcap {
                v = cap * (v / cap).tanh();
            }
            *s = v;
        }
        ops::softmax(scores);
        let oh = &mut out[h * p.head_dim_v..(h + 1) * p.head_dim_v];
        oh.fill(0.0);
        for (j, &w) in scores.iter().enumerate() {
            let vpos = (first + j) % rows;
            axpy_kv(
                w,
                &values[vpos * vd + kvh * p.head_dim_v..][..p.head_dim_v],
                oh,
            );
        }
    }
}

/// Fused attention of one query head `h` (online softmax: one pass over the keys, no score
/// buffer, so heads and tokens can run in parallel without scratch).
///
/// Same arguments as [`attend`]; `out_h` is this head's `[head_dim_v]` output.
pub fn attend_head(
    p: &AttnParams,
    h: usize,
    q: &[f32],
    keys: Rows,
    values: Rows,
    pos: usize,
    out_h: &mut [f32],
) {
    match (keys, values) {
        (Rows::F32(k), Rows::F32(v)) => attend_head_impl(p, h, q, k, v, pos, out_h),
        (Rows::F16(k), Rows::F16(v)) => attend_head_impl(p, h, q, k, v, pos, out_h),
        (Rows::F32(k), Rows::F16(v)) => attend_head_impl(p, h, q, k, v, pos, out_h),
        (Rows::F16(k), Rows::F32(v)) => attend_head_impl(p, h, q, k, v, pos, out_h),
    }
}

/// [`attend_head`] for every head: `out` is `[n_head * head_dim_v]`.
pub fn attend_fused(
    p: &AttnParams,
    q: &[f32],
    keys: Rows,
    values: Rows,
    pos: usize,
    out: &mut [f32],
) {
    for (h, out_h) in out
        .chunks_exact_mut(p.head_dim_v)
        .take(p.n_head)
        .enumerate()
    {
        attend_head(p, h, q, keys, values, pos, out_h);
    }
}

/// Keys scored per block of the fused attention: one max/rescale per block instead of per key.
const KEY_BLOCK: usize = 64;

fn attend_head_impl<K: KvElem, V: KvElem>(
    p: &AttnParams,
    h: usize,
    q: &[f32],
    keys: &[K],
    values: &[V],
    pos: usize,
    out_h: &mut [f32],
) {
    let kvh = h / (p.n_head / p.n_head_kv);
    let (kd, vd) = (p.n_head_kv * p.head_dim, p.n_head_kv * p.head_dim_v);
    let qh = &q[h * p.head_dim..(h + 1) * p.head_dim];
    // Running maximum `m`, running sum of exp(s - m) `l`; `out_h` holds Σ exp(s - m)·v.
    let mut m = f32::NEG_INFINITY;
    let mut l = 0f32;
    out_h.fill(0.0);
    // Row of the first key (ring buffer: position p is in row p % rows).
    let rows = keys.len() / kd;
    let first = p.first_key(pos);
    let mut row = first % rows;
    let mut block_rows = [0usize; KEY_BLOCK];
    let mut scores = [0f32; KEY_BLOCK]; // [KEY_BLOCK] scores, then weights
    let mut left = pos + 1 - first;
    while left > 0 {
        let nb = left.min(KEY_BLOCK);
        left -= nb;
        // Scores of this block of keys, and their maximum.
        let mut bmax = f32::NEG_INFINITY;
        for (r, sc) in block_rows[..nb].iter_mut().zip(&mut scores[..nb]) {
            *r = row;
            row += 1;
            if row == rows {
                row = 0;
            }
            let k = &keys[*r * kd + kvh * p.head_dim..][..p.head_dim];
            let mut s = K::dot(qh, k) * p.scale;
            if let Some(cap) = p.softcap {
                s = cap * (s / cap).tanh();
            }
            *sc = s;
            bmax = bmax.max(s);
        }
        if bmax > m {
            // New maximum: rescale what was accumulated so far (once per block).
            let r = ops::exp_fast(m - bmax);
            l *= r;
            for o in out_h.iter_mut() {
                *o *= r;
            }
            m = bmax;
        }
        for sc in &mut scores[..nb] {
            *sc = ops::exp_fast(*sc - m);
            l += *sc;
        }
        for (&r, &w) in block_rows[..nb].iter().zip(&scores[..nb]) {
            V::axpy(
                w,
                &values[r * vd + kvh * p.head_dim_v..][..p.head_dim_v],
                out_h,
            );
        }
    }
    let inv = 1.0 / l;
    for o in out_h.iter_mut() {
        *o *= inv;
    }
}

/// Query rows of one tile of [`attend_tile`]: tokens × the query heads of one KV head.
pub const TILE_ROWS: usize = kernels::attn::RT;

thread_local! {
    /// Scratch of [`attend_tile`] on this thread, grown when needed (never per call).
    static TILE_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One tile of prompt attention: the query heads of KV head `kvh` for the tokens
/// `t0..t1` of a batch (at most [`TILE_ROWS`] rows: tokens × heads per KV head), whose keys
/// and values are already in the slot's cache rows.
///
/// - `q`: the batch's queries, `[n, n_head * head_dim]`, already rotated.
/// - `positions`: the batch's positions (`t0..t1` index it), increasing.
/// - `write(t, h, o)`: receives the `[head_dim_v]` output of token `t`, query head `h`.
///
/// Work is done as small matrix products per block of [`KB`] keys (`S = K·Qᵀ`, online softmax
/// per row, `O += P·V`, see `kernels::attn`), so each key and value is read once per tile
/// instead of once per query row. Same results as [`attend_head`] up to f32 rounding.
///
/// Each row's result is bit-identical in any tile (any `t0..t1` holding its token, alone or
/// with others, any tile width): every step on a row runs element-wise along the rows, key
/// blocks are aligned to absolute positions (multiples of [`KB`]), and keys a row cannot see
/// contribute exact zeros (tested by `tile_rows_do_not_depend_on_the_tile`). The
/// batch-invariant mode relies on it.
#[allow(clippy::too_many_arguments)]
pub fn attend_tile(
    p: &AttnParams,
    kvh: usize,
    q: &[f32],
    positions: &[u32],
    t0: usize,
    t1: usize,
    keys: Rows,
    values: Rows,
    write: &mut dyn FnMut(usize, usize, &[f32]),
) {
    match (keys, values) {
        (Rows::F32(k), Rows::F32(v)) => tile_impl(p, kvh, q, positions, t0, t1, k, v, write),
        (Rows::F16(k), Rows::F16(v)) => tile_impl(p, kvh, q, positions, t0, t1, k, v, write),
        (Rows::F32(k), Rows::F16(v)) => tile_impl(p, kvh, q, positions, t0, t1, k, v, write),
        (Rows::F16(k), Rows::F32(v)) => tile_impl(p, kvh, q, positions, t0, t1, k, v, write),
    }
}

use kernels::attn::{row_tile, KB, RT};

/// [`attend_tile`] in the narrowest tile width that holds its rows.
#[allow(clippy::too_many_arguments)]
fn tile_impl<K: KvElem, V: KvElem>(
    p: &AttnParams,
    kvh: usize,
    q: &[f32],
    positions: &[u32],
    t0: usize,
    t1: usize,
    keys: &[K],
    values: &[V],
    write: &mut dyn FnMut(usize, usize, &[f32]),
) {
    let rows = (t1 - t0) * (p.n_head / p.n_head_kv);
    assert!(rows <= RT, "attend_tile: {rows} query rows, at most {RT}");
    match row_tile(rows) {
        4 => tile_n::<K, V, 4>(p, kvh, q, positions, t0, t1, keys, values, write),
        8 => tile_n::<K, V, 8>(p, kvh, q, positions, t0, t1, keys, values, write),
        16 => tile_n::<K, V, 16>(p, kvh, q, positions, t0, t1, keys, values, write),
        _ => tile_n::<K, V, RT>(p, kvh, q, positions, t0, t1, keys, values, write),
    }
}

/// [`attend_tile`] with tiles of `N` query rows.
#[allow(clippy::too_many_arguments)]
fn tile_n<K: KvElem, V: KvElem, const N: usize>(
    p: &AttnParams,
    kvh: usize,
    q: &[f32],
    positions: &[u32],
    t0: usize,
    t1: usize,
    keys: &[K],
    values: &[V],
    write: &mut dyn FnMut(usize, usize, &[f32]),
) {
    let group = p.n_head / p.n_head_kv;
    let (hd, hdv) = (p.head_dim, p.head_dim_v);
    let (qd, kd, vd) = (p.n_head * hd, p.n_head_kv * hd, p.n_head_kv * hdv);
    let rows = (t1 - t0) * group;
    assert!(rows <= N, "attend_tile: {rows} query rows, at most {N}");
    let cap = keys.len() / kd; // cached rows (a ring buffer holds position p in row p % cap)
                               // Row r: token t0 + r / group, query head kvh·group + r % group. Unused rows never see a
                               // key (position "before" every key) and are not written back.
    let mut pos = [0i64; N];
    let mut lo = [i64::MAX; N];
    for r in 0..rows {
        let at = positions[t0 + r / group] as usize;
        pos[r] = at as i64;
        lo[r] = p.first_key(at) as i64;
    }
    TILE_SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let need = hd * N + KB * hd + KB * N + KB * hdv + N * hdv;
        if guard.len() < need {
            guard.resize(need, 0.0);
        }
        let (qt, rest) = guard.split_at_mut(hd * N); // [hd, N]: the queries, transposed
        let (kb, rest) = rest.split_at_mut(KB * hd); // [KB, hd]: one key block
        let (sc, rest) = rest.split_at_mut(KB * N); // [KB, N]: scores, then weights
        let (vb, rest) = rest.split_at_mut(KB * hdv); // [KB, hdv]: one value block
        let o = &mut rest[..N * hdv]; // [N, hdv]
        qt.fill(0.0);
        for r in 0..rows {
            let (t, h) = (t0 + r / group, kvh * group + r % group);
            for (d, x) in q[t * qd + h * hd..][..hd].iter().enumerate() {
                qt[d * N + r] = *x;
            }
        }
        o.fill(0.0);
        let mut m = [f32::NEG_INFINITY; N]; // running maximum per row
        let mut l = [0f32; N]; // running sum of weights per row
                               // Key blocks start at multiples of KB (not at the tile's first key), so the blocks a
                               // row goes through, and with them its online-softmax rescaling steps, depend on its
                               // position only, never on the tile it shares: a row's result is the same in every
                               // tile (fully masked blocks and keys change nothing: they add exact zeros).
        let first = p.first_key(positions[t0] as usize);
        let last = positions[t1 - 1] as usize;
        let mut kb0 = first - first % KB;
        while kb0 <= last {
            let nk = KB.min(last + 1 - kb0);
            for j in 0..nk {
                if kb0 + j < first {
                    // Before every row's window (a ring may hold a later position there).
                    kb[j * hd..(j + 1) * hd].fill(0.0);
                    vb[j * hdv..(j + 1) * hdv].fill(0.0);
                    continue;
                }
                let row = (kb0 + j) % cap;
                K::widen(
                    &keys[row * kd + kvh * hd..][..hd],
                    &mut kb[j * hd..(j + 1) * hd],
                );
                V::widen(
                    &values[row * vd + kvh * hdv..][..hdv],
                    &mut vb[j * hdv..(j + 1) * hdv],
                );
            }
            kb[nk * hd..].fill(0.0);
            vb[nk * hdv..].fill(0.0);
            kernels::attn::scores_rows(N, kb, qt, hd, sc);
            // Scale, soft-cap and mask (key kp is visible to row i when lo[i] <= kp <= pos[i]),
            // then the block maximum of each row; loops run along the rows (vectorized).
            let mut bmax = [f32::NEG_INFINITY; N];
            for j in 0..KB {
                let kp = (kb0 + j) as i64;
                let srow: &mut [f32; N] = (&mut sc[j * N..(j + 1) * N]).try_into().expect("N");
                if let Some(cap) = p.softcap {
                    for v in srow.iter_mut() {
                        *v = cap * (*v * p.scale / cap).tanh();
                    }
                } else {
                    for v in srow.iter_mut() {
                        *v *= p.scale;
                    }
                }
                for i in 0..N {
                    let visible = j < nk && kp <= pos[i] && kp >= lo[i];
                    srow[i] = if visible { srow[i] } else { f32::NEG_INFINITY };
                    bmax[i] = bmax[i].max(srow[i]);
                }
            }
            for r in 0..rows {
                if bmax[r] > m[r] {
                    // New maximum: rescale what this row accumulated so far.
                    let c = ops::exp_fast(m[r] - bmax[r]);
                    l[r] *= c;
                    for x in &mut o[r * hdv..(r + 1) * hdv] {
                        *x *= c;
                    }
                    m[r] = bmax[r];
                }
            }
            for j in 0..KB {
                let srow: &mut [f32; N] = (&mut sc[j * N..(j + 1) * N]).try_into().expect("N");
                for i in 0..N {
                    let e = ops::exp_fast(srow[i] - m[i]);
                    srow[i] = if srow[i] == f32::NEG_INFINITY { 0.0 } else { e };
                    l[i] += srow[i];
                }
            }
            kernels::attn::accumulate_rows(N, sc, vb, hdv, o);
            kb0 += KB;
        }
        for r in 0..rows {
            let orow = &mut o[r * hdv..(r + 1) * hdv];
            let inv = 1.0 / l[r];
            for x in orow.iter_mut() {
                *x *= inv;
            }
            write(t0 + r / group, kvh * group + r % group, orow);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(window: Option<usize>) -> AttnParams {
        AttnParams {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 8,
            head_dim_v: 8,
            scale: 1.0 / 8f32.sqrt(),
            softcap: None,
            window,
        }
    }

    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + 0.5) * seed).sin()).collect()
    }

    /// Key and value rows of `total` positions stored as a cache of `cap` rows does (position
    /// `pos` in row `pos % cap`, later positions overwrite), in f32 and f16 (keys scaled by 2
    /// in f16 so the two element types see different values).
    #[allow(clippy::type_complexity)]
    fn ring_rows(
        total: usize,
        cap: usize,
        kd: usize,
        ks: f32,
        vs: f32,
    ) -> (Vec<f32>, Vec<f32>, Vec<half::f16>, Vec<half::f16>) {
        let (kall, vall) = (data(total * kd, ks), data(total * kd, vs));
        let (mut k, mut v) = (vec![0f32; cap * kd], vec![0f32; cap * kd]);
        for pos in 0..total {
            let r = pos % cap;
            k[r * kd..(r + 1) * kd].copy_from_slice(&kall[pos * kd..(pos + 1) * kd]);
            v[r * kd..(r + 1) * kd].copy_from_slice(&vall[pos * kd..(pos + 1) * kd]);
        }
        let kh = k.iter().map(|&x| half::f16::from_f32(x * 2.0)).collect();
        let vh = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        (k, v, kh, vh)
    }

    /// Naive reference: full score matrix with -inf outside the allowed range.
    fn naive(
        p: &AttnParams,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        pos: usize,
        n_pos: usize,
    ) -> Vec<f32> {
        let group = p.n_head / p.n_head_kv;
        let kd = p.n_head_kv * p.head_dim;
        let mut out = vec![0f32; p.n_head * p.head_dim_v];
        for h in 0..p.n_head {
            let kvh = h / group;
            let mut s: Vec<f32> = (0..n_pos)
                .map(|j| {
                    let allowed = j <= pos && j >= p.first_key(pos);
                    if !allowed {
                        return f32::NEG_INFINITY;
                    }
                    (0..p.head_dim)
                        .map(|d| q[h * p.head_dim + d] * k[j * kd + kvh * p.head_dim + d])
                        .sum::<f32>()
                        * p.scale
                })
                .collect();
            let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = s.iter().map(|x| (x - m).exp()).sum();
            for x in s.iter_mut() {
                *x = (*x - m).exp() / z;
            }
            for j in 0..n_pos {
                for d in 0..p.head_dim_v {
                    out[h * p.head_dim_v + d] += s[j] * v[j * kd + kvh * p.head_dim_v + d];
                }
            }
        }
        out
    }

    /// The tiled prompt path against the per-token fused path (itself tested against the
    /// two-pass reference): GQA 1:1, 4:1, 7:1, 3:1; head sizes 64, 256, 80; f32 and f16 caches;
    /// sliding windows (also as ring buffers), soft-capping, a cached prefix, several key blocks.
    #[test]
    fn tiled_matches_per_token() {
        const TOL: f32 = 2e-5;
        let shapes = [(4, 4, 64), (8, 2, 64), (14, 2, 64), (4, 1, 256), (3, 1, 80)];
        for (si, &(n_head, n_head_kv, hd)) in shapes.iter().enumerate() {
            for (window, softcap, ring) in [
                (None, None, false),
                (Some(7), None, false),
                (Some(9), None, true),
                (None, Some(1.5), false),
            ] {
                for (p0, n) in [(0usize, 11usize), (13, 70)] {
                    let p = AttnParams {
                        n_head,
                        n_head_kv,
                        head_dim: hd,
                        head_dim_v: hd,
                        scale: 1.0 / (hd as f32).sqrt(),
                        softcap,
                        window,
                    };
                    let total = p0 + n;
                    let cap = match (ring, window) {
                        (true, Some(w)) => w + n - 1,
                        _ => total,
                    };
                    let kd = n_head_kv * hd;
                    let (k, v, kh, vh) = ring_rows(total, cap, kd, 0.37 + si as f32 * 0.01, 0.91);
                    let qd = n_head * hd;
                    let q = data(n * qd, 1.3);
                    let positions: Vec<u32> = (p0..total).map(|x| x as u32).collect();
                    for (kr, vr) in [
                        (Rows::F32(&k), Rows::F32(&v)),
                        (Rows::F16(&kh), Rows::F16(&vh)),
                    ] {
                        let mut tiled = vec![f32::NAN; n * qd];
                        let group = n_head / n_head_kv;
                        let tq = (TILE_ROWS / group).max(1);
                        for kvh in 0..n_head_kv {
                            let mut t0 = 0;
                            while t0 < n {
                                let t1 = (t0 + tq).min(n);
                                attend_tile(
                                    &p,
                                    kvh,
                                    &q,
                                    &positions,
                                    t0,
                                    t1,
                                    kr,
                                    vr,
                                    &mut |t, h, o| {
                                        tiled[t * qd + h * hd..][..hd].copy_from_slice(o)
                                    },
                                );
                                t0 = t1;
                            }
                        }
                        for t in 0..n {
                            for h in 0..n_head {
                                let mut want = vec![0f32; hd];
                                attend_head(
                                    &p,
                                    h,
                                    &q[t * qd..(t + 1) * qd],
                                    kr,
                                    vr,
                                    p0 + t,
                                    &mut want,
                                );
                                let got = &tiled[t * qd + h * hd..][..hd];
                                for (a, b) in got.iter().zip(&want) {
                                    assert!(
                                        (a - b).abs() <= TOL * (1.0 + b.abs()),
                                        "heads {n_head}/{n_head_kv} hd {hd} window {window:?} \
                                         softcap {softcap:?} ring {ring} p0 {p0} t {t} h {h}: \
                                         {a} vs {b}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A query row's tile result is bit-identical whatever else its tile holds: the token
    /// alone (a narrow tile), in tiles of every size from every start, at every key length;
    /// GQA 1:1 to 7:1, windows (also as rings), soft-capping, f32 and f16 caches.
    #[test]
    fn tile_rows_do_not_depend_on_the_tile() {
        for (n_head, n_head_kv, hd, window, softcap, ring) in [
            (4, 4, 64, None, None, false),
            (9, 3, 64, None, None, false),
            (14, 2, 32, Some(7), None, false),
            (4, 2, 80, Some(70), None, true),
            (8, 2, 32, None, Some(1.5), false),
        ] {
            let p = AttnParams {
                n_head,
                n_head_kv,
                head_dim: hd,
                head_dim_v: hd,
                scale: 1.0 / (hd as f32).sqrt(),
                softcap,
                window,
            };
            let (p0, n) = (61, 80); // keys 0..141: three blocks of 64, unaligned starts
            let total = p0 + n;
            let cap = match (ring, window) {
                (true, Some(w)) => w + n - 1,
                _ => total,
            };
            let kd = n_head_kv * hd;
            let (k, v, kh, vh) = ring_rows(total, cap, kd, 0.41, 0.83);
            let qd = n_head * hd;
            let q = data(n * qd, 1.7);
            let positions: Vec<u32> = (p0..total).map(|x| x as u32).collect();
            let group = n_head / n_head_kv;
            let tq = (TILE_ROWS / group).max(1);
            for (kr, vr) in [
                (Rows::F32(&k), Rows::F32(&v)),
                (Rows::F16(&kh), Rows::F16(&vh)),
            ] {
                let tiles = |size: usize, start: usize| {
                    let mut out = vec![f32::NAN; n * qd];
                    for kvh in 0..n_head_kv {
                        let mut t0 = 0;
                        while t0 < n {
                            // The first tile from 0 to `start`, then tiles of `size`.
                            let t1 = if t0 == 0 && start > 0 {
                                start
                            } else {
                                t0 + size
                            };
                            let t1 = t1.min(n);
                            attend_tile(&p, kvh, &q, &positions, t0, t1, kr, vr, &mut |t, h, o| {
                                out[t * qd + h * hd..][..hd].copy_from_slice(o)
                            });
                            t0 = t1;
                        }
                    }
                    out
                };
                let alone = tiles(1, 0);
                for (size, start) in [(tq, 0), (tq, 1), (2.min(tq), 3), (tq.max(2) - 1, 5)] {
                    let start = start.min(tq);
                    let got = tiles(size, start);
                    let same = got
                        .iter()
                        .zip(&alone)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "heads {n_head}/{n_head_kv} window {window:?} softcap {softcap:?} \
                         ring {ring}: tiles of {size} from {start} differ from tokens alone"
                    );
                }
            }
        }
    }

    #[test]
    fn fused_matches_two_pass_f32_and_f16() {
        use half::f16;
        let n_pos = 23;
        for (window, softcap) in [
            (None, None),
            (Some(5), None),
            (None, Some(2.0)),
            (Some(8), Some(0.5)),
        ] {
            let mut p = params(window);
            p.softcap = softcap;
            let k = data(n_pos * 16, 0.37);
            let v = data(n_pos * 16, 0.91);
            let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x * 3.0)).collect();
            let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let q = data(32, 1.3);
            for pos in 0..n_pos {
                for (kr, vr) in [
                    (Rows::F32(&k), Rows::F32(&v)),
                    (Rows::F16(&kh), Rows::F16(&vh)),
                ] {
                    let mut scores = vec![0f32; n_pos];
                    let mut a = vec![0f32; 32];
                    let mut b = vec![0f32; 32];
                    attend(&p, &q, kr, vr, pos, &mut scores, &mut a);
                    attend_fused(&p, &q, kr, vr, pos, &mut b);
                    for (x, y) in a.iter().zip(&b) {
                        assert!(
                            (x - y).abs() < 1e-5,
                            "pos {pos} {window:?} {softcap:?}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn causal_mask_and_gqa_match_naive() {
        let n_pos = 10;
        for window in [None, Some(3)] {
            let p = params(window);
            let k = data(n_pos * 16, 0.37);
            let v = data(n_pos * 16, 0.91);
            let q = data(32, 1.3);
            for pos in 0..n_pos {
                let mut scores = vec![0f32; n_pos];
                let mut out = vec![0f32; 32];
                attend(
                    &p,
                    &q,
                    Rows::F32(&k),
                    Rows::F32(&v),
                    pos,
                    &mut scores,
                    &mut out,
                );
                let r = naive(&p, &q, &k, &v, pos, n_pos);
                for (a, b) in out.iter().zip(&r) {
                    assert!((a - b).abs() < 1e-5, "pos {pos} window {window:?}");
                }
            }
        }
    }

    #[test]
    fn future_and_out_of_window_keys_are_ignored() {
        let p = params(Some(4));
        let n_pos = 12;
        let mut k = data(n_pos * 16, 0.37);
        let mut v = data(n_pos * 16, 0.91);
        let q = data(32, 1.3);
        let pos = 6;
        let mut scores = vec![0f32; n_pos];
        let mut a = vec![0f32; 32];
        attend(
            &p,
            &q,
            Rows::F32(&k),
            Rows::F32(&v),
            pos,
            &mut scores,
            &mut a,
        );
        // Scribble over the future (7..) and the positions before the window (0..3).
        for j in (0..3).chain(7..n_pos) {
            for d in 0..16 {
                k[j * 16 + d] = 1e6;
                v[j * 16 + d] = -1e6;
            }
        }
        let mut b = vec![0f32; 32];
        attend(
            &p,
            &q,
            Rows::F32(&k),
            Rows::F32(&v),
            pos,
            &mut scores,
            &mut b,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn first_position_returns_its_own_value() {
        let p = params(None);
        let k = data(16, 0.37);
        let v = data(16, 0.91);
        let q = data(32, 1.3);
        let mut scores = [0f32; 1];
        let mut out = vec![0f32; 32];
        attend(
            &p,
            &q,
            Rows::F32(&k),
            Rows::F32(&v),
            0,
            &mut scores,
            &mut out,
        );
        // Heads 0,1 read KV head 0; heads 2,3 read KV head 1.
        assert_eq!(&out[0..8], &v[0..8]);
        assert_eq!(&out[8..16], &v[0..8]);
        assert_eq!(&out[16..24], &v[8..16]);
        assert_eq!(&out[24..32], &v[8..16]);
    }

    #[test]
    fn softcap_bounds_scores() {
        let mut p = params(None);
        p.softcap = Some(1.0);
        let n_pos = 2;
        // Key 1 is huge and aligned with q: without a cap it takes all the weight.
        let q = vec![1.0f32; 32];
        let mut k = vec![0f32; n_pos * 16];
        for d in 0..16 {
            k[16 + d] = 100.0;
        }
        let mut v = vec![0f32; n_pos * 16];
        for d in 0..16 {
            v[16 + d] = 1.0;
        }
        let mut scores = vec![0f32; n_pos];
        let mut out = vec![0f32; 32];
        attend(
            &p,
            &q,
            Rows::F32(&k),
            Rows::F32(&v),
            1,
            &mut scores,
            &mut out,
        );
        // Capped scores: 0 and ~1 → weight of key 1 = e/(1+e).
        let w = 1f32.exp() / (1.0 + 1f32.exp());
        assert!((out[0] - w).abs() < 1e-4, "{}", out[0]);
    }
}
