//! Teacher-forced comparison with llama.cpp's greedy references (`testdata/greedy/`), as
//! "How to use" of `testdata/greedy/README.md` says: feed the prompt and the reference
//! continuation, and at every step compare the model's distribution with the reference's
//! top-10 log-probabilities. Shared by `real.rs`, `real_gemma3.rs` and `real_qwen2.rs`; each
//! applies its own bounds to the [`Outcome`].

use std::fmt;

use model::{Batch, KvCache, KvType, Model};

use super::argmax;

/// A step whose reference margin (top-1 over top-2, nats) exceeds this must keep its argmax.
pub const FLIP_MARGIN: f64 = 0.5;
/// Reference tokens compared: those with a probability above this.
const P_MIN: f64 = 0.01;
/// Differences above this (the README's worst-step figure) are printed as notes.
const NOTE_DP: f64 = 0.15;

/// One case of a reference file.
pub struct Case {
    pub name: String,
    pub prompt: Vec<u32>,
    pub gen: Vec<u32>,
    /// Per step, the reference top-1 over top-2 margin in nats.
    pub margins: Vec<f64>,
    /// Per step, the reference top-10 as (token id, log-probability).
    pub top: Vec<Vec<(usize, f64)>>,
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The cases of `testdata/greedy/<json>`.
pub fn cases(json: &str) -> Vec<Case> {
    let p = format!(
        "{}/../../testdata/greedy/{json}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let data: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    data["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            prompt: ids(&c["prompt_ids"]),
            gen: ids(&c["generated_ids"]),
            margins: c["margins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_f64().unwrap())
                .collect(),
            top: c["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    s["top"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|pair| {
                            (
                                pair[0].as_u64().unwrap() as usize,
                                pair[1].as_f64().unwrap(),
                            )
                        })
                        .collect()
                })
                .collect(),
        })
        .collect()
}

pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lz = z.ln() + max;
    row.iter().map(|&v| v as f64 - lz).collect()
}

/// The largest |p - q| over every token of every row of two `[n, vocab]` logits blocks.
pub fn max_dp(a: &[f32], b: &[f32], vocab: usize) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0f64;
    for (ra, rb) in a.chunks_exact(vocab).zip(b.chunks_exact(vocab)) {
        let (pa, pb) = (log_softmax(ra), log_softmax(rb));
        for (x, y) in pa.iter().zip(&pb) {
            worst = worst.max((x.exp() - y.exp()).abs());
        }
    }
    worst
}

/// Logits rows `[steps, vocab]`, row k predicting `gen[k]`: `prompt + gen[..steps]` as one
/// batch in slot 0, rows from the last prompt token on.
pub fn one_pass_rows(
    m: &Model,
    cache: &mut KvCache,
    prompt: &[u32],
    gen: &[u32],
    steps: usize,
) -> Vec<f32> {
    let mut logits = Vec::new();
    let mut batch = Batch::new();
    for (i, &t) in prompt.iter().chain(&gen[..steps]).enumerate() {
        // Only rows len(prompt)-1 .. are needed (the last token's row is not).
        let want = i + 1 >= prompt.len() && i + 1 < prompt.len() + steps;
        batch.push(t, i as u32, 0, want);
    }
    m.forward(&batch, cache, &mut logits).unwrap();
    logits
}

/// Logits rows `[steps, vocab]` as the references were made: the prompt as one batch in
/// `slot`, then `gen[..steps - 1]` one token at a time through the KV cache.
pub fn cached_rows(
    m: &Model,
    cache: &mut KvCache,
    slot: usize,
    prompt: &[u32],
    gen: &[u32],
    steps: usize,
) -> Vec<f32> {
    let batch = Batch::from_tokens(prompt, 0, slot, false);
    let mut logits = Vec::new();
    m.forward(&batch, cache, &mut logits).unwrap();
    decode(m, cache, slot, prompt.len(), gen, steps, logits)
}

/// Appends to `rows` (the prompt's last row) one row per token of `gen[..steps - 1]`, each
/// decoded alone in `slot` from position `start`.
fn decode(
    m: &Model,
    cache: &mut KvCache,
    slot: usize,
    start: usize,
    gen: &[u32],
    steps: usize,
    mut rows: Vec<f32>,
) -> Vec<f32> {
    let vocab = m.info().vocab;
    assert_eq!(rows.len(), vocab);
    let mut row = Vec::new();
    let mut batch = Batch::new();
    for (k, &t) in gen[..steps - 1].iter().enumerate() {
        batch.clear();
        batch.push(t, (start + k) as u32, slot, true);
        m.forward(&batch, cache, &mut row).unwrap();
        assert_eq!(row.len(), vocab);
        rows.extend_from_slice(&row);
    }
    rows
}

/// How the logits of a case are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Feed {
    /// [`one_pass_rows`]: the whole sequence as one batch.
    OnePass,
    /// [`cached_rows`] in slot 0: the prompt, then one token per step.
    Cached,
    /// As [`Feed::Cached`], in slot 1 of a two-slot cache while slot 0 holds the next case's
    /// prompt (in the same batch as this prompt), so the attention must keep the slots apart.
    CachedBeside,
}

/// One teacher-forced run over the cases of a reference file.
pub struct Run<'a> {
    /// Printed before every line, e.g. `smollm2-135m [one pass]`.
    pub label: &'a str,
    pub feed: Feed,
    pub kv: KvType,
    /// The first `cases` cases are run (`usize::MAX`: all).
    pub cases: usize,
    /// At most this many steps of each case are checked.
    pub steps: usize,
}

