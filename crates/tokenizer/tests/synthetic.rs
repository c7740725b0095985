//! Small synthetic vocabularies written with `GgufWriter`: SentencePiece rules (space prefix,
//! byte fallback, special tokens), byte-level BPE merges, and clear errors for bad metadata.

use gguf::{GgufFile, GgufWriter, Value, ValueType};
use tokenizer::{Tokenizer, TokenizerError};

fn strs(items: &[&str]) -> Value {
    Value::Array(
        ValueType::String,
        items.iter().map(|s| Value::String(s.to_string())).collect(),
    )
}

fn i32s(items: &[i32]) -> Value {
    Value::Array(
        ValueType::I32,
        items.iter().map(|&x| Value::I32(x)).collect(),
    )
}

fn f32s(items: &[f32]) -> Value {
    Value::Array(
        ValueType::F32,
        items.iter().map(|&x| Value::F32(x)).collect(),
    )
}

fn open(w: &GgufWriter) -> GgufFile {
    GgufFile::from_bytes("synthetic.gguf", w.to_bytes()).unwrap()
}

/// A SentencePiece vocabulary: specials, byte tokens for all 256 bytes, a few pieces.
fn spm_writer() -> GgufWriter {
    let mut tokens: Vec<String> = vec![
        "<unk>".into(),
        "<s>".into(),
        "</s>".into(),
        "<ctl>".into(),
        "<ud>".into(),
    ];
    let mut types = vec![2, 3, 3, 3, 4];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let pieces = [
        "▁", "H", "e", "l", "o", "▁H", "ll", "llo", "ello", "▁Hello", "w", "r", "d", "▁w", "or",
        "▁wor", "ld", "▁world",
    ];
    let scores_pieces = [
        -1.0, -2.0, -2.0, -2.0, -2.0, -1.5, -1.2, -1.1, -1.0, -0.5, -2.0, -2.0, -2.0, -1.5, -1.4,
        -1.0, -1.3, -0.6,
    ];
    for p in pieces {
        tokens.push(p.to_string());
        types.push(1);
    }
    let mut scores = vec![0.0f32; tokens.len() - pieces.len()];
    scores.extend_from_slice(&scores_pieces);
    let refs: Vec<&str> = tokens.iter().map(|s| s.as_str()).collect();
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", Value::String("llama".into()))
        .add("tokenizer.ggml.tokens", strs(&refs))
        .add("tokenizer.ggml.token_type", i32s(&types))
        .add("tokenizer.ggml.scores", f32s(&scores))
        .add("tokenizer.ggml.bos_token_id", Value::U32(1))
        .add("tokenizer.ggml.eos_token_id", Value::U32(2));
    w
}

#[test]
fn spm_space_prefix_bytes_and_specials() {
    let tok = Tokenizer::from_gguf(&open(&spm_writer())).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert!(tok.add_space_prefix());
    assert!(tok.add_bos());
    // "Hello world" -> "▁Hello▁world"
    assert_eq!(
        tok.encode("Hello world", false, false),
        [id("▁Hello"), id("▁world")]
    );
    assert_eq!(
        tok.encode("Hello world", true, false),
        [1, id("▁Hello"), id("▁world")]
    );
    // A character missing from the vocabulary falls back to its UTF-8 bytes.
    assert_eq!(
        tok.encode("é", false, false),
        [id("▁"), id("<0xC3>"), id("<0xA9>")]
    );
    assert_eq!(tok.decode(&tok.encode("é", false, false)), " é".as_bytes());
    // Control tokens only with parse_special; a space is prefixed after a special token.
    assert_eq!(tok.encode("<ctl>Hello", false, true), [3, id("▁Hello")]);
    assert_ne!(tok.encode("<ctl>Hello", false, false)[0], 3);
    // User-defined tokens in both modes.
    assert_eq!(tok.encode("<ud>", false, false), [4]);
    assert_eq!(tok.encode("<ud>", false, true), [4]);
    assert_eq!(tok.decode(&[1, id("▁Hello"), 2]), b"<s> Hello</s>");
    assert!(tok.is_eog(2));
    assert_eq!(tok.encode("", false, false), []);

    // add_space_prefix = false in the file.
    let mut w = spm_writer();
    w.add("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    let tok = Tokenizer::from_gguf(&open(&w)).unwrap();
    assert_eq!(
        tok.encode("Hello world", false, false)[0],
        tok.token_id("H").unwrap()
    );
}

/// A byte-level BPE vocabulary: all 256 byte characters plus merges.
fn bpe_writer(pre: &str) -> GgufWriter {
    let table = tokenizer::unicode::byte_to_char_table();
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into()];
    tokens.extend(table.iter().map(|c| c.to_string()));
    let merged = [
        "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", "12", "123",
    ];
    tokens.extend(merged.iter().map(|s| s.to_string()));
    let merges = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "12 3",
    ];
    let mut types = vec![3];
    types.resize(tokens.len(), 1);
    let refs: Vec<&str> = tokens.iter().map(|s| s.as_str()).collect();
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", Value::String("gpt2".into()))
        .add("tokenizer.ggml.pre", Value::String(pre.into()))
        .add("tokenizer.ggml.tokens", strs(&refs))
        .add("tokenizer.ggml.token_type", i32s(&types))
        .add("tokenizer.ggml.merges", strs(&merges))
        .add("tokenizer.ggml.eos_token_id", Value::U32(0));
    w
}

