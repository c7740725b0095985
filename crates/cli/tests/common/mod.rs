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

/// A free loopback port (the server binds it soon after; tests bind 127.0.0.1 only).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An HTTP client that returns 4xx/5xx answers instead of failing, every call bounded.
pub fn agent(timeout: std::time::Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Prints the last lines of a server's log when the test that ran it is failing.
pub fn print_log_if_panicking(log: &Path) {
    if std::thread::panicking() {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("--- server log (last lines) ---");
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
    }
}
