//! Feed-forward activations, applied in place on `[n, n_ff]` buffers.

use crate::ops;

/// SwiGLU: `gate[i] = silu(gate[i]) · up[i]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = ops::silu(*g) * u;
    }
}

/// GELU(tanh)-gated: `gate[i] = gelu_tanh(gate[i]) · up[i]` (gemma).
pub fn geglu_tanh(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = ops::gelu_tanh(*g) * u;
    }
}

/// Plain GELU(tanh) in place (gpt2, starcoder2).
pub fn gelu_tanh_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = ops::gelu_tanh(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_values() {
        let mut g = [0.0f32, 1.0, -2.0];
        swiglu(&mut g, &[3.0, 2.0, 1.0]);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - 2.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
        assert!((g[2] - (-2.0 / (1.0 + 2f32.exp()))).abs() < 1e-6);
    }

    #[test]
    fn gelu_values() {
        let mut x = [0.0f32, 1.0, -1.0, 3.0];
        gelu_tanh_inplace(&mut x);
        assert_eq!(x[0], 0.0);
        assert!((x[1] - 0.841_192).abs() < 1e-5);
        assert!((x[2] + 0.158_808).abs() < 1e-5);
        assert!((x[3] - 2.996_363).abs() < 1e-5);
    }
}
