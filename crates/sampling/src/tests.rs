use super::*;

fn seeded(mut cfg: SamplerConfig, seed: u64) -> Sampler {
    cfg.seed = Some(seed);
    Sampler::new(cfg)
}

/// Logits whose softmax is exactly `probs`.
fn logits_of(probs: &[f32]) -> Vec<f32> {
    probs.iter().map(|p| p.ln()).collect()
}

fn plain(temperature: f32) -> SamplerConfig {
    SamplerConfig {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerConfig::default()
    }
}

#[test]
fn defaults_match_llama_cpp() {
    let d = SamplerConfig::default();
    assert_eq!(d.temperature, 0.8);
    assert_eq!(d.top_k, 40);
    assert_eq!(d.top_p, 0.95);
    assert_eq!(d.min_p, 0.05);
    assert_eq!(d.repeat_penalty, 1.0);
    assert_eq!(d.repeat_last_n, 64);
    assert!(d.validate().is_ok());
    assert_eq!(SamplerConfig::greedy().temperature, 0.0);
    assert!(SamplerConfig::greedy().validate().is_ok());
}

#[test]
fn greedy_picks_argmax_lowest_id_on_ties() {
    let mut s = Sampler::new(SamplerConfig::greedy());
    assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9], &[]), 1);
    assert_eq!(s.sample(&[3.0, 1.0, 3.0], &[]), 0);
    assert_eq!(s.sample(&[-5.0, 7.0, 7.0, 7.0], &[]), 1);
    // Negative temperature is greedy too.
    let mut s = Sampler::new(SamplerConfig {
        temperature: -1.0,
        ..SamplerConfig::default()
    });
    assert_eq!(s.sample(&[0.0, 0.5, 0.4], &[]), 1);
}

#[test]
fn top_k_one_equals_greedy_at_any_temperature() {
    let logits: Vec<f32> = (0..500).map(|i| ((i * 7919) % 503) as f32 * 0.01).collect();
    let want = Sampler::new(SamplerConfig::greedy()).sample(&logits, &[]);
    for &t in &[0.1f32, 1.0, 5.0, 100.0] {
        let mut s = seeded(
            SamplerConfig {
                temperature: t,
                top_k: 1,
                top_p: 1.0,
                min_p: 0.0,
                ..SamplerConfig::default()
            },
            42,
        );
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[]), want, "temperature {t}");
        }
    }
}

#[test]
fn tiny_top_p_keeps_only_the_best() {
    let logits = logits_of(&[0.2, 0.3, 0.25, 0.25]);
    let mut s = seeded(
        SamplerConfig {
            top_p: 1e-6,
            ..plain(2.0)
        },
        7,
    );
    for _ in 0..200 {
        assert_eq!(s.sample(&logits, &[]), 1);
    }
}

#[test]
fn top_p_keeps_the_nucleus() {
    // 0.5 + 0.3 = 0.8 >= 0.75: only tokens 2 and 0 may appear.
    let logits = logits_of(&[0.3, 0.1, 0.5, 0.1]);
    let mut s = seeded(
        SamplerConfig {
            top_p: 0.75,
            ..plain(1.0)
        },
        3,
    );
    let mut hits = [0usize; 4];
    for _ in 0..2000 {
        hits[s.sample(&logits, &[]) as usize] += 1;
    }
    assert_eq!(hits[1] + hits[3], 0, "{hits:?}");
    assert!(hits[0] > 500 && hits[2] > 1000, "{hits:?}");
}

#[test]
fn min_p_filters_unlikely_tokens() {
    // With min_p 0.2 and best p = 0.5, the floor is 0.1: tokens at 0.05 go.
    let logits = logits_of(&[0.5, 0.05, 0.3, 0.05, 0.11]);
    let mut s = seeded(
        SamplerConfig {
            min_p: 0.2,
            ..plain(1.0)
        },
        11,
    );
    let mut hits = [0usize; 5];
    for _ in 0..5000 {
        hits[s.sample(&logits, &[]) as usize] += 1;
    }
    assert_eq!(hits[1] + hits[3], 0, "{hits:?}");
    assert!(
        hits[4] > 0,
        "the token just above the floor stays: {hits:?}"
    );
}

#[test]
fn top_k_limits_the_choice() {
    let logits = logits_of(&[0.1, 0.4, 0.2, 0.3]);
    let mut s = seeded(
        SamplerConfig {
            top_k: 2,
            ..plain(1.0)
        },
        5,
    );
    for _ in 0..1000 {
        let t = s.sample(&logits, &[]);
        assert!(t == 1 || t == 3, "got {t}");
    }
}

