//! Top-N log-probabilities of a logits row, without allocating per call.

/// Writes the `n` most likely tokens of `logits` with their log-probabilities (log-softmax over
/// the whole row) into `out`, most likely first; ties go to the lower id.
pub fn top_logprobs(logits: &[f32], n: usize, out: &mut Vec<(u32, f32)>) {
    out.clear();
    let n = n.min(logits.len());
    if n == 0 {
        return;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    // Insertion into a short sorted list; most values fail the first comparison.
    for (i, &l) in logits.iter().enumerate() {
        if out.len() == n && l <= out[n - 1].1 {
            continue;
        }
        let pos = out.partition_point(|&(_, v)| v >= l);
        if out.len() == n {
            out.pop();
        }
        out.insert(pos, (i as u32, l));
    }
    for e in out.iter_mut() {
        e.1 = (e.1 as f64 - lse) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_log_softmax() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5];
        let mut out = Vec::new();
        top_logprobs(&logits, 3, &mut out);
        let lse = logits.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln();
        let want = [(1u32, 3.0), (3, 3.0), (0, 1.0)];
        assert_eq!(out.len(), 3);
        for (g, w) in out.iter().zip(want) {
            assert_eq!(g.0, w.0);
            assert!((g.1 as f64 - (w.1 - lse)).abs() < 1e-6);
        }
        top_logprobs(&logits, 10, &mut out);
        assert_eq!(out.len(), 5);
        let total: f64 = out.iter().map(|e| (e.1 as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        top_logprobs(&logits, 0, &mut out);
        assert!(out.is_empty());
    }
}
