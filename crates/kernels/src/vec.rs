//! Vector helpers for attention and norms, each with a scalar twin ([`scalar`]) and an AVX2
//! version, chosen once per process ([`VecFns::get`]).

use half::{bf16, f16};

use crate::cpu::{level, Level};

/// The vector helpers of one dispatch level.
///
/// Every entry is a safe function that checks the lengths its body relies on (the two
/// slices have equal lengths) and panics with a message naming them otherwise, so no call
/// can read or write past the end of a slice, whatever the level.
pub struct VecFns {
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    pub axpy_f32: fn(&mut [f32], f32, &[f32]),
    pub dot_f16_f32: fn(&[f16], &[f32]) -> f32,
    pub axpy_f16: fn(&mut [f32], f32, &[f16]),
    pub f32_to_f16: fn(&[f32], &mut [f16]),
    pub f16_to_f32: fn(&[f16], &mut [f32]),
    pub dot_bf16_f32: fn(&[bf16], &[f32]) -> f32,
}

/// Panics unless `a == b`: the lengths of the two slices handed to the helper `what`.
#[inline(always)]
fn same_len(what: &str, a: usize, b: usize) {
    assert!(
        a == b,
        "{what}: slices of {a} and {b} values (the lengths must be equal)"
    );
}

static SCALAR: VecFns = VecFns {
    dot_f32: scalar::dot_f32,
    axpy_f32: scalar::axpy_f32,
    dot_f16_f32: scalar::dot_f16_f32,
    axpy_f16: scalar::axpy_f16,
    f32_to_f16: scalar::f32_to_f16,
    f16_to_f32: scalar::f16_to_f32,
    dot_bf16_f32: scalar::dot_bf16_f32,
};

/// Each entry checks the lengths, then runs the AVX2 body. This table is only handed out for
/// levels >= Avx2, which `cpu` picks only when AVX2, FMA and F16C are present.
#[cfg(target_arch = "x86_64")]
static AVX2: VecFns = VecFns {
    dot_f32: |a, b| {
        same_len("dot_f32", a.len(), b.len());
        // SAFETY: equal lengths (checked); AVX2, FMA and F16C are present (see the table).
        unsafe { avx2::dot_f32(a, b) }
    },
    axpy_f32: |y, s, x| {
        same_len("axpy_f32", y.len(), x.len());
        // SAFETY: equal lengths (checked); AVX2, FMA and F16C are present (see the table).
        unsafe { avx2::axpy_f32(y, s, x) }
    },
    dot_f16_f32: |a, b| {
        same_len("dot_f16_f32", a.len(), b.len());
        // SAFETY: equal lengths (checked); AVX2, FMA and F16C are present (see the table).
        unsafe { avx2::dot_f16_f32(a, b) }
    },
    axpy_f16: |y, s, x| {
        same_len("axpy_f16", y.len(), x.len());
        // SAFETY: equal lengths (checked); AVX2, FMA and F16C are present (see the table).
        unsafe { avx2::axpy_f16(y, s, x) }
    },
    f32_to_f16: |x, o| {
        same_len("f32_to_f16", x.len(), o.len());
        // SAFETY: equal lengths (checked); AVX2, FMA and F16C are present (see the table).
        unsafe { avx2::f32_to_f16(x, o) }
    },
    f16_to_f32: |x, o| {
        same_len("f16_to_f32", x.len(), o.len());
        // SAFETY: equal lengths (checked); AVX2, FMA and F16C are present (see the table).
        unsafe { avx2::f16_to_f32(x, o) }
    },
    dot_bf16_f32: |a, b| {
        same_len("dot_bf16_f32", a.len(), b.len());
        // SAFETY: equal lengths (checked); AVX2, FMA and F16C are present (see the table).
        unsafe { avx2::dot_bf16_f32(a, b) }
    },
};

impl VecFns {
    /// The helpers of `level` (which must be available on this CPU, see [`Level::available`]).
    pub fn at(level: Level) -> &'static VecFns {
        assert!(
            level.available(),
            "{level} kernels are not available on this CPU"
        );
        #[cfg(target_arch = "x86_64")]
        if level >= Level::Avx2 {
            return &AVX2;
        }
        &SCALAR
    }

    /// The helpers of the process-wide level.
    #[inline]
    pub fn get() -> &'static VecFns {
        use std::sync::OnceLock;
        static V: OnceLock<&'static VecFns> = OnceLock::new();
        V.get_or_init(|| VecFns::at(level()))
    }
}

