//! SIMD kernels against their scalar twins at every dispatch level this CPU has, and matmul
//! against the dequantize-then-f32 reference.

mod common;

use common::{levels, rand_vec, weights, QTYPES};
use gguf::GgmlType;
use kernels::{matmul_at, matmul_multi_at, matmul_reference, Level, QMatrix};
use rand::rngs::StdRng;
use rand::SeedableRng;

// SIMD vs scalar twin: same integer arithmetic, only the f32 summation order differs. Relative
// to Σ|w·x| of the output element.
const TWIN_TOL_Q4_0: f32 = 1e-5;
const TWIN_TOL_Q4_1: f32 = 1e-5;
const TWIN_TOL_Q5_0: f32 = 1e-5;
const TWIN_TOL_Q5_1: f32 = 1e-5;
/// Q8_0 with VNNI adds 128 to the weights and subtracts it back in f32: more cancellation.
const TWIN_TOL_Q8_0: f32 = 1e-4;
const TWIN_TOL_K: f32 = 1e-5;
/// Float weights: f32 sums in a different order.
const TWIN_TOL_FLOAT: f32 = 1e-5;

fn twin_tol(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::Q4_0 => TWIN_TOL_Q4_0,
        GgmlType::Q4_1 => TWIN_TOL_Q4_1,
        GgmlType::Q5_0 => TWIN_TOL_Q5_0,
        GgmlType::Q5_1 => TWIN_TOL_Q5_1,
        GgmlType::Q8_0 => TWIN_TOL_Q8_0,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => TWIN_TOL_FLOAT,
        _ => TWIN_TOL_K,
    }
}

/// Against the reference, beyond the activation rounding bound: f32 summation order.
const REF_SLACK: f32 = 1e-4;

/// `Σ_c |w[r,c]·x[t,c]|` for every output element (the scale errors are measured against).
fn magnitudes(deq: &[f32], x: &[f32], rows: usize, cols: usize, n: usize) -> Vec<f32> {
    let mut m = vec![0f32; n * rows];
    for t in 0..n {
        for r in 0..rows {
            m[t * rows + r] = (0..cols)
                .map(|c| (deq[r * cols + c] * x[t * cols + c]).abs())
                .sum();
        }
    }
    m
}

/// Bound on |y − y_ref| from rounding the activations to 8 bits per block of `ab` values:
/// each value moves by at most half a step, `amax(block) / 127 / 2`, plus (32-value blocks)
/// the f16 rounding of the step itself, at most `127 · 2⁻¹¹` steps.
fn act_rounding_bound(
    deq: &[f32],
    x: &[f32],
    rows: usize,
    cols: usize,
    n: usize,
    ab: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; n * rows];
    for t in 0..n {
        let xt = &x[t * cols..(t + 1) * cols];
        let steps: Vec<f32> = xt
            .chunks(ab)
            .map(|b| {
                let step = b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                let f16_scale = if ab == 32 { 127.0 / 2048.0 } else { 0.0 };
                step * (0.5 + f16_scale)
            })
            .collect();
        for r in 0..rows {
            let w = &deq[r * cols..(r + 1) * cols];
            out[t * rows + r] = w
                .chunks(ab)
                .zip(&steps)
                .map(|(wb, s)| s * wb.iter().map(|v| v.abs()).sum::<f32>())
                .sum();
        }
    }
    out
}

const SHAPES: [(usize, usize); 4] = [(1, 256), (5, 512), (37, 256), (70, 768)];
const TOKENS: [usize; 9] = [1, 2, 3, 7, 9, 16, 17, 33, 70];

#[test]
fn every_level_matches_scalar_twin() {
    let mut rng = StdRng::seed_from_u64(7);
    for ty in QTYPES {
        for (rows, cols) in SHAPES {
            let (data, deq) = weights(&mut rng, ty, rows, cols);
            let w = QMatrix {
                ty,
                data: &data,
                rows,
                cols,
            };
            for n in TOKENS {
                let x = rand_vec(&mut rng, n * cols, 2.0);
                let mag = magnitudes(&deq, &x, rows, cols, n);
                let mut want = vec![0f32; n * rows];
                matmul_at(Level::Scalar, &w, &x, n, &mut want);
                for level in levels() {
                    let mut got = vec![f32::NAN; n * rows];
                    matmul_at(level, &w, &x, n, &mut got);
                    for i in 0..n * rows {
                        let err = (got[i] - want[i]).abs();
                        assert!(
                            err <= twin_tol(ty) * mag[i] + 1e-6,
                            "{ty} {level} rows={rows} cols={cols} n={n} i={i}: {} vs scalar {}",
                            got[i],
                            want[i]
                        );
                    }
                }
            }
        }
    }
}

