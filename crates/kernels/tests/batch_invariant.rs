//! The batch-invariant mode ([`kernels::set_batch_invariant`]): at every dispatch level this CPU
//! has, for every weight type with an integer kernel (and the float / dequantizing paths), row
//! `t` of a matrix product over `n` tokens is bit-identical to the product of token `t` alone,
//! for every `n` in 1..=40, wherever the token sits in its lane group, and whatever the thread
//! count. `matmul_multi` too.
//!
//! Every test of this binary switches the mode on (and none switches it off), so tests running
//! in parallel see the same mode.

mod common;

use common::{levels, rand_vec, weights, QTYPES};
use gguf::GgmlType;
use kernels::{matmul_at, matmul_multi_at, Level, QMatrix};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Types on the f32 path: float weights, and quantized types without an integer kernel (a row
/// is dequantized, then f32 dots).
const OTHER_TYPES: [GgmlType; 7] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::TQ2_0,
    GgmlType::MXFP4,
];

/// `(rows, cols)`: rows not a multiple of the 4-row tiles nor of 16; one and several row
/// chunks per task; cols of one and of several K-quant super-blocks (odd 32-value block
/// counts too: 768 = 24 blocks, 1280 = 40).
const SHAPES: [(usize, usize); 4] = [(7, 256), (37, 768), (130, 512), (19, 1280)];

/// Most tokens per product tested.
const MAX_N: usize = 40;

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// For `w` at `level`: every token of `x` (`[MAX_N + 9, cols]`) alone, then every window
/// `x[s..s + n]` for `n` in 1..=MAX_N and a few starts `s` (so a token meets every lane of a
/// group), row by row against the lone results.
fn check(level: Level, w: &QMatrix, x: &[f32], what: &str) {
    let (rows, cols) = (w.rows, w.cols);
    let total = x.len() / cols;
    let alone: Vec<Vec<f32>> = (0..total)
        .map(|t| {
            let mut y = vec![f32::NAN; rows];
            matmul_at(level, w, &x[t * cols..(t + 1) * cols], 1, &mut y);
            y
        })
        .collect();
    let mut y = vec![f32::NAN; total * rows];
    // A debug build (~50x slower) tries two starts only.
    let starts: &[usize] = if cfg!(debug_assertions) {
        &[0, 5]
    } else {
        &[0, 1, 5, 9]
    };
    for &s in starts {
        for n in 1..=MAX_N.min(total - s) {
            let y = &mut y[..n * rows];
            y.fill(f32::NAN);
            matmul_at(level, w, &x[s * cols..(s + n) * cols], n, y);
            for t in 0..n {
                assert!(
                    same_bits(&y[t * rows..(t + 1) * rows], &alone[s + t]),
                    "{what} {level} rows={rows} cols={cols}: row {t} of {n} tokens (from {s}) \
                     differs from the token alone"
                );
            }
        }
    }
}

#[test]
fn matmul_rows_do_not_depend_on_the_batch() {
    kernels::set_batch_invariant(true);
    assert!(kernels::batch_invariant());
    let mut rng = StdRng::seed_from_u64(21);
    for ty in QTYPES.into_iter().chain(OTHER_TYPES) {
        assert!(kernels::supports(ty), "{ty}");
        for (rows, cols) in SHAPES {
            let data = weights(&mut rng, ty, rows, cols).0;
            let w = QMatrix {
                ty,
                data: &data,
                rows,
                cols,
            };
            let x = rand_vec(&mut rng, (MAX_N + 9) * cols, 2.0);
            for level in levels() {
                check(level, &w, &x, &format!("{ty}"));
            }
        }
    }
}

