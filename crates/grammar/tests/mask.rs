//! The mask against a brute-force check on a small vocabulary (the tiny models' 512-token
//! byte-level BPE): for a grammar with a finite language `L`, after any prefix `p` that the
//! constraint accepted, a text token `t` must be allowed exactly when `p + bytes(t)` starts some
//! string of `L`, an end-of-generation token exactly when `p` is in `L`, and a control token never.
//! The walk through each grammar takes random allowed tokens (seeded), so many prefixes are seen.

use std::path::PathBuf;
use std::sync::Arc;

use grammar::{Grammars, Spec};
use tokenizer::Tokenizer;

fn tiny_tokenizer() -> Arc<Tokenizer> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny/llama/model.f32.gguf");
    let file = gguf::GgufFile::open(&path).expect("tiny llama fixture");
    Arc::new(Tokenizer::from_gguf(&file).expect("tokenizer"))
}

/// Every string of `(cat|dog|bird)s?|[0-9]{1,3}`.
fn animals_or_numbers() -> Vec<Vec<u8>> {
    let mut l = Vec::new();
    for a in ["cat", "dog", "bird"] {
        l.push(a.as_bytes().to_vec());
        l.push(format!("{a}s").into_bytes());
    }
    for n in 0..10 {
        l.push(format!("{n}").into_bytes());
        for m in 0..10 {
            l.push(format!("{n}{m}").into_bytes());
            for k in 0..10 {
                l.push(format!("{n}{m}{k}").into_bytes());
            }
        }
    }
    l
}

/// Every string of the Lark grammar below.
fn greetings() -> Vec<Vec<u8>> {
    let mut l = Vec::new();
    for g in ["hello", "hi"] {
        for who in ["world", "there", "Mr. Bennet"] {
            l.push(format!("{g} {who}").into_bytes());
            l.push(format!("{g} {who}!").into_bytes());
        }
    }
    l
}

const GREETINGS_LARK: &str = r#"
start: greeting " " who "!"?
greeting: "hello" | "hi"
who: "world" | "there" | "Mr. Bennet"
"#;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// With `exact`, the plain mask must equal the brute force; without (the default canonical
/// forcing), it must be a non-empty subset of it.
fn walk(spec: Spec, lang: &[Vec<u8>], seed: u64, walks: usize, exact: bool) -> usize {
    let tok = tiny_tokenizer();
    let n_vocab = tok.vocab_size();
    let grammars = Grammars::with_forcing(Arc::clone(&tok), n_vocab, !exact).expect("grammars");
    let mut rng = Lcg(seed);
    let mut checked = 0;
    for _ in 0..walks {
        let mut c = grammars.compile(&spec).expect("compiles");
        let mut prefix: Vec<u8> = Vec::new();
        loop {
            let mut logits = vec![0.0f32; n_vocab];
            c.apply(&mut logits).expect("mask");
            let mut allowed_text = Vec::new();
            let mut eog_allowed = false;
            for id in 0..n_vocab as u32 {
                let got = logits[id as usize] == 0.0;
                let bytes = tok.token_bytes(id);
                let want = if tok.is_eog(id) {
                    lang.contains(&prefix)
                } else if tok.is_control(id) || bytes.is_empty() {
                    false
                } else {
                    let mut p = prefix.clone();
                    p.extend_from_slice(bytes);
                    lang.iter().any(|s| s.starts_with(&p))
                };
                assert!(
                    got == want || (!exact && !got),
                    "token {id} {:?} after {:?}: mask says {got}, brute force {want}",
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(&prefix)
                );
                assert_eq!(c.allows(id).unwrap(), got);
                checked += 1;
                if got && tok.is_eog(id) {
                    eog_allowed = true;
                } else if got {
                    allowed_text.push(id);
                }
            }
            // Sometimes end where the grammar allows it; otherwise continue with a random token.
            if allowed_text.is_empty() || (eog_allowed && rng.next(4) == 0) {
                assert!(
                    eog_allowed,
                    "stuck after {:?}",
                    String::from_utf8_lossy(&prefix)
                );
                assert!(lang.contains(&prefix));
                break;
            }
            let id = allowed_text[rng.next(allowed_text.len())];
            prefix.extend_from_slice(tok.token_bytes(id));
            if c.accept(id).expect("accept") {
                // The grammar ended: the text is a whole string of the language, and no
                // longer string starts with it.
                assert!(
                    lang.contains(&prefix),
                    "{:?}",
                    String::from_utf8_lossy(&prefix)
                );
                assert!(!lang
                    .iter()
                    .any(|s| s.len() > prefix.len() && s.starts_with(&prefix)));
                break;
            }
        }
    }
    checked
}

const ANIMALS: &str = "(cat|dog|bird)s?|[0-9]{1,3}";

#[test]
fn regex_mask_is_exact() {
    let n = walk(
        Spec::Regex(ANIMALS.into()),
        &animals_or_numbers(),
        7,
        40,
        true,
    );
    assert!(n > 10_000, "{n} token checks");
}

#[test]
fn lark_mask_is_exact() {
    let n = walk(
        Spec::Lark(GREETINGS_LARK.into()),
        &greetings(),
        11,
        30,
        true,
    );
    assert!(n > 10_000, "{n} token checks");
}

#[test]
fn forced_masks_stay_inside_the_language() {
    walk(
        Spec::Regex(ANIMALS.into()),
        &animals_or_numbers(),
        3,
        30,
        false,
    );
    walk(
        Spec::Lark(GREETINGS_LARK.into()),
        &greetings(),
        5,
        30,
        false,
    );
}

#[test]
fn forced_text_is_one_canonical_token() {
    // After "c" only "at" may follow: the mask is that text's canonical first token alone.
    let tok = tiny_tokenizer();
    let g = Grammars::new(Arc::clone(&tok), tok.vocab_size()).unwrap();
    let mut c = g.compile(&Spec::Regex(ANIMALS.into())).unwrap();
    let c_id = tok.encode("c", false, false)[0];
    assert!(!c.accept(c_id).unwrap());
    let canonical = tok.encode("at", false, false)[0];
    let allowed: Vec<u32> = (0..tok.vocab_size() as u32)
        .filter(|&id| c.allows(id).unwrap())
        .collect();
    assert_eq!(allowed, vec![canonical]);
}

#[test]
fn bad_inputs_are_named() {
    let tok = tiny_tokenizer();
    let g = Grammars::new(Arc::clone(&tok), tok.vocab_size()).unwrap();
    let e = g
        .compile(&Spec::JsonSchema(
            serde_json::json!({"type": "array", "uniqueItems": true}),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("uniqueItems"), "{e}");
    let e = g
        .compile(&Spec::Regex("(ab".into()))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("invalid regex"), "{e}");
    let e = g
        .compile(&Spec::Lark("start: nothing_here".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing_here"), "{e}");
    let e = g
        .compile(&Spec::JsonSchema(serde_json::json!(["not", "a", "schema"])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("json_schema"), "{e}");
}

#[test]
fn the_schema_set_compiles_through_grammars() {
    // testdata/schemas/*.json pass lume's own checks too (check_schema, then llguidance).
    let tok = tiny_tokenizer();
    let g = Grammars::new(Arc::clone(&tok), tok.vocab_size()).unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/schemas");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            g.compile(&Spec::JsonSchema(v))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 15, "{n} schemas");
}
