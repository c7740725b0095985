//! Default (not batch-invariant) mode: a prompt chunk inside a continuous-batching batch (other
//! slots' decode tokens and chunks around it) takes the tiled prompt attention like a batch of
//! its own: its rows are bit-identical to the same chunk batched alone (same tiles, and the
//! matrix products of 8 or more tokens give each token the same row whatever its neighbours).
//! Against per-token attention (the chunk fed token by token) they stay within the existing
//! batching tolerances.
//!
//! No test of this binary touches the batch-invariant switch, so all of them run in the default
//! mode (unless `LUME_BATCH_INVARIANT` is set for the whole run, where the checks still hold).

mod common;

use common::{max_abs_diff, tiny_dir};
use model::{Batch, KvCache, KvType, Model};

/// Logit difference allowed between tiled and per-token attention on the tiny f32 models
/// (`tests/sandwich.rs` uses the same).
const BATCHING_TOL: f32 = 1e-4;
/// The same with an f16 KV cache: the tiny random models amplify rounding along the
/// sequence, and f16 keys and values make them more sensitive (2026-12-01, avx2: gemma3's
/// rows move by 1.2e-2 between f32 and f16 caches on either path, and tiles vs per token by
/// up to 1.4e-3 with f16; the others stay below 3e-5).
const BATCHING_TOL_F16: f32 = 5e-3;

fn tokens(n: usize, vocab: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 40503) >> 7) % vocab as u32)
        .collect()
}

/// Forwards `batch` (logits for every entry), returning the rows of `slot`.
fn rows_of(m: &Model, c: &mut KvCache, batch: &Batch, slot: usize) -> Vec<f32> {
    let vocab = m.info().vocab;
    let mut logits = Vec::new();
    m.forward(batch, c, &mut logits).unwrap();
    let mut rows = Vec::new();
    let flagged = batch.seq_ids.iter().zip(&batch.logits).filter(|(_, &l)| l);
    for (j, (&s, _)) in flagged.enumerate() {
        if s == slot {
            rows.extend_from_slice(&logits[j * vocab..(j + 1) * vocab]);
        }
    }
    rows
}

/// Sequence A (slot 1): a prompt prefix, then a chunk of `chunk` tokens. Returns the chunk's
/// rows (1) batched alone, (2) inside a mixed batch, (3) fed token by token.
fn three_ways(m: &Model, kv: KvType, a: &[u32], prefix: usize) -> [Vec<f32>; 3] {
    let vocab = m.info().vocab;
    let others = [
        tokens(60, vocab, 3),
        tokens(60, vocab, 4),
        tokens(60, vocab, 5),
    ];
    let fresh = || {
        let mut c = m.new_cache_typed(4, 256, kv).unwrap();
        for (s, o) in [0, 2, 3].iter().zip(&others) {
            rows_of(
                m,
                &mut c,
                &Batch::from_tokens(&o[..7 + s], 0, *s, false),
                *s,
            );
        }
        rows_of(m, &mut c, &Batch::from_tokens(&a[..prefix], 0, 1, false), 1);
        c
    };
    let chunk = &a[prefix..];
    let mut c = fresh();
    let alone = rows_of(
        m,
        &mut c,
        &Batch::from_tokens(chunk, prefix as u32, 1, true),
        1,
    );

    // Slot 0 decodes, slot 2 reads a 5-token prompt chunk, slot 3 decodes; A's chunk in the
    // middle as one run.
    let mut c = fresh();
    let mut b = Batch::new();
    b.push(others[0][7], 7, 0, true);
    b.push_seq(&others[1][9..14], 9, 2, true);
    b.push_seq(chunk, prefix as u32, 1, true);
    b.push(others[2][10], 10, 3, true);
    b.push(others[1][14], 14, 2, true);
    let mixed = rows_of(m, &mut c, &b, 1);

    let mut c = fresh();
    let mut by_token = Vec::new();
    for (i, &t) in chunk.iter().enumerate() {
        let b = Batch::from_tokens(&[t], (prefix + i) as u32, 1, true);
        by_token.extend(rows_of(m, &mut c, &b, 1));
    }
    [alone, mixed, by_token]
}

#[test]
fn tiny_models_mixed_batch_runs_take_tiles() {
    for arch in ["llama", "qwen2", "gemma3", "gpt2"] {
        let m = Model::load(tiny_dir(arch).join("model.f32.gguf")).unwrap();
        let a = tokens(110, m.info().vocab, 1);
        for kv in [KvType::F32, KvType::F16] {
            // A chunk of 70 tokens after a 40-token prefix: several tiles, two key blocks.
            let [alone, mixed, by_token] = three_ways(&m, kv, &a, 40);
            let e_mixed = max_abs_diff(&mixed, &alone);
            let e_tok = max_abs_diff(&by_token, &alone);
            println!("{arch} {kv:?}: mixed vs alone {e_mixed:.3e}, per token vs tiles {e_tok:.3e}");
            assert_eq!(
                e_mixed, 0.0,
                "{arch} {kv:?}: the run in a mixed batch was not tiled alike"
            );
            let tol = match kv {
                KvType::F32 => BATCHING_TOL,
                KvType::F16 => BATCHING_TOL_F16,
                other => unreachable!("{other:?}: this loop runs f32 and f16"),
            };
            assert!(e_tok <= tol, "{arch} {kv:?}: per token vs tiles {e_tok}");
        }
    }
}

#[test]
fn smollm2_mixed_batch_runs_take_tiles() {
    let m = common::real_model("smollm2-135m");
    let vocab = m.info().vocab;
    let a = tokens(60, vocab, 1);
    let [alone, mixed, by_token] = three_ways(&m, KvType::F16, &a, 20);
    let e_mixed = max_abs_diff(&mixed, &alone);
    assert_eq!(e_mixed, 0.0, "the run in a mixed batch was not tiled alike");
    // Per token also changes the matrix kernels (one-token vs prompt tiles) and their 8-bit
    // activation rounding: bounded like `tests/real.rs` bounds two-slot decoding.
    let mut worst_dp = 0f32;
    for (ra, rb) in alone.chunks_exact(vocab).zip(by_token.chunks_exact(vocab)) {
        let (pa, pb) = (softmax(ra), softmax(rb));
        worst_dp = pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| (x - y).abs())
            .fold(worst_dp, f32::max);
    }
    println!("smollm2: per token vs tiles max |dp| {worst_dp:.4}");
    assert!(
        worst_dp < 0.1,
        "per token vs tiles: probabilities differ by {worst_dp}"
    );
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}
