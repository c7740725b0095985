//! The engine on real files: the tiny llama fixture (exact f32 references) and SmolLM2.

mod common;

use engine::{Engine, EngineOptions, GenerateParams, SamplerConfig, StopReason};
use serde_json::Value;

fn testdata(rel: &str) -> String {
    format!("{}/../../testdata/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// The tiny llama with an f32 KV cache: its references are exact (Hugging Face, 1e-3), and
/// the default f16 cache alone moves these random-weight logits by ~1.3e-3.
fn tiny(batch: usize) -> Engine {
    let opts = EngineOptions {
        batch,
        kv_type: engine::KvType::F32,
        ..EngineOptions::default()
    };
    Engine::load(testdata("tiny/llama/model.f32.gguf"), opts).unwrap()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(testdata("tiny/llama/expected.json")).unwrap())
        .unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn greedy(max_tokens: usize, logprobs: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        logprobs,
        ..GenerateParams::default()
    }
}

/// Reference log-softmax rows of a `[n, 512]` logits file.
fn ref_logprobs(file: &str) -> Vec<Vec<f64>> {
    let bytes = std::fs::read(testdata(&format!("tiny/llama/{file}"))).unwrap();
    let vals: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    vals.chunks(512)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&l| (l as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            row.iter().map(|&l| l as f64 - lse).collect()
        })
        .collect()
}

#[test]
fn score_matches_reference_logits() {
    let exp = expected();
    for seq in exp["sequences"].as_array().unwrap() {
        let prompt = ids(&seq["token_ids"]);
        let want = ref_logprobs(seq["logits_file"].as_str().unwrap());
        // A small batch forces several forward calls per pass: the result must not change.
        for batch in [512, 5] {
            let mut eng = tiny(batch);
            let rows = eng.score(&prompt, 5).unwrap();
            assert_eq!(rows.len(), prompt.len());
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(
                    row[0].0,
                    ids(&seq["argmax_per_position"])[i],
                    "position {i}"
                );
                for &(id, lp) in row {
                    let diff = (lp as f64 - want[i][id as usize]).abs();
                    assert!(
                        diff < 1e-3,
                        "position {i} token {id}: {lp} vs {}",
                        want[i][id as usize]
                    );
                }
            }
        }
    }
}

#[test]
fn greedy_generation_matches_reference() {
    let exp = expected();
    for seq in exp["sequences"].as_array().unwrap() {
        let prompt = ids(&seq["token_ids"]);
        let want = ids(&seq["greedy_16"]);
        let mut eng = tiny(512);
        let mut got = Vec::new();
        let stats = eng
            .generate(&prompt, &greedy(16, 2), |ev| {
                assert_eq!(ev.top_logprobs[0].0, ev.id);
                got.push(ev.id);
                true
            })
            .unwrap();
        assert_eq!(got, want);
        assert_eq!(stats.n_gen, 16);
        assert_eq!(stats.stop, StopReason::MaxTokens);
        assert_eq!(stats.n_prompt, prompt.len());
    }
}

#[test]
fn kv_prefix_reuse_gives_the_same_tokens() {
    let exp = expected();
    let seq = &exp["sequences"][1];
    let prompt = ids(&seq["token_ids"]);
    let want = ids(&seq["greedy_16"]);
    let mut eng = tiny(512);
    // First a shorter request, then the full prompt: the cached prefix is reused.
    eng.generate(&prompt[..20], &greedy(3, 0), |_| true)
        .unwrap();
    let mut got = Vec::new();
    let stats = eng
        .generate(&prompt, &greedy(16, 0), |ev| {
            got.push(ev.id);
            true
        })
        .unwrap();
    assert_eq!(stats.n_prompt_evaluated, prompt.len() - 20);
    assert_eq!(got, want);
    // Continue the conversation: prompt + 10 generated tokens; the next token must be the
    // 11th reference token.
    let mut longer = prompt.clone();
    longer.extend_from_slice(&want[..10]);
    let mut next = Vec::new();
    let stats = eng
        .generate(&longer, &greedy(1, 0), |ev| {
            next.push(ev.id);
            true
        })
        .unwrap();
    assert_eq!(next, vec![want[10]]);
    assert!(stats.n_prompt_evaluated <= 1, "{stats:?}");
}

