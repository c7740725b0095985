//! The attention tile kernels at every dispatch level against the scalar twin (bit-identical:
//! the same operations in the same order) and against a naive f64 computation.

use kernels::attn::{accumulate_at, scores_at, KB, RT};
use kernels::Level;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Against f64 sums, relative to Σ|terms|.
const F64_TOL: f64 = 1e-6;

fn rand_vec(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn levels() -> Vec<Level> {
    Level::ALL.into_iter().filter(|l| l.available()).collect()
}

#[test]
fn scores_every_level_matches_twin_and_f64() {
    let mut rng = StdRng::seed_from_u64(3);
    for hd in [64, 256, 80, 32, 7] {
        let k = rand_vec(&mut rng, KB * hd);
        let qt = rand_vec(&mut rng, hd * RT);
        let mut want = vec![0f32; KB * RT];
        scores_at(Level::Scalar, &k, &qt, hd, &mut want);
        for j in 0..KB {
            for i in 0..RT {
                let (mut s, mut m) = (0f64, 0f64);
                for d in 0..hd {
                    let t = k[j * hd + d] as f64 * qt[d * RT + i] as f64;
                    s += t;
                    m += t.abs();
                }
                assert!((want[j * RT + i] as f64 - s).abs() <= F64_TOL * m + 1e-7);
            }
        }
        for level in levels() {
            let mut got = vec![f32::NAN; KB * RT];
            scores_at(level, &k, &qt, hd, &mut got);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{level} hd={hd}: scores differ from the scalar twin"
            );
        }
    }
}

#[test]
fn accumulate_every_level_matches_twin_and_f64() {
    let mut rng = StdRng::seed_from_u64(4);
    for hdv in [64, 256, 80, 32, 7] {
        let p: Vec<f32> = (0..KB * RT).map(|_| rng.gen_range(0.0f32..1.0)).collect();
        let v = rand_vec(&mut rng, KB * hdv);
        let o0 = rand_vec(&mut rng, RT * hdv);
        let mut want = o0.clone();
        accumulate_at(Level::Scalar, &p, &v, hdv, &mut want);
        for i in 0..RT {
            for c in 0..hdv {
                let (mut s, mut m) = (o0[i * hdv + c] as f64, (o0[i * hdv + c] as f64).abs());
                for j in 0..KB {
                    let t = p[j * RT + i] as f64 * v[j * hdv + c] as f64;
                    s += t;
                    m += t.abs();
                }
                assert!((want[i * hdv + c] as f64 - s).abs() <= F64_TOL * m + 1e-7);
            }
        }
        for level in levels() {
            let mut got = o0.clone();
            accumulate_at(level, &p, &v, hdv, &mut got);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{level} hdv={hdv}: accumulate differs from the scalar twin"
            );
        }
    }
}
