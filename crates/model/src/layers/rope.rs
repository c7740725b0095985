//! Rotary position embeddings (RoPE), in the two layouts GGUF models use.
//!
//! For pair `i` (`0 <= i < n_rot/2`) at position `p` the angle is `p · base^(-2i/n_rot)`; the pair
//! `(a, b)` becomes `(a·cos − b·sin, a·sin + b·cos)`. Dims `n_rot..head_dim` are left alone.

/// Which dims of a head form a rotation pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent dims `(2i, 2i+1)`: llama's GGUF layout (the converter permuted the q/k rows).
    Norm,
    /// Dim `i` with dim `i + n_rot/2` (GPT-NeoX / HF `rotate_half`): qwen2, qwen3, gemma, phi3…
    Neox,
}

/// RoPE settings of one model (or one layer kind when layers differ in base).
#[derive(Clone, Debug)]
pub struct Rope {
    pub style: RopeStyle,
    /// Dims rotated per head (even, at most the head size).
    pub n_rot: usize,
    /// `[n_rot/2]`: `base^(-2i/n_rot)`, kept in f64 so large positions keep their precision.
    inv_freq: Vec<f64>,
}

impl Rope {
    pub fn new(style: RopeStyle, n_rot: usize, base: f32) -> Rope {
        let inv_freq = (0..n_rot / 2)
            .map(|i| (base as f64).powf(-2.0 * i as f64 / n_rot as f64))
            .collect();
        Rope {
            style,
            n_rot,
            inv_freq,
        }
    }

    /// Linear RoPE scaling (position interpolation): every angle divided by `factor`, as if
    /// the positions were `p / factor` (gemma3's global layers on the larger models).
    pub fn with_linear_scaling(mut self, factor: f32) -> Rope {
        for f in &mut self.inv_freq {
            *f /= factor as f64;
        }
        self
    }

    /// Pairs per head: `n_rot / 2`.
    pub fn half(&self) -> usize {
        self.n_rot / 2
    }

    /// Fills `cos`/`sin` (`[positions.len(), n_rot/2]` each) for the given positions: computed
    /// once per forward pass and shared by every layer and head.
    pub fn tables(&self, positions: &[u32], cos: &mut [f32], sin: &mut [f32]) {
        let h = self.half();
        for (t, &p) in positions.iter().enumerate() {
            for i in 0..h {
                let (s, c) = (p as f64 * self.inv_freq[i]).sin_cos();
                cos[t * h + i] = c as f32;
                sin[t * h + i] = s as f32;
            }
        }
    }

    /// Rotates every head of every row of `x` (`[n, n_heads * head_dim]`) using the tables of
    /// [`Rope::tables`] for the same `n` rows.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, head_dim: usize, cos: &[f32], sin: &[f32]) {
        let h = self.half();
        let width = n_heads * head_dim;
        for (t, row) in x.chunks_exact_mut(width).enumerate() {
            let (c, s) = (&cos[t * h..(t + 1) * h], &sin[t * h..(t + 1) * h]);
            for head in row.chunks_exact_mut(head_dim) {
                rotate_head(self.style, head, h, c, s);
            }
        }
    }
}

