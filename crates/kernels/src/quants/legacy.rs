//! The 32-value block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! Dequantizers are written in the same float operation order as ggml's reference so results
//! are bit-exact. Quantizers follow the reference rounding (see each function), which the
//! fixtures in `testdata/quant` pin down.

use super::blocks::*;

// ---------------------------------------------------------------- dequantization

pub fn dequant_q4_0(b: &BlockQ4_0, y: &mut [f32]) {
    let d = f16_le(b.d);
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

pub fn dequant_q4_1(b: &BlockQ4_1, y: &mut [f32]) {
    let (d, m) = (f16_le(b.d), f16_le(b.m));
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = d * (q & 0x0F) as f32 + m;
        y[j + 16] = d * (q >> 4) as f32 + m;
    }
}

/// The two 5-bit values held by byte `j` of `qs` (positions j and j + 16).
#[inline]
fn q5_pair(qh: u32, qs: &[u8; 16], j: usize) -> (u8, u8) {
    let h0 = ((qh >> j) & 1) as u8;
    let h1 = ((qh >> (j + 16)) & 1) as u8;
    ((qs[j] & 0x0F) | (h0 << 4), (qs[j] >> 4) | (h1 << 4))
}

pub fn dequant_q5_0(b: &BlockQ5_0, y: &mut [f32]) {
    let d = f16_le(b.d);
    let qh = u32::from_le_bytes(b.qh);
    for j in 0..16 {
        let (a, c) = q5_pair(qh, &b.qs, j);
        y[j] = d * (a as i32 - 16) as f32;
        y[j + 16] = d * (c as i32 - 16) as f32;
    }
}

pub fn dequant_q5_1(b: &BlockQ5_1, y: &mut [f32]) {
    let (d, m) = (f16_le(b.d), f16_le(b.m));
    let qh = u32::from_le_bytes(b.qh);
    for j in 0..16 {
        let (a, c) = q5_pair(qh, &b.qs, j);
        y[j] = d * a as f32 + m;
        y[j + 16] = d * c as f32 + m;
    }
}

pub fn dequant_q8_0(b: &BlockQ8_0, y: &mut [f32]) {
    let d = f16_le(b.d);
    for (o, &q) in y.iter_mut().zip(&b.qs) {
        *o = (q as i8) as f32 * d;
    }
}

pub fn dequant_q8_1(b: &BlockQ8_1, y: &mut [f32]) {
    let d = f16_le(b.d);
    for (o, &q) in y.iter_mut().zip(&b.qs) {
        *o = (q as i8) as f32 * d;
    }
}

// ---------------------------------------------------------------- quantization

/// The element of `x` with the largest magnitude (the first one on ties), keeping its sign.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut best = 0.0f32;
    for &v in x {
        if v.abs() > best.abs() {
            best = v;
        }
    }
    best
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// `1/d`, or 0 for a zero scale (an all-zero block).
#[inline]
fn inv(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// The reference symmetric 4/5-bit rounding: `trunc(x·id + offset)` where the product and sum
/// are done in one step (ggml's reference is compiled with FMA; this matches the published
/// fixtures, which evaluate it in f64 and round once to f32).
#[inline]
fn sym_code(x: f32, id: f32, offset: f64, max: f32) -> u8 {
    let v = (x as f64 * id as f64 + offset) as f32;
    v.trunc().clamp(0.0, max) as u8
}

pub fn quant_q4_0(x: &[f32], b: &mut BlockQ4_0) {
    let max = signed_absmax(x);
    let d = max / -8.0;
    let id = inv(d);
    b.d = to_f16_le(d);
    for j in 0..16 {
        let lo = sym_code(x[j], id, 8.5, 15.0);
        let hi = sym_code(x[j + 16], id, 8.5, 15.0);
        b.qs[j] = lo | (hi << 4);
    }
}

pub fn quant_q5_0(x: &[f32], b: &mut BlockQ5_0) {
    let max = signed_absmax(x);
    let d = max / -16.0;
    let id = inv(d);
    b.d = to_f16_le(d);
    let mut qh = 0u32;
    for j in 0..16 {
        let lo = sym_code(x[j], id, 16.5, 31.0);
        let hi = sym_code(x[j + 16], id, 16.5, 31.0);
        b.qs[j] = (lo & 0x0F) | ((hi & 0x0F) << 4);
        qh |= ((lo >> 4) as u32) << j;
        qh |= ((hi >> 4) as u32) << (j + 16);
    }
    b.qh = qh.to_le_bytes();
}

/// The reference asymmetric rounding: `trunc((x − min)·id + 0.5)` in plain f32 steps.
#[inline]
fn asym_code(x: f32, min: f32, id: f32, max: f32) -> u8 {
    ((x - min) * id + 0.5).trunc().clamp(0.0, max) as u8
}

pub fn quant_q4_1(x: &[f32], b: &mut BlockQ4_1) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inv(d);
    b.d = to_f16_le(d);
    b.m = to_f16_le(min);
    for j in 0..16 {
        let lo = asym_code(x[j], min, id, 15.0);
        let hi = asym_code(x[j + 16], min, id, 15.0);
        b.qs[j] = lo | (hi << 4);
    }
}

pub fn quant_q5_1(x: &[f32], b: &mut BlockQ5_1) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inv(d);
    b.d = to_f16_le(d);
    b.m = to_f16_le(min);
    let mut qh = 0u32;
    for j in 0..16 {
        let lo = asym_code(x[j], min, id, 31.0);
        let hi = asym_code(x[j + 16], min, id, 31.0);
        b.qs[j] = (lo & 0x0F) | ((hi & 0x0F) << 4);
        qh |= ((lo >> 4) as u32) << j;
        qh |= ((hi >> 4) as u32) << (j + 16);
    }
    b.qh = qh.to_le_bytes();
}

/// `d = absmax/127`, `q = round(x/d)` (halves away from zero).
fn q8_codes(x: &[f32], qs: &mut [u8; 32]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inv(d);
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = ((v * id).round().clamp(-127.0, 127.0) as i8) as u8;
    }
    d
}

pub fn quant_q8_0(x: &[f32], b: &mut BlockQ8_0) {
    let d = q8_codes(x, &mut b.qs);
    b.d = to_f16_le(d);
}

pub fn quant_q8_1(x: &[f32], b: &mut BlockQ8_1) {
    let d = q8_codes(x, &mut b.qs);
    let sum: i32 = b.qs.iter().map(|&q| q as i8 as i32).sum();
    b.d = to_f16_le(d);
    b.s = to_f16_le(d * sum as f32);
}
