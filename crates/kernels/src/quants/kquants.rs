//! K-quants: 256-value super-blocks with per-sub-block scales (Q2_K … Q6_K, Q8_K).
//!
//! Dequantizers follow ggml's float operation order (sub-block scale `d·sc` first, then
//! `· q`, then `− dmin·m`) so results are bit-exact. The quantizers follow ggml's reference
//! algorithms (no importance matrix); there are no fixtures for them, so they are held to
//! round-trip error bounds rather than to exact bytes.

// Format code walks several parallel arrays by the same index; index loops read best here.
#![allow(clippy::needless_range_loop)]

use super::blocks::*;

// ---------------------------------------------------------------- dequantization

pub fn dequant_q2_k(b: &BlockQ2K, y: &mut [f32]) {
    let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
    for (i, (o, &q)) in y.iter_mut().zip(&b.values()).enumerate() {
        let (sc, m) = b.scale_min(i / 16);
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        *o = dl * q as f32 - ml;
    }
}

pub fn dequant_q3_k(b: &BlockQ3K, y: &mut [f32]) {
    let d = f16_le(b.d);
    let scales = b.scales();
    for (i, (o, &q)) in y.iter_mut().zip(&b.values()).enumerate() {
        let dl = d * scales[i / 16] as f32;
        *o = dl * q as f32;
    }
}

pub fn dequant_q4_k(b: &BlockQ4K, y: &mut [f32]) {
    let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
    let q = b.values();
    for c in 0..4 {
        let (sc1, m1) = b.scale_min(2 * c);
        let (sc2, m2) = b.scale_min(2 * c + 1);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let (q, out) = (&q[64 * c..64 * c + 64], &mut y[64 * c..64 * c + 64]);
        for l in 0..32 {
            out[l] = d1 * q[l] as f32 - min1;
            out[l + 32] = d2 * q[l + 32] as f32 - min2;
        }
    }
}

pub fn dequant_q5_k(b: &BlockQ5K, y: &mut [f32]) {
    let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
    let q = b.values();
    for c in 0..4 {
        let (sc1, m1) = b.scale_min(2 * c);
        let (sc2, m2) = b.scale_min(2 * c + 1);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let (q, out) = (&q[64 * c..64 * c + 64], &mut y[64 * c..64 * c + 64]);
        for l in 0..32 {
            out[l] = d1 * q[l] as f32 - min1;
            out[l + 32] = d2 * q[l + 32] as f32 - min2;
        }
    }
}

pub fn dequant_q6_k(b: &BlockQ6K, y: &mut [f32]) {
    let d = f16_le(b.d);
    for (i, (o, &q)) in y.iter_mut().zip(&b.values()).enumerate() {
        let dl = d * b.scale(i / 16) as f32;
        *o = dl * q as f32;
    }
}

pub fn dequant_q8_k(b: &BlockQ8K, y: &mut [f32]) {
    let d = f32::from_le_bytes(b.d);
    for (o, &q) in y.iter_mut().zip(&b.qs) {
        *o = d * (q as i8) as f32;
    }
}

// ---------------------------------------------------------------- quantization

/// ggml's `nearest_int`: round to nearest, ties to even.
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// Q8_K (the activation format of K-quant dot products): `q = round(−127·x/max)` where `max`
/// is the signed value of largest magnitude, `d = −max/127`, plus the sums of each 16 codes.
pub fn quant_q8_k(x: &[f32], b: &mut BlockQ8K) {
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    if max == 0.0 {
        *b = BlockQ8K {
            d: [0; 4],
            qs: [0; 256],
            bsums: [0; 32],
        };
        return;
    }
    let iscale = -127.0 / max;
    for (q, &v) in b.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).clamp(-128, 127) as i8 as u8;
    }
    for (j, s) in b.bsums.chunks_exact_mut(2).enumerate() {
        let sum: i16 = b.qs[16 * j..16 * j + 16]
            .iter()
            .map(|&q| q as i8 as i16)
            .sum();
        s.copy_from_slice(&sum.to_le_bytes());
    }
    b.d = (1.0 / iscale).to_le_bytes();
}