/// `Σ a[i]·b[i]`; panics unless the lengths are equal.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    (VecFns::get().dot_f32)(a, b)
}

/// `y += a · x`; panics unless the lengths are equal.
#[inline]
pub fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
    (VecFns::get().axpy_f32)(y, a, x)
}

/// `Σ a[i]·b[i]` with f16 `a`; panics unless the lengths are equal.
#[inline]
pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
    (VecFns::get().dot_f16_f32)(a, b)
}

/// `y += a · x` with f16 `x`; panics unless the lengths are equal.
#[inline]
pub fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
    (VecFns::get().axpy_f16)(y, a, x)
}

/// `dst[i] = f16(src[i])`, round to nearest even; panics unless the lengths are equal.
#[inline]
pub fn f32_to_f16_slice(src: &[f32], dst: &mut [f16]) {
    (VecFns::get().f32_to_f16)(src, dst)
}

/// `dst[i] = src[i]` widened from f16 (exact); panics unless the lengths are equal.
#[inline]
pub fn f16_to_f32_slice(src: &[f16], dst: &mut [f32]) {
    (VecFns::get().f16_to_f32)(src, dst)
}

/// `Σ a[i]·b[i]` with bf16 `a`; panics unless the lengths are equal.
#[inline]
pub fn dot_bf16_f32(a: &[bf16], b: &[f32]) -> f32 {
    (VecFns::get().dot_bf16_f32)(a, b)
}

/// Plain scalar twins (each panics unless its two slices have equal lengths, as every
/// level's helpers do).
pub mod scalar {
    use half::{bf16, f16};

    use super::same_len;

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        same_len("dot_f32", a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
    pub fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
        same_len("axpy_f32", y.len(), x.len());
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }
    pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
        same_len("dot_f16_f32", a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x.to_f32() * y).sum()
    }
    pub fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
        same_len("axpy_f16", y.len(), x.len());
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * x.to_f32();
        }
    }
    pub fn f32_to_f16(x: &[f32], o: &mut [f16]) {
        same_len("f32_to_f16", x.len(), o.len());
        for (o, x) in o.iter_mut().zip(x) {
            *o = f16::from_f32(*x);
        }
    }
    pub fn f16_to_f32(x: &[f16], o: &mut [f32]) {
        same_len("f16_to_f32", x.len(), o.len());
        for (o, x) in o.iter_mut().zip(x) {
            *o = x.to_f32();
        }
    }
    pub fn dot_bf16_f32(a: &[bf16], b: &[f32]) -> f32 {
        same_len("dot_bf16_f32", a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x.to_f32() * y).sum()
    }
}

