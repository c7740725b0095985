//! Quantize every tiny reference model to every file type lume can write, reopen the output
//! and check it: the types are the plan's, the metadata says the file type, every tensor
//! dequantizes back to the F32 original within its type's error bound, and what the plan
//! refuses is refused by name (requantizing without --allow-requantize, types that need an
//! importance matrix).

use std::path::PathBuf;

use gguf::{GgmlType, GgufFile};
use quantize::{plan, quantize_file, FileType, Options, QuantizeError};

fn tiny(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/tiny")
        .join(arch)
        .join("model.f32.gguf")
}

/// Relative RMS error a type may show on the tiny models' N(0, 0.1) weights (measured:
/// the largest seen per type times about 1.5; a wrong block layout gives errors near 1).
fn bound(ty: GgmlType) -> f64 {
    use GgmlType::*;
    match ty {
        F32 => 0.0,
        F16 | BF16 => 0.005,
        Q8_0 => 0.01,
        Q6_K => 0.03,
        Q5_0 | Q5_1 | Q5_K => 0.06,
        Q4_0 | Q4_1 | Q4_K | IQ4_NL | IQ4_XS => 0.12,
        Q3_K => 0.25,
        Q2_K | TQ1_0 | TQ2_0 | MXFP4 => 1.0,
        _ => 0.5,
    }
}

fn values(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor_info(name).unwrap();
    let mut out = vec![0f32; t.n_elements() as usize];
    kernels::dequantize_row(t.ty, f.tensor_data(t), &mut out).unwrap();
    out
}

#[test]
fn every_writable_type_round_trips_on_every_tiny_model() {
    let dir = std::env::temp_dir().join(format!("lume-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let archs = [
        "bert",
        "gemma2",
        "gemma3",
        "gpt2",
        "llama",
        "mixtral",
        "olmo2",
        "phi3",
        "qwen2",
        "qwen3",
        "qwen3moe",
        "starcoder2",
    ];
    let mut n_files = 0;
    for arch in archs {
        let input = GgufFile::open(tiny(arch)).unwrap();
        for ft in FileType::all() {
            let opts = Options::new(ft);
            let p = plan(&input, &opts).unwrap();
            if p.check(input.path(), &opts).is_err() {
                continue;
            }
            let out = dir.join(format!("{arch}-{ft}.gguf"));
            let mut last = 0;
            let s = quantize_file(&input, &p, &opts, &out, 2, &mut |pr| last = pr.bytes_done)
                .unwrap_or_else(|e| panic!("{arch} {ft}: {e}"));
            assert_eq!(last, p.bytes_in(), "{arch} {ft}: progress reaches the end");
            assert_eq!(s.bytes_out, p.bytes_out());
            let q = GgufFile::open(&out).unwrap();
            assert_eq!(
                q.get_u32("general.file_type").unwrap(),
                ft.id(),
                "{arch} {ft}"
            );
            assert_eq!(q.get_u32("general.quantization_version").unwrap(), 2);
            assert_eq!(q.tensors.len(), input.tensors.len());
            for t in &p.tensors {
                let qi = q.tensor_info(&t.name).unwrap();
                assert_eq!((qi.ty, &qi.dims), (t.to, &t.dims), "{arch} {ft} {}", t.name);
                let (a, b) = (values(&input, &t.name), values(&q, &t.name));
                let num: f64 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum();
                let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
                let rel = (num / den.max(1e-30)).sqrt();
                assert!(
                    rel <= bound(t.to),
                    "{arch} {ft} {}: {} relative RMS error {rel:.4} > {}",
                    t.name,
                    t.to,
                    bound(t.to)
                );
            }
            std::fs::remove_file(&out).unwrap();
            n_files += 1;
        }
    }
    // 12 models x the 19 writable file types.
    assert!(n_files >= 12 * 19, "{n_files} files written");
    eprintln!("{n_files} files quantized, reopened and checked");
}

#[test]
fn refusals_name_the_tensor_and_the_way_out() {
    let input = GgufFile::open(tiny("llama")).unwrap();
    let dir = std::env::temp_dir();
    // IQ2_XXS needs an importance matrix (on the default model: the tiny ones' 64-value rows
    // fall back to IQ4_NL, which does not). Refused before anything is read or written.
    let smollm2 =
        GgufFile::open(hub::require("smollm2-135m").unwrap_or_else(|e| panic!("{e}"))).unwrap();
    let opts = Options {
        allow_requantize: true,
        ..Options::new(FileType::IQ2_XXS)
    };
    let p = plan(&smollm2, &opts).unwrap();
    let x = dir.join(format!("lume-never-written-{}.gguf", std::process::id()));
    let e = quantize_file(&smollm2, &p, &opts, &x, 1, &mut |_| {}).unwrap_err();
    assert!(matches!(e, QuantizeError::NeedsImatrix { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("'blk.3.ffn_down.weight' would be IQ2_XXS"),
        "{e}"
    );
    assert!(!x.exists());
    // A quantized input needs --allow-requantize.
    let q8 = dir.join(format!("lume-q8-{}.gguf", std::process::id()));
    let opts = Options::new(FileType::Q8_0);
    quantize_file(
        &input,
        &plan(&input, &opts).unwrap(),
        &opts,
        &q8,
        1,
        &mut |_| {},
    )
    .unwrap();
    let q8f = GgufFile::open(&q8).unwrap();
    let opts = Options::new(FileType::Q4_0);
    let p = plan(&q8f, &opts).unwrap();
    let e = quantize_file(&q8f, &p, &opts, &dir.join("y.gguf"), 1, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("--allow-requantize"), "{e}");
    // Writing over the input is refused.
    let opts = Options {
        allow_requantize: true,
        ..Options::new(FileType::Q4_0)
    };
    let e = quantize_file(&q8f, &p, &opts, &q8, 1, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("overwrite the input"), "{e}");
    std::fs::remove_file(&q8).unwrap();
}