/// A step where the model's argmax is not the reference token although the reference margin
/// exceeds [`FLIP_MARGIN`].
pub struct Flip {
    pub case: String,
    pub step: usize,
    pub got: u32,
    pub want: u32,
    pub margin: f64,
    /// log p(got) - log p(want) in the model's distribution.
    pub ours: f64,
}

impl fmt::Display for Flip {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} step {}: argmax {} != reference {} (reference margin {:.3}, ours {:.3} the other way)",
            self.case, self.step, self.got, self.want, self.margin, self.ours
        )
    }
}

/// What one case measured: |dp| = |p - p_ref| over the reference top-10 tokens with
/// p_ref above 0.01.
pub struct CaseOutcome {
    pub name: String,
    pub mean: f64,
    pub worst: f64,
    /// Largest |log p − log p_ref| (nats) over the same tokens.
    pub max_dlp: f64,
}

/// What a [`Run`] measured.
pub struct Outcome {
    pub cases: Vec<CaseOutcome>,
    /// Mean |dp| over every compared token of every case.
    pub mean: f64,
    pub worst: f64,
    /// Largest |log p − log p_ref| (nats) over every compared token of every case.
    pub max_dlp: f64,
    pub flips: Vec<Flip>,
}

/// Runs `run` over `refs` and prints each case's measurements (and every |dp| above 0.15 and
/// every flip) and the totals.
pub fn teacher_forced(m: &Model, refs: &[Case], run: &Run) -> Outcome {
    let vocab = m.info().vocab;
    let label = run.label;
    let n_slots = if run.feed == Feed::CachedBeside { 2 } else { 1 };
    let mut cache = m.new_cache_typed(n_slots, 512, run.kv).unwrap();
    let mut cases = Vec::new();
    let mut flips = Vec::new();
    let (mut total, mut count, mut worst_all, mut dlp_all) = (0f64, 0usize, 0f64, 0f64);
    for (ci, case) in refs.iter().enumerate().take(run.cases) {
        let name = &case.name;
        let (prompt, gen) = (&case.prompt, &case.gen);
        let steps = gen.len().min(run.steps);
        cache.clear();
        let t0 = std::time::Instant::now();
        let logits = match run.feed {
            Feed::OnePass => one_pass_rows(m, &mut cache, prompt, gen, steps),
            Feed::Cached => cached_rows(m, &mut cache, 0, prompt, gen, steps),
            Feed::CachedBeside => {
                let other = &refs[(ci + 1) % refs.len()].prompt;
                let mut batch = Batch::new();
                batch.push_seq(other, 0, 0, false);
                batch.push_seq(prompt, 0, 1, false);
                // Logits for the last prompt token of slot 1 only.
                batch.logits.fill(false);
                *batch.logits.last_mut().unwrap() = true;
                let mut first = Vec::new();
                m.forward(&batch, &mut cache, &mut first).unwrap();
                let rows = decode(m, &mut cache, 1, prompt.len(), gen, steps, first);
                assert_eq!(cache.len(1), prompt.len() + steps - 1);
                assert_eq!(cache.len(0), other.len());
                rows
            }
        };
        let secs = t0.elapsed().as_secs_f64();
        let (mut sum, mut cnt, mut worst, mut n_flips, mut small_flips) = (0f64, 0, 0f64, 0, 0);
        let mut max_dlp = 0f64;
        for (k, top) in case.top[..steps].iter().enumerate() {
            let row = &logits[k * vocab..(k + 1) * vocab];
            let lp = log_softmax(row);
            let margin = case.margins[k];
            let got = argmax(row) as u32;
            if got != gen[k] {
                if margin > FLIP_MARGIN {
                    let flip = Flip {
                        case: name.clone(),
                        step: k,
                        got,
                        want: gen[k],
                        margin,
                        ours: lp[got as usize] - lp[gen[k] as usize],
                    };
                    println!("  flip: {label} {flip}");
                    flips.push(flip);
                    n_flips += 1;
                } else {
                    small_flips += 1;
                }
            }
            for &(id, lp_ref) in top {
                let p_ref = lp_ref.exp();
                if p_ref > P_MIN {
                    let dp = (lp[id].exp() - p_ref).abs();
                    max_dlp = max_dlp.max((lp[id] - lp_ref).abs());
                    sum += dp;
                    cnt += 1;
                    worst = worst.max(dp);
                    if dp > NOTE_DP {
                        println!(
                            "  note: {label} {name} step {k} token {id}: p {:.4} vs reference {p_ref:.4} (margin {margin:.3})",
                            lp[id].exp()
                        );
                    }
                }
            }
        }
        let mean = sum / cnt.max(1) as f64;
        println!(
            "{label} {name:>16}: {steps} steps in {secs:.2}s, flips at margin>{FLIP_MARGIN}: {n_flips} (below: {small_flips}), mean |dp| {mean:.4}, worst {worst:.4}, max |dlogp| {max_dlp:.3}"
        );
        total += sum;
        count += cnt;
        worst_all = worst_all.max(worst);
        dlp_all = dlp_all.max(max_dlp);
        cases.push(CaseOutcome {
            name: name.clone(),
            mean,
            worst,
            max_dlp,
        });
    }
    let mean = total / count.max(1) as f64;
    println!(
        "{label}: overall mean |dp| {mean:.4}, worst {worst_all:.4}, max |dlogp| {dlp_all:.3}, flips at margin>{FLIP_MARGIN}: {}",
        flips.len()
    );
    Outcome {
        cases,
        mean,
        worst: worst_all,
        max_dlp: dlp_all,
        flips,
    }
}