#[test]
fn repetition_penalty_lowers_a_repeated_token() {
    let logits = [2.0f32, 1.9, -1.0, -1.0];
    let cfg = SamplerConfig {
        repeat_penalty: 1.3,
        ..SamplerConfig::greedy()
    };
    let mut s = Sampler::new(cfg.clone());
    assert_eq!(s.sample(&logits, &[]), 0);
    // 2.0 / 1.3 < 1.9: token 0 loses once it has been seen.
    assert_eq!(s.sample(&logits, &[0]), 1);
    // Out of the window it is forgiven.
    let mut s = Sampler::new(SamplerConfig {
        repeat_last_n: 2,
        ..cfg.clone()
    });
    assert_eq!(s.sample(&logits, &[0, 3, 3]), 0);
    // Negative logits are multiplied: -1.0 * 1.3 ranks below the unseen -1.0.
    let mut s = Sampler::new(cfg);
    assert_eq!(s.sample(&[-1.0, -1.0], &[0]), 1);
    // History ids beyond the vocabulary are ignored.
    assert_eq!(s.sample(&logits, &[99, u32::MAX]), 0);
}

#[test]
fn frequency_and_presence_penalties() {
    let logits = [1.0f32, 0.75, 0.0];
    // Frequency: token 0 seen twice loses 2 * 0.2 = 0.4 and falls below token 1.
    let mut s = Sampler::new(SamplerConfig {
        frequency_penalty: 0.2,
        ..SamplerConfig::greedy()
    });
    assert_eq!(s.sample(&logits, &[0]), 0);
    assert_eq!(s.sample(&logits, &[0, 0]), 1);
    // Presence: one flat hit regardless of count.
    let mut s = Sampler::new(SamplerConfig {
        presence_penalty: 0.3,
        ..SamplerConfig::greedy()
    });
    assert_eq!(s.sample(&logits, &[0]), 1);
    assert_eq!(s.sample(&logits, &[0, 1]), 0);
    // Counts are reset between calls.
    assert_eq!(s.sample(&logits, &[]), 0);
}

#[test]
fn same_seed_same_sequence_different_seed_different() {
    let flat = vec![0.0f32; 1000];
    let run = |seed: u64| {
        let mut s = seeded(plain(1.0), seed);
        (0..64).map(|_| s.sample(&flat, &[])).collect::<Vec<u32>>()
    };
    assert_eq!(run(1234), run(1234));
    assert_ne!(run(1234), run(1235));
    // Reseeding restarts the stream.
    let mut s = seeded(plain(1.0), 9);
    let a: Vec<u32> = (0..16).map(|_| s.sample(&flat, &[])).collect();
    s.reseed(9);
    let b: Vec<u32> = (0..16).map(|_| s.sample(&flat, &[])).collect();
    assert_eq!(a, b);
    // Unseeded samplers differ from each other (with overwhelming probability).
    let mut u1 = Sampler::new(plain(1.0));
    let mut u2 = Sampler::new(plain(1.0));
    let a: Vec<u32> = (0..16).map(|_| u1.sample(&flat, &[])).collect();
    let b: Vec<u32> = (0..16).map(|_| u2.sample(&flat, &[])).collect();
    assert_ne!(a, b);
}

#[test]
fn empirical_frequencies_match_the_distribution() {
    let want = [0.2f64, 0.5, 0.3];
    let logits = logits_of(&[0.2, 0.5, 0.3]);
    let mut s = seeded(plain(1.0), 2024);
    let n = 20_000;
    let mut hits = [0usize; 3];
    for _ in 0..n {
        hits[s.sample(&logits, &[]) as usize] += 1;
    }
    for i in 0..3 {
        let f = hits[i] as f64 / n as f64;
        // Standard deviation is at most ~0.0035; allow about 4 sigma.
        assert!((f - want[i]).abs() < 0.015, "token {i}: {f} vs {}", want[i]);
    }
}

#[test]
fn temperature_sharpens_and_flattens() {
    let logits = logits_of(&[0.2, 0.8]);
    let count = |t: f32| {
        let mut s = seeded(plain(t), 77);
        (0..4000).filter(|_| s.sample(&logits, &[]) == 1).count() as f64 / 4000.0
    };
    // T = 0.5 squares the odds: 0.64 / 0.68 ≈ 0.94; T = 100 is nearly uniform.
    assert!((count(0.5) - 0.941).abs() < 0.02);
    assert!((count(100.0) - 0.5).abs() < 0.04);
}

