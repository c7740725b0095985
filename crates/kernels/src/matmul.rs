//! Matrix products over quantized weights.
//!
//! `matmul` = quantize the activations once (8-bit blocks, see `act`), then split the output
//! into regions (row chunks for one token; row chunk × token chunk tiles for prompts) and run
//! the weight type's region kernel on the thread pool. Float weights (F32/F16/BF16) use f32
//! dot products directly.

use std::cell::RefCell;

use gguf::GgmlType;
use half::{bf16, f16};

use crate::act::{interleave_a256, interleave_a32};
use crate::cpu::{level, Level};
use crate::dot::ActKind;
use crate::dot::{act_kind, quantizer, region_fn, region_xn_fn, Region};
use crate::vec::VecFns;
use crate::{dequantize_row, num_threads, parallel_for, QMatrix};

/// Rows per task for prompt tiles (a multiple of every tile height).
const PP_ROWS: usize = 32;
/// Tokens per task for prompt tiles.
const PP_TOKENS: usize = 64;
/// Below this many tokens, only rows are split across tasks.
const TOKEN_SPLIT: usize = 8;

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
    assert!(
        level.available(),
        "{level} kernels are not available on this CPU"
    );
    assert_eq!(x.len(), n * w.cols, "matmul: x is not [n, cols]");
    assert_eq!(y.len(), n * w.rows, "matmul: y is not [n, rows]");
    assert_eq!(
        w.cols % w.ty.block_size(),
        0,
        "matmul: partial weight block"
    );
    assert!(
        w.data.len() >= w.rows * w.row_bytes(),
        "matmul: weight data shorter than rows x row_bytes"
    );
    if n == 0 || w.rows == 0 {
        return;
    }
    let xn = if n >= TOKEN_SPLIT {
        region_xn_fn(level, w.ty)
    } else {
        None
    };
    match (act_kind(w.ty), region_fn(level, w.ty)) {
        (Some(kind), Some(_)) if xn.is_some() => {
            let (f, lanes) = xn.expect("checked");
            let nb = w.cols / kind.values();
            let act_row = nb * kind.bytes();
            // One group of `lanes` tokens' blocks, interleaved.
            let group = act_row * lanes;
            let quant = quantizer(level, kind);
            with_act(n * act_row + n.div_ceil(lanes) * group, |buf| {
                let (rows, groups) = buf.split_at_mut(n * act_row);
                quantize_rows(quant, x, w.cols, n, rows, act_row);
                match kind {
                    ActKind::A32 => interleave_a32(rows, n, nb, lanes, groups),
                    ActKind::A256 => interleave_a256(rows, n, nb, lanes, groups),
                }
                run_regions(w, groups, group, lanes, n, y, |g| {
                    // SAFETY: as below, with `a` at 8-token groups.
                    unsafe { f(g) }
                });
            });
        }
        (Some(kind), Some(f)) => {
            let act_row = w.cols / kind.values() * kind.bytes();
            let quant = quantizer(level, kind);
            with_act(n * act_row, |act| {
                quantize_rows(quant, x, w.cols, n, act, act_row);
                run_regions(w, act, act_row, 1, n, y, |g| {
                    // SAFETY: the region lies inside `w.data`, `act` and `y` (built by
                    // `run_regions` from checked lengths), and `level` is available.
                    unsafe { f(g) }
                });
            });
        }
        _ => float_or_reference(level, w, x, n, y),
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

/// Splits the output into regions and runs `f` on each, on the pool. `act_row` is the
/// stride of one group of `lanes` tokens (1: plain rows).
fn run_regions(
    w: &QMatrix,
    act: &[u8],
    act_row: usize,
    lanes: usize,
    n: usize,
    y: &mut [f32],
    f: impl Fn(&Region) + Sync,
) {
    let rows = w.rows;
    let threads = num_threads();
    let (rc, tc) = if n < TOKEN_SPLIT {
        // One token (or a few): split rows only, ~8 chunks per thread for balance.
        let rc = rows.div_ceil(threads * 8).next_multiple_of(4).max(16);
        (rc, n)
    } else {
        (PP_ROWS, PP_TOKENS)
    };
    let row_chunks = rows.div_ceil(rc);
    let tok_chunks = n.div_ceil(tc);
    let out = OutPtr(y.as_mut_ptr());
    let row_bytes = w.row_bytes();
    let nb = w.cols / w.ty.block_size();
    let task = |i: usize| {
        let (ri, ti) = (i % row_chunks, i / row_chunks);
        let (r0, t0) = (ri * rc, ti * tc);
        let g = Region {
            // SAFETY: r0 < rows and t0 < n, so both offsets stay inside their buffers.
            w: unsafe { w.data.as_ptr().add(r0 * row_bytes) },
            w_stride: row_bytes,
            nb,
            rows: rc.min(rows - r0),
            // SAFETY: as above.
            a: unsafe { act.as_ptr().add(t0 / lanes * act_row) },
            a_stride: act_row,
            tokens: tc.min(n - t0),
            // SAFETY: as above.
            y: unsafe { out.0.add(t0 * rows + r0) },
            y_stride: rows,
        };
        let _ = &out;
        f(&g);
    };
    let n_tasks = row_chunks * tok_chunks;
    if n_tasks == 1 || threads == 1 {
        (0..n_tasks).for_each(task);
    } else {
        parallel_for(n_tasks, &task);
    }
}

/// Float weights (f32 math), or any other supported type through `dequantize_row`.
fn float_or_reference(level: Level, w: &QMatrix, x: &[f32], n: usize, y: &mut [f32]) {
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
        for r in r0..r1 {
            let raw = &w.data[r * rb..(r + 1) * rb];
            let dot_row = |t: usize, val: f32| {
                // SAFETY: t < n and r < rows: inside y; rows are disjoint between tasks.
                unsafe { *out.0.add(t * rows + r) = val };
            };
            match w.ty {
                GgmlType::F16 if (raw.as_ptr() as usize) & 1 == 0 => {
                    // SAFETY: aligned for f16, `rb = 2 * cols` bytes, any bits are an f16.
                    let h = unsafe { std::slice::from_raw_parts(raw.as_ptr() as *const f16, cols) };
                    for t in 0..n {
                        dot_row(t, (v.dot_f16_f32)(h, &x[t * cols..(t + 1) * cols]));
                    }
                }
                GgmlType::BF16 if (raw.as_ptr() as usize) & 1 == 0 => {
                    // SAFETY: as above for bf16.
                    let h =
                        unsafe { std::slice::from_raw_parts(raw.as_ptr() as *const bf16, cols) };
                    for t in 0..n {
                        dot_row(t, (v.dot_bf16_f32)(h, &x[t * cols..(t + 1) * cols]));
                    }
                }
                GgmlType::F32 if (raw.as_ptr() as usize) & 3 == 0 => {
                    // SAFETY: aligned for f32, `rb = 4 * cols` bytes, any bits are an f32.
                    let h = unsafe { std::slice::from_raw_parts(raw.as_ptr() as *const f32, cols) };
                    for t in 0..n {
                        dot_row(t, (v.dot_f32)(h, &x[t * cols..(t + 1) * cols]));
                    }
                }
                _ => ROW.with(|c| {
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
                    dequantize_row(w.ty, raw, buf).expect("matmul: unsupported weight type");
                    for t in 0..n {
                        dot_row(t, (v.dot_f32)(buf, &x[t * cols..(t + 1) * cols]));
                    }
                }),
            }
        }
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
    assert_eq!(x.len(), n * w.cols);
    assert_eq!(y.len(), n * w.rows);
    let mut row = vec![0f32; w.cols];
    for r in 0..w.rows {
        dequantize_row(w.ty, w.row(r), &mut row).expect("matmul_reference: unsupported type");
        for t in 0..n {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            y[t * w.rows + r] = row.iter().zip(xt).map(|(a, b)| a * b).sum();
        }
    }
}
