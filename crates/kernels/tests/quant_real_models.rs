//! The real models: every tensor type is supported, rows dequantize to finite values, and
//! requantizing a real row with the reference quantizer of its own type is (near) lossless.

use gguf::{GgmlType, GgufFile};

fn check_model(name: &str) {
    let path = hub::require(name).unwrap_or_else(|e| panic!("{e}"));
    let file = GgufFile::open(&path).unwrap();
    let mut types = std::collections::BTreeSet::new();
    let mut requantized = 0;
    for t in &file.tensors {
        assert!(
            kernels::supports(t.ty),
            "{name}: {} has type {}",
            t.name,
            t.ty
        );
        types.insert(format!("{}", t.ty));
        let (cols, rows) = (t.n_cols(), t.n_rows());
        let row_bytes = cols / t.ty.block_size() * t.ty.type_size();
        let data = file.tensor_data(t);
        assert_eq!(data.len(), rows * row_bytes, "{name}: {} size", t.name);
        let mut y = vec![0f32; cols];
        for r in [0, rows / 2, rows - 1] {
            let row = &data[r * row_bytes..(r + 1) * row_bytes];
            kernels::dequantize_row(t.ty, row, &mut y).unwrap();
            assert!(
                y.iter().all(|v| v.is_finite()),
                "{name}: {} row {r} has non-finite values",
                t.name
            );
            // the quantizer, fed values already on its own grid, finds (nearly) the same grid;
            // K-quant files made with an importance matrix used other scales, so a bit looser
            let bound = match t.ty {
                GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 => Some(1e-3),
                GgmlType::Q4_K | GgmlType::Q6_K => Some(1e-2),
                GgmlType::Q5_K => Some(0.03),
                _ => None,
            };
            if let Some(bound) = bound {
                let mut q = vec![0u8; row_bytes];
                kernels::quantize_row(t.ty, &y, &mut q).unwrap();
                let mut z = vec![0f32; cols];
                kernels::dequantize_row(t.ty, &q, &mut z).unwrap();
                let err: f64 = y
                    .iter()
                    .zip(&z)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum();
                let sig: f64 = y.iter().map(|a| (*a as f64).powi(2)).sum();
                let rel = (err / sig.max(1e-30)).sqrt();
                assert!(rel <= bound, "{name}: {} ({}) row {r}: {rel}", t.name, t.ty);
                requantized += 1;
            }
        }
    }
    eprintln!("{name}: types {types:?}, {requantized} rows requantized");
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
