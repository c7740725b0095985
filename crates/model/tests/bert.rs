//! BERT, the encoder: the tiny `bert` GGUF against its Hugging Face references (hidden states
//! of every position, mean-pooled vector), and all-MiniLM-L6-v2 from its Hugging Face folder
//! (safetensors) against `testdata/encoders/minilm/expected.json`: 24 sentence
//! embeddings within the fixture's 1e-5, one sentence at a time and in batches of sentences of
//! different lengths (several slots of one forward pass, and a right-padded batch).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use model::embed::{Embedder, Pooling};
use model::{Batch, Model};

/// The tiny fixture README's bound for bert hidden states / pooled vectors in f32.
const TINY_TOL: f32 = 1e-3;
/// The MiniLM fixture README's bound (every element of the unit vectors).
const MINILM_TOL: f32 = 1e-5;

fn hidden_of(m: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(1, tokens.len()).unwrap();
    let mut h = Vec::new();
    m.forward_hidden(&Batch::from_tokens(tokens, 0, 0, false), &mut cache, &mut h)
        .unwrap();
    h
}

#[test]
fn tiny_bert_hidden_states_and_mean_pooling_match_hf() {
    let dir = tiny_dir("bert");
    let m = Model::load(dir.join("model.f32.gguf")).unwrap();
    assert!(!m.info().lm_head);
    let exp = expected("bert");
    let seqs: Vec<Vec<u32>> = exp["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| ids(&s["token_ids"]))
        .collect();
    let e = Embedder::new(
        Model::load(dir.join("model.f32.gguf")).unwrap(),
        Pooling::Mean,
        false,
    );
    for s in &seqs {
        let tag = format!("seq{}", s.len());
        let want = read_f32(&dir.join(format!("hidden_{tag}.f32.bin")));
        let got = hidden_of(&m, s);
        let err = max_abs_diff(&got, &want);
        let want_pooled = read_f32(&dir.join(format!("pooled_{tag}.f32.bin")));
        let mut pooled = Vec::new();
        e.embed(&[s], &mut pooled).unwrap();
        let perr = max_abs_diff(&pooled, &want_pooled);
        println!("tiny bert {tag}: hidden max err {err:.2e}, pooled max err {perr:.2e}");
        assert!(err < TINY_TOL, "{tag}: hidden states differ by {err}");
        assert!(perr < TINY_TOL, "{tag}: pooled vector differs by {perr}");
    }
    // Both sequences as two slots of one batch: the same rows as alone.
    let mut both = Vec::new();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    e.embed(&refs, &mut both).unwrap();
    for (i, s) in seqs.iter().enumerate() {
        let mut alone = Vec::new();
        e.embed(&[s], &mut alone).unwrap();
        let err = max_abs_diff(&both[i * 64..(i + 1) * 64], &alone);
        assert!(
            err < 1e-6,
            "slot {i} of a batch differs from alone by {err}"
        );
    }
}

#[test]
fn an_encoder_refuses_to_give_logits() {
    let m = Model::load(tiny_dir("bert").join("model.f32.gguf")).unwrap();
    let mut cache = m.new_cache(1, 8).unwrap();
    let mut logits = Vec::new();
    let e = m
        .forward(
            &Batch::from_tokens(&[1, 2, 3], 0, 0, false),
            &mut cache,
            &mut logits,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("no LM head"), "{e}");
    assert_eq!(cache.len(0), 0);
}

fn minilm_dir() -> PathBuf {
    model_file("minilm-l6")
}

struct Sentence {
    name: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn minilm_fixture() -> (Vec<Sentence>, serde_json::Value) {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/encoders/minilm/expected.json");
    let j: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap();
    let s = j["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sentence {
            name: s["name"].as_str().unwrap().to_string(),
            ids: ids(&s["token_ids"]),
            // Written as decimal float32 values: parse as f64, then round to f32.
            embedding: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect();
    (s, j)
}

fn minilm() -> Embedder {
    let (m, folder) = model::hf::load_folder(&minilm_dir()).unwrap();
    let st = folder.sentence.expect("a sentence-transformers folder");
    assert_eq!(st.max_seq_length, Some(256));
    assert!(st.normalize);
    Embedder::new(m, st.pooling.expect("pooling").into(), st.normalize)
}

#[test]
fn minilm_embeddings_match_one_at_a_time_and_in_batches() {
    let e = minilm();
    assert_eq!((e.dim(), e.pooling), (384, Pooling::Mean));
    let (sentences, j) = minilm_fixture();
    assert_eq!(sentences.len(), 24);
    let mut worst = 0f32;
    let mut singles = Vec::new();
    for s in &sentences {
        let mut v = Vec::new();
        e.embed(&[&s.ids], &mut v).unwrap();
        let err = max_abs_diff(&v, &s.embedding);
        worst = worst.max(err);
        assert!(err < MINILM_TOL, "{}: embedding differs by {err}", s.name);
        singles.push(v);
    }
    println!("minilm one at a time: max err {worst:.2e} over 24 sentences");

    // All 24 in one call: packed into batches of whole sentences (several slots each).
    let all: Vec<&[u32]> = sentences.iter().map(|s| s.ids.as_slice()).collect();
    let mut out = Vec::new();
    e.embed(&all, &mut out).unwrap();
    let mut worst_b = 0f32;
    let mut worst_vs_single = 0f32;
    for (i, s) in sentences.iter().enumerate() {
        let v = &out[i * 384..(i + 1) * 384];
        worst_b = worst_b.max(max_abs_diff(v, &s.embedding));
        worst_vs_single = worst_vs_single.max(max_abs_diff(v, &singles[i]));
    }
    println!("minilm batched: max err {worst_b:.2e}; vs one at a time {worst_vs_single:.2e}");
    assert!(
        worst_b < MINILM_TOL,
        "batched embeddings differ by {worst_b}"
    );

    // A right-padded batch of sentences of different lengths (2 .. 41 tokens).
    let pick = [17usize, 23, 0, 9, 13, 20, 8];
    let len = pick.iter().map(|&i| sentences[i].ids.len()).max().unwrap();
    let mut ids = vec![0u32; pick.len() * len];
    let mut mask = vec![0u8; pick.len() * len];
    for (r, &i) in pick.iter().enumerate() {
        let s = &sentences[i].ids;
        ids[r * len..r * len + s.len()].copy_from_slice(s);
        mask[r * len..r * len + s.len()].fill(1);
    }
    e.embed_padded(&ids, &mask, pick.len(), len, &mut out)
        .unwrap();
    let mut worst_p = 0f32;
    for (r, &i) in pick.iter().enumerate() {
        worst_p = worst_p.max(max_abs_diff(
            &out[r * 384..(r + 1) * 384],
            &sentences[i].embedding,
        ));
    }
    println!(
        "minilm padded batch of {} (len {len}): max err {worst_p:.2e}",
        pick.len()
    );
    assert!(worst_p < MINILM_TOL, "padded batch differs by {worst_p}");

    // The cosine similarities of sentences 0-7 (unit vectors: dot products).
    let cos = j["cosine_similarity_first8"].as_array().unwrap();
    let mut worst_c = 0f64;
    for a in 0..8 {
        for b in 0..8 {
            let dot: f64 = (0..384)
                .map(|k| singles[a][k] as f64 * singles[b][k] as f64)
                .sum();
            let want = cos[a][b].as_f64().unwrap();
            worst_c = worst_c.max((dot - want).abs());
        }
    }
    println!("minilm cosine matrix: max err {worst_c:.2e}");
    assert!(worst_c < 1e-5, "cosine similarities differ by {worst_c}");
}

#[test]
fn a_config_that_disagrees_with_the_weights_is_a_clear_error() {
    let src = minilm_dir();
    let dir = std::env::temp_dir().join(format!("lume-bert-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"hidden_size\": 384", "\"hidden_size\": 768"),
    )
    .unwrap();
    let link = dir.join("model.safetensors");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(src.join("model.safetensors"), &link).unwrap();
    let e = model::hf::load_folder(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors")
            && e.contains("embeddings.word_embeddings.weight")
            && e.contains("hidden_size 768"),
        "{e}"
    );
    std::fs::write(dir.join("config.json"), cfg.replace("\"gelu\"", "\"relu\"")).unwrap();
    let e = model::hf::load_folder(&dir).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("hidden_act"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
