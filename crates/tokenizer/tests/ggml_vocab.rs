//! llama.cpp's own tokenizer suite: the `models/ggml-vocab-*.gguf` vocabularies of its source
//! tree with their `.inp` / `.out` pairs, as its `test-tokenizer-0` checks them: the `.inp`
//! strings are split on `\n__ggml_vocab_test__\n`, each is tokenized without BOS/EOS and
//! without parsing special tokens, and the ids must equal the matching line of `.out`.
//!
//! The files (75 MB, from the `llama-cpp-python==0.3.36` source package) are not in the
//! repository: `scripts/fetch_ggml_vocab.sh` puts them in `<lume cache>/ggml-vocab/` once
//! (`.ci/run` calls it). Without them the test fails with one line saying so.

use std::path::{Path, PathBuf};

use tokenizer::Tokenizer;

/// The vocabularies with test data (every one must pass every string).
const WITH_TESTS: &[&str] = &[
    "bert-bge",
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gemma-4",
    "gpt-2",
    "llama-bpe",
    "llama-spm",
    "mpt",
    "phi-3",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];

/// Vocab-only files without test data: each loads, or is refused with an error that names
/// its tokenizer model (`nomic-bert-moe` is a T5 Unigram vocabulary, which lume does not run).
const WITHOUT_TESTS: &[(&str, Option<&str>)] = &[
    ("aquila", None),
    ("baichuan", None),
    ("gpt-neox", None),
    (
        "nomic-bert-moe",
        Some("tokenizer model 't5' (tokenizer.ggml.model) is not supported"),
    ),
];

fn vocab_dir() -> PathBuf {
    let dir = hub::cache_dir().join("ggml-vocab");
    if !dir.join("ggml-vocab-gpt-2.gguf").is_file() {
        panic!(
            "llama.cpp's vocab files are not in {}: run `bash scripts/fetch_ggml_vocab.sh` once",
            dir.display()
        );
    }
    dir
}

fn load(path: &Path) -> Result<Tokenizer, String> {
    let file = gguf::GgufFile::open(path).map_err(|e| e.to_string())?;
    Tokenizer::from_gguf(&file).map_err(|e| e.to_string())
}

/// The `(text, ids)` cases of one vocabulary.
fn cases(dir: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let base = dir.join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp"))
        .unwrap_or_else(|e| panic!("{name}.inp: {e}"));
    let out = std::fs::read_to_string(base.with_extension("gguf.out"))
        .unwrap_or_else(|e| panic!("{name}.out: {e}"));
    // Every piece is a case, the empty one after a final separator too (it must give no
    // ids; llama.cpp's own reader skips it): 708 strings in the 15 files.
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let lines: Vec<&str> = out.split('\n').collect();
    assert!(
        lines.len() >= texts.len(),
        "{name}: {} strings but {} lines of ids",
        texts.len(),
        lines.len()
    );
    texts
        .iter()
        .zip(&lines)
        .map(|(t, l)| {
            let ids = l
                .split_whitespace()
                .map(|x| {
                    x.parse()
                        .unwrap_or_else(|_| panic!("{name}.out: bad id {x:?}"))
                })
                .collect();
            (t.to_string(), ids)
        })
        .collect()
}

#[test]
fn llama_cpp_tokenizer_suite() {
    let dir = vocab_dir();
    let mut report = Vec::new();
    let (mut total, mut passed) = (0, 0);
    let mut failures = Vec::new();
    for &name in WITH_TESTS {
        let cases = cases(&dir, name);
        let tok = match load(&dir.join(format!("ggml-vocab-{name}.gguf"))) {
            Ok(t) => t,
            Err(e) => {
                total += cases.len();
                report.push(format!("{name}: 0/{} (does not load: {e})", cases.len()));
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut ok = 0;
        for (text, want) in &cases {
            let got = tok.encode(text, false, false);
            if &got == want {
                ok += 1;
            } else if failures.len() < 40 {
                failures.push(format!(
                    "{name}: {text:?}\n   want {want:?}\n   got  {got:?}"
                ));
            }
        }
        total += cases.len();
        passed += ok;
        report.push(format!("{name}: {ok}/{}", cases.len()));
    }
    eprintln!("{}", report.join("\n"));
    eprintln!("all: {passed}/{total} strings");
    assert_eq!(
        total, 708,
        "the 15 vocabularies of llama-cpp-python 0.3.36 hold 708 strings"
    );
    assert!(
        failures.is_empty(),
        "{passed}/{total} strings pass; first failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn vocab_only_files_load() {
    let dir = vocab_dir();
    for &(name, refusal) in WITHOUT_TESTS {
        let path = dir.join(format!("ggml-vocab-{name}.gguf"));
        match (load(&path), refusal) {
            (Ok(t), None) => {
                assert!(t.vocab_size() > 0, "{name}: empty vocabulary");
                // It tokenizes and decodes a plain text back.
                let ids = t.encode("Hello world", false, false);
                assert!(!ids.is_empty(), "{name}: no ids");
                // (SentencePiece's prefix space comes back as a leading space.)
                let want = if t.add_space_prefix() {
                    " Hello world"
                } else {
                    "Hello world"
                };
                assert_eq!(t.decode_string(&ids), want, "{name}");
            }
            (Err(e), Some(why)) => {
                assert!(e.contains(why), "{name}: {e}");
                assert!(
                    e.contains(&format!("ggml-vocab-{name}.gguf")),
                    "{name}: {e}"
                );
            }
            (Ok(_), Some(why)) => panic!("{name} loads, but lume expected: {why}"),
            (Err(e), None) => panic!("{name}: {e}"),
        }
    }
}
