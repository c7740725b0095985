//! Matrix products over quantized weights.
//!
//! `matmul` = quantize the activations once (8-bit blocks, see `act`), then split the output
//! into regions (row chunks for one token; row chunk × token chunk tiles for prompts) and run
//! the weight type's region kernel on the thread pool. Float weights (F32/F16/BF16) use f32
//! dot products directly. In the batch-invariant mode ([`crate::batch_invariant`]) the kernel
//! no longer depends on the token count (see `matmul_multi_at`).

use std::cell::RefCell;

use gguf::GgmlType;

use crate::act::{interleave_a256, interleave_a32};
use crate::cpu::{level, Level};
use crate::dot::{kernels, quantizer, ActKind, Region, RegionFn};
use crate::gemm::{gemm_at, gemm_multi_at, FloatMatrix, FloatType};
use crate::vec::VecFns;
use crate::{batch_invariant, dequantize_row, num_threads, parallel_for, QMatrix};

/// Rows per task for prompt tiles (a multiple of every tile height).
const PP_ROWS: usize = 32;
/// Tokens per task for prompt tiles.
const PP_TOKENS: usize = 64;
/// Below this many tokens, only rows are split across tasks.
const TOKEN_SPLIT: usize = 8;
/// Batch-invariant mode: up to this many tokens run the exact one-token kernels (one token
/// after another), more the xN kernels.
const EXACT_MAX: usize = 3;

