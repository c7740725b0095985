//! [`TextStream`], the streaming detokenizer the engine, server and cli use, fed with the bytes
//! of real and synthetic vocabularies' tokens: whole UTF-8 characters come out, a character
//! split across tokens is held back until its last byte, and bytes no later byte can complete
//! become U+FFFD. (The tokenizer crate had a second stream decoder that only its tests used;
//! these are those tests.)

mod common;

use engine::text::TextStream;
use gguf::{GgufFile, GgufWriter, Value, ValueType};
use serde_json::Value as Json;
use tokenizer::Tokenizer;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");

/// Feeds one token; returns the text that is complete now.
fn push(s: &mut TextStream, tok: &Tokenizer, id: u32) -> String {
    let mut out = String::new();
    assert!(!s.push(tok.token_bytes(id), &mut out), "no stop strings");
    out
}

fn finish(s: &mut TextStream) -> String {
    let mut out = String::new();
    s.finish(&mut out);
    out
}

/// A SentencePiece vocabulary of `<unk>`, `<s>`, `</s>` and the 256 byte tokens `<0xXX>`.
fn byte_vocab(bos: u32) -> Tokenizer {
    let mut tokens: Vec<Value> = ["<unk>", "<s>", "</s>"]
        .iter()
        .map(|s| Value::String(s.to_string()))
        .collect();
    let mut types = vec![Value::I32(2), Value::I32(3), Value::I32(3)];
    for b in 0..256 {
        tokens.push(Value::String(format!("<0x{b:02X}>")));
        types.push(Value::I32(6));
    }
    let scores = vec![Value::F32(0.0); tokens.len()];
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", Value::String("llama".into()))
        .add(
            "tokenizer.ggml.tokens",
            Value::Array(ValueType::String, tokens),
        )
        .add(
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, types),
        )
        .add(
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, scores),
        )
        .add("tokenizer.ggml.bos_token_id", Value::U32(bos))
        .add("tokenizer.ggml.eos_token_id", Value::U32(2));
    let file = GgufFile::from_bytes("synthetic.gguf", w.to_bytes()).unwrap();
    Tokenizer::from_gguf(&file).unwrap()
}

fn load(model: &str) -> Tokenizer {
    let path = common::model_file(model);
    Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap()
}

#[test]
fn out_of_range_ids_stream_nothing() {
    let tok = byte_vocab(1_000_000);
    let mut s = TextStream::new(&[]);
    assert_eq!(push(&mut s, &tok, u32::MAX), "");
    assert_eq!(finish(&mut s), "");
}

#[test]
fn stream_replaces_invalid_bytes() {
    let tok = byte_vocab(1);
    let byte = |b: u8| tok.token_id(&format!("<0x{b:02X}>")).unwrap();
    let mut s = TextStream::new(&[]);
    // A lone continuation byte can never complete: it is replaced at once.
    assert_eq!(push(&mut s, &tok, byte(0x80)), "\u{FFFD}");
    // A 3-byte character split over three tokens.
    assert_eq!(push(&mut s, &tok, byte(0xE2)), "");
    assert_eq!(push(&mut s, &tok, byte(0x82)), "");
    assert_eq!(push(&mut s, &tok, byte(0xAC)), "€");
    // A started sequence broken by an ASCII byte.
    assert_eq!(push(&mut s, &tok, byte(0xE2)), "");
    assert_eq!(push(&mut s, &tok, byte(b'a')), "\u{FFFD}a");
    assert!(!s.has_pending());
}

/// Every case of llama.cpp's reference ids (testdata/tokenizer/*.json) streams back to its
/// text, one token at a time.
fn stream_fixture(model: &str, fixture: &str) {
    let tok = load(model);
    let path = format!("{TESTDATA}/tokenizer/{fixture}.json");
    let fx: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let text = c["text"].as_str().unwrap();
        let ids: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let mut stream = TextStream::new(&[]);
        let mut streamed = String::new();
        let mut broken = None;
        for &id in &ids {
            // The pieces are valid UTF-8 by construction; they must not contain replacement
            // characters that the text does not have.
            let piece = push(&mut stream, &tok, id);
            if piece.contains('\u{FFFD}') && !text.contains('\u{FFFD}') {
                broken.get_or_insert(id);
            }
            streamed.push_str(&piece);
        }
        if let Some(id) = broken {
            failures.push(format!(
                "{name}: stream emitted a broken character at token {id}"
            ));
        } else if stream.has_pending() {
            failures.push(format!("{name}: stream holds bytes after the last token"));
        } else {
            streamed.push_str(&finish(&mut stream));
            if streamed != text {
                failures.push(format!("{name}: stream gave {streamed:?}"));
            }
        }
    }
    eprintln!("{model}: {} cases streamed", cases.len());
    assert!(
        failures.is_empty(),
        "{model}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_streams_llama_cpp_cases() {
    stream_fixture("smollm2-135m", "smollm2");
}

#[test]
fn gemma3_streams_llama_cpp_cases() {
    stream_fixture("gemma3-270m", "gemma3");
}

#[test]
fn qwen2_streams_llama_cpp_cases() {
    stream_fixture("qwen2.5-coder-0.5b", "qwen2");
}

/// Byte-level pieces of split characters are held back until complete.
#[test]
fn stream_holds_partial_characters() {
    let qwen = load("qwen2.5-coder-0.5b");
    let text = "pizza 🍕 and 你好 नमस्ते";
    let ids = qwen.encode(text, false, false);
    let mut s = TextStream::new(&[]);
    let mut out = String::new();
    let mut held = false;
    for &id in &ids {
        let piece = push(&mut s, &qwen, id);
        held |= s.has_pending();
        out.push_str(&piece);
    }
    assert!(
        held,
        "expected at least one token ending inside a character"
    );
    out.push_str(&finish(&mut s));
    assert_eq!(out, text);
    // An unfinished character at the end is flushed lossily.
    let mut s = TextStream::new(&[]);
    // " 🍕" is [" \xF0\x9F", "\x8D", "\x95"] in this vocabulary.
    let first = qwen.encode(" 🍕", false, false)[0];
    assert_eq!(push(&mut s, &qwen, first), " ");
    assert!(s.has_pending());
    assert_eq!(finish(&mut s), "\u{FFFD}");
}
