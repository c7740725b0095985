//! # sampling: from logits to the next token
//!
//! Map of the crate:
//! - [`SamplerConfig`]: the knobs (temperature, top-k, top-p, min-p, penalties, seed), with
//!   llama.cpp-like defaults and [`SamplerConfig::greedy`]; [`SamplerConfig::validate`] rejects
//!   nonsense values from a request with a [`SamplingError`] naming the field.
//! - [`Sampler`]: applies, in llama.cpp's default order, penalties (repetition, frequency,
//!   presence) over the last `repeat_last_n` tokens of history, then top-k, top-p, min-p,
//!   temperature, and finally draws from the result with a seeded PRNG ([`Rng`]).
//!   Its buffers live inside it: after the first call, `sample` allocates nothing.
//! - [`log_softmax`] and [`top_n`]: log-probabilities for `--logprobs`.
//!
//! Non-finite logits never cause a panic: NaN counts as -inf, +inf as the largest finite f32.

#![forbid(unsafe_code)]

use std::hash::{BuildHasher, Hasher};

pub use error::SamplingError;

mod error;

/// Sampling settings. `Default` follows llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `<= 0` means greedy (argmax, ties to the lowest id).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability sums to `top_p` (1.0 = off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0 = off).
    pub min_p: f32,
    /// Repetition penalty on tokens seen in the last `repeat_last_n` (1.0 = off): positive
    /// logits are divided by it, negative ones multiplied.
    pub repeat_penalty: f32,
    /// How many of the most recent history tokens the penalties look at (0 = penalties off).
    pub repeat_last_n: usize,
    /// OpenAI-style: subtract `frequency_penalty * count` from a seen token's logit.
    pub frequency_penalty: f32,
    /// OpenAI-style: subtract `presence_penalty` from the logit of any seen token.
    pub presence_penalty: f32,
    /// `Some(s)`: reproducible draws; `None`: seeded from OS entropy and the clock.
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplerConfig {
    /// Always the most likely token (temperature 0, every filter and penalty off).
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
        }
    }

    /// Checks every value is usable: finite, and top_p in (0, 1], min_p in [0, 1],
    /// repeat_penalty > 0. (The sampler itself never panics on bad values; this is for
    /// front ends that want to reject a request clearly.)
    pub fn validate(&self) -> Result<(), SamplingError> {
        let bad = |field, value: f32, why| {
            Err(SamplingError::Invalid {
                field,
                value: value.to_string(),
                why,
            })
        };
        if !self.temperature.is_finite() {
            return bad("temperature", self.temperature, "must be a finite number");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "must be in [0, 1]");
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad(
                "repeat_penalty",
                self.repeat_penalty,
                "must be a finite number > 0",
            );
        }
        if !self.frequency_penalty.is_finite() {
            return bad(
                "frequency_penalty",
                self.frequency_penalty,
                "must be a finite number",
            );
        }
        if !self.presence_penalty.is_finite() {
            return bad(
                "presence_penalty",
                self.presence_penalty,
                "must be a finite number",
            );
        }
        Ok(())
    }

    fn penalties_on(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.frequency_penalty != 0.0
                || self.presence_penalty != 0.0)
    }
}

/// A small, fast, seedable PRNG (xoshiro256**, seeded through splitmix64). Written here so
/// that a given seed gives the same draws on every platform and every version of lume.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// A seed from OS entropy (std's hash-map keys) mixed with the clock.
    pub fn entropy_seed() -> u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        h.write_u64(nanos);
        h.finish()
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// One surviving token during sampling.
#[derive(Clone, Copy, Debug)]
struct Cand {
    id: u32,
    logit: f32,
}

/// NaN → -inf, +inf → f32::MAX, so that sorting and softmax stay well defined.
#[inline]
fn clean(x: f32) -> f32 {
    if x.is_nan() {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        f32::MAX
    } else {
        x
    }
}

