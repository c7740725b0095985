//! The cross-encoder reference of `testdata/encoders/rerank/` (a tiny random-weight
//! `BertForSequenceClassification` made by `scripts/gen_rerank_ref.py`): pair encodings
//! exactly, logits within the README's tolerance, the same bits one pair at a time and all
//! pairs in one batch, and the queue.

use std::path::{Path, PathBuf};

use engine::embeddings::{EmbedQueue, EmbeddingModel};

/// The README's tolerance on a logit against transformers in f64.
const TOL: f64 = 1e-5;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/encoders/rerank")
}

struct Case {
    query: String,
    document: String,
    ids: Vec<u32>,
    types: Vec<u32>,
    logit: f64,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(dir().join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ints = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            query: c["query"].as_str().unwrap().to_string(),
            document: c["document"].as_str().unwrap().to_string(),
            ids: ints(&c["input_ids"]),
            types: ints(&c["token_type_ids"]),
            logit: c["logit_f64"].as_f64().unwrap(),
        })
        .collect()
}

#[test]
fn pair_encodings_match_transformers() {
    let m = EmbeddingModel::load(&dir()).unwrap();
    assert!(m.can_rerank());
    assert_eq!(m.max_len(), 48);
    for (i, c) in cases().iter().enumerate() {
        let (ids, types) = m.encode_pair(&c.query, &c.document);
        assert_eq!(ids, c.ids, "case {i}: ids");
        assert_eq!(types, c.types, "case {i}: token types");
    }
}

#[test]
fn logits_match_within_tolerance_alone_and_batched() {
    let m = EmbeddingModel::load(&dir()).unwrap();
    let cases = cases();
    let pairs: Vec<(&[u32], &[u32])> = cases
        .iter()
        .map(|c| (c.ids.as_slice(), c.types.as_slice()))
        .collect();
    let mut all = Vec::new();
    m.score_pairs(&pairs, &mut all).unwrap();
    assert_eq!(all.len(), cases.len());
    let mut worst = 0.0f64;
    let mut one = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let err = (all[i] as f64 - c.logit).abs();
        worst = worst.max(err);
        assert!(
            err <= TOL,
            "case {i}: {} vs {} (err {err:e})",
            all[i],
            c.logit
        );
        m.score_pairs(&pairs[i..i + 1], &mut one).unwrap();
        assert_eq!(
            one[0].to_bits(),
            all[i].to_bits(),
            "case {i}: alone vs batched"
        );
    }
    eprintln!("max |lume - transformers f64| = {worst:e}");

    // More tokens than one forward pass takes (20 x 48 > 512): several passes, same bits.
    let many: Vec<(&[u32], &[u32])> = (0..20).map(|k| pairs[6 + k % 2]).collect();
    let mut big = Vec::new();
    m.score_pairs(&many, &mut big).unwrap();
    for (k, s) in big.iter().enumerate() {
        assert_eq!(s.to_bits(), all[6 + k % 2].to_bits(), "pair {k} of 20");
    }
}

#[test]
fn queue_rerank_matches_direct_and_shares_steps() {
    let m = EmbeddingModel::load(&dir()).unwrap();
    let cases = cases();
    let pairs: Vec<(&[u32], &[u32])> = cases
        .iter()
        .map(|c| (c.ids.as_slice(), c.types.as_slice()))
        .collect();
    let mut direct = Vec::new();
    m.score_pairs(&pairs, &mut direct).unwrap();
    let q = EmbedQueue::start(m).unwrap();
    let rx: Vec<_> = cases
        .iter()
        .map(|c| q.submit_rerank(vec![(c.ids.clone(), c.types.clone())]))
        .collect();
    for (i, r) in rx.into_iter().enumerate() {
        let got = r.recv().unwrap().unwrap();
        assert_eq!(got, vec![direct[i]], "case {i}");
    }
    let st = q.stats();
    assert_eq!(st.requests, cases.len() as u64);
    assert!(st.steps <= cases.len() as u64);
    // The whole list in one request, and a mixed step with an embedding.
    let all: Vec<(Vec<u32>, Vec<u32>)> = cases
        .iter()
        .map(|c| (c.ids.clone(), c.types.clone()))
        .collect();
    let e = q.submit(vec![cases[0].ids.clone()]);
    let got = q.rerank(all).unwrap();
    assert_eq!(got, direct);
    assert_eq!(e.recv().unwrap().unwrap().len(), q.model().dim());
    // Bad input fails alone, with a reason.
    let err = q
        .rerank(vec![(vec![2, 3], vec![0])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("token types"), "{err}");
}

#[test]
fn a_model_without_a_head_cannot_rerank() {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny/bert");
    let gguf = std::fs::read_dir(&tiny)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .unwrap();
    let m = EmbeddingModel::load(&gguf).unwrap();
    assert!(!m.can_rerank());
    let (ids, types) = m.encode_pair("a", "b");
    let mut out = Vec::new();
    let err = m
        .score_pairs(&[(&ids, &types)], &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no classification head"), "{err}");
    let q = EmbedQueue::start(m).unwrap();
    let err = q.rerank(vec![(ids, types)]).unwrap_err().to_string();
    assert!(err.contains("cannot rerank"), "{err}");
}