/// Below this magnitude a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Symmetric scale search (ggml's `make_qx_quants` with squared-value weights): codes
/// `L[i] − nmax` in `−nmax..nmax` with `x ≈ scale · (L − nmax)`, trying 19 candidate
/// inverse scales around `nmax / max` and keeping the one with the best weighted fit.
fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [u8]) -> f32 {
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    if max.abs() < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let fit = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    let (sumlx, suml2) = fit(iscale);
    let mut scale = if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    let mut best_iscale = iscale;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = fit(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            scale = sumlx / suml2;
            best = scale * sumlx;
            best_iscale = iscale;
        }
    }
    for (l, &v) in l_out.iter_mut().zip(x) {
        *l = (code(best_iscale, v) + nmax) as u8;
    }
    scale
}

/// Asymmetric scale-and-min search (ggml's `make_qkx2_quants`): codes `L` in `0..=nmax` with
/// `x ≈ scale · L − min`, trying `nstep + 1` inverse scales and solving the weighted least
/// squares for (scale, min) at each. Returns `(scale, min)` with `min ≥ 0`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    w: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let (mut sum_w, mut sum_x) = (w[0], w[0] * x[0]);
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        best_error += w[i] * err(scale * l as f32 + min - x[i]);
    }
    let mut laux = [0u8; 32];
    let laux = &mut laux[..n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let lf = l as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let cur: f32 = (0..n)
                .map(|i| w[i] * err(this_scale * laux[i] as f32 + this_min - x[i]))
                .sum();
            if cur < best_error {
                l_out.copy_from_slice(laux);
                best_error = cur;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs 2-bit codes the Q2_K / Q3_K / TQ2_0 way: value `128h + 32s + l` at bits `2s` of
/// byte `32h + l`.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; 64]) {
    *qs = [0; 64];
    for (i, &v) in l.iter().enumerate() {
        let (half, shift, j) = (i / 128, (i / 32) % 4, i % 32);
        qs[32 * half + j] |= (v & 3) << (2 * shift);
    }
}

/// Q2_K reference quantizer: per 16 values a scale/min search on 4 levels with |x| weights
/// (mean absolute error), then 4-bit scales and mins relative to the largest.
pub fn quant_q2_k(x: &[f32], b: &mut BlockQ2K) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        let w: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
        let (s, m) = make_qkx2_quants(3, xs, &w, &mut l[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
        scales[j] = s;
        mins[j] = m;
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    b.scales = [0; 16];
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for j in 0..16 {
            b.scales[j] = nearest_int(iscale * scales[j]).clamp(0, 15) as u8;
        }
        b.d = to_f16_le(max_scale / 15.0);
    } else {
        b.d = to_f16_le(0.0);
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for j in 0..16 {
            b.scales[j] |= (nearest_int(iscale * mins[j]).clamp(0, 15) as u8) << 4;
        }
        b.dmin = to_f16_le(max_min / 15.0);
    } else {
        b.dmin = to_f16_le(0.0);
    }
    let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
    for j in 0..16 {
        let dl = d * (b.scales[j] & 0x0F) as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin * (b.scales[j] >> 4) as f32;
        for i in 16 * j..16 * j + 16 {
            l[i] = nearest_int((x[i] + ml) / dl).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&l, &mut b.qs);
}

/// Q3_K reference quantizer: per 16 values a symmetric scale search on 8 levels (the
/// `make_qx_quants` search; ggml's reference uses a close variant, so bytes may differ),
/// then 6-bit signed scales relative to the largest.
pub fn quant_q3_k(x: &[f32], b: &mut BlockQ3K) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    for j in 0..16 {
        scales[j] = make_qx_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > max_scale.abs() {
            max_scale = scales[j];
        }
    }
    b.scales = [0; 12];
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            let v = (nearest_int(iscale * s).clamp(-32, 31) + 32) as u8;
            if j < 8 {
                b.scales[j] |= v & 0x0F;
            } else {
                b.scales[j - 8] |= (v & 0x0F) << 4;
            }
            b.scales[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
        }
        b.d = to_f16_le(1.0 / iscale);
    } else {
        b.d = to_f16_le(0.0);
    }
    let d = f16_le(b.d);
    let sc = q3_k_scales(&b.scales);
    for j in 0..16 {
        let dl = d * sc[j] as f32;
        if dl == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / dl).clamp(-4, 3) + 4) as u8;
        }
    }
    b.hmask = [0; 32];
    for (i, v) in l.iter_mut().enumerate() {
        if *v > 3 {
            b.hmask[i % 32] |= 1 << (i / 32);
            *v -= 4;
        }
    }
    pack_2bit(&l, &mut b.qs);
}