/// The same with one and three threads (row chunks per task change with the thread count).
#[test]
fn matmul_rows_do_not_depend_on_threads() {
    kernels::set_batch_invariant(true);
    let mut rng = StdRng::seed_from_u64(22);
    let (rows, cols) = (70, 512);
    let x = rand_vec(&mut rng, 24 * cols, 2.0);
    for ty in [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let data = weights(&mut rng, ty, rows, cols).0;
        let w = QMatrix {
            ty,
            data: &data,
            rows,
            cols,
        };
        for level in levels() {
            let mut want = vec![0f32; 24 * rows];
            for t in 0..24 {
                matmul_at(
                    level,
                    &w,
                    &x[t * cols..(t + 1) * cols],
                    1,
                    &mut want[t * rows..(t + 1) * rows],
                );
            }
            for threads in [1, 3, 0] {
                kernels::set_num_threads(threads);
                let mut got = vec![f32::NAN; 24 * rows];
                matmul_at(level, &w, &x, 24, &mut got);
                assert!(
                    same_bits(&got, &want),
                    "{ty} {level} threads={threads}: 24 tokens differ from one at a time"
                );
            }
        }
    }
}

/// `matmul_multi` (one shared integer path for types of one activation format, separate
/// products otherwise) gives each matrix the rows `matmul` gives it alone, token by token.
#[test]
fn matmul_multi_rows_do_not_depend_on_the_batch() {
    kernels::set_batch_invariant(true);
    let mut rng = StdRng::seed_from_u64(23);
    let cols = 512;
    let sets: [&[(GgmlType, usize)]; 3] = [
        &[
            (GgmlType::Q4_1, 64),
            (GgmlType::Q4_1, 16),
            (GgmlType::Q4_1, 16),
        ],
        &[
            (GgmlType::Q4_0, 40),
            (GgmlType::Q8_0, 24),
            (GgmlType::Q5_0, 9),
        ],
        &[
            (GgmlType::Q4_K, 33),
            (GgmlType::Q6_K, 20),
            (GgmlType::F16, 12),
        ],
    ];
    for set in sets {
        let data: Vec<Vec<u8>> = set
            .iter()
            .map(|&(ty, rows)| weights(&mut rng, ty, rows, cols).0)
            .collect();
        let ws: Vec<QMatrix> = set
            .iter()
            .zip(&data)
            .map(|(&(ty, rows), d)| QMatrix {
                ty,
                data: d,
                rows,
                cols,
            })
            .collect();
        let total = 30;
        let x = rand_vec(&mut rng, total * cols, 2.0);
        for level in levels() {
            for n in 1..=total {
                let mut outs: Vec<Vec<f32>> =
                    ws.iter().map(|w| vec![f32::NAN; n * w.rows]).collect();
                let mut ys: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
                matmul_multi_at(level, &ws, &x[..n * cols], n, &mut ys);
                for (w, got) in ws.iter().zip(&outs) {
                    for t in 0..n {
                        let mut want = vec![0f32; w.rows];
                        matmul_at(level, w, &x[t * cols..(t + 1) * cols], 1, &mut want);
                        assert!(
                            same_bits(&got[t * w.rows..(t + 1) * w.rows], &want),
                            "{} {level}: matmul_multi row {t} of {n} differs from matmul alone",
                            w.ty
                        );
                    }
                }
            }
        }
    }
}

/// `LUME_BATCH_INVARIANT=1` turns the mode on when nothing set it first: this binary runs
/// itself with the variable set, and the child checks the switch without touching it.
#[test]
fn environment_turns_the_mode_on() {
    if std::env::var_os("LUME_BI_CHILD").is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "env_child", "--nocapture"])
        .env("LUME_BI_CHILD", "1")
        .env("LUME_BATCH_INVARIANT", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The child's half of [`environment_turns_the_mode_on`] (a no-op in the parent process, where
/// the mode was not set from the environment).
#[test]
fn env_child() {
    if std::env::var_os("LUME_BI_CHILD").is_none() {
        return;
    }
    assert!(kernels::batch_invariant(), "LUME_BATCH_INVARIANT=1 ignored");
    kernels::set_batch_invariant(false);
    assert!(
        !kernels::batch_invariant(),
        "set_batch_invariant overrides it"
    );
}