/// Rows with an odd number of 32-value blocks (the 512-bit one-token kernels take blocks in
/// pairs and finish with a single one).
#[test]
fn odd_block_counts_match_scalar_twin() {
    let mut rng = StdRng::seed_from_u64(11);
    for ty in &QTYPES[..5] {
        let ty = *ty;
        for cols in [32, 96, 160, 224] {
            let rows = 9;
            let (data, deq) = weights(&mut rng, ty, rows, cols);
            let w = QMatrix {
                ty,
                data: &data,
                rows,
                cols,
            };
            for n in [1, 2, 17] {
                let x = rand_vec(&mut rng, n * cols, 2.0);
                let mag = magnitudes(&deq, &x, rows, cols, n);
                let mut want = vec![0f32; n * rows];
                matmul_at(Level::Scalar, &w, &x, n, &mut want);
                for level in levels() {
                    let mut got = vec![f32::NAN; n * rows];
                    matmul_at(level, &w, &x, n, &mut got);
                    for i in 0..n * rows {
                        assert!(
                            (got[i] - want[i]).abs() <= twin_tol(ty) * mag[i] + 1e-6,
                            "{ty} {level} cols={cols} n={n} i={i}: {} vs scalar {}",
                            got[i],
                            want[i]
                        );
                    }
                }
            }
        }
    }
}

