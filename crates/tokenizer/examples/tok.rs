//! Debug helper.
//! - `cargo run -p tokenizer --example tok -- MODEL TEXT` prints ids and pieces.
//! - `cargo run -p tokenizer --example tok -- MODEL --batch FILE` reads a JSON list of
//!   `[text, parse_special]` pairs and prints a JSON list of id lists (for cross-checks).
//!
//! MODEL is a catalogue name (`smollm2-135m`, ...) or a path to a GGUF file.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = if args[1].ends_with(".gguf") {
        args[1].clone().into()
    } else {
        hub::ensure(&args[1]).unwrap()
    };
    let file = gguf::GgufFile::open(path).unwrap();
    let tok = tokenizer::Tokenizer::from_gguf(&file).unwrap();
    if args[2] == "--batch" {
        let cases: Vec<(String, bool)> =
            serde_json::from_str(&std::fs::read_to_string(&args[3]).unwrap()).unwrap();
        let out: Vec<Vec<u32>> = cases
            .iter()
            .map(|(t, ps)| tok.encode(t, false, *ps))
            .collect();
        println!("{}", serde_json::to_string(&out).unwrap());
        return;
    }
    for id in tok.encode(&args[2], false, true) {
        println!(
            "{id}\t{:?}\t{:?}",
            tok.token_text(id),
            String::from_utf8_lossy(tok.token_bytes(id))
        );
    }
}