/// Higher logit first; equal logits: lower id first.
#[inline]
fn better(a: &Cand, b: &Cand) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Picks the next token from logits. Holds its buffers, so reuse one per generation.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// [n_vocab] candidates; after filtering only a prefix survives.
    cands: Vec<Cand>,
    /// [n_vocab] scratch: probabilities of the surviving prefix (f64 for the cumulative sums).
    probs: Vec<f64>,
    /// [n_vocab] occurrences of each token in the penalty window (zeroed after each use).
    counts: Vec<u32>,
    /// Distinct tokens with non-zero `counts`.
    seen: Vec<u32>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let seed = cfg.seed.unwrap_or_else(Rng::entropy_seed);
        Sampler {
            cfg,
            rng: Rng::new(seed),
            cands: Vec::new(),
            probs: Vec::new(),
            counts: Vec::new(),
            seen: Vec::new(),
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Restarts the random stream from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// The next token given this step's `logits` ([n_vocab]) and the tokens so far (`history`,
    /// prompt included; only its last `repeat_last_n` entries matter). Returns 0 for empty
    /// logits. History ids outside the vocabulary are ignored.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let n = logits.len();
        if n == 0 {
            return 0;
        }
        self.cands.clear();
        self.cands
            .extend(logits.iter().enumerate().map(|(i, &l)| Cand {
                id: i as u32,
                logit: clean(l),
            }));

        if self.cfg.penalties_on() {
            self.apply_penalties(history);
        }

        let t = self.cfg.temperature;
        // `t > 0.0` is false for NaN too, which is greedy as well.
        let greedy = t.is_nan() || t <= 0.0;
        if greedy {
            // Greedy: a linear scan, ties to the lowest id.
            let mut best = self.cands[0];
            for c in &self.cands[1..] {
                if c.logit > best.logit {
                    best = *c;
                }
            }
            return best.id;
        }

        let len = self.filter();
        if len == 1 {
            return self.cands[0].id;
        }

        // Temperature, then draw.
        let total = self.softmax_prefix(len, t);
        let mut u = self.rng.next_f64() * total;
        for i in 0..len {
            u -= self.probs[i];
            if u < 0.0 {
                return self.cands[i].id;
            }
        }
        // Rounding left a sliver: the last candidate with non-zero probability.
        let last = (0..len).rev().find(|&i| self.probs[i] > 0.0).unwrap_or(0);
        self.cands[last].id
    }

    /// top-k, top-p and min-p on `cands` (logits after penalties, any order). Leaves the
    /// survivors sorted best first in `cands[..len]` and returns `len` (at least 1).
    ///
    /// top-p and min-p each keep a prefix of the same sorted order, judged on the same
    /// temperature-1 probabilities over the top-k set (min-p compares with the best token, so
    /// the renormalisation after top-p does not change it): the result is the shorter of the
    /// two prefixes, whichever runs first. That lets min-p run first as a cheap linear cut in
    /// logit space, so only its survivors are sorted instead of the whole vocabulary.
    fn filter(&mut self) -> usize {
        let n = self.cands.len();
        let mut len = n;
        let k = self.cfg.top_k;
        if k > 0 && k < n {
            self.cands.select_nth_unstable_by(k - 1, better);
            len = k;
        }
        let max = self.cands[..len]
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
        if max == f32::NEG_INFINITY {
            // Every token is impossible: fall back to the lowest id.
            let (i, _) = self.cands[..len]
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.id)
                .expect("len >= 1");
            self.cands.swap(0, i);
            return 1;
        }
        let maxd = max as f64;
        // Normaliser of the temperature-1 softmax over the top-k set.
        let sum: f64 = self.cands[..len]
            .iter()
            .map(|c| (c.logit as f64 - maxd).exp())
            .sum();

        // min-p, coarse: p >= min_p * p_max  <=>  logit >= max + ln(min_p). A little slack
        // here; the exact test on probabilities follows the sort.
        let min_p = self.cfg.min_p as f64;
        if min_p > 0.0 && min_p <= 1.0 {
            let cut = maxd + min_p.ln() - 1e-3;
            let mut kept = 0;
            for i in 0..len {
                if self.cands[i].logit as f64 >= cut {
                    self.cands.swap(kept, i);
                    kept += 1;
                }
            }
            len = kept;
        }
        let top_p = self.cfg.top_p as f64;
        if top_p >= 1.0 && (min_p.is_nan() || min_p <= 0.0) {
            // No cut needs the order: draw straight from the (top-k) set.
            return len;
        }
        self.cands[..len].sort_unstable_by(better);
        self.probs.clear();
        self.probs.extend(
            self.cands[..len]
                .iter()
                .map(|c| (c.logit as f64 - maxd).exp() / sum),
        );

        // top-p: the shortest prefix whose mass reaches top_p (if min-p already cut below
        // that point, everything left stays).
        if top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in self.probs[..len].iter().enumerate() {
                cum += p;
                if cum >= top_p {
                    len = i + 1;
                    break;
                }
            }
        }

        // min-p, exact.
        if min_p > 0.0 {
            let floor = self.probs[0] * min_p;
            len = self.probs[..len]
                .iter()
                .take_while(|&&p| p >= floor)
                .count()
                .max(1);
        }
        len
    }

    /// Writes exp((logit - max) / temp) of the first `len` candidates into `probs`,
    /// normalised; returns their sum (1, up to rounding). Needs a finite maximum.
    fn softmax_prefix(&mut self, len: usize, temp: f32) -> f64 {
        let max = self.cands[..len]
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit)) as f64;
        let temp = temp as f64;
        self.probs.clear();
        let mut sum = 0.0;
        for c in &self.cands[..len] {
            let e = ((c.logit as f64 - max) / temp).exp();
            sum += e;
            self.probs.push(e);
        }
        // sum >= 1: the best candidate contributes exp(0).
        for p in &mut self.probs {
            *p /= sum;
        }
        self.probs.iter().sum()
    }

    /// Repetition, frequency and presence penalties over the last `repeat_last_n` history
    /// tokens, applied to the candidate logits (which are still in id order).
    fn apply_penalties(&mut self, history: &[u32]) {
        let n = self.cands.len();
        if self.counts.len() < n {
            self.counts.resize(n, 0);
        }
        let window = &history[history.len().saturating_sub(self.cfg.repeat_last_n)..];
        self.seen.clear();
        for &tok in window {
            let Some(c) = self
                .counts
                .get_mut(tok as usize)
                .filter(|_| (tok as usize) < n)
            else {
                continue;
            };
            if *c == 0 {
                self.seen.push(tok);
            }
            *c += 1;
        }
        let (rp, fp, pp) = (
            self.cfg.repeat_penalty,
            self.cfg.frequency_penalty,
            self.cfg.presence_penalty,
        );
        for &tok in &self.seen {
            let count = std::mem::take(&mut self.counts[tok as usize]);
            let l = &mut self.cands[tok as usize].logit;
            if *l == f32::NEG_INFINITY {
                continue;
            }
            if rp != 1.0 && rp > 0.0 {
                *l = if *l > 0.0 { *l / rp } else { *l * rp };
            }
            *l -= count as f32 * fp + pp;
            *l = clean(*l);
        }
    }
}