#[test]
fn non_finite_logits_do_not_panic() {
    let ninf = f32::NEG_INFINITY;
    let cases: Vec<Vec<f32>> = vec![
        vec![ninf, 1.0, ninf],
        vec![ninf, ninf, ninf],
        vec![f32::NAN, 0.5, f32::NAN],
        vec![f32::NAN; 4],
        vec![f32::INFINITY, 1.0, f32::INFINITY],
        vec![f32::MAX, -f32::MAX, 0.0],
        vec![],
    ];
    let configs = [
        SamplerConfig::greedy(),
        SamplerConfig::default(),
        plain(1.0),
        SamplerConfig {
            repeat_penalty: 1.5,
            frequency_penalty: 1e30,
            presence_penalty: -1e30,
            ..SamplerConfig::default()
        },
        SamplerConfig {
            temperature: 1e-30,
            top_p: f32::NAN,
            min_p: f32::NAN,
            ..plain(1.0)
        },
    ];
    for cfg in configs {
        let mut s = seeded(cfg, 1);
        for logits in &cases {
            for _ in 0..20 {
                let t = s.sample(logits, &[0, 1, 2]);
                assert!(logits.is_empty() || (t as usize) < logits.len());
            }
        }
    }
    // The one finite token always wins against -inf.
    let mut s = seeded(plain(1.0), 2);
    for _ in 0..100 {
        assert_eq!(s.sample(&[ninf, 1.0, ninf], &[]), 1);
    }
    // NaN never gets picked when something real exists.
    for _ in 0..100 {
        assert_eq!(s.sample(&[f32::NAN, 0.5, f32::NAN], &[]), 1);
    }
}

#[test]
fn no_reallocation_after_first_call() {
    let logits: Vec<f32> = (0..4096).map(|i| (i % 97) as f32 * 0.1).collect();
    let mut s = seeded(
        SamplerConfig {
            repeat_penalty: 1.1,
            top_k: 0,
            ..SamplerConfig::default()
        },
        4,
    );
    let hist: Vec<u32> = (0..200).collect();
    s.sample(&logits, &hist);
    let ptrs = (
        s.cands.as_ptr(),
        s.probs.as_ptr(),
        s.counts.as_ptr(),
        s.seen.as_ptr(),
    );
    for _ in 0..50 {
        s.sample(&logits, &hist);
    }
    let after = (
        s.cands.as_ptr(),
        s.probs.as_ptr(),
        s.counts.as_ptr(),
        s.seen.as_ptr(),
    );
    assert_eq!(ptrs, after);
}

#[test]
fn validate_names_the_field() {
    let e = SamplerConfig {
        top_p: 0.0,
        ..SamplerConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("top_p"), "{e}");
    let e = SamplerConfig {
        temperature: f32::NAN,
        ..SamplerConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("temperature"), "{e}");
    let e = SamplerConfig {
        repeat_penalty: 0.0,
        ..SamplerConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("repeat_penalty"), "{e}");
    let e = SamplerConfig {
        min_p: 1.5,
        ..SamplerConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("min_p"), "{e}");
}

#[test]
fn log_softmax_is_normalised_and_stable() {
    let logits = [1000.0f32, 1001.0, 999.0, f32::NEG_INFINITY];
    let mut out = [0.0f32; 4];
    log_softmax(&logits, &mut out);
    let sum: f64 = out.iter().map(|&l| (l as f64).exp()).sum();
    assert!((sum - 1.0).abs() < 1e-6, "{out:?}");
    assert!(out[1] > out[0] && out[0] > out[2]);
    assert_eq!(out[3], f32::NEG_INFINITY);
    // Differences are preserved.
    assert!((out[1] - out[0] - 1.0).abs() < 1e-5);
    // All -inf: uniform.
    let mut out = [0.0f32; 2];
    log_softmax(&[f32::NEG_INFINITY; 2], &mut out);
    assert!((out[0] - 0.5f32.ln()).abs() < 1e-6);
    // NaN counts as -inf, nothing becomes NaN.
    let mut out = [0.0f32; 3];
    log_softmax(&[f32::NAN, 0.0, f32::INFINITY], &mut out);
    assert!(out.iter().all(|x| !x.is_nan()), "{out:?}");
    assert_eq!(out[2], 0.0);
}

