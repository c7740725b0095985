//! GELU with the error function, `gelu(x) = x/2 · (1 + erf(x/√2))` (BERT's and CLIP's `gelu`),
//! in f32 at every level, bit-identical to the scalar twin [`gelu_erf`].
//!
//! Method: `h(z) = 1 + erf(z)` on `z ∈ [-4, 4)` is 16 polynomials of degree 7, one per interval of
//! width 1/2, in `u = z - centre` (Horner with fused multiply-adds); `z ≤ -4` gives 0 and
//! `z ≥ 4` gives `x` (`h` is within 2e-8 of 0 or 2 there). The tables come from
//! `scripts/gen_gelu_table.py` (weighted least squares against mpmath's erfc, rounded to f32):
//! worst |error| of h on [-4, 4): 1.070e-07 absolute, 1.171e-05 relative. The SIMD levels pick each lane's
//! coefficients with a register permute (AVX-512: one `vpermps` of 16 entries; AVX2: two of 8 and
//! a blend) and then run the same operations in the same order as the scalar twin.
//!
//! Shapes: [`gelu_erf_slice`] works in place on any `[len]` buffer.

use crate::cpu::Level;

/// Interval centres (`-3.75, -3.25, …, 3.75`).
const CENTRES: [f32; 16] = [
    -3.75e+00, -3.25e+00, -2.75e+00, -2.25e+00, -1.75e+00, -1.25e+00, -7.5e-01, -2.5e-01, 2.5e-01,
    7.5e-01, 1.25e+00, 1.75e+00, 2.25e+00, 2.75e+00, 3.25e+00, 3.75e+00,
];
/// `COEFS[d][i]`: coefficient of `u^d` on interval `i`.
const COEFS: [[f32; 16]; 8] = [
    [
        1.1372762e-07,
        4.3027803e-06,
        1.00621925e-04,
        1.4627166e-03,
        1.3328329e-02,
        7.7099875e-02,
        2.8884438e-01,
        7.236736e-01,
        1.2763264e+00,
        1.7111557e+00,
        1.9229001e+00,
        1.9866717e+00,
        1.9985373e+00,
        1.9998994e+00,
        1.9999957e+00,
        1.9999999e+00,
    ],
    [
        8.814727e-07,
        2.9189328e-05,
        5.8627763e-04,
        7.142316e-03,
        5.277499e-02,
        2.3652114e-01,
        6.4293104e-01,
        1.0600141e+00,
        1.0600141e+00,
        6.4293104e-01,
        2.3652112e-01,
        5.2774996e-02,
        7.1423193e-03,
        5.862773e-04,
        2.9189012e-05,
        8.8142883e-07,
    ],
    [
        3.3054835e-06,
        9.48659e-05,
        1.6122644e-03,
        1.607018e-02,
        9.235621e-02,
        2.956517e-01,
        4.8219818e-01,
        2.6500297e-01,
        -2.6500297e-01,
        -4.8219815e-01,
        -2.9565173e-01,
        -9.2356205e-02,
        -1.6070157e-02,
        -1.6122675e-03,
        -9.4869334e-05,
        -3.306071e-06,
    ],
    [
        7.963167e-06,
        1.9576405e-04,
        2.7603325e-03,
        2.1724978e-02,
        9.015767e-02,
        1.6753413e-01,
        2.6788862e-02,
        -3.09169e-01,
        -3.0917132e-01,
        2.6788251e-02,
        1.6753596e-01,
        9.015738e-02,
        2.1724513e-02,
        2.7603803e-03,
        1.9581262e-04,
        7.970328e-06,
    ],
    [
        1.3812613e-05,
        2.863253e-04,
        3.2578418e-03,
        1.9087266e-02,
        4.810503e-02,
        6.134184e-03,
        -1.5067603e-01,
        -1.269352e-01,
        1.2693462e-01,
        1.5067561e-01,
        -6.1319973e-03,
        -4.8105527e-02,
        -1.9088257e-02,
        -3.2577105e-03,
        -2.8616944e-04,
        -1.3785409e-05,
    ],
    [
        1.8592522e-05,
        3.153505e-04,
        2.7579411e-03,
        1.06443865e-02,
        6.608933e-03,
        -4.7129128e-02,
        -5.323358e-02,
        7.998865e-02,
        8.006302e-02,
        -5.3213943e-02,
        -4.7188997e-02,
        6.6185356e-03,
        1.0660074e-02,
        2.7562908e-03,
        3.1362887e-04,
        1.8330058e-05,
    ],
    [
        2.0387923e-05,
        2.720348e-04,
        1.6664135e-03,
        2.7902988e-03,
        -9.0441685e-03,
        -2.0620758e-02,
        2.6587127e-02,
        3.9347544e-02,
        -3.934146e-02,
        -2.6582593e-02,
        2.0597337e-02,
        9.04951e-03,
        -2.7795609e-03,
        -1.6678507e-03,
        -2.7375846e-04,
        -2.0692425e-05,
    ],
    [
        1.45301565e-05,
        1.5679582e-04,
        6.19968e-04,
        -5.736656e-04,
        -5.8440925e-03,
        3.2147125e-03,
        1.8036818e-02,
        -1.5367936e-02,
        -1.6047712e-02,
        1.7856734e-02,
        3.7674776e-03,
        -5.9336727e-03,
        -7.2165625e-04,
        6.358161e-04,
        1.7359642e-04,
        1.7144728e-05,
    ],
];

