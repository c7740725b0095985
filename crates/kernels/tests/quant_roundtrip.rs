//! Quantize → dequantize round trips with an error bound per type, and length/type errors.

use gguf::GgmlType;
use kernels::KernelError;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Gaussian-ish test data (sum of uniforms), with a few blocks of special shapes: all zero,
/// constant, one outlier, all negative.
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n)
        .map(|_| (0..4).map(|_| rng.gen::<f32>() - 0.5).sum::<f32>())
        .collect();
    if n >= 1024 {
        v[..256].fill(0.0);
        v[256..512].fill(0.37);
        v[600] = 25.0;
        for x in &mut v[768..1024] {
            *x = -x.abs() - 0.1;
        }
    }
    v
}

fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let row_bytes = x.len() / ty.block_size() * ty.type_size();
    let mut q = vec![0u8; row_bytes];
    kernels::quantize_row(ty, x, &mut q).unwrap();
    let mut y = vec![f32::NAN; x.len()];
    kernels::dequantize_row(ty, &q, &mut y).unwrap();
    y
}

/// RMS error over RMS value, computed per 256-value chunk and averaged over the chunks that are
/// not all zero (so one outlier block does not hide everything else).
fn rel_rmse(x: &[f32], y: &[f32]) -> f64 {
    let mut total = 0.0;
    let mut count = 0;
    for (a, b) in x.chunks(256).zip(y.chunks(256)) {
        let e: f64 = a.iter().zip(b).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
        let s: f64 = a.iter().map(|p| (*p as f64).powi(2)).sum();
        if s > 0.0 {
            total += (e / s).sqrt();
            count += 1;
        } else {
            assert_eq!(e, 0.0, "an all-zero chunk must come back as zeros");
        }
    }
    total / count as f64
}

#[test]
fn round_trip_error_bounds() {
    // (type, bound on the mean relative RMS error)
    let cases: &[(GgmlType, f64)] = &[
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 1e-3),
        (GgmlType::BF16, 5e-3),
        (GgmlType::Q8_0, 0.01),
        (GgmlType::Q8_1, 0.01),
        (GgmlType::Q8_K, 0.01),
        (GgmlType::Q5_0, 0.05),
        (GgmlType::Q5_1, 0.04),
        (GgmlType::Q4_0, 0.10),
        (GgmlType::Q4_1, 0.08),
        (GgmlType::MXFP4, 0.20),
        (GgmlType::IQ4_NL, 0.09),
        (GgmlType::IQ4_XS, 0.09),
        (GgmlType::Q6_K, 0.02),
        (GgmlType::Q5_K, 0.04),
        (GgmlType::Q4_K, 0.08),
        (GgmlType::Q3_K, 0.15),
        (GgmlType::Q2_K, 0.35),
        (GgmlType::TQ1_0, 0.75),
        (GgmlType::TQ2_0, 0.75),
    ];
    let x = data(4096, 7);
    for &(ty, bound) in cases {
        let y = round_trip(ty, &x);
        let e = rel_rmse(&x, &y);
        eprintln!("{ty}: relative rmse {e:.5} (bound {bound})");
        assert!(e <= bound, "{ty}: relative rmse {e} over {bound}");
        assert!(y.iter().all(|v| v.is_finite()), "{ty}: non-finite output");
    }
}

#[test]
fn ternary_data_round_trips_exactly_up_to_the_f16_scale() {
    let mut rng = StdRng::seed_from_u64(3);
    let s = 0.0625f32; // exact in f16
    let x: Vec<f32> = (0..1024)
        .map(|_| (rng.gen_range(-1..=1) as f32) * s)
        .collect();
    for ty in [GgmlType::TQ1_0, GgmlType::TQ2_0] {
        assert_eq!(round_trip(ty, &x), x, "{ty}");
    }
}

#[test]
fn q8_0_per_value_error_is_half_a_step() {
    let x = data(4096, 11);
    let y = round_trip(GgmlType::Q8_0, &x);
    for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        for (a, b) in xb.iter().zip(yb) {
            // half a step, plus the f16 rounding of d (relative 2^-11) times up to 127 steps
            assert!(
                (a - b).abs() <= 0.5 * d + amax * 1e-3 + 1e-7,
                "{a} vs {b}, d {d}"
            );
        }
    }
}

#[test]
fn dequantize_from_unaligned_bytes() {
    // blocks straight from an mmap can start at any address
    let x = data(512, 5);
    for ty in [
        GgmlType::Q8_K,
        GgmlType::Q4_0,
        GgmlType::F32,
        GgmlType::Q8_1,
    ] {
        let row_bytes = 512 / ty.block_size() * ty.type_size();
        let mut buf = vec![0u8; row_bytes + 1];
        kernels::quantize_row(ty, &x, &mut buf[1..]).unwrap();
        let mut a = vec![0f32; 512];
        let mut b = vec![0f32; 512];
        kernels::dequantize_row(ty, &buf[1..], &mut a).unwrap();
        let aligned = buf[1..].to_vec();
        kernels::dequantize_row(ty, &aligned, &mut b).unwrap();
        assert_eq!(a, b, "{ty}");
    }
}

