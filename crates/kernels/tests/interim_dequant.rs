//! Bit-exact dequantization of the block types the real models use, against testdata/quant.

use base64::Engine;
use gguf::GgmlType;

fn check(name: &str) {
    let path = format!(
        "{}/../../testdata/quant/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = b64.decode(j["raw_b64"].as_str().unwrap()).unwrap();
    let want: Vec<f32> = b64
        .decode(j["dequantized_f32le_b64"].as_str().unwrap())
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let ty = GgmlType::from_name(name).unwrap();
    let mut got = vec![0f32; want.len()];
    kernels::dequantize_row(ty, &raw, &mut got).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{name} value {i}: {g} vs {w}");
    }
}

#[test]
fn real_model_types_are_bit_exact() {
    for t in ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"] {
        check(t);
    }
}