#[test]
fn top_n_orders_and_breaks_ties_by_id() {
    let lp = [-1.0f32, -0.5, -2.0, -0.5, f32::NAN, -0.1];
    assert_eq!(top_n(&lp, 3), vec![(5, -0.1), (1, -0.5), (3, -0.5)]);
    assert_eq!(top_n(&lp, 0), vec![]);
    let all = top_n(&lp, 100);
    assert_eq!(all.len(), 6);
    assert_eq!(all.last().unwrap().0, 4);
    assert_eq!(top_n(&[], 5), vec![]);
    // Matches a full sort on a bigger input.
    let big: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32).collect();
    let mut idx: Vec<u32> = (0..1000).collect();
    idx.sort_by(|&a, &b| big[b as usize].total_cmp(&big[a as usize]).then(a.cmp(&b)));
    let got: Vec<u32> = top_n(&big, 20).into_iter().map(|x| x.0).collect();
    assert_eq!(got, idx[..20]);
}

/// The filter chain done the plain way, step by step as llama.cpp orders it: sort everything,
/// top-k, softmax, top-p, min-p, then the temperature softmax. Returns (id, probability).
fn reference(logits: &[f32], cfg: &SamplerConfig) -> Vec<(u32, f64)> {
    let mut c: Vec<Cand> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| Cand {
            id: i as u32,
            logit: clean(l),
        })
        .collect();
    c.sort_by(better);
    if cfg.top_k > 0 {
        c.truncate(cfg.top_k);
    }
    let softmax = |c: &[Cand], t: f64| -> Vec<f64> {
        let max = c[0].logit as f64;
        let e: Vec<f64> = c
            .iter()
            .map(|x| ((x.logit as f64 - max) / t).exp())
            .collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    };
    let p = softmax(&c, 1.0);
    if (cfg.top_p as f64) < 1.0 {
        let mut cum = 0.0;
        let mut keep = c.len();
        for (i, q) in p.iter().enumerate() {
            cum += q;
            if cum >= cfg.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        c.truncate(keep);
    }
    if cfg.min_p > 0.0 {
        let floor = p[0] * cfg.min_p as f64;
        let keep = p[..c.len()].iter().take_while(|&&q| q >= floor).count();
        c.truncate(keep.max(1));
    }
    let p = softmax(&c, cfg.temperature as f64);
    c.iter().map(|x| x.id).zip(p).collect()
}

#[test]
fn fast_filter_matches_the_plain_chain() {
    let mut rng = Rng::new(99);
    let mut checked = 0;
    for case in 0..400 {
        let n = [1usize, 2, 7, 50, 1000][case % 5];
        let logits: Vec<f32> = (0..n)
            .map(|_| {
                let r = rng.next_f64();
                if r < 0.05 {
                    f32::NEG_INFINITY
                } else {
                    // Coarse steps make ties common.
                    ((rng.next_f64() * 40.0).round() / 4.0 - 5.0) as f32
                }
            })
            .collect();
        if logits.iter().all(|&l| l == f32::NEG_INFINITY) {
            continue;
        }
        let cfg = SamplerConfig {
            temperature: [0.3f32, 1.0, 2.5][case % 3],
            top_k: [0usize, 1, 5, 40, n + 3][(case / 3) % 5],
            top_p: [1.0f32, 0.9, 0.5, 0.01][(case / 7) % 4],
            min_p: [0.0f32, 0.05, 0.3][(case / 11) % 3],
            seed: Some(1),
            ..SamplerConfig::default()
        };
        let want = reference(&logits, &cfg);
        let mut s = Sampler::new(cfg.clone());
        s.cands.clear();
        s.cands
            .extend(logits.iter().enumerate().map(|(i, &l)| Cand {
                id: i as u32,
                logit: clean(l),
            }));
        let len = s.filter();
        s.softmax_prefix(len, cfg.temperature);
        let mut got: Vec<(u32, f64)> = s.cands[..len]
            .iter()
            .map(|c| c.id)
            .zip(s.probs.iter().copied())
            .collect();
        got.sort_by(|a, b| {
            let la = clean(logits[a.0 as usize]);
            let lb = clean(logits[b.0 as usize]);
            lb.total_cmp(&la).then(a.0.cmp(&b.0))
        });
        let ids = |v: &[(u32, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&want), "case {case}: {cfg:?}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g.1 - w.1).abs() < 1e-9, "case {case}: {g:?} vs {w:?}");
        }
        checked += 1;
    }
    assert!(checked > 350);
}
