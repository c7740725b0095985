//! Causal grouped-query attention of one query token over one cache slot.
//!
//! Query head `h` reads KV head `h / (n_head / n_head_kv)`. A query at position `p` sees the keys
//! at positions `start..=p` of its own slot, where `start` is 0, or `p + 1 - window` with a
//! sliding window. Scores are `q·k · scale`, optionally soft-capped (`cap · tanh(s / cap)`).
//! Position `p` is read from row `p % rows` of the slot's cached rows, so a sliding-window
//! layer's ring buffer (fewer rows than positions, see `kv_cache`) works unchanged; with a
//! full-size cache that is row `p`.

use kernels::kvq::{BlockQ4_0, BlockQ8_0, QK};

use crate::layers::kv_cache::{Rows, MAX_QUANT_HEAD};
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

/// An element of the KV cache (a value, or a block of [`QK`] values), with the fast kernels
/// of `kernels` and the plain reference twins.
///
/// Slices of elements are indexed in values through [`head`] (`PER` values an element).
pub trait KvElem: Copy {
    /// Values per element: 1, or [`QK`] for a quantized block.
    const PER: usize = 1;
    /// Whether [`KvElem::dot`] wants the query head rounded to Q8_0 blocks (`qq`).
    const QUANT_QUERY: bool = false;
    /// `Σ q[i]·k[i]` (SIMD kernel); `qq` is `q` in Q8_0 blocks when `QUANT_QUERY`, else empty.
    fn dot(q: &[f32], qq: &[BlockQ8_0], k: &[Self]) -> f32;
    /// `out[i] += w·v[i]` (SIMD kernel).
    fn axpy(w: f32, v: &[Self], out: &mut [f32]);
    /// `dst[i] = src[i]` as f32 (SIMD for f16 and the block types).
    fn widen(src: &[Self], dst: &mut [f32]);
    /// `Σ q[i]·k[i]` in plain f32 (the reference [`attend`]; the exact query).
    fn dot_ref(q: &[f32], k: &[Self]) -> f32;
    /// `out[i] += w·v[i]` in plain f32 (the reference [`attend`]).
    fn axpy_ref(w: f32, v: &[Self], out: &mut [f32]);
}

/// The elements holding values `off..off + len` of a row slice (`off`, `len` multiples of
/// `K::PER`: head offsets and sizes, checked at cache creation for the block types).
#[inline(always)]
fn head<K: KvElem>(rows: &[K], off: usize, len: usize) -> &[K] {
    &rows[off / K::PER..][..len / K::PER]
}

