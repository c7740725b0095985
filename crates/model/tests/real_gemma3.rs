//! The real Gemma 3 270M (`hub::ensure("gemma3-270m")`: F32, Q5_0, Q4_K, Q8_0, Q6_K tensors,
//! head size 256, 4 heads / 1 KV head, vocabulary 262144), teacher-forced against llama.cpp's
//! greedy references (`testdata/greedy/gemma3.json`), and its cached decode against one pass.
//! Run in release: `cargo test -p model --release --test real_gemma3`.
//!
//! Bounds ("How to use" of `testdata/greedy/README.md`): the argmax must match wherever the
//! reference margin exceeds 0.5 nats, the reference top-10 probabilities above 0.01 must agree
//! within 0.01 on average. gemma3 is the most sensitive of the reference models: llama.cpp run
//! with other matmul kernels on the same file flips one argmax at a margin of 0.55 and its worst
//! single probability difference between settings reaches 0.21. So for gemma3 we allow at most
//! one flip with a margin in (0.5, 0.6] and a worst difference of 0.21; a systematic excess
//! (mean above 0.01, several flips, or a flip above 0.6) fails.
//!
//! GELU: llama.cpp's CPU backend evaluates GELU through a table of f16 values (input rounded
//! to f16), and gemma3's references were made that way. lume's default is the exact f32 GELU
//! (which matches the Hugging Face tiny-model references to 1e-5; the f16 table is 5e-3 off
//! there). Measured against these references (all levels, 2026-11-28):
//! - `GeluMode::F16Table`: worst |dp| 0.144 (avx512vnni), 0.146 (avx2), 0.191 (scalar), no flip.
//! - `GeluMode::Exact`: worst 0.196 / 0.223 / 0.243, and at avx2 one flip at margin 0.70
//!   (quick_fox step 0), where even an exact f32 computation on dequantized weights is 0.200
//!   away from the reference: the reference's own GELU rounding moves that step.
//!
//! So the bounds above are asserted with the reference's GELU, and the exact mode must pass
//! the "systematic" checks (mean ≤ 0.01, at most one flip at margin > 0.5).

mod common;

use std::sync::Mutex;

use common::{argmax, max_abs_diff};
use model::layers::ffn::{set_gelu_mode, GeluMode};
use model::{Batch, KvType, Model};

/// The GELU mode is process-wide: tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MEAN_DP: f64 = 0.01;
const WORST_DP: f64 = 0.21;
const FLIP_MARGIN: f64 = 0.5;
const HARD_FLIP_MARGIN: f64 = 0.6;
const ALLOWED_FLIPS: usize = 1;

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lz = z.ln() + max;
    row.iter().map(|&v| v as f64 - lz).collect()
}

