//! Table-mapped and ternary types: IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4.

use super::blocks::*;

/// The 16 non-uniform levels of IQ4_NL / IQ4_XS.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The 16 E2M1 (fp4) values, doubled so they are integers: sign bit 3, then 0, 0.5, 1, 1.5,
/// 2, 3, 4, 6 times two.
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

// ---------------------------------------------------------------- dequantization

pub fn dequant_iq4_nl(b: &BlockIQ4NL, y: &mut [f32]) {
    let d = f16_le(b.d);
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = d * KVALUES_IQ4NL[(q & 0x0F) as usize] as f32;
        y[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
    }
}

pub fn dequant_iq4_xs(b: &BlockIQ4XS, y: &mut [f32]) {
    let d = f16_le(b.d);
    let sh = u16::from_le_bytes(b.scales_h);
    for (j, out) in y.chunks_exact_mut(32).enumerate() {
        let low = (b.scales_l[j / 2] >> (4 * (j % 2))) & 0x0F;
        let high = ((sh >> (2 * j)) & 3) as u8;
        let dl = d * ((low | (high << 4)) as i32 - 32) as f32;
        let qs = &b.qs[16 * j..16 * j + 16];
        for l in 0..16 {
            out[l] = dl * KVALUES_IQ4NL[(qs[l] & 0x0F) as usize] as f32;
            out[l + 16] = dl * KVALUES_IQ4NL[(qs[l] >> 4) as usize] as f32;
        }
    }
}

/// Trit `k` of a TQ1_0 byte: the byte is a fraction of 256, multiplying by 3^k (mod 256)
/// brings trit k to the top, and `·3 >> 8` reads it.
#[inline]
fn trit(byte: u8, pow3: u8) -> i32 {
    let v = byte.wrapping_mul(pow3) as u16;
    ((v * 3) >> 8) as i32 - 1
}

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

pub fn dequant_tq1_0(b: &BlockTQ1_0, y: &mut [f32]) {
    let d = f16_le(b.d);
    // values 0..160: 5 trits of qs[0..32]; 160..240: 5 trits of qs[32..48]; 240..256: 4 of qh
    for (k, &p) in POW3.iter().enumerate() {
        for l in 0..32 {
            y[32 * k + l] = d * trit(b.qs[l], p) as f32;
        }
        for l in 0..16 {
            y[160 + 16 * k + l] = d * trit(b.qs[32 + l], p) as f32;
        }
    }
    for (k, &p) in POW3[..4].iter().enumerate() {
        for l in 0..4 {
            y[240 + 4 * k + l] = d * trit(b.qh[l], p) as f32;
        }
    }
}

pub fn dequant_tq2_0(b: &BlockTQ2_0, y: &mut [f32]) {
    let d = f16_le(b.d);
    for (i, o) in y.iter_mut().enumerate() {
        let (half, shift, l) = (i / 128, (i / 32) % 4, i % 32);
        let q = ((b.qs[32 * half + l] >> (2 * shift)) & 3) as i32 - 1;
        *o = d * q as f32;
    }
}

/// `2^(e − 128)`: an E8M0 exponent, halved to undo the doubled table values.
#[inline]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        ((e - 1) as u32) << 23
    };
    f32::from_bits(bits)
}

pub fn dequant_mxfp4(b: &BlockMXFP4, y: &mut [f32]) {
    let d = e8m0_half(b.e);
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = d * KVALUES_MXFP4[(q & 0x0F) as usize] as f32;
        y[j + 16] = d * KVALUES_MXFP4[(q >> 4) as usize] as f32;
    }
}

// ---------------------------------------------------------------- quantization

/// Ternary codes 0, 1, 2 for `x / absmax` rounded (halves away from zero), and the scale.
fn ternary(x: &[f32], codes: &mut [u8; QK_K]) -> f32 {
    let d = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    for (c, &v) in codes.iter_mut().zip(x) {
        *c = ((v * id).round().clamp(-1.0, 1.0) as i32 + 1) as u8;
    }
    d
}

pub fn quant_tq1_0(x: &[f32], b: &mut BlockTQ1_0) {
    let mut q = [0u8; QK_K];
    let d = ternary(x, &mut q);
    // base-3 digits, most significant first, then stored as ceil(n · 256 / 243)
    let pack = |n: u8| (n as u16 * 256).div_ceil(243) as u8;
    for l in 0..32 {
        let n = (0..5).fold(0u8, |acc, k| acc * 3 + q[32 * k + l]);
        b.qs[l] = pack(n);
    }
    for l in 0..16 {
        let n = (0..5).fold(0u8, |acc, k| acc * 3 + q[160 + 16 * k + l]);
        b.qs[32 + l] = pack(n);
    }
    for l in 0..4 {
        // four trits, then a zero fifth digit
        let n = (0..4).fold(0u8, |acc, k| acc * 3 + q[240 + 4 * k + l]) * 3;
        b.qh[l] = pack(n);
    }
    b.d = to_f16_le(d);
}