impl KvElem for f32 {
    #[inline(always)]
    fn dot(q: &[f32], _: &[BlockQ8_0], k: &[f32]) -> f32 {
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
    fn dot_ref(q: &[f32], k: &[f32]) -> f32 {
        dot_kv(q, k)
    }
    fn axpy_ref(w: f32, v: &[f32], out: &mut [f32]) {
        axpy_kv(w, v, out)
    }
}

impl KvElem for half::f16 {
    #[inline(always)]
    fn dot(q: &[f32], _: &[BlockQ8_0], k: &[half::f16]) -> f32 {
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
    fn dot_ref(q: &[f32], k: &[half::f16]) -> f32 {
        dot_kv(q, k)
    }
    fn axpy_ref(w: f32, v: &[half::f16], out: &mut [f32]) {
        axpy_kv(w, v, out)
    }
}

/// Keys: f32 query against each key block dequantized in registers
/// (`kernels::kvq::dot_f32_q8_0`; the integer dot with the query rounded to Q8_0 is there too,
/// `QUANT_QUERY`, but costs accuracy for no measurable speed); values: dequantized on the fly
/// into the f32 accumulator.
impl KvElem for BlockQ8_0 {
    const PER: usize = QK;
    #[inline(always)]
    fn dot(q: &[f32], _: &[BlockQ8_0], k: &[BlockQ8_0]) -> f32 {
        kernels::kvq::dot_f32_q8_0(q, k)
    }
    #[inline(always)]
    fn axpy(w: f32, v: &[BlockQ8_0], out: &mut [f32]) {
        kernels::kvq::axpy_q8_0(out, w, v)
    }
    #[inline(always)]
    fn widen(src: &[BlockQ8_0], dst: &mut [f32]) {
        kernels::kvq::dequantize_q8_0(src, dst)
    }
    fn dot_ref(q: &[f32], k: &[BlockQ8_0]) -> f32 {
        scalar_dequantized(k, kernels::kvq::dequantize_q8_0_at, |kf| dot_kv(q, kf))
    }
    fn axpy_ref(w: f32, v: &[BlockQ8_0], out: &mut [f32]) {
        scalar_dequantized(v, kernels::kvq::dequantize_q8_0_at, |vf| {
            axpy_kv(w, vf, out)
        })
    }
}

/// As for [`BlockQ8_0`], against Q4_0 keys and values.
impl KvElem for BlockQ4_0 {
    const PER: usize = QK;
    #[inline(always)]
    fn dot(q: &[f32], _: &[BlockQ8_0], k: &[BlockQ4_0]) -> f32 {
        kernels::kvq::dot_f32_q4_0(q, k)
    }
    #[inline(always)]
    fn axpy(w: f32, v: &[BlockQ4_0], out: &mut [f32]) {
        kernels::kvq::axpy_q4_0(out, w, v)
    }
    #[inline(always)]
    fn widen(src: &[BlockQ4_0], dst: &mut [f32]) {
        kernels::kvq::dequantize_q4_0(src, dst)
    }
    fn dot_ref(q: &[f32], k: &[BlockQ4_0]) -> f32 {
        scalar_dequantized(k, kernels::kvq::dequantize_q4_0_at, |kf| dot_kv(q, kf))
    }
    fn axpy_ref(w: f32, v: &[BlockQ4_0], out: &mut [f32]) {
        scalar_dequantized(v, kernels::kvq::dequantize_q4_0_at, |vf| {
            axpy_kv(w, vf, out)
        })
    }
}

/// Calls `$body` with `$k`, `$v` bound to the typed slices of `$keys`, `$values` (one
/// monomorphization per pair; f32 and f16 may mix, the block types pair with themselves).
macro_rules! with_rows {
    ($keys:expr, $values:expr, |$k:ident, $v:ident| $body:expr) => {
        match ($keys, $values) {
            (Rows::F32($k), Rows::F32($v)) => $body,
            (Rows::F16($k), Rows::F16($v)) => $body,
            (Rows::F32($k), Rows::F16($v)) => $body,
            (Rows::F16($k), Rows::F32($v)) => $body,
            (Rows::Q8_0($k), Rows::Q8_0($v)) => $body,
            (Rows::Q4_0($k), Rows::Q4_0($v)) => $body,
            (k, v) => panic!(
                "attention over {k:?} keys and {v:?} values: a cache's keys and values share \
                 one type"
            ),
        }
    };
}

/// `q` (`[QK · qq.len()]`) rounded to Q8_0 blocks when `K` wants it: the blocks used.
#[inline(always)]
fn query_blocks<'a, K: KvElem>(
    q: &[f32],
    qq: &'a mut [BlockQ8_0; MAX_QUANT_HEAD / QK],
) -> &'a [BlockQ8_0] {
    if K::QUANT_QUERY {
        let qq = &mut qq[..q.len() / QK];
        kernels::kvq::quantize_q8_0(q, qq);
        qq
    } else {
        &qq[..0]
    }
}

const Q8_ZERO: BlockQ8_0 = BlockQ8_0 {
    d: [0; 2],
    qs: [0; QK],
};

/// The reference paths of the block types: `f` over `blocks` dequantized by the scalar twin
/// (a head of at most [`MAX_QUANT_HEAD`] values, on the stack).
fn scalar_dequantized<B, R>(
    blocks: &[B],
    dequantize_at: fn(kernels::Level, &[B], &mut [f32]),
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    let mut buf = [0f32; MAX_QUANT_HEAD];
    let x = &mut buf[..blocks.len() * QK];
    dequantize_at(kernels::Level::Scalar, blocks, x);
    f(x)
}

