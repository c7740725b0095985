//! Small synthetic vocabularies written with `GgufWriter`: SentencePiece rules (space prefix,
//! byte fallback, special tokens), byte-level BPE merges, and clear errors for bad metadata.

use gguf::{GgufFile, GgufWriter, Value, ValueType};
use tokenizer::{Tokenizer, TokenizerError, TokenizerWarning};

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
    assert_eq!(tok.encode("", false, false), Vec::<u32>::new());

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
    w.add("tokenizer.ggml.model", Value::String("t5".into()));
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
    assert_eq!(tok.warnings().len(), 1);
    assert!(!tok.add_bos());
    assert_eq!(
        tok.encode("Hello", true, false),
        tok.encode("Hello", false, false)
    );
    assert_eq!(tok.decode(&[u32::MAX, 7_000_000]), b"");
    assert_eq!(tok.token_text(u32::MAX), "");
    assert!(!tok.is_eog(u32::MAX));
}

/// The vocabulary size of `bpe_writer` (the end-of-text token, 256 bytes, 11 merged tokens).
const BPE_VOCAB: u32 = 268;

fn warning(key: &str, id: u32, n_vocab: usize) -> TokenizerWarning {
    TokenizerWarning::IdOutOfRange {
        path: "synthetic.gguf".into(),
        key: key.into(),
        id,
        n_vocab,
    }
}

#[test]
fn good_metadata_gives_no_warnings() {
    for w in [spm_writer(), bpe_writer("gpt-2")] {
        let mut w = w;
        w.add("tokenizer.ggml.padding_token_id", Value::U32(0))
            .add("tokenizer.ggml.eot_token_id", Value::U32(0))
            .add("tokenizer.ggml.add_bos_token", Value::Bool(true))
            .add("tokenizer.ggml.add_eos_token", Value::Bool(true));
        let tok = Tokenizer::from_gguf(&open(&w)).unwrap();
        assert_eq!(tok.warnings(), []);
    }
}

/// Each special id key with an id just past the vocabulary: a warning naming key and value,
/// the id ignored, the tokenizer otherwise the same.
#[test]
fn out_of_range_special_ids_warn_and_are_ignored() {
    let n = BPE_VOCAB;
    let good = Tokenizer::from_gguf(&open(&bpe_writer("gpt-2"))).unwrap();
    assert_eq!(good.vocab_size(), n as usize);
    let text = "hello world<|endoftext|>";
    let keys = [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.seperator_token_id",
        "tokenizer.ggml.mask_token_id",
        "tokenizer.ggml.fim_pre_token_id",
        "tokenizer.ggml.fim_suf_token_id",
        "tokenizer.ggml.fim_mid_token_id",
        "tokenizer.ggml.fim_pad_token_id",
        "tokenizer.ggml.fim_rep_token_id",
        "tokenizer.ggml.fim_sep_token_id",
    ];
    for key in keys {
        let mut w = bpe_writer("gpt-2");
        w.add(key, Value::U32(n));
        let tok = Tokenizer::from_gguf(&open(&w)).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(tok.warnings(), [warning(key, n, n as usize)], "{key}");
        assert_eq!(
            tok.warnings()[0].to_string(),
            format!(
                "synthetic.gguf: {key} = {n} is outside the vocabulary of {n} tokens; \
                 the id is ignored"
            )
        );
        assert_eq!(
            tok.encode(text, true, true),
            good.encode(text, true, true),
            "{key}"
        );
        assert!(
            tok.is_eog(0),
            "{key}: <|endoftext|> ends generation by its text"
        );
        assert!(!tok.is_eog(n), "{key}");
        if key.ends_with("eos_token_id") {
            assert_eq!(tok.eos(), None);
        } else {
            assert_eq!(tok.eos(), Some(0), "{key}");
        }
        // The end-of-turn token is found by its text, as when the key is absent.
        assert_eq!(tok.eot(), good.eot(), "{key}");
    }

    // SentencePiece: the default BOS / EOS / unknown ids are not used in place of a bad id.
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", 1_000_000),
        ("tokenizer.ggml.eos_token_id", u32::MAX),
        ("tokenizer.ggml.unknown_token_id", 279),
    ] {
        let mut w = spm_writer();
        w.add(key, Value::U32(id));
        let tok = Tokenizer::from_gguf(&open(&w)).unwrap();
        assert_eq!(tok.warnings(), [warning(key, id, 279)], "{key}");
    }
    let mut w = spm_writer();
    w.add("tokenizer.ggml.eos_token_id", Value::U32(279));
    let tok = Tokenizer::from_gguf(&open(&w)).unwrap();
    assert_eq!((tok.bos(), tok.eos()), (Some(1), None));
    assert!(tok.is_eog(2), "</s> still ends generation by its text");
}

