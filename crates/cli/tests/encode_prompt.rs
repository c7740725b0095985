//! `lume encode-prompt` on the tiny CLIP pipeline of testdata/encoders/clip/ (laid out as an
//! SDXL-style pipeline in a scratch folder, with a `tokenizer_2/` that pads with `!`): the file
//! holds the documented names and shapes, its values match transformers' references within the
//! fixture's 1e-4, and the `safetensors` Python package loads it
//! (scripts/check_prompt_safetensors.py; under CI=true a missing package fails the test).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{lume, testdata};
use serde_json::Value;

const TOL: f32 = 1e-4;

fn clip(rel: &str) -> PathBuf {
    testdata(&format!("encoders/clip/{rel}"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lume-encode-prompt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn link(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from.canonicalize().unwrap(), to).unwrap();
}

/// A pipeline folder: `text_encoder/` and `tokenizer/` (links to the fixture), and with `two`
/// also `text_encoder_2/` and a `tokenizer_2/` whose pad token is `!` (SDXL's).
fn pipeline(name: &str, two: bool) -> PathBuf {
    let d = scratch(name);
    link(&clip("text_encoder"), &d.join("text_encoder"));
    link(&clip("tokenizer"), &d.join("tokenizer"));
    if two {
        link(&clip("text_encoder_2"), &d.join("text_encoder_2"));
        let t2 = d.join("tokenizer_2");
        std::fs::create_dir(&t2).unwrap();
        for f in ["vocab.json", "merges.txt"] {
            link(&clip(&format!("tokenizer/{f}")), &t2.join(f));
        }
        let cfg = r#"{"tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
            "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>", "pad_token": "!"}"#;
        std::fs::write(t2.join("tokenizer_config.json"), cfg).unwrap();
    }
    d
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(clip("expected.json")).unwrap()).unwrap()
}