/// AVX2 + FMA + F16C versions. Every function needs those features.
#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        // SAFETY: register-only intrinsics; the caller runs on a CPU with the features they need
        // (this is inlined into `#[target_feature]` kernels).
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }
    }

    /// 8 f16 at `p` as f32.
    #[inline(always)]
    unsafe fn ld_f16(p: *const f16) -> __m256 {
        // SAFETY: callers pass `p` readable for 8 f16, on a CPU with AVX2 and F16C.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// 8 bf16 at `p` as f32.
    #[inline(always)]
    unsafe fn ld_bf16(p: *const bf16) -> __m256 {
        // SAFETY: callers pass `p` readable for 8 bf16, on a CPU with AVX2.
        unsafe {
            let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32(w, 16))
        }
    }

    /// A dot product with 4 independent accumulators over `b.len()` (a multiple of 8) values;
    /// `ld` loads 8 lanes of `a`.
    #[inline(always)]
    unsafe fn dot_with<A>(a: *const A, b: &[f32], ld: impl Fn(*const A) -> __m256) -> f32 {
        // SAFETY: callers pass `a` readable for `b.len()` values: every load at `o + 8 ≤ n` is
        // inside `a` and `b`; the CPU has AVX2 and FMA.
        unsafe {
            let n = b.len();
            let bp = b.as_ptr();
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (k, s) in acc.iter_mut().enumerate() {
                    let o = i + 8 * k;
                    *s = _mm256_fmadd_ps(ld(a.add(o)), _mm256_loadu_ps(bp.add(o)), *s);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(ld(a.add(i)), _mm256_loadu_ps(bp.add(i)), acc[0]);
                i += 8;
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum(s)
        }
    }

    /// # Safety
    /// Needs AVX2 + FMA; `a.len() == b.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `a.len() == b.len()` (the contract), so `dot_with` reads `a` within its first
        // `n8` values; AVX2 and FMA are enabled here.
        unsafe {
            let n8 = b.len() / 8 * 8;
            let main = dot_with(a.as_ptr(), &b[..n8], |p| _mm256_loadu_ps(p));
            main + super::scalar::dot_f32(&a[n8..], &b[n8..])
        }
    }

    /// # Safety
    /// Needs AVX2 + FMA + F16C; `a.len() == b.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
        // SAFETY: `a.len() == b.len()` (the contract), so `dot_with` reads `a` within its first
        // `n8` values; AVX2, FMA and F16C are enabled here.
        unsafe {
            let n8 = b.len() / 8 * 8;
            let main = dot_with(a.as_ptr(), &b[..n8], |p| ld_f16(p));
            main + super::scalar::dot_f16_f32(&a[n8..], &b[n8..])
        }
    }

    /// # Safety
    /// Needs AVX2 + FMA; `a.len() == b.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_bf16_f32(a: &[bf16], b: &[f32]) -> f32 {
        // SAFETY: `a.len() == b.len()` (the contract), so `dot_with` reads `a` within its first
        // `n8` values; AVX2 and FMA are enabled here.
        unsafe {
            let n8 = b.len() / 8 * 8;
            let main = dot_with(a.as_ptr(), &b[..n8], |p| ld_bf16(p));
            main + super::scalar::dot_bf16_f32(&a[n8..], &b[n8..])
        }
    }

    /// # Safety
    /// Needs AVX2 + FMA; `y.len() == x.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
        // SAFETY: `y.len() == x.len()` (the contract): each 8-value load and store at `i + 8 ≤ n8`
        // is inside both slices; AVX2 and FMA are enabled here.
        unsafe {
            let n8 = x.len() / 8 * 8;
            let va = _mm256_set1_ps(a);
            for i in (0..n8).step_by(8) {
                let yp = y.as_mut_ptr().add(i);
                let v =
                    _mm256_fmadd_ps(va, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(yp));
                _mm256_storeu_ps(yp, v);
            }
            super::scalar::axpy_f32(&mut y[n8..], a, &x[n8..]);
        }
    }

    /// # Safety
    /// Needs AVX2 + FMA + F16C; `y.len() == x.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16(y: &mut [f32], a: f32, x: &[f16]) {
        // SAFETY: `y.len() == x.len()` (the contract): each 8-value load and store at `i + 8 ≤ n8`
        // is inside both slices; AVX2, FMA and F16C are enabled here.
        unsafe {
            let n8 = x.len() / 8 * 8;
            let va = _mm256_set1_ps(a);
            for i in (0..n8).step_by(8) {
                let yp = y.as_mut_ptr().add(i);
                let v = _mm256_fmadd_ps(va, ld_f16(x.as_ptr().add(i)), _mm256_loadu_ps(yp));
                _mm256_storeu_ps(yp, v);
            }
            super::scalar::axpy_f16(&mut y[n8..], a, &x[n8..]);
        }
    }

    /// # Safety
    /// Needs AVX2 + F16C; `x.len() == o.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f16_to_f32(x: &[f16], o: &mut [f32]) {
        // SAFETY: `x.len() == o.len()` (the contract): each 8-value load and store at `i + 8 ≤ n8`
        // is inside both slices; AVX2 and F16C are enabled here.
        unsafe {
            let n8 = x.len() / 8 * 8;
            for i in (0..n8).step_by(8) {
                let h = _mm_loadu_si128(x.as_ptr().add(i) as *const __m128i);
                _mm256_storeu_ps(o.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
            super::scalar::f16_to_f32(&x[n8..], &mut o[n8..]);
        }
    }

    /// # Safety
    /// Needs AVX2 + F16C; `x.len() == o.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f32_to_f16(x: &[f32], o: &mut [f16]) {
        // SAFETY: `x.len() == o.len()` (the contract): each 8-value load and store at `i + 8 ≤ n8`
        // is inside both slices; AVX2 and F16C are enabled here.
        unsafe {
            let n8 = x.len() / 8 * 8;
            for i in (0..n8).step_by(8) {
                let h = _mm256_cvtps_ph(
                    _mm256_loadu_ps(x.as_ptr().add(i)),
                    _MM_FROUND_TO_NEAREST_INT,
                );
                _mm_storeu_si128(o.as_mut_ptr().add(i) as *mut __m128i, h);
            }
            super::scalar::f32_to_f16(&x[n8..], &mut o[n8..]);
        }
    }
}