#[test]
fn bpe_merges_and_pre_tokenizers() {
    let tok = Tokenizer::from_gguf(&open(&bpe_writer("gpt-2"))).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert_eq!(
        tok.encode("hello world", false, false),
        [id("hello"), id("Ġworld")]
    );
    assert_eq!(
        tok.encode("hello world<|endoftext|>", false, true),
        [id("hello"), id("Ġworld"), 0]
    );
    assert!(!tok.add_bos());
    assert_eq!(tok.encode("hello", true, true), [id("hello")]);
    // gpt-2 keeps digit runs together; smollm splits digits; llama-bpe groups by three.
    assert_eq!(tok.encode("123", false, false), [id("123")]);
    let smol = Tokenizer::from_gguf(&open(&bpe_writer("smollm"))).unwrap();
    assert_eq!(
        smol.encode("123", false, false),
        [id("1"), id("2"), id("3")]
    );
    let l3 = Tokenizer::from_gguf(&open(&bpe_writer("llama-bpe"))).unwrap();
    assert_eq!(l3.encode("1234", false, false), [id("123"), id("4")]);
    // Every byte round-trips, including invalid-UTF-8 token boundaries.
    let text = "hé 🍕\t\r\n\u{0}x";
    for t in [&tok, &smol, &l3] {
        assert_eq!(t.decode(&t.encode(text, false, false)), text.as_bytes());
    }
}

#[test]
fn errors_name_the_file_and_key() {
    let err = |w: &GgufWriter| match Tokenizer::from_gguf(&open(w)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };

    let e = err(&GgufWriter::new());
    assert!(e.to_string().contains("tokenizer.ggml.model"), "{e}");
    assert!(e.to_string().contains("synthetic.gguf"), "{e}");

    let mut w = spm_writer();
    w.add("tokenizer.ggml.model", Value::String("bert".into()));
    assert!(matches!(err(&w), TokenizerError::UnsupportedModel { .. }));

    let w = bpe_writer("no-such-pre");
    let e = err(&w);
    assert!(matches!(e, TokenizerError::UnsupportedPreTokenizer { .. }));
    assert!(e.to_string().contains("no-such-pre"), "{e}");

    let mut w = bpe_writer("gpt-2");
    w.add("tokenizer.ggml.tokens", strs(&["a", "b", "a"]));
    w.add("tokenizer.ggml.token_type", i32s(&[1, 1, 1]));
    let e = err(&w);
    assert!(e.to_string().contains("duplicate"), "{e}");

    let mut w = spm_writer();
    w.add("tokenizer.ggml.token_type", i32s(&[1, 1]));
    let e = err(&w);
    assert!(e.to_string().contains("tokenizer.ggml.token_type"), "{e}");

    let mut w = spm_writer();
    w.add("tokenizer.ggml.scores", strs(&["x"]));
    let e = err(&w);
    assert!(e.to_string().contains("tokenizer.ggml.scores"), "{e}");

    let mut w = bpe_writer("gpt-2");
    w.add("tokenizer.ggml.merges", Value::U32(3));
    let e = err(&w);
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");

    let mut w = spm_writer();
    w.add("tokenizer.ggml.tokens", strs(&[]));
    w.add("tokenizer.ggml.token_type", i32s(&[]));
    w.add("tokenizer.ggml.scores", f32s(&[]));
    let e = err(&w);
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn out_of_range_ids_are_harmless() {
    let mut w = spm_writer();
    w.add("tokenizer.ggml.bos_token_id", Value::U32(1_000_000));
    let tok = Tokenizer::from_gguf(&open(&w)).unwrap();
    assert_eq!(tok.bos(), None);
    assert!(!tok.add_bos());
    assert_eq!(
        tok.encode("Hello", true, false),
        tok.encode("Hello", false, false)
    );
    assert_eq!(tok.decode(&[u32::MAX, 7_000_000]), b"");
    assert_eq!(tok.token_text(u32::MAX), "");
    assert!(!tok.is_eog(u32::MAX));
    let mut s = tok.stream();
    assert_eq!(s.push(u32::MAX), "");
    assert_eq!(s.finish(), "");
}

#[test]
fn stream_replaces_invalid_bytes() {
    let tok = Tokenizer::from_gguf(&open(&spm_writer())).unwrap();
    let byte = |b: u8| tok.token_id(&format!("<0x{b:02X}>")).unwrap();
    let mut s = tok.stream();
    // A lone continuation byte can never complete: it is replaced at once.
    assert_eq!(s.push(byte(0x80)), "\u{FFFD}");
    // A 3-byte character split over three tokens.
    assert_eq!(s.push(byte(0xE2)), "");
    assert_eq!(s.push(byte(0x82)), "");
    assert_eq!(s.push(byte(0xAC)), "€");
    // A started sequence broken by an ASCII byte.
    assert_eq!(s.push(byte(0xE2)), "");
    assert_eq!(s.push(byte(b'a')), "\u{FFFD}a");
    assert!(!s.has_pending());
}

#[test]
fn tokenizer_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
}