/// Rotates one head in place: `h` pairs with angles given by `c`/`s` (`[h]`).
#[inline]
pub fn rotate_head(style: RopeStyle, head: &mut [f32], h: usize, c: &[f32], s: &[f32]) {
    match style {
        RopeStyle::Norm => {
            for i in 0..h {
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * c[i] - b * s[i];
                head[2 * i + 1] = a * s[i] + b * c[i];
            }
        }
        RopeStyle::Neox => {
            for i in 0..h {
                let (a, b) = (head[i], head[i + h]);
                head[i] = a * c[i] - b * s[i];
                head[i + h] = a * s[i] + b * c[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_of(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + 1.0) * seed).sin()).collect()
    }

    fn rope_at(r: &Rope, x: &[f32], n_heads: usize, hd: usize, pos: u32) -> Vec<f32> {
        let h = r.half();
        let (mut c, mut s) = (vec![0f32; h], vec![0f32; h]);
        r.tables(&[pos], &mut c, &mut s);
        let mut y = x.to_vec();
        r.apply(&mut y, n_heads, hd, &c, &s);
        y
    }

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        for style in [RopeStyle::Norm, RopeStyle::Neox] {
            let r = Rope::new(style, 16, 10000.0);
            let x = vec_of(32, 0.7);
            assert_eq!(rope_at(&r, &x, 2, 16, 0), x);
            let y = rope_at(&r, &x, 2, 16, 37);
            let nx: f32 = x.iter().map(|v| v * v).sum();
            let ny: f32 = y.iter().map(|v| v * v).sum();
            assert!((nx - ny).abs() < 1e-4);
            assert!(y != x);
        }
    }

    #[test]
    fn dot_depends_only_on_relative_position() {
        for style in [RopeStyle::Norm, RopeStyle::Neox] {
            let r = Rope::new(style, 16, 10000.0);
            let q = vec_of(16, 0.3);
            let k = vec_of(16, 1.1);
            let d = |pq, pk| {
                let a = rope_at(&r, &q, 1, 16, pq);
                let b = rope_at(&r, &k, 1, 16, pk);
                a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
            };
            assert!((d(5, 2) - d(103, 100)).abs() < 1e-4);
            assert!((d(5, 2) - d(5, 3)).abs() > 1e-3);
        }
    }

    #[test]
    fn known_values_norm_layout() {
        // Pair 0 turns by p radians; pair 1 (of n_rot 4, base 100) by p/10.
        let r = Rope::new(RopeStyle::Norm, 4, 100.0);
        let y = rope_at(&r, &[1.0, 0.0, 1.0, 0.0, 5.0], 1, 5, 2);
        assert!((y[0] - 2f32.cos()).abs() < 1e-6 && (y[1] - 2f32.sin()).abs() < 1e-6);
        assert!((y[2] - 0.2f32.cos()).abs() < 1e-6 && (y[3] - 0.2f32.sin()).abs() < 1e-6);
        assert_eq!(y[4], 5.0, "dims past n_rot are not rotated");
    }

    #[test]
    fn neox_is_norm_on_permuted_dims() {
        // NEOX pairs (i, i+h); moving dim i to 2i and i+h to 2i+1 must give the NORM result.
        let (hd, h) = (16, 8);
        let x = vec_of(hd, 0.9);
        let perm = |v: &[f32]| {
            let mut p = vec![0f32; hd];
            for i in 0..h {
                p[2 * i] = v[i];
                p[2 * i + 1] = v[i + h];
            }
            p
        };
        let neox = rope_at(&Rope::new(RopeStyle::Neox, hd, 10000.0), &x, 1, hd, 11);
        let norm = rope_at(
            &Rope::new(RopeStyle::Norm, hd, 10000.0),
            &perm(&x),
            1,
            hd,
            11,
        );
        for (a, b) in perm(&neox).iter().zip(&norm) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn linear_scaling_divides_positions() {
        let r = Rope::new(RopeStyle::Neox, 16, 10000.0);
        let scaled = Rope::new(RopeStyle::Neox, 16, 10000.0).with_linear_scaling(4.0);
        let x = vec_of(32, 0.7);
        let (a, b) = (rope_at(&scaled, &x, 2, 16, 12), rope_at(&r, &x, 2, 16, 3));
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-6);
        }
    }

    #[test]
    fn partial_rotation_neox() {
        // n_rot 4 of head 8: dims 0..4 rotate with pairs (0,2), (1,3); dims 4..8 untouched.
        let r = Rope::new(RopeStyle::Neox, 4, 10000.0);
        let x = vec_of(8, 0.5);
        let y = rope_at(&r, &x, 1, 8, 3);
        assert_eq!(&y[4..], &x[4..]);
        let (c, s) = (3f32.cos(), 3f32.sin());
        assert!((y[0] - (x[0] * c - x[2] * s)).abs() < 1e-6);
        assert!((y[2] - (x[0] * s + x[2] * c)).abs() < 1e-6);
    }
}
