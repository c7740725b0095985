//! Feed-forward activations, applied in place on `[n, n_ff]` buffers.
//!
//! GELU has two evaluation modes ([`GeluMode`]): `Exact` (f32, the default; matches the
//! Hugging Face reference to ~1e-6) and `F16Table`, llama.cpp's CPU method: the input rounded
//! to f16 and looked up in a 65536-entry table of f16 results (inputs beyond ±10 pass through /
//! give 0). The second is less precise, but it is what llama.cpp's reference outputs were
//! computed with, so comparisons against those can use it. Chosen with [`set_gelu_mode`] or
//! the environment variable `LUME_GELU=exact|f16` (read once).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::ops;

/// How GELU(tanh) is evaluated (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluMode {
    Exact,
    F16Table,
}

/// 0: not decided yet (read `LUME_GELU`), 1: exact, 2: f16 table.
static GELU_MODE: AtomicU8 = AtomicU8::new(0);

/// Sets the GELU mode for the whole process.
pub fn set_gelu_mode(mode: GeluMode) {
    let v = match mode {
        GeluMode::Exact => 1,
        GeluMode::F16Table => 2,
    };
    GELU_MODE.store(v, Ordering::Relaxed);
}

/// The GELU mode in use.
pub fn gelu_mode() -> GeluMode {
    match GELU_MODE.load(Ordering::Relaxed) {
        1 => GeluMode::Exact,
        2 => GeluMode::F16Table,
        _ => {
            let f16 =
                std::env::var("LUME_GELU").is_ok_and(|v| v.trim().eq_ignore_ascii_case("f16"));
            let mode = if f16 {
                GeluMode::F16Table
            } else {
                GeluMode::Exact
            };
            set_gelu_mode(mode);
            mode
        }
    }
}

/// `gelu_tanh` of every f16 value, rounded to f16 (bits), computed with libm's `tanh` in f32 as
/// llama.cpp builds its table.
fn gelu_table() -> &'static [u16] {
    static T: OnceLock<Vec<u16>> = OnceLock::new();
    T.get_or_init(|| {
        (0..=u16::MAX)
            .map(|b| {
                let x = half::f16::from_bits(b).to_f32();
                let g = 0.5 * x * (1.0 + (0.797_884_6 * x * (1.0 + 0.044715 * x * x)).tanh());
                half::f16::from_f32(g).to_bits()
            })
            .collect()
    })
}

/// GELU(tanh) of `x` by the f16 table.
#[inline]
fn gelu_f16(t: &[u16], x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        half::f16::from_bits(t[half::f16::from_f32(x).to_bits() as usize]).to_f32()
    }
}

/// Elements per task when a gated activation is split across the pool (prompt batches).
const PAR_CHUNK: usize = 16 * 1024;

/// Applies `f` to `gate` and `up` in chunks on the pool when they are large (a prompt batch),
/// on this thread otherwise.
fn gated(gate: &mut [f32], up: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    assert_eq!(
        gate.len(),
        up.len(),
        "gated activation: gate and up differ in length"
    );
    if gate.len() < 2 * PAR_CHUNK {
        return f(gate, up);
    }
    let n = gate.len();
    let out = ops::SharedMut::new(gate);
    ops::par_for(n.div_ceil(PAR_CHUNK), &|i| {
        let start = i * PAR_CHUNK;
        let len = PAR_CHUNK.min(n - start);
        // SAFETY: task i alone writes gate[start..start + len]; `gate` is mutably borrowed
        // for the whole call.
        let g = unsafe { out.slice(start, len) };
        f(g, &up[start..start + len]);
    });
}

/// SwiGLU: `gate[i] = silu(gate[i]) · up[i]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    gated(gate, up, |gate, up| {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = ops::silu(*g) * u;
        }
    })
}