/// Several matrices of one input in one job give exactly what separate products give.
#[test]
fn multi_matches_separate_products_exactly() {
    let mut rng = StdRng::seed_from_u64(5);
    let cols = 512;
    let sets: [&[(GgmlType, usize)]; 4] = [
        &[
            (GgmlType::Q5_0, 40),
            (GgmlType::Q5_0, 8),
            (GgmlType::Q8_0, 8),
        ],
        &[(GgmlType::Q4_K, 33), (GgmlType::Q6_K, 20)],
        &[(GgmlType::Q4_1, 12), (GgmlType::F32, 5)],
        &[
            (GgmlType::Q4_0, 9),
            (GgmlType::Q4_K, 7),
            (GgmlType::Q8_0, 0),
        ],
    ];
    for set in sets {
        let data: Vec<(Vec<u8>, usize, GgmlType)> = set
            .iter()
            .map(|&(ty, rows)| (weights(&mut rng, ty, rows, cols).0, rows, ty))
            .collect();
        let ws: Vec<QMatrix> = data
            .iter()
            .map(|(d, rows, ty)| QMatrix {
                ty: *ty,
                data: d,
                rows: *rows,
                cols,
            })
            .collect();
        for n in [1, 3, 17, 70] {
            let x = rand_vec(&mut rng, n * cols, 2.0);
            for level in levels() {
                let mut sep: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; n * w.rows]).collect();
                for (w, y) in ws.iter().zip(sep.iter_mut()) {
                    matmul_at(level, w, &x, n, y);
                }
                let mut multi: Vec<Vec<f32>> =
                    ws.iter().map(|w| vec![f32::NAN; n * w.rows]).collect();
                let mut refs: Vec<&mut [f32]> =
                    multi.iter_mut().map(|v| v.as_mut_slice()).collect();
                matmul_multi_at(level, &ws, &x, n, &mut refs);
                for (i, (a, b)) in sep.iter().zip(&multi).enumerate() {
                    assert!(
                        a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()),
                        "{level} n={n} matrix {i} ({}): multi differs from separate",
                        ws[i].ty
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_matches_dequantized_reference() {
    let mut rng = StdRng::seed_from_u64(11);
    for ty in QTYPES {
        let ab = if ty.block_size() == 256 { 256 } else { 32 };
        for (rows, cols) in SHAPES {
            let (data, deq) = weights(&mut rng, ty, rows, cols);
            let w = QMatrix {
                ty,
                data: &data,
                rows,
                cols,
            };
            for n in [1, 7, 70] {
                let x = rand_vec(&mut rng, n * cols, 1.0);
                let mut want = vec![0f32; n * rows];
                matmul_reference(&w, &x, n, &mut want);
                let bound = act_rounding_bound(&deq, &x, rows, cols, n, ab);
                let mag = magnitudes(&deq, &x, rows, cols, n);
                for level in levels() {
                    let mut got = vec![f32::NAN; n * rows];
                    matmul_at(level, &w, &x, n, &mut got);
                    for i in 0..n * rows {
                        let err = (got[i] - want[i]).abs();
                        let tol = bound[i] * 1.001 + REF_SLACK * mag[i] + 1e-6;
                        assert!(
                            err <= tol,
                            "{ty} {level} rows={rows} cols={cols} n={n} i={i}: {} vs ref {} \
                             (bound {tol})",
                            got[i],
                            want[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn float_weights_every_level() {
    let mut rng = StdRng::seed_from_u64(5);
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        for (rows, cols) in [(3, 7), (37, 256), (9, 100)] {
            let (data, deq) = weights(&mut rng, ty, rows, cols);
            let w = QMatrix {
                ty,
                data: &data,
                rows,
                cols,
            };
            for n in [1, 2, 9] {
                let x = rand_vec(&mut rng, n * cols, 1.0);
                let mag = magnitudes(&deq, &x, rows, cols, n);
                let mut want = vec![0f32; n * rows];
                matmul_reference(&w, &x, n, &mut want);
                for level in levels() {
                    let mut got = vec![f32::NAN; n * rows];
                    matmul_at(level, &w, &x, n, &mut got);
                    for i in 0..n * rows {
                        assert!(
                            (got[i] - want[i]).abs() <= twin_tol(ty) * mag[i] + 1e-6,
                            "{ty} {level} {rows}x{cols} n={n} i={i}: {} vs {}",
                            got[i],
                            want[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn one_thread_and_two_threads_agree_exactly() {
    let mut rng = StdRng::seed_from_u64(3);
    let (rows, cols) = (301, 512);
    for ty in [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::F32,
    ] {
        let (data, _) = weights(&mut rng, ty, rows, cols);
        let w = QMatrix {
            ty,
            data: &data,
            rows,
            cols,
        };
        for n in [1, 7, 130] {
            let x = rand_vec(&mut rng, n * cols, 1.0);
            let mut a = vec![0f32; n * rows];
            let mut b = vec![0f32; n * rows];
            kernels::set_num_threads(1);
            assert_eq!(kernels::num_threads(), 1);
            kernels::matmul(&w, &x, n, &mut a);
            kernels::set_num_threads(2);
            assert_eq!(kernels::num_threads(), 2);
            kernels::matmul(&w, &x, n, &mut b);
            kernels::set_num_threads(0);
            assert!(a == b, "{ty} n={n}: results depend on the thread count");
        }
    }
}

#[test]
fn activation_quantizers_are_bit_identical() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut x = rand_vec(&mut rng, 1024, 3.0);
    // An all-zero block and exact ties.
    x[32..64].iter_mut().for_each(|v| *v = 0.0);
    x[64] = 127.0;
    x[65] = 0.5;
    x[66] = 1.5;
    x[67] = -2.5;
    for kind in [
        kernels::dot::ActKind::A32,
        kernels::dot::ActKind::A32M,
        kernels::dot::ActKind::A256,
    ] {
        let len = x.len() / kind.values() * kind.bytes();
        let mut want = vec![0u8; len];
        kernels::dot::quantizer(Level::Scalar, kind)(&x, &mut want);
        for level in levels() {
            let mut got = vec![0u8; len];
            kernels::dot::quantizer(level, kind)(&x, &mut got);
            assert_eq!(got, want, "{kind:?} at {level}");
        }
    }
}

#[test]
fn level_names_round_trip() {
    for l in Level::ALL {
        assert_eq!(Level::from_name(l.name()), Some(l));
    }
    assert_eq!(Level::from_name("AVX2"), Some(Level::Avx2));
    assert_eq!(Level::from_name("sse9"), None);
    assert!(Level::Scalar.available());
    assert!(kernels::cpu::level().available());
}
