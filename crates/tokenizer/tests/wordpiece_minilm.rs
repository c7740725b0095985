//! WordPiece against all-MiniLM-L6-v2's reference token ids
//! (`testdata/encoders/minilm/expected.json`, 24 sentences): exactly the same ids
//! from `tokenizer.json` and from `vocab.txt` + `tokenizer_config.json`, cut at the model's
//! `max_seq_length` 256 (not tokenizer.json's own 128).

use std::path::{Path, PathBuf};

use tokenizer::wordpiece::WordPiece;

fn model_dir() -> PathBuf {
    hub::require("minilm-l6").unwrap_or_else(|e| panic!("{e}"))
}

fn fixture() -> serde_json::Value {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/encoders/minilm/expected.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn check(tok: &WordPiece, what: &str) {
    let fx = fixture();
    let sentences = fx["sentences"].as_array().unwrap();
    assert_eq!(sentences.len(), 24);
    let mut bad = Vec::new();
    for s in sentences {
        let text = s["text"].as_str().unwrap();
        let want: Vec<u32> = s["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text);
        if got != want {
            bad.push(format!(
                "{what}: sentence {} ({}): got {got:?}, want {want:?}",
                s["index"], s["name"]
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn tokenizer_json_ids_match() {
    let mut tok = WordPiece::from_tokenizer_json(model_dir().join("tokenizer.json")).unwrap();
    tok.set_max_len(Some(256));
    check(&tok, "tokenizer.json");
}

#[test]
fn vocab_txt_ids_match() {
    let mut tok = WordPiece::from_vocab_txt(model_dir().join("vocab.txt")).unwrap();
    tok.set_max_len(Some(256));
    check(&tok, "vocab.txt");
}

/// The tiny `bert` GGUF (`testdata/tiny/bert/`) has `tokenizer.ggml.model = "bert"` over a
/// byte-level vocabulary without `[UNK]` / `[CLS]` (its README: ids are given explicitly):
/// it loads, with CLS = SEP = the file's BOS / EOS (0), and encodes without panicking.
#[test]
fn loads_from_gguf_bert_metadata() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny/bert/model.f32.gguf");
    let f = gguf::GgufFile::open(&p).unwrap();
    let tok = WordPiece::from_gguf(&f).unwrap();
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!((tok.cls_id(), tok.sep_id()), (0, 0));
    let ids = tok.encode("It is a truth universally acknowledged");
    assert_eq!((ids[0], *ids.last().unwrap()), (0, 0));
    assert!(ids.iter().all(|&i| i < 512));
    // A GGUF whose tokenizer is not "bert" is refused, naming the key.
    let llama =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny/llama/model.f32.gguf");
    let f = gguf::GgufFile::open(&llama).unwrap();
    let e = WordPiece::from_gguf(&f).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.model"), "{e}");
}

/// Malformed `tokenizer.json` / `vocab.txt` files are errors naming the file and the key.
#[test]
fn bad_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("lume-wp-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("tokenizer.json");
    let cases: [(&str, &str); 6] = [
        ("{not json", "bad JSON"),
        (r#"{"model": {"type": "BPE"}}"#, "model.type"),
        (
            r#"{"model": {"type": "WordPiece", "vocab": [1]}}"#,
            "model.vocab",
        ),
        (
            r#"{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 5}}}"#,
            "model.vocab",
        ),
        (
            r#"{"model": {"type": "WordPiece", "vocab": {"a": 0, "b": 1}}}"#,
            "model.unk_token",
        ),
        (
            r#"{"normalizer": {"type": "NFC"}, "model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}}"#,
            "normalizer.type",
        ),
    ];
    for (text, key) in cases {
        std::fs::write(&p, text).unwrap();
        let e = WordPiece::from_tokenizer_json(&p).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains(key),
            "{text}: {e}"
        );
    }
    // No [CLS] in a vocab.txt: named.
    let v = dir.join("vocab.txt");
    std::fs::write(&v, "[PAD]\n[UNK]\na\n").unwrap();
    let e = WordPiece::from_vocab_txt(&v).unwrap_err().to_string();
    assert!(e.contains("vocab.txt") && e.contains("[CLS]"), "{e}");
    let e = WordPiece::from_vocab_txt(dir.join("none.txt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.txt"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
