//! Token types in a batch and the classification head: the reranker fixture of
//! `testdata/encoders/rerank/` loads with a one-output head; a batch whose types are all
//! given as 0 gives the same bits as one without types; bad types, and a classifier that
//! disagrees with `config.json`, are refused by name.

use std::path::{Path, PathBuf};

use model::{Batch, Model};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

fn hidden(m: &Model, b: &Batch) -> model::Result<Vec<f32>> {
    let mut cache = m.new_cache(1, 64)?;
    let mut out = Vec::new();
    m.forward_hidden(b, &mut cache, &mut out)?;
    Ok(out)
}

#[test]
fn reranker_folder_has_a_head_and_types_matter() {
    let (m, _) = model::hf::load_folder(&testdata("encoders/rerank")).unwrap();
    assert_eq!(m.n_labels(), 1);
    let ids = [2u32, 40, 41, 3, 42, 43, 3];
    let plain = Batch::from_tokens(&ids, 0, 0, false);
    let mut zeros = Batch::new();
    zeros.push_seq_typed(&ids, &[0; 7], 0, 0, false);
    assert!(zeros.types.is_empty(), "all-zero types need no storage");
    let mut explicit = plain.clone();
    explicit.types = vec![0; 7];
    let a = hidden(&m, &plain).unwrap();
    let b = hidden(&m, &explicit).unwrap();
    assert_eq!(a, b, "explicit type 0 differs from no types");
    let mut pair = Batch::new();
    pair.push_seq_typed(&ids, &[0, 0, 0, 0, 1, 1, 1], 0, 0, false);
    assert_eq!(pair.types, vec![0, 0, 0, 0, 1, 1, 1]);
    assert_ne!(hidden(&m, &pair).unwrap(), a);

    let mut bad = plain.clone();
    bad.types = vec![0, 0, 2, 0, 0, 0, 0];
    let e = hidden(&m, &bad).unwrap_err().to_string();
    assert!(e.contains("token 2") && e.contains("token type 2"), "{e}");
    bad.types = vec![0; 3];
    let e = hidden(&m, &bad).unwrap_err().to_string();
    assert!(e.contains("3 token types for 7 tokens"), "{e}");

    let d = m.info().n_embd;
    let (mut tmp, mut out) = (Vec::new(), Vec::new());
    m.classify(&a[..d], 1, &mut tmp, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert!(m.classify(&a[..d - 1], 1, &mut tmp, &mut out).is_err());
}

#[test]
fn a_decoder_refuses_type_one_and_has_no_head() {
    let m = Model::load(testdata("tiny/llama/model.f32.gguf")).unwrap();
    assert_eq!(m.n_labels(), 0);
    let mut b = Batch::new();
    b.push_seq_typed(&[1, 2, 3], &[0, 1, 1], 0, 0, true);
    let mut cache = m.new_cache(1, 16).unwrap();
    let mut logits = Vec::new();
    let e = m
        .forward(&b, &mut cache, &mut logits)
        .unwrap_err()
        .to_string();
    assert!(e.contains("token type 1"), "{e}");
    let (mut tmp, mut out) = (Vec::new(), Vec::new());
    let row = vec![0.0; m.info().n_embd];
    let e = m
        .classify(&row, 1, &mut tmp, &mut out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no classification head"), "{e}");
}

#[test]
fn a_classifier_that_disagrees_with_the_config_is_refused_by_name() {
    let src = testdata("encoders/rerank");
    let dir = std::env::temp_dir().join(format!("lume-rerank-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "vocab.txt"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["id2label"] = serde_json::json!({"0": "no", "1": "yes"});
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    let e = model::hf::load_folder(&dir).unwrap_err().to_string();
    assert!(
        e.contains("classifier.weight") && e.contains("id2label"),
        "{e}"
    );
    v["id2label"] = serde_json::json!([]);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    let e = model::hf::load_folder(&dir).unwrap_err().to_string();
    assert!(e.contains("id2label"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