pub fn quant_tq2_0(x: &[f32], b: &mut BlockTQ2_0) {
    let mut q = [0u8; QK_K];
    let d = ternary(x, &mut q);
    b.qs = [0; 64];
    for (i, &c) in q.iter().enumerate() {
        let (half, shift, l) = (i / 128, (i / 32) % 4, i % 32);
        b.qs[32 * half + l] |= c << (2 * shift);
    }
    b.d = to_f16_le(d);
}

pub fn quant_mxfp4(x: &[f32], b: &mut BlockMXFP4) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    // shared exponent: floor(log2(amax)) − 2, so the largest value lands near the top code (±6)
    let e = if amax > 0.0 {
        // floor(log2(amax)): exact from the exponent bits for normal numbers
        let biased = (amax.to_bits() >> 23) & 0xFF;
        let floor_log2 = if biased != 0 {
            biased as f32 - 127.0
        } else {
            amax.log2().floor()
        };
        (floor_log2 - 2.0 + 127.0).clamp(0.0, 255.0) as u8
    } else {
        0
    };
    let d = e8m0_half(e);
    let code = |v: f32| -> u8 {
        let mut best = 0usize;
        let mut best_err = f32::INFINITY;
        for (k, &kv) in KVALUES_MXFP4.iter().enumerate() {
            let err = (d * kv as f32 - v).abs();
            if err < best_err {
                best_err = err;
                best = k;
            }
        }
        best as u8
    };
    b.e = e;
    for j in 0..16 {
        b.qs[j] = code(x[j]) | (code(x[j + 16]) << 4);
    }
}

/// Index of the level in `KVALUES_IQ4NL` nearest to `x` (the lower one on ties).
fn nearest_iq4nl(x: f32) -> u8 {
    let v = &KVALUES_IQ4NL;
    if x <= v[0] as f32 {
        return 0;
    }
    if x >= v[15] as f32 {
        return 15;
    }
    let (mut lo, mut hi) = (0usize, 15usize);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < v[mid] as f32 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - (v[lo] as f32) <= v[hi] as f32 - x {
        lo as u8
    } else {
        hi as u8
    }
}

/// Best scale for one 32-value group on the IQ4_NL levels (ggml's reference search, with
/// `x²` weights): start from `d = −max/127`, try 15 neighbouring inverse scales, keep the
/// least-squares optimum. Writes the level indices to `l`.
fn iq4nl_group(x: &[f32], l: &mut [u8]) -> f32 {
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    if max.abs() < 1e-15 {
        l.fill(0);
        return 0.0;
    }
    let fit = |id: f32, l: &mut [u8]| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for (li, &v) in l.iter_mut().zip(x) {
            *li = nearest_iq4nl(id * v);
            let q = KVALUES_IQ4NL[*li as usize] as f32;
            let w = v * v;
            sumqx += w * q * v;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let k0 = KVALUES_IQ4NL[0] as f32;
    let d0 = -max / k0;
    let (sumqx, sumq2) = fit(1.0 / d0, l);
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { d0 };
    let mut best = d * sumqx;
    let mut trial = [0u8; 32];
    let trial = &mut trial[..x.len()];
    for itry in -7..=7 {
        let id = (itry as f32 + k0) / max;
        let (sumqx, sumq2) = fit(id, trial);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
            l.copy_from_slice(trial);
        }
    }
    d
}

pub fn quant_iq4_nl(x: &[f32], b: &mut BlockIQ4NL) {
    let mut l = [0u8; 32];
    let d = iq4nl_group(x, &mut l);
    b.d = to_f16_le(d);
    // final codes against the stored (rounded) scale
    let dh = f16_le(b.d);
    if dh != 0.0 {
        for (li, &v) in l.iter_mut().zip(x) {
            *li = nearest_iq4nl(v / dh);
        }
    }
    for j in 0..16 {
        b.qs[j] = l[j] | (l[j + 16] << 4);
    }
}

pub fn quant_iq4_xs(x: &[f32], b: &mut BlockIQ4XS) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let mut max_scale = 0f32;
    for (ib, s) in scales.iter_mut().enumerate() {
        *s = iq4nl_group(&x[32 * ib..32 * ib + 32], &mut l[32 * ib..32 * ib + 32]);
        if s.abs() > max_scale.abs() {
            max_scale = *s;
        }
    }
    let d = -max_scale / 32.0;
    b.d = to_f16_le(d);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let dh = f16_le(b.d);
    b.scales_l = [0; 4];
    let mut scales_h = 0u16;
    for (ib, &s) in scales.iter().enumerate() {
        let ls = (nearest_int(id * s).clamp(-32, 31) + 32) as u8;
        b.scales_l[ib / 2] |= (ls & 0x0F) << (4 * (ib % 2));
        scales_h |= ((ls >> 4) as u16) << (2 * ib);
        let dl = dh * (ls as i32 - 32) as f32;
        let group = &mut l[32 * ib..32 * ib + 32];
        if dl != 0.0 {
            for (li, &v) in group.iter_mut().zip(&x[32 * ib..32 * ib + 32]) {
                *li = nearest_iq4nl(v / dl);
            }
        }
        for j in 0..16 {
            b.qs[16 * ib + j] = group[j] | (group[j + 16] << 4);
        }
    }
    b.scales_h = scales_h.to_le_bytes();
}

#[inline]
fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}