thread_local! {
    /// Quantized activations of the calling thread: `[n, blocks]`, grown when needed.
    static ACT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// One dequantized weight row (float weights that are not aligned in the file).
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A raw output pointer that tasks may share: each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements and `parallel_for` returns only after all finished.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// `y[t, r] = Σ_c x[t, c] · W[r, c]` for `t < n`.
///
/// `x`: `[n, w.cols]`, `y`: `[n, w.rows]`. Weights stay quantized; activations are rounded to
/// 8 bits per block for integer dot products (float weights use f32 math). Threaded on the
/// kernels pool. Panics on mismatched lengths or an unsupported type (callers check
/// [`crate::supports`] at load time).
pub fn matmul(w: &QMatrix, x: &[f32], n: usize, y: &mut [f32]) {
    matmul_at(level(), w, x, n, y)
}
/// [`matmul`] with an explicit dispatch level (tests and benchmarks compare levels).
pub fn matmul_at(level: Level, w: &QMatrix, x: &[f32], n: usize, y: &mut [f32]) {
    matmul_multi_at(level, std::slice::from_ref(w), x, n, &mut [y])
}

/// Most matrices [`matmul_multi`] takes at once (the float GEMM's limit, shared).
pub use crate::gemm::MAX_MULTI;

/// Several products of the same input, `ys[i] = x · ws[i]ᵀ` (e.g. the q, k and v
/// projections): the activations are quantized once and all regions run as one job on the
/// pool (one synchronisation instead of one per matrix). Same rules as [`matmul`]; at most
/// [`MAX_MULTI`] matrices, all with `cols` columns.
pub fn matmul_multi(ws: &[QMatrix], x: &[f32], n: usize, ys: &mut [&mut [f32]]) {
    matmul_multi_at(level(), ws, x, n, ys)
}

/// [`matmul_multi`] with an explicit dispatch level.
pub fn matmul_multi_at(level: Level, ws: &[QMatrix], x: &[f32], n: usize, ys: &mut [&mut [f32]]) {
    assert!(
        level.available(),
        "{level} kernels are not available on this CPU"
    );
    assert!(
        !ws.is_empty() && ws.len() <= MAX_MULTI && ws.len() == ys.len(),
        "matmul: 1..={MAX_MULTI} matrices, one output each"
    );
    // Everything the region kernels' pointer arithmetic relies on, checked once per call (the
    // products are checked too: a wrapped product could match a short buffer).
    let prod = |a: usize, b: usize, what: &str| {
        a.checked_mul(b)
            .unwrap_or_else(|| panic!("matmul: {what} = {a} x {b} overflows"))
    };
    for (w, y) in ws.iter().zip(ys.iter()) {
        assert_eq!(
            w.cols, ws[0].cols,
            "matmul: matrices of one input differ in cols"
        );
        assert_eq!(
            x.len(),
            prod(n, w.cols, "n x cols"),
            "matmul: x has {} values, not [n = {n}, cols = {}]",
            x.len(),
            w.cols
        );
        assert_eq!(
            y.len(),
            prod(n, w.rows, "n x rows"),
            "matmul: y has {} values, not [n = {n}, rows = {}]",
            y.len(),
            w.rows
        );
        assert_eq!(
            w.cols % w.ty.block_size(),
            0,
            "matmul: {} cols are not a whole number of {}-value {} blocks",
            w.cols,
            w.ty.block_size(),
            w.ty
        );
        let need = prod(w.rows, w.row_bytes(), "rows x row_bytes");
        assert!(
            w.data.len() >= need,
            "matmul: {} weights [{}, {}] need {need} bytes, the data has {}",
            w.ty,
            w.rows,
            w.cols,
            w.data.len()
        );
    }
    if n == 0 {
        return;
    }
    // The integer path is shared when every matrix has a kernel for the same activation
    // format and grouping (e.g. Q5_0 and Q8_0 both take A32 blocks).
    //
    // Batch-invariant mode: every token count takes the xN kernels (a partial group's other
    // lanes are zeros, see `interleave_a32`/`interleave_a256`, and only real lanes are
    // stored): each lane does its token's operations in the same order whatever the other
    // lanes hold, so a row of `y` never depends on the other rows of `x`. Up to EXACT_MAX
    // tokens take `dot::exact` instead: the same arithmetic as an xN lane, one token at a
    // time, without computing unused lanes. Float weights and types without an integer
    // kernel (`float_or_reference`) compute one independent dot per (row, token) anyway.
    let invariant = batch_invariant();
    let xn = n >= TOKEN_SPLIT || invariant;
    let exact1 = invariant && n <= EXACT_MAX;
    let kernel = |w: &QMatrix| -> Option<(ActKind, RegionFn, usize)> {
        let t = kernels(w.ty)?;
        let k = t.at(level);
        if exact1 {
            if let Some(f) = k.exact1 {
                return Some((t.act, f, 1));
            }
        }
        if xn {
            if let Some((f, lanes)) = k.xn {
                return Some((t.act, f, lanes));
            }
        }
        Some((t.act, k.region, 1))
    };
    let first = kernel(&ws[0]);
    let shared = first.is_some()
        && ws.iter().all(|w| {
            matches!((kernel(w), first), (Some((k, _, l)), Some((k0, _, l0))) if k == k0 && l == l0)
        });
    if !shared && ws.len() > 1 {
        // Float weights: one pool job for all of them (the same bits as one call each).
        if ws.iter().all(|w| float_matrix(w).is_some()) {
            let empty = FloatMatrix {
                ty: FloatType::F32,
                data: &[],
                rows: 0,
                cols: 0,
            };
            let mut fs = [empty; MAX_MULTI];
            for (f, w) in fs.iter_mut().zip(ws) {
                *f = float_matrix(w).expect("checked: a float type");
            }
            return gemm_multi_at(level, &fs[..ws.len()], x, n, ys);
        }
    }
    if !shared {
        for (w, y) in ws.iter().zip(ys.iter_mut()) {
            if ws.len() > 1 && kernel(w).is_some() {
                matmul_multi_at(level, std::slice::from_ref(w), x, n, &mut [&mut **y]);
            } else if w.rows > 0 {
                float_or_reference(level, w, x, n, y);
            }
        }
        return;
    }
    let (kind, _, lanes) = first.expect("checked");
    let cols = ws[0].cols;
    let nb = cols / kind.values();
    let act_row = nb * kind.bytes();
    let quant = quantizer(level, kind);
    let threads = num_threads();
    let run = |act: &[u8], stride: usize, ys: &mut [&mut [f32]]| {
        let mut plans: [Option<Plan>; MAX_MULTI] = [None, None, None, None];
        for (i, (w, y)) in ws.iter().zip(ys.iter_mut()).enumerate() {
            let (_, f, _) = kernel(w).expect("checked");
            plans[i] = Some(Plan::new(w, act, stride, lanes, n, y, f, threads));
        }
        run_plans(&plans);
    };
    if lanes > 1 {
        // One group of `lanes` tokens' blocks, interleaved.
        let group = act_row * lanes;
        with_act(n * act_row + n.div_ceil(lanes) * group, |buf| {
            let (rows, groups) = buf.split_at_mut(n * act_row);
            quantize_rows(quant, x, cols, n, rows, act_row);
            match kind {
                ActKind::A32 | ActKind::A32M => interleave_a32(rows, n, nb, lanes, groups),
                ActKind::A256 => interleave_a256(rows, n, nb, lanes, groups),
            }
            run(groups, group, ys);
        });
    } else {
        with_act(n * act_row, |act| {
            quantize_rows(quant, x, cols, n, act, act_row);
            run(act, act_row, ys);
        });
    }
}

/// Runs `f` with a scratch buffer of `len` bytes (the thread's own, or a fresh one when that
/// is in use by an outer call on the same thread).
fn with_act(len: usize, f: impl FnOnce(&mut [u8])) {
    ACT.with(|c| match c.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0u8; len]),
    })
}

