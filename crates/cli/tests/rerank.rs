//! `lume rerank` end to end on the tiny cross-encoder of `testdata/encoders/rerank/`: the
//! scores of `expected.json` (within its README's 1e-5), sorted highest first, `--top-n`,
//! and a clear error for a model without a classification head.

mod common;

use common::*;

fn expected() -> serde_json::Value {
    let p = testdata("encoders/rerank/expected.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn rerank_sorts_documents_by_the_reference_logits() {
    let e = expected();
    // Cases 0 and 1 share a query.
    let c = &e["cases"];
    let q = c[0]["query"].as_str().unwrap();
    assert_eq!(c[1]["query"].as_str().unwrap(), q);
    let docs = [
        c[0]["document"].as_str().unwrap(),
        c[1]["document"].as_str().unwrap(),
    ];
    let want = [
        c[0]["logit_f64"].as_f64().unwrap(),
        c[1]["logit_f64"].as_f64().unwrap(),
    ];
    let dir = testdata("encoders/rerank");
    let dir = dir.to_str().unwrap();
    let out = lume(&["rerank", "-m", dir, q, docs[0], docs[1]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["model"].as_str().unwrap(), dir);
    let r = j["results"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    let best = if want[0] >= want[1] { 0 } else { 1 };
    assert_eq!(r[0]["index"].as_u64().unwrap() as usize, best);
    for item in r {
        let i = item["index"].as_u64().unwrap() as usize;
        assert_eq!(item["document"].as_str().unwrap(), docs[i]);
        let s = item["relevance_score"].as_f64().unwrap();
        assert!((s - want[i]).abs() <= 1e-5, "doc {i}: {s} vs {}", want[i]);
    }
    assert!(r[0]["relevance_score"].as_f64() >= r[1]["relevance_score"].as_f64());

    let out = lume(&["rerank", "-m", dir, q, docs[0], docs[1], "--top-n", "1"]);
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = j["results"].as_array().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["index"].as_u64().unwrap() as usize, best);
}

#[test]
fn rerank_refuses_a_model_without_a_head() {
    let gguf = std::fs::read_dir(testdata("tiny/bert"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .unwrap();
    let out = lume(&["rerank", "-m", gguf.to_str().unwrap(), "q", "d"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot rerank"), "{err}");
}
