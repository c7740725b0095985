//! Helpers shared by the cli's end-to-end tests: the binary, the fixtures, the cached models.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const LUME: &str = env!("CARGO_BIN_EXE_lume");

pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// A catalogue model; one line naming it and `lume pull` when it is missing and cannot be pulled.
pub fn real_model(name: &str) -> PathBuf {
    hub::require(name).unwrap_or_else(|e| panic!("{e}"))
}

pub fn smollm2() -> String {
    real_model("smollm2-135m").to_str().unwrap().to_string()
}

/// Runs `lume args`; a panic in its output fails the test.
pub fn lume(args: &[&str]) -> Output {
    let out = Command::new(LUME).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "lume {args:?} panicked: {err}");
    out
}

/// Runs `lume args` with `input` on its standard input; a panic in its output fails the test.
pub fn lume_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(LUME)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "lume {args:?} panicked: {err}");
    out
}