/// Quantizes `n` rows of `x` into `act` (row `t` at `t * act_row`), in parallel when large.
fn quantize_rows(
    quant: fn(&[f32], &mut [u8]),
    x: &[f32],
    cols: usize,
    n: usize,
    act: &mut [u8],
    act_row: usize,
) {
    const ROWS_PER_TASK: usize = 16;
    if n < 2 * ROWS_PER_TASK || num_threads() == 1 {
        // Blocks never straddle rows (cols is a multiple of the block), so one call does all.
        quant(x, act);
        return;
    }
    let tasks = n.div_ceil(ROWS_PER_TASK);
    let out = act.as_mut_ptr() as usize;
    parallel_for(tasks, &|i| {
        let t0 = i * ROWS_PER_TASK;
        let t1 = (t0 + ROWS_PER_TASK).min(n);
        // SAFETY: tasks cover disjoint row ranges of `act`, which outlives the call.
        let o = unsafe {
            std::slice::from_raw_parts_mut((out as *mut u8).add(t0 * act_row), (t1 - t0) * act_row)
        };
        quant(&x[t0 * cols..t1 * cols], o);
    });
}

/// How one product's output is cut into regions (tasks for the pool).
struct Plan<'a> {
    w: &'a QMatrix<'a>,
    /// Quantized activations: rows of one token, or groups of `lanes` tokens.
    act: &'a [u8],
    /// Stride of one activation row / group.
    act_row: usize,
    lanes: usize,
    n: usize,
    y: OutPtr,
    /// Rows and tokens per region.
    rc: usize,
    tc: usize,
    row_chunks: usize,
    tasks: usize,
    f: RegionFn,
}

impl<'a> Plan<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        w: &'a QMatrix<'a>,
        act: &'a [u8],
        act_row: usize,
        lanes: usize,
        n: usize,
        y: &mut [f32],
        f: RegionFn,
        threads: usize,
    ) -> Plan<'a> {
        let rows = w.rows;
        let (rc, tc) = if n < TOKEN_SPLIT {
            // One token (or a few): split rows only, ~8 chunks per thread for balance.
            (rows.div_ceil(threads * 8).next_multiple_of(4).max(16), n)
        } else {
            (PP_ROWS, PP_TOKENS)
        };
        let row_chunks = rows.div_ceil(rc);
        Plan {
            w,
            act,
            act_row,
            lanes,
            n,
            y: OutPtr(y.as_mut_ptr()),
            rc,
            tc,
            row_chunks,
            tasks: row_chunks * n.div_ceil(tc),
            f,
        }
    }

    /// Runs region `i` of this plan.
    ///
    /// # Safety
    /// `i < self.tasks`; the buffers the plan was built from are alive; no other call runs
    /// the same `i` concurrently; the CPU supports the kernel's level.
    unsafe fn run(&self, i: usize) {
        let (ri, ti) = (i % self.row_chunks, i / self.row_chunks);
        let (r0, t0) = (ri * self.rc, ti * self.tc);
        let (rows, row_bytes) = (self.w.rows, self.w.row_bytes());
        let (g_rows, g_tokens) = (self.rc.min(rows - r0), self.tc.min(self.n - t0));
        // SAFETY: `i < tasks` gives r0 < rows and t0 < n, so each of the three offsets stays
        // inside its buffer (the weights hold rows x row_bytes bytes, the activations a row or
        // a group of `lanes` rows per token, y is [n, rows]; checked by `matmul_multi_at`).
        let (w, a, y) = unsafe {
            (
                self.w.data.as_ptr().add(r0 * row_bytes),
                self.act.as_ptr().add(t0 / self.lanes * self.act_row),
                self.y.0.add(t0 * rows + r0),
            )
        };
        let mut g = Region {
            w,
            w_stride: row_bytes,
            nb: self.w.cols / self.w.ty.block_size(),
            rows: g_rows,
            a,
            a_stride: self.act_row,
            tokens: g_tokens,
            y,
            y_stride: rows,
        };
        if self.rc * self.tc > PP_ROWS * PP_TOKENS || g_tokens == 1 {
            // SAFETY: the region lies inside the plan's buffers (above), which are alive; no
            // other call writes its outputs; the kernel's level is available (the caller's
            // contract).
            return unsafe { (self.f)(&g) };
        }
        // Prompt tiles write their outputs to a small dense block first: written straight into
        // `y`, one tile's column of outputs lands on addresses `rows · 4` bytes apart, which for
        // 1024 or 2048 rows all fall in the same cache set.
        // [g_tokens, g_rows], every value written by the kernel before it is read.
        let mut block = std::mem::MaybeUninit::<[f32; PP_ROWS * PP_TOKENS]>::uninit();
        let bp = block.as_mut_ptr() as *mut f32;
        g.y = bp;
        g.y_stride = g_rows;
        // SAFETY: as above, with the outputs in `block`, which holds g_rows x g_tokens values
        // (at most rc x tc <= PP_ROWS x PP_TOKENS on this path).
        unsafe { (self.f)(&g) };
        for t in 0..g_tokens {
            // SAFETY: row t0 + t of `y`, columns r0..r0 + g_rows: inside `y`, this task's own;
            // the block's row t was written by the kernel (the region covers it).
            let (dst, src) = unsafe {
                (
                    std::slice::from_raw_parts_mut(self.y.0.add((t0 + t) * rows + r0), g_rows),
                    std::slice::from_raw_parts(bp.add(t * g_rows), g_rows),
                )
            };
            // A plain loop (a few dozen values): inlined, where `copy_from_slice` calls memmove.
            for (d, v) in dst.iter_mut().zip(src) {
                *d = *v;
            }
        }
    }
}