/// A BOS / EOS outside the vocabulary that the file asks to add is an error naming both keys.
#[test]
fn out_of_range_id_the_file_asks_for_is_an_error() {
    let n = BPE_VOCAB;
    for (id_key, add_key) in [
        (
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.add_bos_token",
        ),
        (
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.add_eos_token",
        ),
    ] {
        let mut w = bpe_writer("gpt-2");
        w.add(id_key, Value::U32(70_000))
            .add(add_key, Value::Bool(true));
        let e = match Tokenizer::from_gguf(&open(&w)) {
            Ok(_) => panic!("{id_key}: expected an error"),
            Err(e) => e,
        };
        assert!(
            matches!(&e, TokenizerError::IdOutOfRange { key, id: 70_000, n_vocab, .. }
                if key == id_key && *n_vocab == n as usize),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "synthetic.gguf: {id_key} = 70000 is outside the vocabulary of {n} tokens, \
                 and {add_key} = true asks for that token"
            )
        );
        // Without the request it is only a warning.
        w.add(add_key, Value::Bool(false));
        let tok = Tokenizer::from_gguf(&open(&w)).unwrap();
        assert_eq!(tok.warnings(), [warning(id_key, 70_000, n as usize)]);
        assert!(!tok.add_bos() && !tok.add_eos());
    }
    // SentencePiece adds BOS by default: a bad BOS there is a warning (the file does not ask).
    let mut w = spm_writer();
    w.add("tokenizer.ggml.bos_token_id", Value::U32(279));
    assert_eq!(Tokenizer::from_gguf(&open(&w)).unwrap().warnings().len(), 1);
    w.add("tokenizer.ggml.add_bos_token", Value::Bool(true));
    assert!(matches!(
        Tokenizer::from_gguf(&open(&w)),
        Err(TokenizerError::IdOutOfRange { .. })
    ));
}

#[test]
fn special_id_of_the_wrong_type_is_an_error() {
    for key in [
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.unknown_token_id",
    ] {
        let mut w = bpe_writer("gpt-2");
        w.add(key, Value::I32(-1));
        match Tokenizer::from_gguf(&open(&w)) {
            Ok(_) => panic!("{key}: expected an error"),
            Err(e) => assert!(e.to_string().contains(key), "{e}"),
        }
    }
}

/// A merge that is not two non-empty pieces around one space is an error naming its index.
#[test]
fn malformed_merges_are_errors() {
    let good = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "12 3",
    ];
    for bad in [
        "a  b",
        "ab",
        " a",
        "a ",
        "a b c",
        "",
        " ",
        "  ",
        "a\u{3000}b",
    ] {
        // "a\u{3000}b": an ideographic space is not the separator.
        let mut merges = good.to_vec();
        merges.insert(4, bad);
        let mut w = bpe_writer("gpt-2");
        w.add("tokenizer.ggml.merges", strs(&merges));
        let e = match Tokenizer::from_gguf(&open(&w)) {
            Ok(_) => panic!("{bad:?}: expected an error"),
            Err(e) => e,
        };
        assert!(
            matches!(&e, TokenizerError::BadMerge { index: 4, entry, .. } if entry == bad),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "synthetic.gguf: tokenizer.ggml.merges[4] = {bad:?}: expected two pieces \
                 separated by one space"
            )
        );
    }
    // The example of the issue, verbatim.
    let mut w = bpe_writer("gpt-2");
    w.add("tokenizer.ggml.merges", strs(&["h e", "a  b"]));
    let e = Tokenizer::from_gguf(&open(&w)).err().unwrap();
    assert!(
        e.to_string().ends_with(
            r#"tokenizer.ggml.merges[1] = "a  b": expected two pieces separated by one space"#
        ),
        "{e}"
    );
    // Pieces that are not tokens are still well-formed rules (they never apply).
    let mut w = bpe_writer("gpt-2");
    w.add("tokenizer.ggml.merges", strs(&["h e", "x yz", "é ü"]));
    let tok = Tokenizer::from_gguf(&open(&w)).unwrap();
    assert_eq!(
        tok.encode("he", false, false),
        [tok.token_id("he").unwrap()]
    );
}

#[test]
fn tokenizer_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
}
