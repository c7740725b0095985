//! Small vector helpers (plain scalar loops; the hot ones move to `kernels` as they land).

/// Runs `f(0..n_tasks)` on the `kernels` thread pool (order unspecified).
pub fn par_for(n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    kernels::parallel_for(n_tasks, f);
}

/// A raw `[f32]` pointer that tasks of [`par_for`] use to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub struct SharedMut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: a SharedMut is only used to hand out non-overlapping sub-slices (see `slice`), one
// per task, while the buffer it came from is mutably borrowed by the caller for the whole run.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub fn new(buf: &mut [f32]) -> SharedMut {
        SharedMut {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// `buf[start..start + len]`.
    ///
    /// # Safety
    /// No two live slices obtained from the same `SharedMut` may overlap, and the buffer given
    /// to [`SharedMut::new`] must outlive them and not be used otherwise meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len, "SharedMut slice out of bounds");
        // SAFETY: in bounds (checked above); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// `Σ a[i]·b[i]`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent partial sums let the compiler vectorize without reassociation rules.
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y[i] += a·x[i]` (the `kernels` SIMD version).
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    kernels::axpy_f32(y, a, x);
}

/// `y[i] += x[i]`.
#[inline]
pub fn add_inplace(y: &mut [f32], x: &[f32]) {
    for (yy, xx) in y.iter_mut().zip(x) {
        *yy += xx;
    }
}

/// In-place softmax of `x`.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `e^x` within a few ulp (relative error below 1e-6; see the test), branch-free so that loops
/// over slices vectorize, which libm's `expf` and `tanhf` calls do not. Inputs are clamped to
/// [-87.3, 88.3]: below, the result is ~1e-38 instead of a denormal or 0; above, ~2e38
/// instead of infinity. NaN stays NaN.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    // n = round(x / ln 2); r = x − n·ln 2, with ln 2 split in two so the product is exact.
    let n = t - MAGIC;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    // e^r on |r| ≤ ln2/2: 1 + r + r²·P(r), the classic minimax coefficients for expf.
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from the integer in t's mantissa bits.
    let e = ((t.to_bits() as i32 - 0x4B40_0000) + 127) << 23;
    y * f32::from_bits(e as u32)
}

/// `x · sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp_fast(-x))
}

/// GELU, tanh approximation (`gelu_pytorch_tanh`, `gelu_new`):
/// `0.5·x·(1 + tanh(u)) = x / (1 + e^(−2u))` with `u = sqrt(2/π)·(x + 0.044715·x³)`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    x / (1.0 + exp_fast(-2.0 * u))
}

/// The error function in f64, to about 1e-15: its Maclaurin series below |x| = 2, the
/// continued fraction of erfc from 2 to 6 (evaluated from a fixed tail), ±1 beyond.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.0 {
        // erf(a) = 2/√π · Σ (−1)^n a^(2n+1) / (n! (2n+1)); `p` = (−1)^n a^(2n+1) / n!.
        let a2 = a * a;
        let mut p = a;
        let mut sum = a;
        let mut n = 0.0f64;
        loop {
            n += 1.0;
            p *= -a2 / n;
            let t = p / (2.0 * n + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if a < 6.0 {
        // erfc(a) = e^(−a²)/√π / (a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + …))))).
        let mut f = a;
        for k in (1..=60).rev() {
            f = a + (k as f64 * 0.5) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    } else {
        1.0
    };
    r.copysign(x)
}

/// GELU with the error function (`gelu` in Hugging Face BERT configs):
/// `x · (1 + erf(x / √2)) / 2` in f32, [`kernels::gelu::gelu_erf`] (the scalar twin of the SIMD
/// slices the feed-forward layers use; within 3e-7 of the f64 value, tested against [`erf`]).
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    kernels::gelu::gelu_erf(x)
}

/// Quick GELU: `x · sigmoid(1.702·x)` (OpenAI CLIP's activation).
#[inline]
pub fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp_fast(-1.702 * x))
}

/// Grows `v` to at least `len` values (never shrinks, so steady state allocates nothing).
#[inline]
pub fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_values() {
        // Reference values of erf (15+ digits).
        let cases = [
            (0.0, 0.0),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (2.999, 0.999_977_769_831_400_2),
            (3.0, 0.999_977_909_503_001_4),
            (4.0, 0.999_999_984_582_742_1),
            (7.0, 1.0),
        ];
        for (x, want) in cases {
            let got = erf(x);
            assert!((got - want).abs() < 1e-14, "erf({x}) = {got}, want {want}");
            assert!((erf(-x) + want).abs() < 1e-14);
        }
        assert!((gelu_erf(1.0) as f64 - 0.841_344_746_068_543).abs() < 1e-7);
        assert!((gelu_erf(-1.0) as f64 + 0.158_655_253_931_457).abs() < 1e-7);
        assert_eq!(gelu_erf(0.0), 0.0);
        assert!((gelu_erf(-8.0)).abs() < 1e-12);
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-5);
    }

    #[test]
    fn gelu_erf_and_quick_gelu_values() {
        // Reference values: torch.nn.functional.gelu (erf) and x * sigmoid(1.702 x), in f64.
        for (x, erf, quick) in [
            (0.0f32, 0.0f64, 0.0f64),
            (1.0, 0.841_344_746_068_543, 0.845_795_765_932_821_2),
            (-1.0, -0.158_655_253_931_457_07, -0.154_204_234_067_178_7),
            (3.0, 2.995_950_305_905_11, 2.981_928_690_292_214),
            (
                -4.5,
                -1.528_952_906_132_419_2e-5,
                -0.002_122_004_175_814_449,
            ),
        ] {
            assert!((gelu_erf(x) as f64 - erf).abs() < 1e-6, "gelu_erf({x})");
            assert!(
                (quick_gelu(x) as f64 - quick).abs() < 1e-6,
                "quick_gelu({x})"
            );
        }
        assert_eq!(gelu_erf(20.0), 20.0);
        assert!(quick_gelu(-200.0).abs() < 1e-30);
    }

    #[test]
    fn exp_fast_matches_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp_fast(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 1e-6, "exp_fast relative error {worst}");
        assert!(exp_fast(-1000.0) < 1e-37 && exp_fast(-1000.0) >= 0.0);
        assert!(exp_fast(1000.0) > 1e38 && exp_fast(1000.0).is_finite());
        assert!(exp_fast(f32::NAN).is_nan());
    }

    #[test]
    fn activations_match_their_definitions() {
        for i in -400..400 {
            let x = i as f32 * 0.025;
            let silu_ref = x / (1.0 + (-x).exp());
            let g_ref = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh());
            assert!(
                (silu(x) - silu_ref).abs() <= 1e-6 * (1.0 + x.abs()),
                "silu({x})"
            );
            assert!(
                (gelu_tanh(x) - g_ref).abs() <= 1e-6 * (1.0 + x.abs()),
                "gelu({x})"
            );
        }
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1000.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] == 0.0 && x[2] > x[1] && x[1] > x[0]);
    }
}
