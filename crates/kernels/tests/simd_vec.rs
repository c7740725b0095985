//! Vector helpers at every available level against their scalar twins.

use half::{bf16, f16};
use kernels::vec::{scalar, VecFns};
use kernels::Level;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// f32 sums in a different order: relative to Σ|a·b|.
const DOT_TOL: f32 = 1e-5;
/// axpy is one fused multiply-add per element (the scalar twin rounds twice).
const AXPY_TOL: f32 = 1e-6;

fn levels() -> Vec<Level> {
    Level::ALL.into_iter().filter(|l| l.available()).collect()
}

fn rv(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
}

const LENS: [usize; 9] = [0, 1, 7, 8, 9, 31, 64, 100, 1027];

#[test]
fn dots_match_scalar() {
    let mut rng = StdRng::seed_from_u64(1);
    for n in LENS {
        let a = rv(&mut rng, n);
        let b = rv(&mut rng, n);
        let ah: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
        let ab: Vec<bf16> = a.iter().map(|&v| bf16::from_f32(v)).collect();
        let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum::<f32>() + 1e-6;
        for l in levels() {
            let v = VecFns::at(l);
            let close = |x: f32, y: f32| (x - y).abs() <= DOT_TOL * mag;
            assert!(
                close((v.dot_f32)(&a, &b), scalar::dot_f32(&a, &b)),
                "{l} n={n}"
            );
            assert!(
                close((v.dot_f16_f32)(&ah, &b), scalar::dot_f16_f32(&ah, &b)),
                "{l} {n}"
            );
            assert!(
                close((v.dot_bf16_f32)(&ab, &b), scalar::dot_bf16_f32(&ab, &b)),
                "{l} {n}"
            );
        }
    }
}

#[test]
fn axpy_and_conversion_match_scalar() {
    let mut rng = StdRng::seed_from_u64(2);
    for n in LENS {
        let x = rv(&mut rng, n);
        let y0 = rv(&mut rng, n);
        let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        for l in levels() {
            let v = VecFns::at(l);
            let (mut y1, mut y2) = (y0.clone(), y0.clone());
            (v.axpy_f32)(&mut y1, 0.7, &x);
            scalar::axpy_f32(&mut y2, 0.7, &x);
            for (p, q) in y1.iter().zip(&y2) {
                assert!((p - q).abs() <= AXPY_TOL * (1.0 + q.abs()), "{l} n={n}");
            }
            let (mut y1, mut y2) = (y0.clone(), y0.clone());
            (v.axpy_f16)(&mut y1, -1.3, &xh);
            scalar::axpy_f16(&mut y2, -1.3, &xh);
            for (p, q) in y1.iter().zip(&y2) {
                assert!((p - q).abs() <= AXPY_TOL * (1.0 + q.abs()), "{l} n={n}");
            }
            let mut h1 = vec![f16::ZERO; n];
            let mut h2 = vec![f16::ZERO; n];
            (v.f32_to_f16)(&x, &mut h1);
            scalar::f32_to_f16(&x, &mut h2);
            assert_eq!(
                h1.iter().map(|h| h.to_bits()).collect::<Vec<_>>(),
                h2.iter().map(|h| h.to_bits()).collect::<Vec<_>>(),
                "{l} n={n}"
            );
            let (mut w1, mut w2) = (vec![0f32; n], vec![1f32; n]);
            (v.f16_to_f32)(&h1, &mut w1);
            scalar::f16_to_f32(&h1, &mut w2);
            assert_eq!(
                w1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                w2.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{l} n={n}: f16 -> f32"
            );
        }
    }
    // The public wrappers use the process level.
    let mut y = vec![1.0f32; 3];
    kernels::axpy_f32(&mut y, 2.0, &[1.0, 2.0, 3.0]);
    assert_eq!(y, [3.0, 5.0, 7.0]);
    assert_eq!(kernels::dot_f32(&[1.0, 2.0], &[3.0, 4.0]), 11.0);
}
