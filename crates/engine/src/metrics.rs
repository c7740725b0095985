//! What the [`crate::Scheduler`] counts: token and request counters, and latency histograms
//! (time to first token, inter-token latency, end-to-end latency, queue time) with the bucket
//! bounds vLLM uses, so that dashboards and inference gateways read them as they read vLLM's.
//!
//! The loop updates one [`Metrics`] under a mutex once per step; [`MetricsSnapshot`] is a copy
//! for rendering (the server turns it into Prometheus text).

/// Bucket upper bounds (seconds) of the time-to-first-token histogram (vLLM's).
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// Bucket upper bounds (seconds) of the inter-token latency histogram (vLLM's).
pub const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// Bucket upper bounds (seconds) of the end-to-end and queue-time histograms (vLLM's).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// A histogram with fixed bucket bounds; `counts[i]` observations fell in
/// `(bounds[i-1], bounds[i]]`, the last entry counts those above every bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    /// `[bounds.len() + 1]`
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Cumulative counts per bound (Prometheus' `le` buckets), then `+Inf` (= `count`).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        self.counts
            .iter()
            .map(|c| {
                acc += c;
                acc
            })
            .collect()
    }
}

/// Requests that ended, by why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// An end-of-generation token or a stop string.
    pub stop: u64,
    /// `max_tokens` or a full context.
    pub length: u64,
    /// Cancelled (the client went away) or failed.
    pub abort: u64,
}

/// Everything the scheduler counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    /// Prompt tokens evaluated (cached ones excluded).
    pub prompt_tokens_evaluated: u64,
    /// Prompt tokens of every started request (cached ones included).
    pub prompt_tokens: u64,
    /// Prompt tokens reused from a slot's cache.
    pub prompt_tokens_cached: u64,
    /// Generated tokens.
    pub generation_tokens: u64,
    /// Seconds spent in steps that evaluated prompt tokens / generated tokens (a mixed step
    /// counts in both).
    pub prompt_seconds: f64,
    pub generation_seconds: f64,
    /// Forward passes.
    pub n_decode: u64,
    /// Sum over forward passes of the slots that took part.
    pub n_busy_slots: u64,
    /// Requests holding a slot / waiting for one.
    pub running: usize,
    pub waiting: usize,
    /// Requests refused because the queue was full.
    pub rejected: u64,
    pub finished: Finished,
    /// Positions held by running requests / every position of every slot.
    pub kv_used: usize,
    pub kv_total: usize,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub e2e: Histogram,
    pub queue_time: Histogram,
    pub n_slots: usize,
    pub n_ctx: usize,
}

/// A copy of [`Metrics`] taken at one moment.
pub type MetricsSnapshot = Metrics;

impl Metrics {
    pub fn new(n_slots: usize, n_ctx: usize) -> Metrics {
        Metrics {
            prompt_tokens_evaluated: 0,
            prompt_tokens: 0,
            prompt_tokens_cached: 0,
            generation_tokens: 0,
            prompt_seconds: 0.0,
            generation_seconds: 0.0,
            n_decode: 0,
            n_busy_slots: 0,
            running: 0,
            waiting: 0,
            rejected: 0,
            finished: Finished::default(),
            kv_used: 0,
            kv_total: n_slots * n_ctx,
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(LATENCY_BUCKETS),
            queue_time: Histogram::new(LATENCY_BUCKETS),
            n_slots,
            n_ctx,
        }
    }

    /// Fraction of the KV cache held by running requests (0..=1).
    pub fn kv_usage(&self) -> f64 {
        if self.kv_total == 0 {
            0.0
        } else {
            self.kv_used as f64 / self.kv_total as f64
        }
    }

    /// Prompt tokens evaluated per second of prompt work.
    pub fn prompt_tps(&self) -> f64 {
        rate(self.prompt_tokens_evaluated, self.prompt_seconds)
    }

    /// Generated tokens per second of generation work.
    pub fn generation_tps(&self) -> f64 {
        rate(self.generation_tokens, self.generation_seconds)
    }

    /// Mean slots per forward pass.
    pub fn busy_slots_per_decode(&self) -> f64 {
        if self.n_decode == 0 {
            0.0
        } else {
            self.n_busy_slots as f64 / self.n_decode as f64
        }
    }
}

fn rate(n: u64, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 2.0, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![2, 2, 1]);
        assert_eq!(h.cumulative(), vec![2, 4, 5]);
        assert_eq!(h.count, 5);
        assert!((h.sum - 8.0).abs() < 1e-12);
    }
}
