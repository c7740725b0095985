//! End-to-end tests of `lume` on models: tokenize, run (text and machine-readable), bench.
//! Real models come from the cache via `hub::require` (pulled on first use).

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

use common::*;

fn fixture(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(testdata(rel)).unwrap()).unwrap()
}

fn ok_json(args: &[&str]) -> Value {
    let out = lume(args);
    assert!(
        out.status.success(),
        "lume {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lume {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn ids_of(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// The reference piece as text (byte-list pieces decoded lossily, as lume prints them).
fn piece_text(p: &Value) -> String {
    match p {
        Value::String(s) => s.clone(),
        Value::Array(bytes) => {
            let b: Vec<u8> = bytes.iter().map(|x| x.as_u64().unwrap() as u8).collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => panic!("bad piece {p}"),
    }
}

#[test]
fn tokenize_json_matches_reference() {
    let model = smollm2();
    let fx = fixture("tokenizer/smollm2.json");
    let wanted = [
        "plain_english",
        "trailing_3_spaces",
        "newlines",
        "digits_7",
        "emoji",
        "chinese",
        "special_chat",
        "special_chat/no_special",
        "special_model_repo",
        "empty",
    ];
    let mut n = 0;
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if !wanted.contains(&name) {
            continue;
        }
        let text = case["text"].as_str().unwrap();
        let mut args = vec!["tokenize", "-m", &model, "--json"];
        if case["parse_special"] == false {
            args.push("--no-parse-special");
        }
        args.extend(["--", text]);
        let got = ok_json(&args);
        assert_eq!(ids_of(&got["ids"]), ids_of(&case["ids"]), "case {name}");
        let pieces: Vec<String> = case["pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(piece_text)
            .collect();
        let got_pieces: Vec<String> = got["pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got_pieces, pieces, "case {name}");
        n += 1;
    }
    assert_eq!(n, wanted.len());
}

/// Teacher-forced scoring of a chat case through `--prompt-ids --echo --logprobs`.
#[test]
fn run_scores_prompt_ids_like_the_reference() {
    let model = smollm2();
    let fx = fixture("greedy/smollm2.json");
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "chat")
        .unwrap();
    let prompt = ids_of(&case["prompt_ids"]);
    let gen = ids_of(&case["generated_ids"]);
    let all: Vec<u64> = prompt.iter().chain(&gen).copied().collect();
    let csv = all
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let got = ok_json(&[
        "run",
        "-m",
        &model,
        "--prompt-ids",
        &csv,
        "--echo",
        "--logprobs",
        "5",
        "--max-tokens",
        "0",
        "--temp",
        "0",
        "--json",
    ]);
    assert_eq!(ids_of(&got["ids"]), all);
    let tops = got["top_logprobs"].as_array().unwrap();
    assert_eq!(tops.len(), all.len());
    assert!(tops[0].is_null());
    for t in &tops[1..] {
        let t = t.as_array().unwrap();
        assert_eq!(t.len(), 5);
        let lps: Vec<f64> = t.iter().map(|e| e[1].as_f64().unwrap()).collect();
        assert!(lps.windows(2).all(|w| w[0] >= w[1]), "{lps:?}");
        assert!(lps[0] <= 0.0);
    }
    let margins = case["margins"].as_array().unwrap();
    let mut checked = 0;
    for (k, &want) in gen.iter().enumerate() {
        if margins[k].as_f64().unwrap() <= 0.5 {
            continue;
        }
        let top1 = tops[prompt.len() + k][0][0].as_u64().unwrap();
        assert_eq!(top1, want, "step {k}");
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn run_generates_from_prompt_ids() {
    let model = smollm2();
    let fx = fixture("greedy/smollm2.json");
    let case = &fx["cases"][0];
    let prompt = ids_of(&case["prompt_ids"]);
    let gen = ids_of(&case["generated_ids"]);
    let csv = prompt
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let got = ok_json(&[
        "run",
        "-m",
        &model,
        "--prompt-ids",
        &csv,
        "--logprobs",
        "3",
        "--max-tokens",
        "3",
        "--temp",
        "0",
        "--json",
    ]);
    let ids = ids_of(&got["ids"]);
    assert!(!ids.is_empty() && ids.len() <= 3, "{ids:?}");
    let tops = got["top_logprobs"].as_array().unwrap();
    assert_eq!(tops.len(), ids.len());
    for (t, id) in tops.iter().zip(&ids) {
        assert_eq!(t[0][0].as_u64().unwrap(), *id, "greedy picks the top token");
    }
    if case["margins"][0].as_f64().unwrap() > 0.5 {
        assert_eq!(ids[0], gen[0]);
    }
}

#[test]
fn run_streams_text_and_reports_speed() {
    let model = smollm2();
    let out = lume(&[
        "run",
        "-m",
        &model,
        "--temp",
        "0",
        "--max-tokens",
        "8",
        "The capital of France is",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    assert!(err.contains("tokens/s"), "{err}");
}

#[test]
fn run_chat_json_has_text() {
    let model = smollm2();
    let got = ok_json(&[
        "run",
        "-m",
        &model,
        "--chat",
        "--temp",
        "0",
        "--max-tokens",
        "6",
        "--json",
        "What is the capital of France?",
    ]);
    assert!(got["text"].is_string());
    assert!(!ids_of(&got["ids"]).is_empty());
}

#[test]
fn run_on_a_bad_file_fails_cleanly() {
    let dir = std::env::temp_dir().join(format!("lume-cli-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(testdata("tiny/llama/model.f32.gguf")).unwrap();
    let bad = dir.join("cut-in-half.gguf");
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let out = lume(&[
        "run",
        "-m",
        bad.to_str().unwrap(),
        "--max-tokens",
        "1",
        "hi",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cut-in-half.gguf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_json_on_tiny_model() {
    let model = testdata("tiny/llama/model.f32.gguf");
    let got = ok_json(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "2",
        "-t",
        "1",
        "--json",
    ]);
    let rows = got.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["test"], "pp16");
    assert_eq!(rows[0]["n_prompt"], 16);
    assert_eq!(rows[1]["test"], "tg4");
    assert_eq!(rows[1]["n_gen"], 4);
    for r in rows {
        assert_eq!(r["n_threads"], 1);
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        assert!(r["stddev_ts"].as_f64().unwrap() >= 0.0);
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2);
    }
}

/// llama-bench's lists: every (kv type, threads, depth, test) combination is one row, in that
/// nesting order, with `n_depth`, `type_k`/`type_v`, `samples_ns` and the model fields.
#[test]
fn bench_lists_and_depths_on_tiny_model() {
    let model = testdata("tiny/llama/model.f32.gguf");
    let got = ok_json(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "8,16",
        "-n",
        "3",
        "-d",
        "0,20",
        "-t",
        "1,2",
        "--kv-type",
        "f16,f32",
        "-r",
        "2",
        "--json",
    ]);
    let rows = got.as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2 * 3, "{got}");
    let mut i = 0;
    for kv in ["f16", "f32"] {
        for t in [1, 2] {
            for d in [0, 20] {
                for (test, p, n) in [("pp8", 8, 0), ("pp16", 16, 0), ("tg3", 0, 3)] {
                    let r = &rows[i];
                    let name = if d == 0 {
                        test.to_string()
                    } else {
                        format!("{test} @ d{d}")
                    };
                    assert_eq!(r["test"], name.as_str(), "row {i}: {r}");
                    assert_eq!(r["n_prompt"], p);
                    assert_eq!(r["n_gen"], n);
                    assert_eq!(r["n_depth"], d);
                    assert_eq!(r["n_threads"], t);
                    assert_eq!(r["type_k"], kv);
                    assert_eq!(r["type_v"], kv);
                    assert_eq!(r["model_filename"], "model.f32.gguf");
                    assert!(r["model_n_params"].as_u64().unwrap() > 0);
                    assert_eq!(r["samples_ns"].as_array().unwrap().len(), 2);
                    assert!(r["avg_ns"].as_u64().unwrap() > 0);
                    assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
                    i += 1;
                }
            }
        }
    }
    // A depth past the model's context is a clear error, and lists are refused where one
    // value is taken.
    let out = lume(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-d",
        "100000",
        "-r",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let out = lume(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "--parallel",
        "2",
        "-p",
        "8,16",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("-p/--n-prompt"),
        "{err}"
    );
}

/// `--kv-type q8_0` on a model whose heads are not multiples of 32 (the tiny llama's are 16)
/// is one clear line asking for f16/f32.
#[test]
fn quantized_kv_on_small_heads_is_a_clear_error() {
    let model = testdata("tiny/llama/model.f32.gguf");
    for kv in ["q8_0", "q4_0"] {
        let out = lume(&[
            "bench",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "8",
            "-n",
            "0",
            "-r",
            "1",
            "--kv-type",
            kv,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("blocks of 32") && err.contains("f16 or f32"),
            "{err}"
        );
    }
}

#[test]
fn chat_flag_on_a_model_without_template_is_a_clear_error() {
    let gemma = real_model("gemma3-270m");
    let out = lume(&[
        "run",
        "-m",
        gemma.to_str().unwrap(),
        "--chat",
        "--max-tokens",
        "1",
        "hi",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("chat template"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn chat_command_answers_each_line() {
    let model = smollm2();
    let out = lume_with_stdin(
        &["chat", "-m", &model, "--temp", "0", "-n", "6"],
        b"Hello!\nWhat is 2+2?\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().filter(|l| !l.trim().is_empty()).count() >= 2,
        "{text:?}"
    );
}

#[test]
fn run_stop_string_ends_generation_without_printing_it() {
    let model = smollm2();
    let got = ok_json(&[
        "run",
        "-m",
        &model,
        "--temp",
        "0",
        "--max-tokens",
        "40",
        "--stop",
        ".",
        "--json",
        "The capital of France is",
    ]);
    let text = got["text"].as_str().unwrap();
    assert_eq!(got["stop"], "stop_string", "{got}");
    assert!(!text.contains('.'), "{text:?}");
    assert!(!text.trim().is_empty());
}

#[test]
fn run_echo_prints_the_prompt_first() {
    let model = smollm2();
    let out = lume(&[
        "run",
        "-m",
        &model,
        "--temp",
        "0",
        "--max-tokens",
        "3",
        "--echo",
        "Once upon a time",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Once upon a time"));
}

#[test]
fn bench_table_on_tiny_model() {
    let model = testdata("tiny/llama/model.f32.gguf");
    let out = lume(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "-t",
        "1",
    ]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with("| model |"), "{s}");
    assert!(s.contains("| pp8 |") && s.contains("| tg2 |"), "{s}");
    assert!(s.contains(" ± "), "{s}");
    // The dispatch level (the child reads the same `LUME_CPU` as this process), the CPU and
    // the threads, after the table.
    let cpu = format!("\ncpu: {} (", kernels::cpu::level());
    let line = s.lines().find(|l| l.starts_with("cpu: ")).unwrap_or("");
    assert!(s.contains(&cpu) && line.ends_with(", 1 thread)"), "{s}");
}

/// The tiny llama rewritten without one metadata key or one tensor.
fn tiny_without(
    dir: &Path,
    name: &str,
    skip_key: Option<&str>,
    skip_tensor: Option<&str>,
) -> PathBuf {
    let f = gguf::GgufFile::open(testdata("tiny/llama/model.f32.gguf")).unwrap();
    let mut w = gguf::GgufWriter::new();
    for (k, v) in &f.metadata {
        if Some(k.as_str()) != skip_key {
            w.add(k.clone(), v.clone());
        }
    }
    for t in &f.tensors {
        if Some(t.name.as_str()) != skip_tensor {
            w.add_tensor(t.name.clone(), &t.dims, t.ty, f.tensor_data(t).to_vec())
                .unwrap();
        }
    }
    let p = dir.join(name);
    w.write_file(&p).unwrap();
    p
}

#[test]
fn run_on_incomplete_models_names_file_and_key_or_tensor() {
    let dir = std::env::temp_dir().join(format!("lume-cli-incomplete-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            tiny_without(&dir, "no-embd.gguf", Some("llama.embedding_length"), None),
            "llama.embedding_length",
        ),
        (
            tiny_without(&dir, "no-ffn.gguf", None, Some("blk.1.ffn_up.weight")),
            "blk.1.ffn_up.weight",
        ),
        (
            tiny_without(&dir, "no-vocab.gguf", Some("tokenizer.ggml.tokens"), None),
            "tokenizer.ggml.tokens",
        ),
    ];
    for (file, what) in &cases {
        let out = lume(&[
            "run",
            "-m",
            file.to_str().unwrap(),
            "--max-tokens",
            "1",
            "hi",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name) && err.contains(what), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_reads_the_prompt_from_stdin() {
    let model = testdata("tiny/llama/model.f32.gguf");
    let out = lume_with_stdin(
        &[
            "run",
            "-m",
            model.to_str().unwrap(),
            "--temp",
            "0",
            "-n",
            "4",
            "--json",
        ],
        b"It is a truth\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids_of(&v["ids"]).len(), 4);
}
