//! Real models, teacher-forced against llama.cpp's greedy references (`testdata/greedy/`).
//! Run in release: `cargo test -p model --release --test real`.

mod common;

use common::argmax;
use model::{Batch, Model};

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lz = z.ln() + max;
    row.iter().map(|&v| v as f64 - lz).collect()
}

/// Follows "How to use" of `testdata/greedy/README.md` for every case of `json`.
fn teacher_forced(catalogue_name: &str, json: &str) {
    let path = hub::ensure(catalogue_name).expect("model in the cache");
    let m = Model::load(&path).unwrap();
    let vocab = m.info().vocab;
    let refp = format!(
        "{}/../../testdata/greedy/{json}",
        env!("CARGO_MANIFEST_DIR")
    );
    let data: serde_json::Value = serde_json::from_slice(&std::fs::read(refp).unwrap()).unwrap();
    let mut cache = m.new_cache(1, 512).unwrap();
    let mut logits = Vec::new();
    let (mut total_dp, mut n_dp, mut worst_all) = (0f64, 0usize, 0f64);
    let mut failures = Vec::new();
    for case in data["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ids = |k: &str| -> Vec<u32> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        };
        let (prompt, gen) = (ids("prompt_ids"), ids("generated_ids"));
        let tokens: Vec<u32> = prompt.iter().chain(&gen).copied().collect();
        cache.clear();
        // Only rows len(prompt)-1 .. are needed.
        let mut batch = Batch::new();
        for (i, &t) in tokens.iter().enumerate() {
            batch.push(t, i as u32, 0, i + 1 >= prompt.len());
        }
        let t0 = std::time::Instant::now();
        m.forward(&batch, &mut cache, &mut logits).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let steps = case["steps"].as_array().unwrap();
        let margins = case["margins"].as_array().unwrap();
        let (mut sum, mut cnt, mut worst, mut flips, mut flips_small) = (0f64, 0usize, 0f64, 0, 0);
        for (k, step) in steps.iter().enumerate() {
            let row = &logits[k * vocab..(k + 1) * vocab];
            let lp = log_softmax(row);
            let margin = margins[k].as_f64().unwrap();
            if argmax(row) as u32 != gen[k] {
                if margin > 0.5 {
                    flips += 1;
                    failures.push(format!(
                        "{name} step {k}: argmax {} != reference {} (margin {margin:.3})",
                        argmax(row),
                        gen[k]
                    ));
                } else {
                    flips_small += 1;
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
        let mean = sum / cnt.max(1) as f64;
        println!(
            "{catalogue_name} {name:>16}: {} tokens in {secs:.2}s, {} steps, argmax flips at margin>0.5: {flips} (small-margin flips {flips_small}), mean |dp| {mean:.4}, worst {worst:.4}",
            tokens.len(),
            steps.len()
        );
        total_dp += sum;
        n_dp += cnt;
        worst_all = worst_all.max(worst);
        if worst > 0.15 {
            failures.push(format!("{name}: worst |dp| {worst:.4} > 0.15"));
        }
    }
    let mean_all = total_dp / n_dp.max(1) as f64;
    println!("{catalogue_name}: overall mean |dp| {mean_all:.4}, worst {worst_all:.4}");
    if mean_all > 0.01 {
        failures.push(format!("overall mean |dp| {mean_all:.4} > 0.01"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn smollm2_teacher_forced() {
    teacher_forced("smollm2-135m", "smollm2.json");
}

#[test]
fn qwen2_teacher_forced() {
    teacher_forced("qwen2.5-coder-0.5b", "qwen2.json");
}

/// The KV-cache decode path on a real model agrees with the one-pass evaluation.
#[test]
fn smollm2_cached_decode_matches_one_pass() {
    let m = Model::load(hub::ensure("smollm2-135m").unwrap()).unwrap();
    let vocab = m.info().vocab;
    let refp = format!(
        "{}/../../testdata/greedy/smollm2.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let data: serde_json::Value = serde_json::from_slice(&std::fs::read(refp).unwrap()).unwrap();
    let case = &data["cases"][0];
    let ids = |k: &str| -> Vec<u32> {
        case[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let (prompt, gen) = (ids("prompt_ids"), ids("generated_ids"));
    let steps = gen.len().min(12);
    let tokens: Vec<u32> = prompt.iter().chain(&gen[..steps]).copied().collect();

    let mut cache = m.new_cache(2, 128).unwrap();
    let mut one_pass = Vec::new();
    m.forward(
        &Batch::from_tokens(&tokens, 0, 0, true),
        &mut cache,
        &mut one_pass,
    )
    .unwrap();

    // Slot 1: prompt, then one token per step.
    let mut logits = Vec::new();
    m.forward(
        &Batch::from_tokens(&prompt, 0, 1, false),
        &mut cache,
        &mut logits,
    )
    .unwrap();
    let mut worst = 0f32;
    for (k, &tok) in gen.iter().enumerate().take(steps) {
        let row = prompt.len() - 1 + k;
        let want = &one_pass[row * vocab..(row + 1) * vocab];
        let err = common::max_abs_diff(&logits, want);
        worst = worst.max(err);
        assert_eq!(argmax(&logits), argmax(want), "step {k}");
        let mut b = Batch::new();
        b.push(tok, (prompt.len() + k) as u32, 1, true);
        m.forward(&b, &mut cache, &mut logits).unwrap();
    }
    println!(
        "smollm2 cached decode vs one pass: max abs logit diff {worst:.3e} over {steps} steps"
    );
    assert!(
        worst < 1e-2,
        "cached decode differs from one pass by {worst}"
    );
}
