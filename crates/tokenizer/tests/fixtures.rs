//! The tokenizer against llama.cpp's reference ids (testdata/tokenizer/*.json) for the three
//! real models, plus the tiny fixture vocabulary.

use std::collections::HashSet;
use std::time::Instant;

use serde_json::Value;
use tokenizer::Tokenizer;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");

fn load(model: &str) -> Tokenizer {
    let path = hub::require(model).unwrap_or_else(|e| panic!("{e}"));
    let file = gguf::GgufFile::open(&path).unwrap();
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    eprintln!(
        "{model}: vocab {} loaded in {:?}",
        tok.vocab_size(),
        t0.elapsed()
    );
    assert_eq!(
        tok.warnings(),
        [],
        "{model}: the real model's metadata is clean"
    );
    tok
}

fn fixture(name: &str) -> Value {
    let path = format!("{TESTDATA}/tokenizer/{name}.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Check one token sequence decodes back to `text` (streaming is tested with the engine's
/// `TextStream`, in `crates/engine/tests/text_stream.rs`).
fn check_decode(tok: &Tokenizer, ids: &[u32], text: &str) -> Result<(), String> {
    let bytes = tok.decode(ids);
    if bytes != text.as_bytes() {
        return Err(format!("decode gave {:?}", String::from_utf8_lossy(&bytes)));
    }
    Ok(())
}

fn run_fixture(model: &str, fixture_name: &str) {
    let tok = load(model);
    let fx = fixture(fixture_name);
    let cases = fx["cases"].as_array().unwrap();
    let names: HashSet<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let mut checks = 0;
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let text = c["text"].as_str().unwrap();
        let parse_special = c["parse_special"].as_bool().unwrap();
        let want = ids_of(&c["ids"]);
        // A case without a /no_special twin has the same ids in both modes.
        let modes: Vec<bool> = if name.ends_with("/no_special")
            || names.contains(format!("{name}/no_special").as_str())
        {
            vec![parse_special]
        } else {
            vec![true, false]
        };
        for ps in modes {
            checks += 1;
            let got = tok.encode(text, false, ps);
            if got != want {
                failures.push(format!(
                    "{name} (parse_special={ps}): text {text:?}\n   want {want:?}\n   got  {got:?}"
                ));
            }
        }
        checks += 1;
        if let Err(e) = check_decode(&tok, &want, text) {
            failures.push(format!("{name}: {e}"));
        }
    }
    eprintln!(
        "{model}: {}/{} checks passed over {} cases",
        checks - failures.len(),
        checks,
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{model}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    run_fixture("smollm2-135m", "smollm2");
}

#[test]
fn gemma3_matches_llama_cpp() {
    run_fixture("gemma3-270m", "gemma3");
}

#[test]
fn qwen2_matches_llama_cpp() {
    run_fixture("qwen2.5-coder-0.5b", "qwen2");
}

#[test]
fn add_special_behaviour() {
    let gemma = load("gemma3-270m");
    assert!(gemma.add_bos());
    assert_eq!(gemma.bos(), Some(2));
    let plain = gemma.encode("Hello world", false, true);
    let with = gemma.encode("Hello world", true, true);
    assert_eq!(with[0], 2);
    assert_eq!(&with[1..], &plain[..]);
    // Even when the text already starts with <bos>, llama.cpp adds another one.
    assert_eq!(&gemma.encode("<bos>Hi", true, true)[..2], &[2, 2]);
    assert_eq!(gemma.encode("", true, true), [2]);
    for model in ["smollm2-135m", "qwen2.5-coder-0.5b"] {
        let tok = load(model);
        assert!(!tok.add_bos(), "{model}");
        assert!(!tok.add_eos(), "{model}");
        assert_eq!(
            tok.encode("Hello world", true, true),
            tok.encode("Hello world", false, true),
            "{model}"
        );
    }
}

#[test]
fn end_of_generation_tokens() {
    let smol = load("smollm2-135m");
    assert_eq!(smol.eos(), Some(2));
    assert!(smol.is_eog(2)); // <|im_end|>
    assert!(smol.is_eog(0)); // <|endoftext|>
    assert!(!smol.is_eog(1)); // <|im_start|>
    let gemma = load("gemma3-270m");
    assert!(gemma.is_eog(1)); // <eos>
    assert!(gemma.is_eog(106)); // <end_of_turn>
    assert!(!gemma.is_eog(105));
    // </s> is user-defined in the file but llama.cpp re-types it as control.
    assert!(gemma.is_control(212));
    let qwen = load("qwen2.5-coder-0.5b");
    assert!(qwen.is_eog(151645)); // <|im_end|>
    assert!(qwen.is_eog(151643)); // <|endoftext|>
    assert!(!qwen.is_eog(151644));
    assert_eq!(qwen.token_id("<|im_start|>"), Some(151644));
    assert_eq!(qwen.token_text(151644), "<|im_start|>");
    assert_eq!(qwen.token_bytes(151644), b"<|im_start|>");
    assert_eq!(qwen.token_bytes(u32::MAX), b"");
}

/// The tiny fixture vocabulary (gpt2 model, `default` pre-tokenizer): the prompt ids given in
/// testdata/tiny/README.md, and round trips.
#[test]
fn tiny_vocab() {
    let file = gguf::GgufFile::open(format!("{TESTDATA}/tiny/llama/model.f32.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.warnings(), []);
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!(tok.bos(), Some(0));
    assert!(tok.is_eog(0));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{TESTDATA}/tiny/llama/expected.json")).unwrap(),
    )
    .unwrap();
    for seq in expected["sequences"].as_array().unwrap() {
        let ids = ids_of(&seq["token_ids"]);
        let text = seq["text"].as_str().unwrap();
        assert_eq!(tok.decode_string(&ids), text);
        assert_eq!(tok.encode(text, false, false), ids, "{text:?}");
    }
    for text in [
        "It is a truth universally acknowledged, that a single man",
        "  spaces\tand\nnewlines!! 123456 é",
        "",
    ] {
        let ids = tok.encode(text, true, true);
        assert_eq!(tok.decode(&ids), text.as_bytes(), "{text:?}");
    }
    assert_eq!(tok.encode("<|endoftext|>", false, true), [0]);
    assert_ne!(tok.encode("<|endoftext|>", false, false), [0]);
}

/// A 100 KB chunk of a novel must tokenize quickly and round-trip, for every model.
#[test]
fn long_text_is_fast() {
    let corpus =
        std::fs::read_to_string(format!("{TESTDATA}/corpus/pride-and-prejudice.txt")).unwrap();
    let mut end = 100_000.min(corpus.len());
    while !corpus.is_char_boundary(end) {
        end -= 1;
    }
    let chunk = &corpus[..end];
    for model in ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"] {
        let tok = load(model);
        let t0 = Instant::now();
        let ids = tok.encode(chunk, false, false);
        let dt = t0.elapsed();
        eprintln!(
            "{model}: {} bytes -> {} tokens in {dt:?}",
            chunk.len(),
            ids.len()
        );
        assert_eq!(tok.decode(&ids), chunk.as_bytes(), "{model}");
        assert!(
            ids.len() > chunk.len() / 8,
            "{model}: suspiciously few tokens"
        );
        // Generous bound (debug builds, shared machine); release takes milliseconds.
        assert!(dt.as_secs() < 60, "{model}: {dt:?}");
    }
}
