//! Writes a few small, valid GGUF files to seed the fuzzer:
//! `cargo run -p gguf --example fuzz_seeds -- fuzz/corpus/parse`.

use gguf::{GgmlType, GgufWriter, Value, ValueType};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: fuzz_seeds OUTPUT_DIR")?;
    std::fs::create_dir_all(&dir)?;

    let mut empty = GgufWriter::new();
    empty.add("general.architecture", Value::String("llama".into()));

    let mut all_types = GgufWriter::new();
    all_types
        .add("general.architecture", Value::String("llama".into()))
        .add("v.u8", Value::U8(1))
        .add("v.i8", Value::I8(-1))
        .add("v.u16", Value::U16(2))
        .add("v.i16", Value::I16(-2))
        .add("v.u32", Value::U32(3))
        .add("v.i32", Value::I32(-3))
        .add("v.f32", Value::F32(0.5))
        .add("v.bool", Value::Bool(true))
        .add("v.str", Value::String("hello".into()))
        .add("v.u64", Value::U64(4))
        .add("v.i64", Value::I64(-4))
        .add("v.f64", Value::F64(0.25))
        .add(
            "v.arr",
            Value::Array(
                ValueType::Array,
                vec![Value::Array(
                    ValueType::String,
                    vec![Value::String("a".into()), Value::String("bc".into())],
                )],
            ),
        );

    let mut tensors = GgufWriter::new();
    tensors
        .add("general.architecture", Value::String("llama".into()))
        .add("general.alignment", Value::U32(16))
        .add(
            "tokenizer.ggml.tokens",
            Value::Array(
                ValueType::String,
                ["<s>", "a", "b"]
                    .iter()
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
        );
    tensors.add_f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
    tensors.add_tensor("q", &[32, 2], GgmlType::Q8_0, vec![1u8; 68])?;
    tensors.add_tensor("k", &[256], GgmlType::Q4_K, vec![2u8; 144])?;
    tensors.add_tensor("h", &[3], GgmlType::F16, vec![0u8; 6])?;

    for (name, w) in [
        ("empty", empty),
        ("all_types", all_types),
        ("tensors", tensors),
    ] {
        let path = std::path::Path::new(&dir).join(format!("{name}.gguf"));
        w.write_file(&path)?;
        println!("{}", path.display());
    }
    Ok(())
}