#[test]
fn bad_lengths_are_errors() {
    let src = vec![0u8; 1000];
    // not a whole number of blocks
    let mut dst = vec![0f32; 33];
    assert!(matches!(
        kernels::dequantize_row(GgmlType::Q4_0, &src, &mut dst),
        Err(KernelError::PartialBlock {
            n: 33,
            block: 32,
            ..
        })
    ));
    let mut dst = vec![0f32; 100];
    assert!(matches!(
        kernels::dequantize_row(GgmlType::Q4_K, &src, &mut dst),
        Err(KernelError::PartialBlock { .. })
    ));
    // source too short: 64 values of Q8_0 need 68 bytes
    let mut dst = vec![0f32; 64];
    let e = kernels::dequantize_row(GgmlType::Q8_0, &src[..67], &mut dst).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShortBuffer {
                need: 68,
                got: 67,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("68"), "{e}");
    // a huge request against a small buffer is an error, not an allocation or a panic
    let mut dst = vec![0f32; 1 << 20];
    assert!(kernels::dequantize_row(GgmlType::F16, &src, &mut dst).is_err());
    // empty is fine
    kernels::dequantize_row(GgmlType::Q6_K, &[], &mut []).unwrap();
    // unsupported types
    let mut dst = vec![0f32; 4];
    assert!(matches!(
        kernels::dequantize_row(GgmlType::I32, &src, &mut dst),
        Err(KernelError::UnsupportedType(GgmlType::I32))
    ));

    // quantize: partial block, short destination, no quantizer
    let x = vec![1f32; 48];
    let mut out = vec![0u8; 1000];
    assert!(matches!(
        kernels::quantize_row(GgmlType::Q8_0, &x, &mut out),
        Err(KernelError::PartialBlock { .. })
    ));
    let x = vec![1f32; 64];
    assert!(matches!(
        kernels::quantize_row(GgmlType::Q4_1, &x, &mut out[..39]),
        Err(KernelError::ShortBuffer {
            need: 40,
            got: 39,
            ..
        })
    ));
    assert!(matches!(
        kernels::quantize_row(GgmlType::I8, &x, &mut out),
        Err(KernelError::NoQuantizer(GgmlType::I8))
    ));
}

#[test]
fn every_quantizable_type_is_dequantizable() {
    for id in 0..64 {
        if let Some(ty) = GgmlType::from_id(id) {
            if kernels::can_quantize(ty) {
                assert!(kernels::supports(ty), "{ty}");
            }
        }
    }
}

/// Data that is exactly representable (a fixture block dequantized) should come back with a
/// much smaller error than random data.
#[test]
fn requantizing_on_grid_data_is_near_lossless() {
    use base64::Engine;
    let cases: &[(&str, f64)] = &[
        ("Q8_0", 1e-6),
        ("Q4_0", 1e-6),
        ("Q4_1", 1e-4),
        ("Q5_0", 1e-6),
        ("Q5_1", 1e-4),
        // the K-quant searches need not find the original scales, but get close
        ("Q2_K", 0.03),
        ("Q3_K", 0.03),
        ("Q4_K", 1e-4),
        ("Q5_K", 0.02),
        ("Q6_K", 1e-4),
        ("IQ4_NL", 0.03),
        ("IQ4_XS", 0.03),
    ];
    for &(name, bound) in cases {
        let path = format!(
            "{}/../../testdata/quant/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let x: Vec<f32> = base64::engine::general_purpose::STANDARD
            .decode(j["dequantized_f32le_b64"].as_str().unwrap())
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let ty = GgmlType::from_name(name).unwrap();
        let y = round_trip(ty, &x);
        let e = rel_rmse(&x, &y);
        eprintln!("{name}: on-grid relative rmse {e:.6} (bound {bound})");
        assert!(e <= bound, "{name}: {e} over {bound}");
    }
}

#[test]
fn random_bytes_and_every_length_never_panic() {
    let mut rng = StdRng::seed_from_u64(99);
    let bytes: Vec<u8> = (0..8 * 292).map(|_| rng.gen()).collect();
    for id in 0..64 {
        let Some(ty) = GgmlType::from_id(id) else {
            continue;
        };
        let (bs, ts) = (ty.block_size(), ty.type_size());
        for n in [
            0,
            1,
            bs - 1 + (bs == 1) as usize,
            bs,
            bs + 1,
            2 * bs,
            4 * bs,
        ] {
            let mut dst = vec![0f32; n];
            let need = n / bs * ts;
            for len in [0, need.saturating_sub(1), need, bytes.len()] {
                let r = kernels::dequantize_row(ty, &bytes[..len.min(bytes.len())], &mut dst);
                let ok = kernels::supports(ty) && n % bs == 0 && len >= need;
                assert_eq!(r.is_ok(), ok, "{ty} n={n} len={len}: {r:?}");
            }
            let x = vec![0.5f32; n];
            let mut out = vec![0u8; need + 8];
            let r = kernels::quantize_row(ty, &x, &mut out);
            let ok = kernels::can_quantize(ty) && n % bs == 0;
            assert_eq!(r.is_ok(), ok, "{ty} quantize n={n}: {r:?}");
        }
    }
}
