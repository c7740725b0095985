//! `lume perplexity` end to end on the real default model (smollm2-135m).

mod common;

use common::{lume, smollm2, testdata};

fn corpus() -> String {
    testdata("corpus/pride-and-prejudice.txt")
        .to_str()
        .unwrap()
        .to_string()
}

/// PPL of the first 4 chunks at ctx 512, as JSON; the expected figure is in
/// testdata/corpus/README.md with the command that made it.
#[test]
fn perplexity_smollm2_four_chunks_json() {
    let (m, f) = (smollm2(), corpus());
    let out = lume(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        &f,
        "-c",
        "512",
        "--chunks",
        "4",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json output parses");
    assert_eq!(v["n_chunks"], 4);
    assert_eq!(v["n_scored"], 4 * 255);
    let ppl = v["ppl"].as_f64().unwrap();
    const EXPECTED: f64 = 17.3829; // llama-perplexity (testdata/corpus/README.md)
    assert!(
        (ppl - EXPECTED).abs() < 0.005 * EXPECTED,
        "PPL {ppl}, expected {EXPECTED} within 0.5 %"
    );
    assert!(v["ppl_err"].as_f64().unwrap() > 0.0);
    assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0);
}

/// The model against its own base file: KLD ~ 0, the same top token everywhere.
#[test]
fn kl_divergence_self_is_zero() {
    let (m, f) = (smollm2(), corpus());
    let dir = std::env::temp_dir().join(format!("lume-kld-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("base.kld");
    let b = base.to_str().unwrap();
    let out = lume(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        &f,
        "--chunks",
        "2",
        "--kl-divergence-base",
        b,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lume(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        &f,
        "--chunks",
        "2",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = &v["kld"];
    assert!(k["mean"].as_f64().unwrap() < 1e-4, "{k}");
    assert_eq!(k["same_top"].as_f64().unwrap(), 1.0, "{k}");
    let (p, bp) = (v["ppl"].as_f64().unwrap(), k["base_ppl"].as_f64().unwrap());
    assert!((p - bp).abs() < 1e-4 * p);
    // Another ctx than the base file's: an error naming the field.
    let out = lume(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        &f,
        "-c",
        "256",
        "--chunks",
        "2",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ctx size"));
    // Garbage base file.
    std::fs::write(&base, b"not a base file at all").unwrap();
    let out = lume(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        &f,
        "--chunks",
        "2",
        "--kl-divergence-base",
        b,
        "--kl-divergence",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad magic"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn fails_with(args: &[&str], needle: &str) {
    let out = lume(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "lume {args:?} succeeded");
    assert!(err.contains(needle), "lume {args:?}: {err}");
}

#[test]
fn perplexity_bad_inputs() {
    let (m, f) = (smollm2(), corpus());
    fails_with(
        &["perplexity", "-m", &m, "-f", "/nonexistent/text.txt"],
        "/nonexistent/text.txt",
    );
    fails_with(&["perplexity", "-m", &m, "-f", &f, "-c", "4"], "at least 8");
    fails_with(
        &["perplexity", "-m", &m, "-f", &f, "-c", "1000000"],
        "at most",
    );
    let short = std::env::temp_dir().join(format!("lume-ppl-short-{}.txt", std::process::id()));
    std::fs::write(&short, "A short text, far from two chunks.").unwrap();
    fails_with(
        &["perplexity", "-m", &m, "-f", short.to_str().unwrap()],
        "at least 2 * ctx",
    );
    let _ = std::fs::remove_file(&short);
    fails_with(
        &["perplexity", "-m", &m, "-f", &f, "--kl-divergence"],
        "--kl-divergence-base",
    );
}
