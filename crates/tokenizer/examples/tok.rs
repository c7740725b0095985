//! Debug helper: `cargo run -p tokenizer --example tok -- MODEL TEXT` prints ids and pieces.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = hub::ensure(&args[1]).unwrap();
    let file = gguf::GgufFile::open(path).unwrap();
    let tok = tokenizer::Tokenizer::from_gguf(&file).unwrap();
    let ids = tok.encode(&args[2], false, true);
    for id in ids {
        println!(
            "{id}\t{:?}\t{:?}",
            tok.token_text(id),
            String::from_utf8_lossy(tok.token_bytes(id))
        );
    }
}