/// Largest f32 below 4: the clamp keeps the interval index at most 15.
const BELOW_4: f32 = 3.999_999_8;

/// GELU(erf) of one value: the scalar twin of every level.
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    // `max` first: a NaN `z` becomes -4 here (as `maxps` does) and NaN comes back through `x`
    // (`clamp` would keep the NaN, a different path than the SIMD levels take).
    #[allow(clippy::manual_clamp)]
    let zc = z.max(-4.0).min(BELOW_4);
    let i = (((zc + 4.0) * 2.0) as i32).min(15) as usize;
    let u = zc - CENTRES[i];
    let mut p = COEFS[7][i];
    for d in (0..7).rev() {
        p = p.mul_add(u, COEFS[d][i]);
    }
    let g = (x * 0.5) * p;
    if z <= -4.0 {
        0.0
    } else if z >= 4.0 {
        x
    } else {
        g
    }
}

/// [`gelu_erf`] on every value of `x`, at `level` (which must be available).
pub fn gelu_erf_slice_at(level: Level, x: &mut [f32]) {
    assert!(
        level.available(),
        "{level} kernels are not available on this CPU"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if level >= Level::Avx512 {
            // SAFETY: the AVX-512 levels are available only with AVX-512F/BW/VL (checked).
            return unsafe { x86::gelu_avx512(x) };
        }
        if level >= Level::Avx2 {
            // SAFETY: the AVX2 level is available only with AVX2 and FMA (checked).
            return unsafe { x86::gelu_avx2(x) };
        }
    }
    for v in x.iter_mut() {
        *v = gelu_erf(*v);
    }
}