/// Runs every region of every plan, as one job on the pool.
fn run_plans(plans: &[Option<Plan>]) {
    let total: usize = plans.iter().flatten().map(|p| p.tasks).sum();
    let task = |mut i: usize| {
        for p in plans.iter().flatten() {
            if i < p.tasks {
                // SAFETY: `i` is claimed once; regions of one plan are disjoint and plans
                // write different outputs; the buffers outlive this call.
                unsafe { p.run(i) };
                return;
            }
            i -= p.tasks;
        }
    };
    if total == 1 || num_threads() == 1 {
        (0..total).for_each(task);
    } else {
        parallel_for(total, &task);
    }
}

/// `w` as a [`FloatMatrix`] when its type is F32, F16 or BF16 (shapes checked by the caller).
fn float_matrix<'a>(w: &QMatrix<'a>) -> Option<FloatMatrix<'a>> {
    let ty = match w.ty {
        GgmlType::F32 => FloatType::F32,
        GgmlType::F16 => FloatType::F16,
        GgmlType::BF16 => FloatType::Bf16,
        _ => return None,
    };
    Some(FloatMatrix {
        ty,
        data: &w.data[..w.rows * w.row_bytes()],
        rows: w.rows,
        cols: w.cols,
    })
}

/// Float weights ([`crate::gemm`]: one fixed order per output, whatever `n`), or any other
/// supported type through `dequantize_row`.
fn float_or_reference(level: Level, w: &QMatrix, x: &[f32], n: usize, y: &mut [f32]) {
    if let Some(fm) = float_matrix(w) {
        return gemm_at(level, &fm, x, n, y);
    }
    let v = VecFns::at(level);
    let (rows, cols) = (w.rows, w.cols);
    let rb = w.row_bytes();
    let threads = num_threads();
    let rc = rows.div_ceil(threads * 8).max(4);
    let out = OutPtr(y.as_mut_ptr());
    let task = |i: usize| {
        let r0 = i * rc;
        let r1 = (r0 + rc).min(rows);
        let _ = &out;
        ROW.with(|c| {
            let mut tmp;
            let mut guard = c.try_borrow_mut();
            let buf: &mut Vec<f32> = match guard {
                Ok(ref mut g) => g,
                Err(_) => {
                    tmp = Vec::new();
                    &mut tmp
                }
            };
            buf.resize(cols, 0.0);
            for r in r0..r1 {
                let raw = &w.data[r * rb..(r + 1) * rb];
                dequantize_row(w.ty, raw, buf).expect("matmul: unsupported weight type");
                for t in 0..n {
                    let val = (v.dot_f32)(buf, &x[t * cols..(t + 1) * cols]);
                    // SAFETY: t < n and r < rows: inside y; rows are disjoint between tasks.
                    unsafe { *out.0.add(t * rows + r) = val };
                }
            }
        })
    };
    let n_tasks = rows.div_ceil(rc);
    if n_tasks == 1 || threads == 1 {
        (0..n_tasks).for_each(task);
    } else {
        parallel_for(n_tasks, &task);
    }
}

/// The plain reference: dequantize each weight row, f32 dot products, one thread.
pub fn matmul_reference(w: &QMatrix, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(x.len(), n * w.cols, "matmul_reference: x is not [n, cols]");
    assert_eq!(y.len(), n * w.rows, "matmul_reference: y is not [n, rows]");
    let mut row = vec![0f32; w.cols];
    for r in 0..w.rows {
        dequantize_row(w.ty, w.row(r), &mut row).expect("matmul_reference: unsupported type");
        for t in 0..n {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            y[t * w.rows + r] = row.iter().zip(xt).map(|(a, b)| a * b).sum();
        }
    }
}
