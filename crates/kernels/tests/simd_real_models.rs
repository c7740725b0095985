//! matmul on real model tensors (first rows of every 2-D tensor type each model uses) at
//! every available level, against the dequantize-then-f32 reference.

use gguf::GgufFile;
use kernels::{matmul_at, matmul_reference, Level, QMatrix};

/// Relative to Σ|w·x| of each output: the activation rounding (≤ 1/254 of each block's
/// max per value, far less on average) plus f32 summation order.
const REAL_TOL: f32 = 5e-3;

fn check_model(name: &str) {
    let path = hub::require(name).unwrap_or_else(|e| panic!("{e}"));
    let file = GgufFile::open(&path).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for t in &file.tensors {
        if t.dims.len() != 2 || !seen.insert(t.ty.name()) {
            continue;
        }
        let (cols, rows) = (t.n_cols(), t.n_rows().min(37));
        let rb = cols / t.ty.block_size() * t.ty.type_size();
        let data = &file.tensor_data(t)[..rows * rb];
        let w = QMatrix {
            ty: t.ty,
            data,
            rows,
            cols,
        };
        for n in [1, 11] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| (((i * 2654435761) % 1000) as f32 / 500.0 - 1.0) * 3.0)
                .collect();
            let mut want = vec![0f32; n * rows];
            matmul_reference(&w, &x, n, &mut want);
            // Σ|w·x| per output, from the dequantized rows.
            let mut deq = vec![0f32; cols];
            let mut mag = vec![0f32; n * rows];
            for r in 0..rows {
                kernels::dequantize_row(t.ty, &data[r * rb..(r + 1) * rb], &mut deq).unwrap();
                for tk in 0..n {
                    mag[tk * rows + r] = deq
                        .iter()
                        .zip(&x[tk * cols..(tk + 1) * cols])
                        .map(|(a, b)| (a * b).abs())
                        .sum();
                }
            }
            for level in Level::ALL.into_iter().filter(|l| l.available()) {
                let mut got = vec![f32::NAN; n * rows];
                matmul_at(level, &w, &x, n, &mut got);
                for i in 0..n * rows {
                    assert!(
                        (got[i] - want[i]).abs() <= REAL_TOL * mag[i] + 1e-5,
                        "{name} {} ({}) {level} n={n} i={i}: {} vs {}",
                        t.name,
                        t.ty,
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }
    assert!(!seen.is_empty());
}

#[test]
fn smollm2_tensors() {
    check_model("smollm2-135m");
}

#[test]
fn gemma3_tensors() {
    check_model("gemma3-270m");
}

#[test]
fn qwen25_coder_tensors() {
    check_model("qwen2.5-coder-0.5b");
}