#[test]
fn bad_requests_are_errors() {
    let mut eng = tiny(512);
    assert!(eng.score(&[1, 600], 3).is_err());
    assert!(eng.generate(&[], &greedy(3, 0), |_| true).is_err());
    let too_long = vec![5u32; eng.n_ctx() + 1];
    assert!(eng.generate(&too_long, &greedy(3, 0), |_| true).is_err());
    let bad_sampler = GenerateParams {
        sampler: SamplerConfig {
            top_p: 2.0,
            ..SamplerConfig::default()
        },
        ..greedy(3, 0)
    };
    assert!(eng.generate(&[1, 2], &bad_sampler, |_| true).is_err());
    // The engine still works afterwards.
    let huge = EngineOptions {
        n_ctx: 1 << 40,
        ..EngineOptions::default()
    };
    let err = Engine::load(testdata("tiny/llama/model.f32.gguf"), huge).unwrap_err();
    assert!(err.to_string().contains("at most 256"), "{err}");
    assert_eq!(eng.score(&[1, 2, 3], 1).unwrap().len(), 3);
}

#[test]
fn smollm2_chat_case_teacher_forced() {
    let path = common::model_file("smollm2-135m");
    let mut eng = Engine::load(&path, EngineOptions::default()).unwrap();
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("greedy/smollm2.json")).unwrap())
            .unwrap();
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "chat")
        .unwrap();
    // The chat template and the tokenizer give the reference prompt ids.
    let msgs: Vec<engine::ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
    let prompt = eng.chat_prompt(&msgs).unwrap();
    assert_eq!(prompt, ids(&case["prompt_ids"]));

    let gen = ids(&case["generated_ids"]);
    let mut all = prompt.clone();
    all.extend(&gen);
    let rows = eng.score(&all, 10).unwrap();
    let margins = case["margins"].as_array().unwrap();
    for (k, &want) in gen.iter().enumerate() {
        if margins[k].as_f64().unwrap() > 0.5 {
            assert_eq!(rows[prompt.len() + k - 1][0].0, want, "step {k}");
        }
    }
    // Free-running greedy decoding (one token per step on the KV cache) must agree with the
    // batched pass over its own output wherever the choice is not a near-tie.
    let mut got = Vec::new();
    let mut text = String::new();
    let stats = eng
        .generate(&prompt, &greedy(24, 0), |ev| {
            got.push(ev.id);
            text.push_str(ev.text);
            true
        })
        .unwrap();
    assert!(!text.is_empty());
    assert!(matches!(
        stats.stop,
        StopReason::Eog | StopReason::MaxTokens
    ));
    let mut all = prompt.clone();
    all.extend(&got);
    let rows = eng.score(&all, 2).unwrap();
    for (k, &id) in got.iter().enumerate() {
        let row = &rows[prompt.len() + k - 1];
        // Decode (one token per pass) and batched kernels round differently: only a clear
        // choice must agree (testdata/greedy/README.md: margins above 0.5 nats).
        if row[0].1 - row[1].1 > 0.5 {
            assert_eq!(row[0].0, id, "step {k}: decode and batched pass disagree");
        }
    }
}

/// Template + tokenizer give exactly the reference prompt ids for every chat case.
#[test]
fn chat_prompts_tokenize_like_the_reference() {
    for (model, fixture) in [
        ("smollm2-135m", "greedy/smollm2.json"),
        ("qwen2.5-coder-0.5b", "greedy/qwen2.json"),
    ] {
        let eng = Engine::load(common::model_file(model), EngineOptions::default()).unwrap();
        let fx: Value =
            serde_json::from_str(&std::fs::read_to_string(testdata(fixture)).unwrap()).unwrap();
        let mut n = 0;
        for case in fx["cases"].as_array().unwrap() {
            if case["kind"] != "chat" {
                continue;
            }
            let msgs: Vec<engine::ChatMessage> =
                serde_json::from_value(case["messages"].clone()).unwrap();
            assert_eq!(
                eng.chat_prompt(&msgs).unwrap(),
                ids(&case["prompt_ids"]),
                "{model} {}",
                case["name"]
            );
            n += 1;
        }
        assert_eq!(n, 3);
    }
}