fn references() -> serde_json::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/greedy/gemma3.json"
    );
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn ids(case: &serde_json::Value, key: &str) -> Vec<u32> {
    case[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn load() -> Model {
    let m = Model::load(hub::ensure("gemma3-270m").expect("gemma3-270m in the cache")).unwrap();
    let i = m.info();
    assert_eq!(
        (i.arch.as_str(), i.vocab, i.n_head, i.n_head_kv, i.head_dim),
        ("gemma3", 262144, 4, 1, 256)
    );
    m
}

#[test]
fn gemma3_teacher_forced() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = load();
    set_gelu_mode(GeluMode::F16Table);
    let compat = teacher_forced(&m, "f16 GELU", KvType::F32);
    let compat16 = teacher_forced(&m, "f16 GELU, f16 KV", KvType::F16);
    set_gelu_mode(GeluMode::Exact);
    let exact = teacher_forced(&m, "exact GELU", KvType::F32);
    let mut failures = compat.failures;
    // The engine's default f16 cache: the same systematic checks as the exact GELU below.
    if compat16.mean > MEAN_DP || compat16.flips > ALLOWED_FLIPS {
        failures.push(format!(
            "f16 KV: overall mean |dp| {:.4} (max {MEAN_DP}), {} flips at margin > {FLIP_MARGIN}",
            compat16.mean, compat16.flips
        ));
    }
    if exact.mean > MEAN_DP {
        failures.push(format!(
            "exact GELU: overall mean |dp| {:.4} > {MEAN_DP}",
            exact.mean
        ));
    }
    if exact.flips > ALLOWED_FLIPS {
        failures.push(format!(
            "exact GELU: {} argmax flips at margins > {FLIP_MARGIN}",
            exact.flips
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What one teacher-forced run over every case measured.
struct Outcome {
    mean: f64,
    flips: usize,
    /// Violations of this file's bounds.
    failures: Vec<String>,
}

fn teacher_forced(m: &Model, mode: &str, kv: KvType) -> Outcome {
    let vocab = m.info().vocab;
    let data = references();
    let mut cache = m.new_cache_typed(1, 512, kv).unwrap();
    let mut logits = Vec::new();
    let (mut total_dp, mut n_dp, mut worst_all) = (0f64, 0usize, 0f64);
    let mut flips = Vec::new();
    let mut failures = Vec::new();
    for case in data["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (prompt, gen) = (ids(case, "prompt_ids"), ids(case, "generated_ids"));
        let tokens: Vec<u32> = prompt.iter().chain(&gen).copied().collect();
        cache.clear();
        // One pass; only rows len(prompt)-1 .. are needed.
        let mut batch = Batch::new();
        for (i, &t) in tokens.iter().enumerate() {
            batch.push(t, i as u32, 0, i + 1 >= prompt.len());
        }
        let t0 = std::time::Instant::now();
        m.forward(&batch, &mut cache, &mut logits).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let steps = case["steps"].as_array().unwrap();
        let margins = case["margins"].as_array().unwrap();
        let (mut sum, mut cnt, mut worst, mut small_flips) = (0f64, 0usize, 0f64, 0);
        for (k, step) in steps.iter().enumerate() {
            let row = &logits[k * vocab..(k + 1) * vocab];
            let lp = log_softmax(row);
            let margin = margins[k].as_f64().unwrap();
            let got = argmax(row) as u32;
            if got != gen[k] {
                if margin > FLIP_MARGIN {
                    let ours = lp[got as usize] - lp[gen[k] as usize];
                    flips.push(format!(
                        "{name} step {k}: argmax {got} != reference {} (reference margin \
                         {margin:.3}, ours {ours:.3} the other way)",
                        gen[k]
                    ));
                    if margin > HARD_FLIP_MARGIN {
                        failures.push(flips.last().unwrap().clone());
                    }
                } else {
                    small_flips += 1;
                }
            }
            for pair in step["top"].as_array().unwrap() {
                let id = pair[0].as_u64().unwrap() as usize;
                let p_ref = pair[1].as_f64().unwrap().exp();
                if p_ref > 0.01 {
                    let dp = (lp[id].exp() - p_ref).abs();
                    sum += dp;
                    cnt += 1;
                    worst = worst.max(dp);
                }
            }
        }
        println!(
            "gemma3 [{mode}] {name:>16}: {} tokens in {secs:.2}s, {} steps, small-margin flips {small_flips}, \
             mean |dp| {:.4}, worst {worst:.4}",
            tokens.len(),
            steps.len(),
            sum / cnt.max(1) as f64
        );
        total_dp += sum;
        n_dp += cnt;
        worst_all = worst_all.max(worst);
    }
    let mean_all = total_dp / n_dp.max(1) as f64;
    println!("gemma3 [{mode}]: overall mean |dp| {mean_all:.4}, worst {worst_all:.4}");
    for f in &flips {
        println!("gemma3 [{mode}]: flip {f}");
    }
    if flips.len() > ALLOWED_FLIPS {
        failures.push(format!(
            "{} argmax flips at margins > {FLIP_MARGIN} (at most {ALLOWED_FLIPS} allowed)",
            flips.len()
        ));
    }
    if worst_all > WORST_DP {
        failures.push(format!("worst |dp| {worst_all:.4} > {WORST_DP}"));
    }
    if mean_all > MEAN_DP {
        failures.push(format!("overall mean |dp| {mean_all:.4} > {MEAN_DP}"));
    }
    Outcome {
        mean: mean_all,
        flips: flips.len(),
        failures,
    }
}

/// Prompt in one batch, then one token per step through the KV cache, against one pass over
/// the whole sequence (both slots of one cache). The two paths run the quantized matrix
/// products with different kernels (one token vs 8-token groups) whose float sums round
/// differently, and with 8-bit activations such differences can move a logit by up to ~1 after
/// 18 layers, as in llama.cpp (its README table: "one pass" vs token by token). So the check
/// is on probabilities: worst |dp| 0.1, argmax equal wherever the top-2 margin exceeds 0.5 nats.
/// (With `LUME_CPU=scalar` both paths are bit-identical.)
#[test]
fn gemma3_cached_decode_matches_one_pass() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = load();
    let vocab = m.info().vocab;
    let data = references();
    let case = &data["cases"][0];
    let (prompt, gen) = (ids(case, "prompt_ids"), ids(case, "generated_ids"));
    let steps = gen.len().min(16);
    let tokens: Vec<u32> = prompt.iter().chain(&gen[..steps]).copied().collect();

    let mut cache = m.new_cache(2, 128).unwrap();
    let mut one_pass = Vec::new();
    m.forward(
        &Batch::from_tokens(&tokens, 0, 0, true),
        &mut cache,
        &mut one_pass,
    )
    .unwrap();

    let mut logits = Vec::new();
    m.forward(
        &Batch::from_tokens(&prompt, 0, 1, false),
        &mut cache,
        &mut logits,
    )
    .unwrap();
    let (mut worst_logit, mut worst_dp) = (0f32, 0f64);
    for (k, &tok) in gen.iter().enumerate().take(steps) {
        let row = prompt.len() - 1 + k;
        let want = &one_pass[row * vocab..(row + 1) * vocab];
        worst_logit = worst_logit.max(max_abs_diff(&logits, want));
        let (p, q) = (log_softmax(&logits), log_softmax(want));
        let dp = p
            .iter()
            .zip(&q)
            .map(|(a, b)| (a.exp() - b.exp()).abs())
            .fold(0f64, f64::max);
        worst_dp = worst_dp.max(dp);
        let mut sorted = q.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] - sorted[1] > 0.5 {
            assert_eq!(argmax(&logits), argmax(want), "step {k}");
        }
        let mut b = Batch::new();
        b.push(tok, (prompt.len() + k) as u32, 1, true);
        m.forward(&b, &mut cache, &mut logits).unwrap();
    }
    println!(
        "gemma3 cached decode vs one pass over {steps} steps: max abs logit diff \
         {worst_logit:.3e}, worst |dp| {worst_dp:.4}"
    );
    assert!(
        worst_dp < 0.1,
        "cached decode differs from one pass: |dp| {worst_dp}"
    );
}

/// The windowed cache (15 of 18 layers as rings of 512 + 511 rows) on the real model: past
/// the ring's length it gives exactly the plain cache's logits, for a fraction of the memory.
#[test]
fn gemma3_windowed_cache_matches_plain_cache() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = load();
    let plain_full = m.new_cache(1, 32768).unwrap().kv_bytes();
    let ring_full = m
        .new_cache_windowed(1, 32768, model::KvType::F32)
        .unwrap()
        .kv_bytes();
    println!(
        "gemma3 32k context: plain cache {} MiB, windowed {} MiB",
        plain_full >> 20,
        ring_full >> 20
    );
    assert!(ring_full * 4 < plain_full);

    // 1040 tokens: positions wrap the 1023-row rings.
    let n = 1040;
    let toks: Vec<u32> = (0..n as u32).map(|i| 1000 + (i * 7919) % 50000).collect();
    let run = |cache: &mut model::KvCache| {
        let mut out = Vec::new();
        let mut logits = Vec::new();
        for (c, chunk) in toks.chunks(model::MAX_BATCH).enumerate() {
            let b = Batch::from_tokens(chunk, (c * model::MAX_BATCH) as u32, 0, false);
            m.forward(&b, cache, &mut logits).unwrap();
            out.extend_from_slice(&logits);
        }
        for k in 0..3 {
            let mut b = Batch::new();
            b.push(argmax(&logits) as u32, (n + k) as u32, 0, true);
            m.forward(&b, cache, &mut logits).unwrap();
            out.extend_from_slice(&logits);
        }
        out
    };
    let mut plain = m.new_cache(1, 1100).unwrap();
    let mut ring = m.new_cache_windowed(1, 1100, model::KvType::F32).unwrap();
    let (a, b) = (run(&mut plain), run(&mut ring));
    assert_eq!(a.len(), 6 * m.info().vocab);
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}
