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

/// Narrower tiles (`ROW_TILES`) compute each row exactly as the `RT`-row tile does, whatever the
/// other rows hold: the batch-invariant attention relies on it.
#[test]
fn narrow_tiles_match_the_wide_one_row_for_row() {
    use kernels::attn::{accumulate_rows_at, scores_rows_at, ROW_TILES};
    let mut rng = StdRng::seed_from_u64(5);
    for hd in [64, 256, 80, 32, 7] {
        let k = rand_vec(&mut rng, KB * hd);
        let qt = rand_vec(&mut rng, hd * RT);
        let p: Vec<f32> = (0..KB * RT).map(|_| rng.gen_range(0.0f32..1.0)).collect();
        let v = rand_vec(&mut rng, KB * hd);
        let o0 = rand_vec(&mut rng, RT * hd);
        for level in levels() {
            let mut s_wide = vec![0f32; KB * RT];
            scores_at(level, &k, &qt, hd, &mut s_wide);
            let mut o_wide = o0.clone();
            accumulate_at(level, &p, &v, hd, &mut o_wide);
            for n in ROW_TILES {
                // Rows 0..n of the wide tile; the narrow one sees nothing of the others.
                let qt_n: Vec<f32> = (0..hd)
                    .flat_map(|d| qt[d * RT..d * RT + n].to_vec())
                    .collect();
                let mut s_n = vec![f32::NAN; KB * n];
                scores_rows_at(level, n, &k, &qt_n, hd, &mut s_n);
                let p_n: Vec<f32> = (0..KB)
                    .flat_map(|j| p[j * RT..j * RT + n].to_vec())
                    .collect();
                let mut o_n = o0[..n * hd].to_vec();
                accumulate_rows_at(level, n, &p_n, &v, hd, &mut o_n);
                for j in 0..KB {
                    for i in 0..n {
                        assert_eq!(
                            s_n[j * n + i].to_bits(),
                            s_wide[j * RT + i].to_bits(),
                            "{level} hd={hd} n={n}: score ({j}, {i})"
                        );
                    }
                }
                assert!(
                    o_n.iter()
                        .zip(&o_wide)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{level} hd={hd} n={n}: accumulate rows differ from the wide tile"
                );
            }
        }
    }
}