/// A text prompt becomes the reference ids, BOS included exactly where the model wants one
/// (gemma3 yes, smollm2 and qwen2.5 no).
#[test]
fn text_prompts_tokenize_like_the_reference() {
    for (model, fixture) in [
        ("smollm2-135m", "greedy/smollm2.json"),
        ("gemma3-270m", "greedy/gemma3.json"),
        ("qwen2.5-coder-0.5b", "greedy/qwen2.json"),
    ] {
        let eng = Engine::load(common::model_file(model), EngineOptions::default()).unwrap();
        let fx: Value =
            serde_json::from_str(&std::fs::read_to_string(testdata(fixture)).unwrap()).unwrap();
        for case in fx["cases"].as_array().unwrap() {
            let text = case["prompt_text"].as_str().unwrap();
            assert_eq!(
                eng.tokenize(text, true, true),
                ids(&case["prompt_ids"]),
                "{model} {}",
                case["name"]
            );
        }
    }
}

/// Teacher-forced, through the whole engine: the first raw case of each real model's fixture.
#[test]
fn raw_cases_teacher_forced_on_all_real_models() {
    for (model, fixture) in [
        ("smollm2-135m", "greedy/smollm2.json"),
        ("gemma3-270m", "greedy/gemma3.json"),
        ("qwen2.5-coder-0.5b", "greedy/qwen2.json"),
    ] {
        let mut eng = Engine::load(common::model_file(model), EngineOptions::default()).unwrap();
        let fx: Value =
            serde_json::from_str(&std::fs::read_to_string(testdata(fixture)).unwrap()).unwrap();
        let case = &fx["cases"][0];
        let prompt = ids(&case["prompt_ids"]);
        let gen = ids(&case["generated_ids"]);
        let mut all = prompt.clone();
        all.extend(&gen);
        let rows = eng.score(&all, 1).unwrap();
        let margins = case["margins"].as_array().unwrap();
        let mut checked = 0;
        for (k, &want) in gen.iter().enumerate() {
            if margins[k].as_f64().unwrap() > 0.5 {
                assert_eq!(rows[prompt.len() + k - 1][0].0, want, "{model} step {k}");
                checked += 1;
            }
        }
        assert!(checked > 10, "{model}: only {checked} steps checked");
    }
}

/// gemma3's sliding-window layers keep a ring of their window (plus one batch) in the engine's
/// cache: a prompt longer than the window gives the same tokens as ever, continuing a
/// conversation reuses the whole cached prefix, and a prompt sharing only an early prefix
/// (which the ring has overwritten) is evaluated from the start, with the same tokens a fresh
/// engine gives.
#[test]
fn gemma3_sliding_window_cache_and_prefix_reuse() {
    let path = common::model_file("gemma3-270m");
    let opts = EngineOptions {
        n_ctx: 4096,
        ..EngineOptions::default()
    };
    let all = std::fs::read_to_string(testdata("corpus/pride-and-prejudice.txt")).unwrap();
    let text: String = all.chars().take(7000).collect();
    let mut eng = Engine::load(&path, opts.clone()).unwrap();
    let prompt = eng.tokenize(&text, true, false);
    assert!(prompt.len() > 1200, "{} tokens", prompt.len());
    let run = |eng: &mut Engine, p: &[u32], n: usize| {
        let mut got = Vec::new();
        let stats = eng
            .generate(p, &greedy(n, 0), |ev| {
                got.push(ev.id);
                true
            })
            .unwrap();
        (got, stats)
    };
    let (first, _) = run(&mut eng, &prompt, 8);
    // Continue: prompt + its 8 tokens; everything before is reused.
    let mut longer = prompt.clone();
    longer.extend_from_slice(&first);
    let (next, stats) = run(&mut eng, &longer, 4);
    assert!(stats.n_prompt_evaluated <= 1, "{stats:?}");
    let mut fresh = Engine::load(&path, opts.clone()).unwrap();
    assert_eq!(run(&mut fresh, &longer, 4).0, next);
    // Only the first 100 tokens shared: the ring no longer holds them, so all is evaluated.
    let mut other = prompt[..100].to_vec();
    other.extend_from_slice(&prompt[400..700]);
    let (got, stats) = run(&mut eng, &other, 6);
    assert_eq!(stats.n_prompt_evaluated, other.len(), "{stats:?}");
    let mut fresh = Engine::load(&path, opts).unwrap();
    assert_eq!(run(&mut fresh, &other, 6).0, got);
}
