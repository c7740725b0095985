//! Every fixture in testdata/quant against the scalar reference: dequantization bit-exact for
//! every type, and the reference quantizers bit-exact where a `quantize` case is present.

use base64::Engine;
use gguf::GgmlType;

/// Types with fixtures that lume cannot dequantize yet. Keep this honest and short: a type
/// listed in testdata/quant that is neither supported nor here fails the test.
const NOT_YET: &[&str] = &[];

fn dir() -> std::path::PathBuf {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/quant").into()
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

struct Fixture {
    name: String,
    ty: GgmlType,
    json: serde_json::Value,
}

fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir()).expect("testdata/quant exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = json["type"].as_str().unwrap().to_string();
        let ty = GgmlType::from_name(&name).unwrap_or_else(|| panic!("unknown type {name}"));
        assert_eq!(
            ty as u32 as u64,
            json["type_id"].as_u64().unwrap(),
            "{name} id"
        );
        assert_eq!(ty.block_size() as u64, json["block_size"].as_u64().unwrap());
        assert_eq!(ty.type_size() as u64, json["type_size"].as_u64().unwrap());
        out.push(Fixture { name, ty, json });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 24,
        "expected the full fixture set, found {}",
        out.len()
    );
    out
}

fn assert_bits_eq(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{name} value {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn dequantize_every_fixture_bit_exact() {
    let mut checked = Vec::new();
    for f in fixtures() {
        if !kernels::supports(f.ty) {
            assert!(
                NOT_YET.contains(&f.name.as_str()),
                "{} has a fixture but is neither supported nor listed as not yet",
                f.name
            );
            continue;
        }
        assert!(
            !NOT_YET.contains(&f.name.as_str()),
            "{} is supported now: take it off NOT_YET",
            f.name
        );
        let raw = b64(&f.json["raw_b64"]);
        let want = f32s(&b64(&f.json["dequantized_f32le_b64"]));
        let n_blocks = f.json["n_blocks"].as_u64().unwrap() as usize;
        assert_eq!(
            raw.len(),
            n_blocks * f.ty.type_size(),
            "{} raw size",
            f.name
        );
        assert_eq!(
            want.len(),
            n_blocks * f.ty.block_size(),
            "{} value count",
            f.name
        );
        let mut got = vec![0f32; want.len()];
        kernels::dequantize_row(f.ty, &raw, &mut got).unwrap();
        assert_bits_eq(&f.name, &got, &want);
        // block by block gives the same values as the whole row
        let (bs, ts) = (f.ty.block_size(), f.ty.type_size());
        let mut one = vec![0f32; bs];
        for b in 0..n_blocks {
            kernels::dequantize_row(f.ty, &raw[b * ts..(b + 1) * ts], &mut one).unwrap();
            assert_bits_eq(&f.name, &one, &want[b * bs..(b + 1) * bs]);
        }
        checked.push(f.name);
    }
    eprintln!("dequantized bit-exact: {checked:?}");
}

#[test]
fn quantize_every_fixture_case_bit_exact() {
    let mut checked = Vec::new();
    for f in fixtures() {
        let case = &f.json["quantize"];
        if case.is_null() {
            continue;
        }
        assert!(
            kernels::can_quantize(f.ty),
            "{} has a quantize case but no quantizer",
            f.name
        );
        let input = f32s(&b64(&case["input_f32le_b64"]));
        let want = b64(&case["expected_raw_b64"]);
        let (rows, cols) = (
            case["rows"].as_u64().unwrap() as usize,
            case["cols"].as_u64().unwrap() as usize,
        );
        assert_eq!(input.len(), rows * cols);
        let row_bytes = cols / f.ty.block_size() * f.ty.type_size();
        assert_eq!(want.len(), rows * row_bytes);
        let mut got = vec![0u8; want.len()];
        for r in 0..rows {
            kernels::quantize_row(
                f.ty,
                &input[r * cols..(r + 1) * cols],
                &mut got[r * row_bytes..(r + 1) * row_bytes],
            )
            .unwrap();
        }
        let ts = f.ty.type_size();
        for (i, (g, w)) in got.chunks(ts).zip(want.chunks(ts)).enumerate() {
            assert_eq!(g, w, "{} block {i} differs", f.name);
        }
        checked.push(f.name);
    }
    eprintln!("quantized bit-exact: {checked:?}");
    assert!(
        checked.len() >= 10,
        "expected 10 quantize cases, got {checked:?}"
    );
}