/// [`gelu_erf_slice_at`] at the process-wide level.
#[inline]
pub fn gelu_erf_slice(x: &mut [f32]) {
    gelu_erf_slice_at(crate::cpu::level(), x)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{gelu_erf, BELOW_4, CENTRES, COEFS};

    /// # Safety
    /// The CPU has AVX-512F, BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub unsafe fn gelu_avx512(x: &mut [f32]) {
        // SAFETY: the tables are 16 f32 each (unaligned loads).
        let (cen, co) = unsafe {
            let mut co = [_mm512_setzero_ps(); 8];
            for (d, c) in co.iter_mut().enumerate() {
                *c = _mm512_loadu_ps(COEFS[d].as_ptr());
            }
            (_mm512_loadu_ps(CENTRES.as_ptr()), co)
        };
        let (k, lo, hi) = (
            _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
            _mm512_set1_ps(-4.0),
            _mm512_set1_ps(BELOW_4),
        );
        let (four, two, half, fifteen) = (
            _mm512_set1_ps(4.0),
            _mm512_set1_ps(2.0),
            _mm512_set1_ps(0.5),
            _mm512_set1_epi32(15),
        );
        let mut chunks = x.chunks_exact_mut(16);
        for c in &mut chunks {
            // SAFETY: `c` has 16 values.
            let xv = unsafe { _mm512_loadu_ps(c.as_ptr()) };
            let z = _mm512_mul_ps(xv, k);
            let zc = _mm512_min_ps(_mm512_max_ps(z, lo), hi);
            let i = _mm512_min_epi32(
                _mm512_cvttps_epi32(_mm512_mul_ps(_mm512_add_ps(zc, four), two)),
                fifteen,
            );
            let u = _mm512_sub_ps(zc, _mm512_permutexvar_ps(i, cen));
            let mut p = _mm512_permutexvar_ps(i, co[7]);
            for d in (0..7).rev() {
                p = _mm512_fmadd_ps(p, u, _mm512_permutexvar_ps(i, co[d]));
            }
            let g = _mm512_mul_ps(_mm512_mul_ps(xv, half), p);
            let g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, four, _CMP_GE_OQ), g, xv);
            let g = _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask(z, lo, _CMP_LE_OQ), g);
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(c.as_mut_ptr(), g) };
        }
        for v in chunks.into_remainder() {
            *v = gelu_erf(*v);
        }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_avx2(x: &mut [f32]) {
        // SAFETY: the tables are 16 f32 each: entries 0..8 and 8..16 (unaligned loads).
        let (cen, co) = unsafe {
            let mut co = [[_mm256_setzero_ps(); 2]; 8];
            for (d, c) in co.iter_mut().enumerate() {
                *c = [
                    _mm256_loadu_ps(COEFS[d].as_ptr()),
                    _mm256_loadu_ps(COEFS[d].as_ptr().add(8)),
                ];
            }
            (
                [
                    _mm256_loadu_ps(CENTRES.as_ptr()),
                    _mm256_loadu_ps(CENTRES.as_ptr().add(8)),
                ],
                co,
            )
        };
        let (k, lo, hi) = (
            _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
            _mm256_set1_ps(-4.0),
            _mm256_set1_ps(BELOW_4),
        );
        let (four, two, half, fifteen, seven) = (
            _mm256_set1_ps(4.0),
            _mm256_set1_ps(2.0),
            _mm256_set1_ps(0.5),
            _mm256_set1_epi32(15),
            _mm256_set1_epi32(7),
        );
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: `c` has 8 values.
            let xv = unsafe { _mm256_loadu_ps(c.as_ptr()) };
            let z = _mm256_mul_ps(xv, k);
            let zc = _mm256_min_ps(_mm256_max_ps(z, lo), hi);
            let i = _mm256_min_epi32(
                _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_add_ps(zc, four), two)),
                fifteen,
            );
            // Entries 8..16 where i > 7 (the permute reads i mod 8).
            let upper = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, seven));
            let pick = |t: &[__m256; 2]| {
                _mm256_blendv_ps(
                    _mm256_permutevar8x32_ps(t[0], i),
                    _mm256_permutevar8x32_ps(t[1], i),
                    upper,
                )
            };
            let u = _mm256_sub_ps(zc, pick(&cen));
            let mut p = pick(&co[7]);
            for d in (0..7).rev() {
                p = _mm256_fmadd_ps(p, u, pick(&co[d]));
            }
            let g = _mm256_mul_ps(_mm256_mul_ps(xv, half), p);
            let g = _mm256_blendv_ps(g, xv, _mm256_cmp_ps(z, four, _CMP_GE_OQ));
            let g = _mm256_andnot_ps(_mm256_cmp_ps(z, lo, _CMP_LE_OQ), g);
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), g) };
        }
        for v in chunks.into_remainder() {
            *v = gelu_erf(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its Taylor series (cancellation stays below 1e-8 for |z| < 4.3).
    fn erf64(z: f64) -> f64 {
        let mut term = z;
        let mut sum = z;
        let mut n = 0.0;
        while term.abs() > 1e-18 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -z * z / n;
            sum += term / (2.0 * n + 1.0);
            if n > 400.0 {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    }

    fn gelu64(x: f64) -> f64 {
        0.5 * x * (1.0 + erf64(x * std::f64::consts::FRAC_1_SQRT_2))
    }

    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (-7000..=7000).map(|i| i as f32 * 1e-3).collect();
        v.extend([
            0.0,
            -0.0,
            5.656_854,
            -5.656_854,
            5.656_855,
            -5.656_855,
            1e-30,
            -1e-30,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
        ]);
        v
    }

    #[test]
    fn levels_match_the_scalar_twin_bit_for_bit() {
        let xs = inputs();
        let want: Vec<u32> = xs.iter().map(|&x| gelu_erf(x).to_bits()).collect();
        for level in Level::ALL.into_iter().filter(|l| l.available()) {
            let mut got = xs.clone();
            gelu_erf_slice_at(level, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), *w, "{level} at x = {}", xs[i]);
            }
        }
    }

    /// Within 3e-7 absolute (and 3e-7 × |x| beyond ±1) of the f64 GELU, |x| ≤ 6.
    #[test]
    fn close_to_the_f64_gelu() {
        let mut worst = 0f64;
        for x in (-6000..=6000).map(|i| i as f32 * 1e-3) {
            let e = gelu64(x as f64);
            let err = (gelu_erf(x) as f64 - e).abs() / (x.abs() as f64).max(1.0);
            worst = worst.max(err);
        }
        assert!(worst < 3e-7, "worst scaled error {worst:e}");
    }

    #[test]
    fn edges() {
        assert_eq!(gelu_erf(0.0), 0.0);
        assert_eq!(gelu_erf(1e30), 1e30);
        assert_eq!(gelu_erf(f32::INFINITY), f32::INFINITY);
        assert_eq!(gelu_erf(-1e30), 0.0);
        assert_eq!(gelu_erf(f32::NEG_INFINITY), 0.0);
        assert!(gelu_erf(f32::NAN).is_nan());
        assert!((gelu_erf(1.0) as f64 - 0.841_344_746_068_543).abs() < 2e-7);
        assert!((gelu_erf(-1.0) as f64 + 0.158_655_253_931_457).abs() < 2e-7);
    }
}