/// GELU(tanh)-gated: `gate[i] = gelu_tanh(gate[i]) · up[i]` (gemma).
pub fn geglu_tanh(gate: &mut [f32], up: &[f32]) {
    match gelu_mode() {
        GeluMode::Exact => gated(gate, up, |gate, up| {
            for (g, u) in gate.iter_mut().zip(up) {
                *g = ops::gelu_tanh(*g) * u;
            }
        }),
        GeluMode::F16Table => {
            let t = gelu_table();
            gated(gate, up, |gate, up| {
                for (g, u) in gate.iter_mut().zip(up) {
                    *g = gelu_f16(t, *g) * u;
                }
            })
        }
    }
}

/// Plain erf GELU in place (BERT), [`kernels::gelu`] (f32, SIMD with a bit-identical scalar
/// twin), split across the pool for prompt-sized buffers (each value is evaluated alone, so the
/// split changes no bit).
pub fn gelu_erf_inplace(x: &mut [f32]) {
    if x.len() < 2 * PAR_CHUNK {
        return kernels::gelu::gelu_erf_slice(x);
    }
    let n = x.len();
    let out = ops::SharedMut::new(x);
    ops::par_for(n.div_ceil(PAR_CHUNK), &|i| {
        let start = i * PAR_CHUNK;
        let len = PAR_CHUNK.min(n - start);
        // SAFETY: task i alone writes x[start..start + len]; `x` is mutably borrowed for the
        // whole call.
        kernels::gelu::gelu_erf_slice(unsafe { out.slice(start, len) });
    });
}

/// erf-GELU-gated: `gate[i] = gelu_erf(gate[i]) · up[i]`.
pub fn geglu_erf(gate: &mut [f32], up: &[f32]) {
    gated(gate, up, |gate, up| {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = kernels::gelu::gelu_erf(*g) * u;
        }
    })
}

/// Plain SiLU in place (a non-gated SiLU MLP).
pub fn silu_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = ops::silu(*v);
    }
}

/// Plain GELU(tanh) in place (gpt2, starcoder2).
pub fn gelu_tanh_inplace(x: &mut [f32]) {
    match gelu_mode() {
        GeluMode::Exact => {
            for v in x.iter_mut() {
                *v = ops::gelu_tanh(*v);
            }
        }
        GeluMode::F16Table => {
            let t = gelu_table();
            for v in x.iter_mut() {
                *v = gelu_f16(t, *v);
            }
        }
    }
}

/// Plain quick GELU in place (OpenAI CLIP).
pub fn quick_gelu_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = ops::quick_gelu(*v);
    }
}

/// Quick-GELU-gated: `gate[i] = quick_gelu(gate[i]) · up[i]`.
pub fn gated_quick_gelu(gate: &mut [f32], up: &[f32]) {
    gated(gate, up, |gate, up| {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = ops::quick_gelu(*g) * u;
        }
    })
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
    fn erf_and_quick_gelu_slices() {
        let xs = [-2.0f32, -0.5, 0.0, 0.25, 1.5];
        let mut a = xs;
        gelu_erf_inplace(&mut a);
        let mut b = xs;
        quick_gelu_inplace(&mut b);
        for i in 0..xs.len() {
            assert_eq!(a[i], ops::gelu_erf(xs[i]));
            assert_eq!(b[i], ops::quick_gelu(xs[i]));
        }
        let mut g = xs;
        geglu_erf(&mut g, &[2.0; 5]);
        let mut h = xs;
        gated_quick_gelu(&mut h, &[2.0; 5]);
        for i in 0..xs.len() {
            assert_eq!(g[i], 2.0 * a[i]);
            assert_eq!(h[i], 2.0 * b[i]);
        }
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

    #[test]
    fn f16_table_gelu_is_the_rounded_exact_value() {
        let t = gelu_table();
        for i in -4000..4000 {
            let x = i as f32 * 0.0025 * 1.0013;
            let xr = half::f16::from_f32(x).to_f32();
            let want = half::f16::from_f32(ops::gelu_tanh(xr)).to_f32();
            let got = gelu_f16(t, x);
            // Same f16 value, or the neighbour when the f32 results straddle a rounding point.
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1e-2),
                "x={x}: {got} vs {want}"
            );
        }
        assert_eq!(gelu_f16(t, -10.5), 0.0);
        assert_eq!(gelu_f16(t, 12.25), 12.25);
    }
}
