//! Quantized KV rows (`kernels::kvq`): round trips within the format's step, the integer
//! q·k dots and the dequantizing p·V against f32 references, and every dispatch level
//! bit-identical to the scalar twin.

use kernels::kvq::{self, BlockQ4_0, BlockQ8_0, QK};
use kernels::Level;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn levels() -> Vec<Level> {
    Level::ALL.into_iter().filter(|l| l.available()).collect()
}

fn rand_vec(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
}

fn q8(x: &[f32]) -> Vec<BlockQ8_0> {
    let mut b = vec![
        BlockQ8_0 {
            d: [0; 2],
            qs: [0; 32]
        };
        x.len() / QK
    ];
    kvq::quantize_q8_0(x, &mut b);
    b
}

fn q4(x: &[f32]) -> Vec<BlockQ4_0> {
    let mut b = vec![
        BlockQ4_0 {
            d: [0; 2],
            qs: [0; 16]
        };
        x.len() / QK
    ];
    kvq::quantize_q4_0(x, &mut b);
    b
}

fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Round trip: every value within half a step (`amax/127`, Q8_0) or one step (`amax/8`,
/// Q4_0, whose scale is the signed extreme over −8) of its block's scale, plus f16 rounding
/// of the scale (relative 2^-11 of amax).
#[test]
fn round_trip_within_a_step() {
    let mut rng = StdRng::seed_from_u64(1);
    for n in [32, 64, 256] {
        let x = rand_vec(&mut rng, n);
        let (b8, b4) = (q8(&x), q4(&x));
        let (mut y8, mut y4) = (vec![0f32; n], vec![0f32; n]);
        for level in levels() {
            kvq::dequantize_q8_0_at(level, &b8, &mut y8);
            kvq::dequantize_q4_0_at(level, &b4, &mut y4);
            for (blk, xs) in x.chunks(QK).enumerate() {
                let m = amax(xs);
                for j in 0..QK {
                    let i = blk * QK + j;
                    let e8 = (y8[i] - x[i]).abs();
                    let e4 = (y4[i] - x[i]).abs();
                    assert!(e8 <= m / 127.0 * 0.5 + m * 1e-3, "q8_0 {level} {i}: {e8}");
                    assert!(e4 <= m / 8.0 + m * 1e-3, "q4_0 {level} {i}: {e4}");
                }
            }
        }
    }
    // An all-zero row stays zero.
    let z = vec![0f32; 64];
    let mut y = vec![1f32; 64];
    kvq::dequantize_q8_0(&q8(&z), &mut y);
    assert!(y.iter().all(|&v| v == 0.0));
    kvq::dequantize_q4_0(&q4(&z), &mut y);
    assert!(y.iter().all(|&v| v == 0.0));
}

/// Dots of a Q8_0-rounded query against Q8_0 / Q4_0 keys: every level bit-identical to the
/// scalar twin; against the f64 dot of the dequantized operands within 1e-5 relative to
/// Σ|terms| (the integer part is exact, only the f32 block combination rounds); and against
/// the exact f32 vectors within the quantization error (named tolerances below).
#[test]
fn dots_every_level_match_twin_and_reference() {
    /// |dot − exact| / (|q|·|k|) for a Q8_0 query against Q8_0 keys.
    const Q8_TOL: f64 = 0.02;
    /// Same for Q4_0 keys.
    const Q4_TOL: f64 = 0.12;
    let mut rng = StdRng::seed_from_u64(2);
    for hd in [32, 64, 256] {
        for _ in 0..50 {
            let (q, k) = (rand_vec(&mut rng, hd), rand_vec(&mut rng, hd));
            let (qb, k8, k4) = (q8(&q), q8(&k), q4(&k));
            let want8 = kvq::dot_q8_0_at(Level::Scalar, &qb, &k8);
            let want4 = kvq::dot_q4_0_at(Level::Scalar, &qb, &k4);
            for level in levels() {
                assert_eq!(kvq::dot_q8_0_at(level, &qb, &k8).to_bits(), want8.to_bits());
                assert_eq!(kvq::dot_q4_0_at(level, &qb, &k4).to_bits(), want4.to_bits());
            }
            let (mut qd, mut kd8, mut kd4) = (vec![0f32; hd], vec![0f32; hd], vec![0f32; hd]);
            kvq::dequantize_q8_0(&qb, &mut qd);
            kvq::dequantize_q8_0(&k8, &mut kd8);
            kvq::dequantize_q4_0(&k4, &mut kd4);
            for (got, kd) in [(want8, &kd8), (want4, &kd4)] {
                let s: f64 = qd.iter().zip(kd).map(|(a, b)| *a as f64 * *b as f64).sum();
                let m: f64 = qd
                    .iter()
                    .zip(kd)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                assert!((got as f64 - s).abs() <= 1e-5 * m + 1e-6, "{got} vs {s}");
            }
            let exact: f64 = q.iter().zip(&k).map(|(a, b)| *a as f64 * *b as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let scale = norm(&q) * norm(&k);
            assert!(
                (want8 as f64 - exact).abs() <= Q8_TOL * scale,
                "q8_0 hd {hd}"
            );
            assert!(
                (want4 as f64 - exact).abs() <= Q4_TOL * scale,
                "q4_0 hd {hd}"
            );
        }
    }
}

/// The f32-query dots: every level bit-identical to the scalar twin, and within 1e-5 of
/// Σ|terms| of the f64 dot of the query with the dequantized keys.
#[test]
fn f32_query_dots_every_level_match_twin_and_reference() {
    let mut rng = StdRng::seed_from_u64(4);
    for hd in [32, 64, 256] {
        for _ in 0..50 {
            let (q, k) = (rand_vec(&mut rng, hd), rand_vec(&mut rng, hd));
            let (k8, k4) = (q8(&k), q4(&k));
            let want8 = kvq::dot_f32_q8_0_at(Level::Scalar, &q, &k8);
            let want4 = kvq::dot_f32_q4_0_at(Level::Scalar, &q, &k4);
            for level in levels() {
                assert_eq!(
                    kvq::dot_f32_q8_0_at(level, &q, &k8).to_bits(),
                    want8.to_bits()
                );
                assert_eq!(
                    kvq::dot_f32_q4_0_at(level, &q, &k4).to_bits(),
                    want4.to_bits()
                );
            }
            let (mut kd8, mut kd4) = (vec![0f32; hd], vec![0f32; hd]);
            kvq::dequantize_q8_0(&k8, &mut kd8);
            kvq::dequantize_q4_0(&k4, &mut kd4);
            for (got, kd) in [(want8, &kd8), (want4, &kd4)] {
                let s: f64 = q.iter().zip(kd).map(|(a, b)| *a as f64 * *b as f64).sum();
                let m: f64 = q
                    .iter()
                    .zip(kd)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                assert!((got as f64 - s).abs() <= 1e-5 * m + 1e-6, "{got} vs {s}");
            }
        }
    }
}

/// `out += w·v` with the values dequantized on the fly: every level bit-identical to the
/// scalar twin, and equal to adding `w · dequantized` computed as `(w·d)·q` (within one f32
/// rounding of each term: 1e-6 relative).
#[test]
fn axpy_every_level_matches_twin_and_reference() {
    let mut rng = StdRng::seed_from_u64(3);
    for hd in [32, 64, 256] {
        let v = rand_vec(&mut rng, hd);
        let base = rand_vec(&mut rng, hd);
        let w = 0.37f32;
        let (b8, b4) = (q8(&v), q4(&v));
        let mut want8 = base.clone();
        kvq::axpy_q8_0_at(Level::Scalar, &mut want8, w, &b8);
        let mut want4 = base.clone();
        kvq::axpy_q4_0_at(Level::Scalar, &mut want4, w, &b4);
        for level in levels() {
            let mut got = base.clone();
            kvq::axpy_q8_0_at(level, &mut got, w, &b8);
            assert!(got
                .iter()
                .zip(&want8)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            let mut got = base.clone();
            kvq::axpy_q4_0_at(level, &mut got, w, &b4);
            assert!(got
                .iter()
                .zip(&want4)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        let (mut d8, mut d4) = (vec![0f32; hd], vec![0f32; hd]);
        kvq::dequantize_q8_0(&b8, &mut d8);
        kvq::dequantize_q4_0(&b4, &mut d4);
        for i in 0..hd {
            let r8 = base[i] as f64 + w as f64 * d8[i] as f64;
            let r4 = base[i] as f64 + w as f64 * d4[i] as f64;
            assert!((want8[i] as f64 - r8).abs() <= 1e-6 * (1.0 + r8.abs()));
            assert!((want4[i] as f64 - r4).abs() <= 1e-6 * (1.0 + r4.abs()));
        }
    }
}

#[test]
#[should_panic(expected = "values for")]
fn quantize_rejects_a_partial_block() {
    let mut b = vec![
        BlockQ8_0 {
            d: [0; 2],
            qs: [0; 32]
        };
        1
    ];
    kvq::quantize_q8_0(&[0.0; 31], &mut b);
}
