//! CLIP's BPE tokenizer against `CLIPTokenizerFast` (testdata/encoders/clip/): the 30 cases of
//! `tokenizer_cases.json` exactly, the 77-token padded ids of `expected.json` for both pad ids,
//! and clear errors for broken folders.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizer::clip::ClipTokenizer;
use tokenizer::TokenizerError;

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/encoders/clip");

fn json(name: &str) -> Value {
    let path = format!("{CLIP}/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn load() -> ClipTokenizer {
    ClipTokenizer::from_dir(&Path::new(CLIP).join("tokenizer")).unwrap()
}

#[test]
fn all_cases_match_the_fast_tokenizer() {
    let tok = load();
    assert_eq!(tok.vocab_size(), 49408);
    assert_eq!((tok.bos(), tok.eos(), tok.pad()), (49406, 49407, 49407));
    assert_eq!(tok.max_length(), 77);
    let cases = json("tokenizer_cases.json");
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 30);
    let mut failed = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let text = c["text"].as_str().unwrap();
        let want = ids_of(&c["ids"]);
        let got = tok.encode(text);
        if got != want {
            let pieces: Vec<&str> = got.iter().map(|&i| tok.token_text(i)).collect();
            eprintln!("{name} {text:?}\n  want {want:?}\n  got  {got:?}\n  {pieces:?}");
            failed.push(name);
        }
        // The token strings agree too (a check on vocab.json's id order).
        let tokens: Vec<&str> = c["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        if got == want {
            let pieces: Vec<&str> = got.iter().map(|&i| tok.token_text(i)).collect();
            assert_eq!(pieces, tokens, "{name}");
        }
    }
    assert!(failed.is_empty(), "cases that differ: {failed:?}");
    eprintln!(
        "{} of {} cases match",
        cases.len() - failed.len(),
        cases.len()
    );
}

#[test]
fn padded_ids_of_the_model_prompts() {
    let tok = load();
    let exp = json("expected.json");
    for p in exp["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        let want = ids_of(&p["input_ids"]);
        assert_eq!(tok.encode_padded(text), want, "{}", p["name"]);
        assert_eq!(
            tok.eos_position(&want),
            p["eos_index"].as_u64().unwrap() as usize
        );
        // SDXL's tokenizer_2 pads with 0 (`!`).
        let mut ids = tok.encode(text);
        tok.truncate_and_pad(&mut ids, 77, 0);
        assert_eq!(ids, ids_of(&p["input_ids_pad0"]), "{}", p["name"]);
    }
}

/// A scratch copy of the tokenizer folder, with `edit` applied to it.
fn scratch_dir(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lume-clip-tok-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(Path::new(CLIP).join("tokenizer").join(f), dir.join(f)).unwrap();
    }
    edit(&dir);
    dir
}

#[test]
fn sdxl_tokenizer_2_pads_with_exclamation_mark() {
    let dir = scratch_dir("pad0", |d| {
        let cfg = r#"{"model_max_length": 77, "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "!"}"#;
        std::fs::write(d.join("tokenizer_config.json"), cfg).unwrap();
        std::fs::write(d.join("special_tokens_map.json"), r#"{"pad_token": "!"}"#).unwrap();
    });
    let tok = ClipTokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.pad(), 0);
    // The pad token is a special token in the text too (CLIPTokenizerFast and CLIPTokenizer,
    // transformers 4.57.6, with this config): each `!` is id 0, where tokenizer/ merges them.
    assert_eq!(
        tok.encode("hello!!! world!"),
        [49406, 3306, 0, 0, 0, 1002, 0, 49407]
    );
    assert_eq!(
        load().encode("hello!!! world!"),
        [49406, 3306, 995, 1002, 256, 49407]
    );
    let exp = json("expected.json");
    for p in exp["prompts"].as_array().unwrap() {
        let ids = tok.encode_padded(p["text"].as_str().unwrap());
        assert_eq!(ids, ids_of(&p["input_ids_pad0"]), "{}", p["name"]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn load_err(name: &str, edit: impl FnOnce(&Path)) -> String {
    let dir = scratch_dir(name, edit);
    let e: TokenizerError = match ClipTokenizer::from_dir(&dir) {
        Ok(_) => panic!("{name}: loaded"),
        Err(e) => e,
    };
    std::fs::remove_dir_all(&dir).unwrap();
    e.to_string()
}

#[test]
fn broken_folders_are_clear_errors() {
    let e = load_err("novocab", |d| {
        std::fs::remove_file(d.join("vocab.json")).unwrap()
    });
    assert!(e.contains("vocab.json: cannot read"), "{e}");

    let e = load_err("badjson", |d| {
        std::fs::write(d.join("vocab.json"), "{\"a\": 0,").unwrap()
    });
    assert!(e.contains("vocab.json: bad JSON"), "{e}");

    let e = load_err("dupid", |d| {
        std::fs::write(d.join("vocab.json"), r#"{"a": 0, "b": 0}"#).unwrap()
    });
    assert!(
        e.contains("vocab.json: key \"b\"") || e.contains("vocab.json: key \"a\""),
        "{e}"
    );

    let e = load_err("badmerge", |d| {
        let m = std::fs::read_to_string(d.join("merges.txt")).unwrap();
        std::fs::write(d.join("merges.txt"), m.replacen("\n", "\nnot-a-merge\n", 1)).unwrap();
    });
    assert!(e.contains("merges.txt:2: \"not-a-merge\""), "{e}");

    let e = load_err("unknownpiece", |d| {
        std::fs::write(d.join("merges.txt"), "#version: 0.2\nqqqqqq zzzzzz\n").unwrap();
    });
    assert!(
        e.contains("merges.txt:2") && e.contains("not in vocab.json"),
        "{e}"
    );

    let e = load_err("badpad", |d| {
        std::fs::write(
            d.join("tokenizer_config.json"),
            r#"{"pad_token": "<|no such token|>"}"#,
        )
        .unwrap()
    });
    assert!(
        e.contains("tokenizer_config.json: key \"pad_token\"") && e.contains("not in vocab.json"),
        "{e}"
    );

    let e = load_err("badlen", |d| {
        std::fs::write(
            d.join("tokenizer_config.json"),
            r#"{"model_max_length": "x"}"#,
        )
        .unwrap()
    });
    assert!(e.contains("key \"model_max_length\""), "{e}");
}
