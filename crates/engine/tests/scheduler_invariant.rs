//! Batch invariance on the real default model: with `batch_invariant`, a request's tokens and
//! log-probabilities are bit-identical whether it runs alone or among 7 others, whatever the
//! prompt chunking, and with or without a reused prefix.
//!
//! (The mode is process-wide, so these tests live in their own binary.)

mod common;

use common::*;
use engine::{SamplerConfig, Scheduler, SchedulerOptions};

fn opts(n_slots: usize, step_tokens: usize) -> SchedulerOptions {
    SchedulerOptions {
        n_slots,
        n_ctx: 1024,
        threads: 2,
        step_tokens,
        batch_invariant: true,
        ..SchedulerOptions::default()
    }
}

/// Greedy requests with varied lengths; logprobs on so every token's value is compared.
fn requests(s: &Scheduler) -> Vec<engine::Request> {
    prompts(s)
        .into_iter()
        .enumerate()
        .map(|(i, p)| greedy(p, 6 + 2 * i))
        .collect()
}

#[test]
fn alone_equals_among_seven_others() {
    let alone = sched(opts(1, 256));
    assert!(kernels::batch_invariant());
    let reqs = requests(&alone);
    let want: Vec<Outcome> = reqs
        .iter()
        .map(|r| {
            // A fresh slot each time: no prefix reuse in the reference run.
            let s = sched(opts(1, 256));
            run(&s, r.clone())
        })
        .collect();
    drop(alone);
    // All eight at once, prompts cut into chunks by a small step budget.
    for step_tokens in [256, 37] {
        let s = sched(opts(8, step_tokens));
        let rxs: Vec<_> = reqs.iter().map(|r| submit(&s, r.clone())).collect();
        for (i, rx) in rxs.into_iter().enumerate() {
            let got = collect(rx);
            assert_eq!(
                got.ids, want[i].ids,
                "request {i}, step budget {step_tokens}"
            );
            assert_eq!(
                got.lp_bits, want[i].lp_bits,
                "request {i}, step budget {step_tokens}"
            );
        }
        assert!(s.metrics().busy_slots_per_decode() > 2.0);
    }
}

#[test]
fn reused_prefix_gives_the_reply_computed_without_reuse() {
    let s = sched(opts(2, 256));
    let p1 = chat(&s, "What is the capital of France?");
    let a = run(&s, greedy(p1.clone(), 10));
    let mut p2 = p1.clone();
    p2.extend_from_slice(&a.ids[..a.ids.len() - 1]);
    p2.extend(s.tokenizer().encode("\nAnd of Spain?", false, false));
    let b = run(&s, greedy(p2.clone(), 10));
    assert_eq!(b.cached, p1.len() + a.ids.len() - 1);
    let fresh = run(&sched(opts(1, 256)), greedy(p2.clone(), 10));
    assert_eq!(fresh.cached, 0);
    assert_eq!(b.ids, fresh.ids);
    assert_eq!(b.lp_bits, fresh.lp_bits);
}

#[test]
fn same_seed_same_text_with_reuse() {
    let s = sched(opts(2, 256));
    let mut r = greedy(chat(&s, "Write a poem about rain."), 24);
    r.params.sampler = SamplerConfig {
        seed: Some(7),
        ..SamplerConfig::default()
    };
    let a = run(&s, r.clone());
    let b = run(&s, r);
    assert!(b.cached > 0);
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.lp_bits, b.lp_bits);
}
