//! The real Gemma 3 270M (`common::real_model("gemma3-270m")`: F32, Q5_0, Q4_K, Q8_0, Q6_K tensors,
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

use common::teacher::{self, cases, Feed, Run, FLIP_MARGIN};
use common::{argmax, max_abs_diff, prompt_logits};
use model::layers::ffn::{set_gelu_mode, GeluMode};
use model::{Batch, KvType, Model};

/// The GELU mode is process-wide: tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MEAN_DP: f64 = 0.01;
const WORST_DP: f64 = 0.21;
const HARD_FLIP_MARGIN: f64 = 0.6;
const ALLOWED_FLIPS: usize = 1;

fn load() -> Model {
    let m = common::real_model("gemma3-270m");
    let i = m.info();
    assert_eq!(
        (i.arch.as_str(), i.vocab, i.n_head, i.n_head_kv, i.head_dim),
        ("gemma3", 262144, 4, 1, 256)
    );
    m
}

/// Every case of `gemma3.json` in one pass (the whole sequence as one batch).
fn teacher_forced(m: &Model, mode: &str, kv: KvType) -> teacher::Outcome {
    let label = format!("gemma3 [{mode}]");
    let run = Run {
        label: &label,
        feed: Feed::OnePass,
        kv,
        cases: usize::MAX,
        steps: usize::MAX,
    };
    teacher::teacher_forced(m, &cases("gemma3.json"), &run)
}

/// Violations of this file's bounds (see the file docs).
fn bound_failures(out: &teacher::Outcome) -> Vec<String> {
    let mut failures: Vec<String> = out
        .flips
        .iter()
        .filter(|f| f.margin > HARD_FLIP_MARGIN)
        .map(|f| f.to_string())
        .collect();
    if out.flips.len() > ALLOWED_FLIPS {
        failures.push(format!(
            "{} argmax flips at margins > {FLIP_MARGIN} (at most {ALLOWED_FLIPS} allowed)",
            out.flips.len()
        ));
    }
    if out.worst > WORST_DP {
        failures.push(format!("worst |dp| {:.4} > {WORST_DP}", out.worst));
    }
    if out.mean > MEAN_DP {
        failures.push(format!("overall mean |dp| {:.4} > {MEAN_DP}", out.mean));
    }
    failures
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
    let mut failures = bound_failures(&compat);
    // The engine's default f16 cache: the same systematic checks as the exact GELU below.
    if compat16.mean > MEAN_DP || compat16.flips.len() > ALLOWED_FLIPS {
        failures.push(format!(
            "f16 KV: overall mean |dp| {:.4} (max {MEAN_DP}), {} flips at margin > {FLIP_MARGIN}",
            compat16.mean,
            compat16.flips.len()
        ));
    }
    if exact.mean > MEAN_DP {
        failures.push(format!(
            "exact GELU: overall mean |dp| {:.4} > {MEAN_DP}",
            exact.mean
        ));
    }
    if exact.flips.len() > ALLOWED_FLIPS {
        failures.push(format!(
            "exact GELU: {} argmax flips at margins > {FLIP_MARGIN}",
            exact.flips.len()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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
    let case = &cases("gemma3.json")[0];
    let (prompt, gen) = (&case.prompt, &case.gen);
    let steps = gen.len().min(16);
    let tokens: Vec<u32> = prompt.iter().chain(&gen[..steps]).copied().collect();
    // Every position of the sequence, and the cached decode beside it in slot 1.
    let mut cache = m.new_cache(2, 128).unwrap();
    let one_pass = prompt_logits(&m, &tokens);
    let cached = teacher::cached_rows(&m, &mut cache, 1, prompt, gen, steps);
    let (mut worst_logit, mut worst_dp) = (0f32, 0f64);
    for k in 0..steps {
        let row = prompt.len() - 1 + k;
        let want = &one_pass[row * vocab..(row + 1) * vocab];
        let got = &cached[k * vocab..(k + 1) * vocab];
        worst_logit = worst_logit.max(max_abs_diff(got, want));
        worst_dp = worst_dp.max(teacher::max_dp(got, want, vocab));
        let mut sorted = teacher::log_softmax(want);
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] - sorted[1] > 0.5 {
            assert_eq!(argmax(got), argmax(want), "step {k}");
        }
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