fn bin(name: &str) -> Vec<f32> {
    let b = std::fs::read(clip(&format!("{name}.f32.bin"))).unwrap();
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f32s(t: &safetensors::tensor::TensorView) -> Vec<f32> {
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The names, numpy dtypes and shapes `lume encode-prompt --help` documents.
fn documented(n: usize, two: bool) -> Vec<(String, &'static str, Vec<usize>)> {
    let mut v = Vec::new();
    let encs: &[&str] = if two {
        &["text_encoder", "text_encoder_2"]
    } else {
        &["text_encoder"]
    };
    for e in encs {
        v.push((format!("{e}.input_ids"), "int64", vec![n, 77]));
        for s in [
            "last_hidden_state",
            "penultimate_hidden_state",
            "penultimate_final_ln",
        ] {
            v.push((format!("{e}.{s}"), "float32", vec![n, 77, 64]));
        }
        v.push((format!("{e}.pooled_output"), "float32", vec![n, 64]));
    }
    if two {
        v.push(("text_encoder_2.text_embeds".into(), "float32", vec![n, 32]));
        v.push(("prompt_embeds".into(), "float32", vec![n, 77, 128]));
        v.push(("pooled_prompt_embeds".into(), "float32", vec![n, 32]));
    } else {
        v.push(("prompt_embeds".into(), "float32", vec![n, 77, 64]));
    }
    v
}

/// A Python with `safetensors` and `numpy`: $LUME_PYTHON, the CI venv, or python3.
fn python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/openai-venv/bin/python");
    let candidates: Vec<PathBuf> = std::env::var_os("LUME_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([venv, PathBuf::from("python3")])
        .collect();
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import safetensors, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn python_check(file: &Path, names: &[(String, &str, Vec<usize>)]) {
    let Some(py) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: no Python with safetensors and numpy (LUME_PYTHON, target/openai-venv, python3); \
             .ci/run installs tests/openai/requirements.txt before the tests"
        );
        eprintln!(
            "skipped the Python check: no python3 with safetensors and numpy (set LUME_PYTHON)"
        );
        return;
    };
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_prompt_safetensors.py");
    let mut cmd = Command::new(&py);
    cmd.arg(script).arg(file);
    for (n, ty, shape) in names {
        let s: Vec<String> = shape.iter().map(|x| x.to_string()).collect();
        cmd.arg(format!("{n}={ty}:{}", s.join("x")));
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {text}{}",
        py.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with("ok\n"), "{text}");
    eprintln!("Python safetensors check ({}): ok", py.display());
}

#[test]
fn sdxl_style_pipeline_matches_the_references() {
    let dir = pipeline("sdxl", true);
    let exp = expected();
    let prompts: Vec<String> = exp["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect();
    let file = dir.join("prompt.safetensors");
    let mut args = vec!["encode-prompt", dir.to_str().unwrap()];
    args.extend(prompts.iter().map(String::as_str));
    args.extend(["-o", file.to_str().unwrap()]);
    let out = lume(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote "));

    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let docs = documented(13, true);
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut want: Vec<String> = docs.iter().map(|d| d.0.clone()).collect();
    want.sort();
    assert_eq!(names, want);
    for (n, _, shape) in &docs {
        assert_eq!(&st.tensor(n).unwrap().shape().to_vec(), shape, "{n}");
    }

    // Token ids: each encoder with its own tokenizer's padding.
    for (enc, key) in [
        ("text_encoder", "input_ids"),
        ("text_encoder_2", "input_ids_pad0"),
    ] {
        let t = st.tensor(&format!("{enc}.input_ids")).unwrap();
        let got: Vec<u64> = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u64)
            .collect();
        let want: Vec<u64> = exp["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| {
                p[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
            })
            .collect();
        assert_eq!(got, want, "{enc}.input_ids");
    }

    let get = |n: &str| f32s(&st.tensor(n).unwrap());
    let pairs = [
        ("text_encoder.last_hidden_state", "te1_last_hidden_state"),
        (
            "text_encoder.penultimate_hidden_state",
            "te1_penultimate_hidden_state",
        ),
        (
            "text_encoder.penultimate_final_ln",
            "te1_penultimate_final_ln",
        ),
        ("text_encoder.pooled_output", "te1_pooled_output"),
        ("text_encoder_2.last_hidden_state", "te2_last_hidden_state"),
        (
            "text_encoder_2.penultimate_hidden_state",
            "te2_penultimate_hidden_state",
        ),
        ("text_encoder_2.pooled_output", "te2_pooled_output"),
        ("text_encoder_2.text_embeds", "te2_text_embeds"),
        ("pooled_prompt_embeds", "te2_text_embeds"),
    ];
    for (name, reference) in pairs {
        let err = max_diff(&get(name), &bin(reference));
        eprintln!("{name}: max abs error {err:.2e}");
        assert!(err <= TOL, "{name}: {err} > {TOL}");
    }
    // prompt_embeds: both penultimate states side by side, per position.
    let pe = get("prompt_embeds");
    let (a, b) = (
        bin("te1_penultimate_hidden_state"),
        bin("te2_penultimate_hidden_state"),
    );
    let mut cat = Vec::new();
    for r in 0..13 * 77 {
        cat.extend_from_slice(&a[r * 64..(r + 1) * 64]);
        cat.extend_from_slice(&b[r * 64..(r + 1) * 64]);
    }
    let err = max_diff(&pe, &cat);
    eprintln!("prompt_embeds: max abs error {err:.2e}");
    assert!(err <= TOL);

    let meta = st_metadata(&bytes);
    assert_eq!(meta["format"], "lume-prompt-embeds");
    let listed: Vec<String> = serde_json::from_str(meta["prompts"].as_str().unwrap()).unwrap();
    assert_eq!(listed, prompts);

    python_check(&file, &docs);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `__metadata__` object of a safetensors file's header.
fn st_metadata(bytes: &[u8]) -> Value {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"].clone()
}

#[test]
fn one_encoder_pipeline() {
    let dir = pipeline("sd1", false);
    let file = dir.join("p.safetensors");
    let out = lume(&[
        "encode-prompt",
        dir.to_str().unwrap(),
        "a photo of a cat, 4k, highly detailed",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let docs = documented(1, false);
    assert_eq!(st.names().len(), docs.len());
    let pe = f32s(&st.tensor("prompt_embeds").unwrap());
    assert_eq!(
        pe,
        f32s(&st.tensor("text_encoder.last_hidden_state").unwrap())
    );
    let err = max_diff(&pe, &bin("te1_last_hidden_state")[..77 * 64]);
    assert!(err <= TOL, "{err}");
    python_check(&file, &docs);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_pipelines_are_one_line_errors() {
    let d = scratch("empty");
    let out = lume(&["encode-prompt", d.to_str().unwrap(), "x", "-o", "/dev/null"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no CLIP text encoder folder"), "{err}");

    // An encoder folder whose config is broken: the message names the file and key.
    let p = pipeline("badcfg", false);
    std::fs::remove_file(p.join("text_encoder")).unwrap();
    std::fs::create_dir(p.join("text_encoder")).unwrap();
    link(
        &clip("text_encoder/model.safetensors"),
        &p.join("text_encoder/model.safetensors"),
    );
    std::fs::write(
        p.join("text_encoder/config.json"),
        r#"{"model_type": "clip_text_model"}"#,
    )
    .unwrap();
    let out = lume(&["encode-prompt", p.to_str().unwrap(), "x", "-o", "/dev/null"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("hidden_size"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::remove_dir_all(&p).unwrap();
}
