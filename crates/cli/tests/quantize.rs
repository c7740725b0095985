//! `lume quantize` end to end: a tiny model to Q4_K_M and back through `lume run`'s loader
//! (`lume inspect`), the dry-run plan, and refusals with a non-zero exit and a named cause.

mod common;

use common::{lume, testdata};

#[test]
fn quantize_tiny_llama_then_inspect_and_run() {
    let input = testdata("tiny/llama/model.f32.gguf");
    let dir = std::env::temp_dir().join(format!("lume-cli-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("llama-q4_k_m.gguf");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let r = lume(&["quantize", i, o, "Q4_K_M", "--threads", "2"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("as Q4_K_M") && err.contains("bits per weight"),
        "{err}"
    );
    assert!(!dir.join("llama-q4_k_m.gguf.part").exists());

    let r = lume(&["inspect", "-m", o]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        text.contains("Q5_0") || text.contains("q5_0"),
        "the fallback type shows: {text}"
    );

    let r = lume(&["run", "-m", o, "It is a truth", "-n", "4", "--temp", "0"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    let r = lume(&["quantize", i, "Q4_K_M", "--dry-run"]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        text.contains("blk.0.attn_v.weight") && text.contains("fell back"),
        "{text}"
    );

    // Refusals: an unknown type, requantizing without the flag.
    let r = lume(&["quantize", i, o, "Q7_K"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("'Q7_K' is not a file type"));
    let again = dir.join("again.gguf");
    let r = lume(&["quantize", o, again.to_str().unwrap(), "Q8_0"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("--allow-requantize"));
    assert!(!again.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