/// `Σ q[i]·k[i]` with eight partial sums (scalar twin for the reference [`attend`]).
#[inline]
fn dot_kv<K: Copy + Into<f32>>(q: &[f32], k: &[K]) -> f32 {
    let mut acc = [0f32; 8];
    let (cq, ck) = (q.chunks_exact(8), k.chunks_exact(8));
    let (rq, rk) = (cq.remainder(), ck.remainder());
    for (a, b) in cq.zip(ck) {
        for i in 0..8 {
            acc[i] += a[i] * b[i].into();
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in rq.iter().zip(rk) {
        s += a * (*b).into();
    }
    s
}

/// `out[i] += w·v[i]`.
#[inline]
fn axpy_kv<V: Copy + Into<f32>>(w: f32, v: &[V], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += w * (*x).into();
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
    with_rows!(keys, values, |k, v| attend_impl(
        p, q, k, v, pos, scores, out
    ))
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
    let rows = keys.len() * K::PER / kd;
    let scores = &mut scores[..n_keys]; // [n_keys]
    for h in 0..p.n_head {
        let kvh = h / group;
        let qh = &q[h * p.head_dim..(h + 1) * p.head_dim];
        for (j, s) in scores.iter_mut().enumerate() {
            let kpos = (first + j) % rows;
            let k = head(keys, kpos * kd + kvh * p.head_dim, p.head_dim);
            let mut v = K::dot_ref(qh, k) * p.scale;
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
            V::axpy_ref(
                w,
                head(values, vpos * vd + kvh * p.head_dim_v, p.head_dim_v),
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
    with_rows!(keys, values, |k, v| attend_head_impl(
        p, h, q, k, v, pos, out_h
    ))
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
    // The query head in Q8_0 blocks once, for integer dots against quantized keys.
    let mut qq_buf = [Q8_ZERO; MAX_QUANT_HEAD / QK];
    let qq = query_blocks::<K>(qh, &mut qq_buf);
    // Running maximum `m`, running sum of exp(s - m) `l`; `out_h` holds Σ exp(s - m)·v.
    let mut m = f32::NEG_INFINITY;
    let mut l = 0f32;
    out_h.fill(0.0);
    // Row of the first key (ring buffer: position p is in row p % rows).
    let rows = keys.len() * K::PER / kd;
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
            let k = head(keys, *r * kd + kvh * p.head_dim, p.head_dim);
            let mut s = K::dot(qh, qq, k) * p.scale;
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
                head(values, r * vd + kvh * p.head_dim_v, p.head_dim_v),
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
/// - `sees_to`: `None` for causal attention (row of position `p` sees keys up to `p`), or
///   `Some(e)` for bidirectional attention: every row sees the keys up to position `e` (the
///   last token of its sequence).
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
    sees_to: Option<usize>,
    write: &mut dyn FnMut(usize, usize, &[f32]),
) {
    let s = sees_to;
    with_rows!(keys, values, |k, v| tile_impl(
        p, kvh, q, positions, t0, t1, k, v, s, write
    ))
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
    sees_to: Option<usize>,
    write: &mut dyn FnMut(usize, usize, &[f32]),
) {
    let rows = (t1 - t0) * (p.n_head / p.n_head_kv);
    assert!(rows <= RT, "attend_tile: {rows} query rows, at most {RT}");
    let (k, v, s) = (keys, values, sees_to);
    match row_tile(rows) {
        4 => tile_n::<K, V, 4>(p, kvh, q, positions, t0, t1, k, v, s, write),
        8 => tile_n::<K, V, 8>(p, kvh, q, positions, t0, t1, k, v, s, write),
        16 => tile_n::<K, V, 16>(p, kvh, q, positions, t0, t1, k, v, s, write),
        _ => tile_n::<K, V, RT>(p, kvh, q, positions, t0, t1, k, v, s, write),
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
    sees_to: Option<usize>,
    write: &mut dyn FnMut(usize, usize, &[f32]),
) {
    let group = p.n_head / p.n_head_kv;
    let (hd, hdv) = (p.head_dim, p.head_dim_v);
    let (qd, kd, vd) = (p.n_head * hd, p.n_head_kv * hd, p.n_head_kv * hdv);
    let rows = (t1 - t0) * group;
    assert!(rows <= N, "attend_tile: {rows} query rows, at most {N}");
    let cap = keys.len() * K::PER / kd; // cached rows (a ring buffer holds position p in row p % cap)
                                        // Row r: token t0 + r / group, query head kvh·group + r % group. Unused rows never see a
                                        // key (position "before" every key) and are not written back.
    let mut pos = [0i64; N];
    let mut lo = [i64::MAX; N];
    for r in 0..rows {
        let at = sees_to.unwrap_or(positions[t0 + r / group] as usize);
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
        let first = p.first_key(sees_to.unwrap_or(positions[t0] as usize));
        let last = sees_to.unwrap_or(positions[t1 - 1] as usize);
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
                    head(keys, row * kd + kvh * hd, hd),
                    &mut kb[j * hd..(j + 1) * hd],
                );
                V::widen(
                    head(values, row * vd + kvh * hdv, hdv),
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
                                    None,
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
    /// Bidirectional tiles (`sees_to`): every row sees the whole sequence; close to
    /// `attend_head` at the last position, and a row's bits do not depend on how the
    /// sequence is cut into tiles (a token alone, or with others). Head size 32 (MiniLM),
    /// several key blocks, f32 and f16 caches.
    #[test]
    fn bidirectional_tiles() {
        const TOL: f32 = 2e-5;
        for &(n_head, n_head_kv, hd, n) in &[(12usize, 12usize, 32usize, 150usize), (4, 2, 64, 9)] {
            let p = AttnParams {
                n_head,
                n_head_kv,
                head_dim: hd,
                head_dim_v: hd,
                scale: 1.0 / (hd as f32).sqrt(),
                softcap: None,
                window: None,
            };
            let kd = n_head_kv * hd;
            let (k, v, kh, vh) = ring_rows(n, n, kd, 0.41, 0.87);
            let qd = n_head * hd;
            let q = data(n * qd, 1.7);
            let positions: Vec<u32> = (0..n as u32).collect();
            let group = n_head / n_head_kv;
            let tq = (TILE_ROWS / group).max(1);
            for (kr, vr) in [
                (Rows::F32(&k), Rows::F32(&v)),
                (Rows::F16(&kh), Rows::F16(&vh)),
            ] {
                let tiles = |size: usize| {
                    let mut out = vec![f32::NAN; n * qd];
                    for kvh in 0..n_head_kv {
                        let mut t0 = 0;
                        while t0 < n {
                            let t1 = (t0 + size).min(n);
                            attend_tile(
                                &p,
                                kvh,
                                &q,
                                &positions,
                                t0,
                                t1,
                                kr,
                                vr,
                                Some(n - 1),
                                &mut |t, h, o| out[t * qd + h * hd..][..hd].copy_from_slice(o),
                            );
                            t0 = t1;
                        }
                    }
                    out
                };
                let full = tiles(tq);
                let alone = tiles(1);
                assert_eq!(
                    full.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    alone.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "heads {n_head}/{n_head_kv}: tiles of {tq} vs tiles of 1"
                );
                for t in 0..n {
                    for h in 0..n_head {
                        let mut want = vec![0f32; hd];
                        attend_head(&p, h, &q[t * qd..(t + 1) * qd], kr, vr, n - 1, &mut want);
                        for (a, b) in full[t * qd + h * hd..][..hd].iter().zip(&want) {
                            assert!(
                                (a - b).abs() <= TOL * (1.0 + b.abs()),
                                "t {t} h {h}: {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
    }

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
                            attend_tile(
                                &p,
                                kvh,
                                &q,
                                &positions,
                                t0,
                                t1,
                                kr,
                                vr,
                                None,
                                &mut |t, h, o| out[t * qd + h * hd..][..hd].copy_from_slice(o),
                            );
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

    /// Q8_0 / Q4_0 rows: the tiled path (blocks dequantized per key block) gives exactly the
    /// results of the f32 path over the dequantized rows; the per-token path (query rounded to
    /// Q8_0, integer q·k, values dequantized into the accumulator) stays within
    /// [`QUERY_ROUNDING_TOL`] of the two-pass reference over the dequantized rows (the rounded
    /// query is the only difference). GQA 2:1, heads of 32, 64, 256, windows and soft-caps.
    #[test]
    fn quantized_rows_match_dequantized_f32() {
        /// |fused − reference| / (1 + |reference|): 8-bit query rounding (step amax/127).
        const QUERY_ROUNDING_TOL: f32 = 2e-2;
        use kernels::kvq;
        let n_pos = 70;
        for hd in [32usize, 64, 256] {
            for (window, softcap) in [(None, None), (Some(9), None), (None, Some(1.5))] {
                let p = AttnParams {
                    n_head: 4,
                    n_head_kv: 2,
                    head_dim: hd,
                    head_dim_v: hd,
                    scale: 1.0 / (hd as f32).sqrt(),
                    softcap,
                    window,
                };
                let kd = 2 * hd;
                let k = data(n_pos * kd, 0.37);
                let v = data(n_pos * kd, 0.91);
                let q = data(n_pos * 4 * hd, 1.3);
                let nb = n_pos * kd / QK;
                let (mut k8, mut v8) = (vec![Q8_ZERO; nb], vec![Q8_ZERO; nb]);
                kvq::quantize_q8_0(&k, &mut k8);
                kvq::quantize_q8_0(&v, &mut v8);
                let z4 = BlockQ4_0 {
                    d: [0; 2],
                    qs: [0; 16],
                };
                let (mut k4, mut v4) = (vec![z4; nb], vec![z4; nb]);
                kvq::quantize_q4_0(&k, &mut k4);
                kvq::quantize_q4_0(&v, &mut v4);
                let deq = |r: Rows| {
                    let mut out = vec![0f32; n_pos * kd];
                    match r {
                        Rows::Q8_0(b) => kvq::dequantize_q8_0(b, &mut out),
                        Rows::Q4_0(b) => kvq::dequantize_q4_0(b, &mut out),
                        _ => unreachable!(),
                    }
                    out
                };
                for (kr, vr) in [
                    (Rows::Q8_0(&k8), Rows::Q8_0(&v8)),
                    (Rows::Q4_0(&k4), Rows::Q4_0(&v4)),
                ] {
                    let (kf, vf) = (deq(kr), deq(vr));
                    let positions: Vec<u32> = (0..n_pos as u32).collect();
                    for pos in [0, 1, 31, 64, 69] {
                        let qp = &q[pos * 4 * hd..(pos + 1) * 4 * hd];
                        let mut scores = vec![0f32; n_pos];
                        let (mut a, mut b) = (vec![0f32; 4 * hd], vec![0f32; 4 * hd]);
                        attend(&p, qp, kr, vr, pos, &mut scores, &mut a);
                        attend_fused(&p, qp, kr, vr, pos, &mut b);
                        let mut c = vec![0f32; 4 * hd];
                        attend(
                            &p,
                            qp,
                            Rows::F32(&kf),
                            Rows::F32(&vf),
                            pos,
                            &mut scores,
                            &mut c,
                        );
                        for (x, y) in a.iter().zip(&c) {
                            assert_eq!(x.to_bits(), y.to_bits(), "reference over blocks");
                        }
                        for (x, y) in b.iter().zip(&c) {
                            assert!(
                                (x - y).abs() <= QUERY_ROUNDING_TOL * (1.0 + y.abs()),
                                "hd {hd} pos {pos} {window:?} {softcap:?}: {x} vs {y}"
                            );
                        }
                    }
                    for kvh in 0..2 {
                        let mut got = vec![f32::NAN; n_pos * 4 * hd];
                        let mut want = vec![f32::NAN; n_pos * 4 * hd];
                        for (rows, out) in [
                            ((kr, vr), &mut got),
                            ((Rows::F32(&kf), Rows::F32(&vf)), &mut want),
                        ] {
                            let mut t0 = 0;
                            while t0 < n_pos {
                                let t1 = (t0 + 16).min(n_pos);
                                attend_tile(
                                    &p,
                                    kvh,
                                    &q,
                                    &positions,
                                    t0,
                                    t1,
                                    rows.0,
                                    rows.1,
                                    None,
                                    &mut |t, h, o| {
                                        out[t * 4 * hd + h * hd..][..hd].copy_from_slice(o)
                                    },
                                );
                                t0 = t1;
                            }
                        }
                        for (x, y) in got.iter().zip(&want) {
                            assert_eq!(x.to_bits(), y.to_bits(), "tiled, hd {hd}");
                        }
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
