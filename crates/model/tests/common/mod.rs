//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod teacher;

use std::path::PathBuf;

use model::{Batch, KvCache, Model};

/// The file of catalogue model `name`, pulled into the cache when missing. A model that is
/// not cached and cannot be pulled fails the test with one line (`hub::HubError::Unavailable`)
/// naming the model and the `lume pull` command that fetches it.
pub fn model_file(name: &str) -> PathBuf {
    model_file_from(&hub::Puller::from_env(), name)
}

/// [`model_file`] with the given puller (the offline test points it at an empty cache).
pub fn model_file_from(puller: &hub::Puller, name: &str) -> PathBuf {
    puller.require(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Catalogue model `name` loaded (see [`model_file`]).
pub fn real_model(name: &str) -> Model {
    Model::load(model_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn tiny_dir(arch: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/tiny")).join(arch)
}

pub fn read_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn expected(arch: &str) -> serde_json::Value {
    let p = tiny_dir(arch).join("expected.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Logits at every position of `tokens`, one pass in slot 0 of a fresh cache.
pub fn prompt_logits(m: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(1, 256).unwrap();
    let mut logits = Vec::new();
    m.forward(
        &Batch::from_tokens(tokens, 0, 0, true),
        &mut cache,
        &mut logits,
    )
    .unwrap();
    logits
}

/// Greedy decoding: prompt in one pass, then one token per step with the cache.
/// Returns the 16 tokens and the logits each was picked from (`[16, vocab]`).
pub fn greedy(
    m: &Model,
    cache: &mut KvCache,
    slot: usize,
    prompt: &[u32],
    steps: usize,
) -> (Vec<u32>, Vec<f32>) {
    let mut logits = Vec::new();
    let mut rows = Vec::new();
    let mut out = Vec::new();
    m.forward(
        &Batch::from_tokens(prompt, 0, slot, false),
        cache,
        &mut logits,
    )
    .unwrap();
    let mut batch = Batch::new();
    for step in 0..steps {
        let pos = (prompt.len() + step) as u32;
        let tok = argmax(&logits) as u32;
        rows.extend_from_slice(&logits);
        out.push(tok);
        if step + 1 == steps {
            break;
        }
        batch.clear();
        batch.push(tok, pos, slot, true);
        m.forward(&batch, cache, &mut logits).unwrap();
    }
    (out, rows)
}

/// Deterministic pseudo-random token ids below `vocab`.
pub fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % vocab as u64) as u32
        })
        .collect()
}
