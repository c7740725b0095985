//! CLIP token ids of texts, for cross-checks against Hugging Face's `CLIPTokenizerFast`
//! (`tools/crosscheck_clip.py`): reads a JSON list of strings from stdin and prints a JSON list
//! of id lists (BOS ... EOS, no padding).
//!
//! ```text
//! cargo run --release -p tokenizer --example clip_tok -- testdata/encoders/clip/tokenizer < texts.json
//! ```

use std::io::Read;
use std::path::Path;

use tokenizer::clip::ClipTokenizer;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: clip_tok TOKENIZER_DIR < texts.json");
    let tok = ClipTokenizer::from_dir(Path::new(&dir)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let texts: Vec<String> = serde_json::from_str(&input).expect("a JSON list of strings");
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t)).collect();
    println!("{}", serde_json::to_string(&ids).unwrap());
}