/// The shared part of Q4_K and Q5_K: per 32-value sub-block scale/min search, 6-bit packing,
/// then the final codes in `0..=nmax` against the rounded scales.
fn quant_k_scale_min(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
) -> ([u8; 2], [u8; 2], [u8; 12]) {
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let av_x = (xs.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (s, m) = make_qkx2_quants(
            nmax,
            xs,
            &w,
            &mut l[32 * j..32 * j + 32],
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = s;
        mins[j] = m;
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        ls[j] = nearest_int(inv_scale * scales[j]).clamp(0, 63) as u8;
        lm[j] = nearest_int(inv_min * mins[j]).clamp(0, 63) as u8;
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let (d, dmin) = (to_f16_le(max_scale / 63.0), to_f16_le(max_min / 63.0));
    let (df, dminf) = (f16_le(d), f16_le(dmin));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dl = df * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let dm = dminf * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / dl).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed)
}

/// Q4_K reference quantizer: per 32 values a scale/min search on 16 levels with
/// `rms + |x|` weights, 6-bit scales and mins.
pub fn quant_q4_k(x: &[f32], b: &mut BlockQ4K) {
    let mut l = [0u8; QK_K];
    let (d, dmin, scales) = quant_k_scale_min(x, 15, -1.0, 20, &mut l);
    b.d = d;
    b.dmin = dmin;
    b.scales = scales;
    for c in 0..4 {
        for j in 0..32 {
            b.qs[32 * c + j] = l[64 * c + j] | (l[64 * c + 32 + j] << 4);
        }
    }
}

/// Q5_K reference quantizer: as Q4_K on 32 levels.
pub fn quant_q5_k(x: &[f32], b: &mut BlockQ5K) {
    let mut l = [0u8; QK_K];
    let (d, dmin, scales) = quant_k_scale_min(x, 31, -0.5, 15, &mut l);
    b.d = d;
    b.dmin = dmin;
    b.scales = scales;
    b.qh = [0; 32];
    for (i, v) in l.iter_mut().enumerate() {
        if *v > 15 {
            b.qh[i % 32] |= 1 << (i / 32);
            *v -= 16;
        }
    }
    for c in 0..4 {
        for j in 0..32 {
            b.qs[32 * c + j] = l[64 * c + j] | (l[64 * c + 32 + j] << 4);
        }
    }
}

/// Q6_K reference quantizer: per 16 values a symmetric scale search on 64 levels, 8-bit
/// signed scales relative to the largest.
pub fn quant_q6_k(x: &[f32], b: &mut BlockQ6K) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    for j in 0..16 {
        scales[j] = make_qx_quants(32, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > max_scale.abs() {
            max_scale = scales[j];
        }
    }
    if max_scale.abs() < GROUP_MAX_EPS {
        *b = BlockQ6K {
            ql: [0; 128],
            qh: [0; 64],
            scales: [0; 16],
            d: [0; 2],
        };
        return;
    }
    let iscale = -128.0 / max_scale;
    b.d = to_f16_le(1.0 / iscale);
    for j in 0..16 {
        b.scales[j] = nearest_int(iscale * scales[j]).clamp(-128, 127) as i8 as u8;
    }
    let d = f16_le(b.d);
    for j in 0..16 {
        let dl = d * (b.scales[j] as i8) as f32;
        if dl == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / dl).clamp(-32, 31) + 32) as u8;
        }
    }
    b.qh = [0; 64];
    for h in 0..2 {
        for j in 0..32 {
            let base = 128 * h + j;
            let q = [l[base], l[base + 32], l[base + 64], l[base + 96]];
            b.ql[64 * h + j] = (q[0] & 0x0F) | ((q[2] & 0x0F) << 4);
            b.ql[64 * h + 32 + j] = (q[1] & 0x0F) | ((q[3] & 0x0F) << 4);
            b.qh[32 * h + j] =
                (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
}
