#!/usr/bin/env python3
"""Fits the piecewise polynomials of lume's f32 erf-GELU (crates/kernels/src/gelu.rs).

    h(z) = 1 + erf(z) = erfc(-z),   gelu(x) = x/2 * h(x/sqrt(2))

on z in [-4, 4), cut into 16 intervals of width 1/2; on interval i (z in [-4 + i/2, -4 + (i+1)/2))
h(z) = P_i(u) with u = z - c_i, c_i the interval's centre, P_i of degree 7, fitted by weighted
least squares on Chebyshev nodes (weight 1/h: relative error, which matters on the negative
tail where h is tiny), coefficients rounded to f32. Prints the Rust tables and the worst
errors of an f32 Horner evaluation (numpy float32 with fused multiply-adds emulated in f64,
which is exact for one f32 fma) against mpmath.

Needs numpy and mpmath (any recent versions; checked with numpy 2.4.6, mpmath 1.3.0).
"""
import mpmath
import numpy as np

DEG = 7
N = 16
W = 0.5
LO = -4.0


def h(z):
    return float(mpmath.erfc(-mpmath.mpf(z)))


def fma32(a, b, c):
    # One f32 fma: the f64 product of two f32 values is exact, the sum rounded once to f64 then
    # to f32 can double-round; use mpmath for the exact sum.
    return np.float32(float(mpmath.mpf(float(a)) * mpmath.mpf(float(b)) + mpmath.mpf(float(c))))


coefs = []
centres = []
for i in range(N):
    a = LO + i * W
    c = a + W / 2
    k = np.arange(200)
    nodes = np.cos(np.pi * (k + 0.5) / 200) * (W / 2)  # u in (-W/2, W/2)
    ys = np.array([h(c + u) for u in nodes])
    V = np.vander(nodes, DEG + 1, increasing=True)
    wts = 1.0 / ys
    sol, *_ = np.linalg.lstsq(V * wts[:, None], ys * wts, rcond=None)
    coefs.append(np.float32(sol))
    centres.append(np.float32(c))

coefs = np.array(coefs, dtype=np.float32)  # [N, DEG+1]


def eval32(z):
    z = np.float32(z)
    i = int(np.float32((z - np.float32(LO)) * np.float32(2.0)))
    i = min(max(i, 0), N - 1)
    u = np.float32(z - centres[i])
    p = coefs[i, DEG]
    for d in range(DEG - 1, -1, -1):
        p = fma32(p, u, coefs[i, d])
    return p




def f32s(v):
    # The shortest decimal that reads back as this f32 (what Rust's f32 literal parser wants).
    t = np.format_float_scientific(np.float32(v), unique=True, trim="-")
    return t if ("e" in t and "." in t) or "." in t else t.replace("e", ".0e")


worst_abs = 0.0
worst_rel = 0.0
rng = np.random.default_rng(0)
for z in np.concatenate([np.linspace(-4, 3.9999, 4001), rng.uniform(-4, 4, 2000)]):
    z = float(np.float32(z))
    ref = h(z)
    got = float(eval32(z))
    worst_abs = max(worst_abs, abs(got - ref))
    worst_rel = max(worst_rel, abs(got - ref) / ref)
print(f"// worst |error| of h on [-4, 4): {worst_abs:.3e} absolute, {worst_rel:.3e} relative")
print("const CENTRES: [f32; 16] = [")
print("    " + ", ".join(f32s(c) for c in centres) + ",")
print("];")
print(f"const COEFS: [[f32; 16]; {DEG + 1}] = [")
for d in range(DEG + 1):
    print("    [" + ", ".join(f32s(coefs[i, d]) for i in range(N)) + "],")
print("];")
