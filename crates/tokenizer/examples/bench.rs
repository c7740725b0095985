//! Timing helper: `cargo run --release -p tokenizer --example bench` encodes a 100 KB chunk
//! of the corpus and some pathological inputs with each real model.
use std::time::Instant;

fn main() {
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/corpus/pride-and-prejudice.txt"
    ))
    .unwrap();
    let chunk: String = corpus.chars().take(100_000).collect();
    let inputs: Vec<(&str, String)> = vec![
        ("corpus", chunk),
        ("spaces", " ".repeat(100_000)),
        ("newlines", "\n".repeat(100_000)),
        ("letters", "a".repeat(100_000)),
        ("angles", "<".repeat(100_000)),
        ("cjk", "你好世界".repeat(25_000)),
        ("emoji", "🍕".repeat(25_000)),
        ("digits", "1234567890".repeat(10_000)),
        ("tags", "<h1><td>".repeat(12_500)),
    ];
    for model in ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"] {
        let file = gguf::GgufFile::open(hub::ensure(model).unwrap()).unwrap();
        let t0 = Instant::now();
        let tok = tokenizer::Tokenizer::from_gguf(&file).unwrap();
        println!("{model}: load {:?}", t0.elapsed());
        for (name, text) in &inputs {
            let t0 = Instant::now();
            let ids = tok.encode(text, false, true);
            let dt = t0.elapsed();
            assert_eq!(tok.decode(&ids), text.as_bytes());
            println!("  {name:10} {:>7} tokens {dt:?}", ids.len());
        }
    }
}
