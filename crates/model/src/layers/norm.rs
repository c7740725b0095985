//! RMSNorm and LayerNorm over each row of a `[n, dim]` buffer.

/// RMSNorm of one row: `out = x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for ((o, v), ww) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * ww;
    }
}

/// RMSNorm of every `w.len()`-wide row of `x` into `out` (same length as `x`).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        rms_norm_row(xr, w, eps, or);
    }
}

/// RMSNorm in place of every `w.len()`-wide row of `x` (e.g. per-head q/k norms).
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let d = w.len();
    for xr in x.chunks_exact_mut(d) {
        let ss: f32 = xr.iter().map(|v| v * v).sum();
        let scale = 1.0 / (ss / d as f32 + eps).sqrt();
        for (v, ww) in xr.iter_mut().zip(w) {
            *v = *v * scale * ww;
        }
    }
}

/// LayerNorm of one row: `out = (x - mean) / sqrt(var + eps) · w (+ b)`.
pub fn layer_norm_row(x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let scale = 1.0 / (var + eps).sqrt();
    for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
        *o = (v - mean) * scale * w[i] + b.map_or(0.0, |b| b[i]);
    }
}

/// LayerNorm of every `w.len()`-wide row of `x` into `out`.
pub fn layer_norm(x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        layer_norm_row(xr, w, b, eps, or);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_rms_times_weight() {
        let x = [1.0f32, -2.0, 3.0, -4.0];
        let w = [1.0f32, 2.0, 1.0, 0.5];
        let mut out = [0f32; 4];
        rms_norm(&x, &w, 0.0, &mut out);
        let rms = (30.0f32 / 4.0).sqrt();
        for i in 0..4 {
            assert!((out[i] - x[i] / rms * w[i]).abs() < 1e-6);
        }
        let mut y = x;
        rms_norm_inplace(&mut y, &w, 0.0);
        assert_eq!(y, out);
    }

    #[test]
    fn rms_norm_eps_matters() {
        let x = [1e-3f32; 4];
        let w = [1.0f32; 4];
        let mut a = [0f32; 4];
        let mut b = [0f32; 4];
        rms_norm(&x, &w, 0.0, &mut a);
        rms_norm(&x, &w, 1e-5, &mut b);
        assert!((a[0] - 1.0).abs() < 1e-5);
        assert!(b[0] < 0.5);
    }

    #[test]
    fn layer_norm_zero_mean_unit_var() {
        let x = [1.0f32, 2.0, 3.0, 4.0, 10.0, -3.0];
        let w = [1.0f32; 6];
        let b = [0.5f32; 6];
        let mut out = [0f32; 6];
        layer_norm(&x, &w, Some(&b), 0.0, &mut out);
        let mean: f32 = out.iter().map(|v| v - 0.5).sum::<f32>() / 6.0;
        let var: f32 = out.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f32>() / 6.0;
        assert!(mean.abs() < 1e-6);
        assert!((var - 1.0).abs() < 1e-5);
    }
}