/// `out[i] = log(softmax(logits)[i])`, computed stably. NaN logits count as -inf; if every
/// logit is -inf the result is uniform. Panics if the lengths differ.
pub fn log_softmax(logits: &[f32], out: &mut [f32]) {
    assert_eq!(
        logits.len(),
        out.len(),
        "log_softmax: logits and out differ in length"
    );
    if logits.is_empty() {
        return;
    }
    let max = logits
        .iter()
        .map(|&l| clean(l))
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        let u = -(logits.len() as f32).ln();
        out.fill(u);
        return;
    }
    let max = max as f64;
    let sum: f64 = logits.iter().map(|&l| (clean(l) as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = (clean(l) as f64 - lse) as f32;
    }
}

/// The `n` highest entries of `logprobs` as (token id, value), best first, ties to the lower
/// id. NaN entries rank below everything.
pub fn top_n(logprobs: &[f32], n: usize) -> Vec<(u32, f32)> {
    let n = n.min(logprobs.len());
    let mut best: Vec<Cand> = Vec::with_capacity(n + 1);
    if n == 0 {
        return Vec::new();
    }
    for (i, &l) in logprobs.iter().enumerate() {
        let c = Cand {
            id: i as u32,
            logit: clean(l),
        };
        if best.len() == n && better(&c, &best[n - 1]).is_ge() {
            continue;
        }
        let pos = best.partition_point(|b| better(b, &c).is_lt());
        best.insert(pos, c);
        best.truncate(n);
    }
    best.into_iter().map(|c| (c.id, c.logit)).collect()
}

#[cfg(test)]
mod tests;
