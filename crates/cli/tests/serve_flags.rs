//! `lume serve`'s multi-model flags fail fast, before anything is bound or loaded: `--max-loaded
//! 0`, `--alias` or `--chat-template` with other than one `-m`, a model named twice, a bad
//! `--keep-alive` or `--max-memory` (and `--keep-alive -1` is a value, not a flag).

mod common;

use common::*;

/// A failing `lume serve` and its error text.
fn serve_error(args: &[&str]) -> String {
    let mut all = vec!["serve", "--port", "0"];
    all.extend_from_slice(args);
    let out = lume(&all);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "lume {all:?} should fail: {err}");
    err
}

#[test]
fn multi_model_flags_are_checked_first() {
    let e = serve_error(&["--max-loaded", "0"]);
    assert!(e.contains("--max-loaded must be at least 1"), "{e}");
    // A negative duration is forever, taken as --keep-alive's value.
    let e = serve_error(&["--keep-alive", "-1", "--max-loaded", "0"]);
    assert!(e.contains("--max-loaded must be at least 1"), "{e}");
    let e = serve_error(&["-m", "smollm2-135m", "-m", "gemma3-270m", "--alias", "x"]);
    assert!(e.contains("--alias") && e.contains("exactly one -m"), "{e}");
    let e = serve_error(&["--chat-template", "{{ messages }}"]);
    assert!(
        e.contains("--chat-template") && e.contains("exactly one -m"),
        "{e}"
    );
    let e = serve_error(&["--keep-alive", "soon"]);
    assert!(
        e.contains("--keep-alive") && e.contains("not a duration"),
        "{e}"
    );
    let e = serve_error(&["--max-memory", "5x"]);
    assert!(
        e.contains("--max-memory") && e.contains("not a size"),
        "{e}"
    );
    let e = serve_error(&["--max-memory", "0"]);
    assert!(e.contains("--max-memory"), "{e}");
}

#[test]
fn a_model_named_twice_is_refused() {
    let model = smollm2();
    let e = serve_error(&["-m", &model, "-m", &model]);
    assert!(e.contains("named twice"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}
