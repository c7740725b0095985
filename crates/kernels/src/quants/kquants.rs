//! K-quants: 256-value super-blocks with per-sub-block scales (Q2_K … Q6_K, Q8_K).
//!
//! Dequantizers follow ggml's float operation order (sub-block scale `d·sc` first, then
//! `· q`, then `− dmin·m`) so results are bit-exact.

use super::blocks::*;

// ---------------------------------------------------------------- dequantization

pub fn dequant_q2_k(b: &BlockQ2K, y: &mut [f32]) {
    let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
    for (i, o) in y.iter_mut().enumerate() {
        let (half, shift, l) = (i / 128, (i / 32) % 4, i % 32);
        let q = (b.qs[32 * half + l] >> (2 * shift)) & 3;
        let sc = b.scales[i / 16];
        let dl = d * (sc & 0x0F) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *o = dl * q as f32 - ml;
    }
}

/// The 16 signed 6-bit sub-block scales of a Q3_K block.
pub fn q3_k_scales(s: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

pub fn dequant_q3_k(b: &BlockQ3K, y: &mut [f32]) {
    let d = f16_le(b.d);
    let scales = q3_k_scales(&b.scales);
    for (i, o) in y.iter_mut().enumerate() {
        let (half, shift, l) = (i / 128, (i / 32) % 4, i % 32);
        let low = ((b.qs[32 * half + l] >> (2 * shift)) & 3) as i32;
        let high_clear = ((b.hmask[l] >> (i / 32)) & 1) == 0;
        let q = low - if high_clear { 4 } else { 0 };
        let dl = d * scales[i / 16] as f32;
        *o = dl * q as f32;
    }
}

pub fn dequant_q4_k(b: &BlockQ4K, y: &mut [f32]) {
    let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
    for c in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * c, &b.scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, &b.scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let q = &b.qs[32 * c..32 * c + 32];
        let out = &mut y[64 * c..64 * c + 64];
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0x0F) as f32 - min1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - min2;
        }
    }
}

pub fn dequant_q5_k(b: &BlockQ5K, y: &mut [f32]) {
    let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
    for c in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * c, &b.scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, &b.scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let q = &b.qs[32 * c..32 * c + 32];
        let out = &mut y[64 * c..64 * c + 64];
        for l in 0..32 {
            let h1 = (b.qh[l] >> (2 * c)) & 1;
            let h2 = (b.qh[l] >> (2 * c + 1)) & 1;
            out[l] = d1 * ((q[l] & 0x0F) | (h1 << 4)) as f32 - min1;
            out[l + 32] = d2 * ((q[l] >> 4) | (h2 << 4)) as f32 - min2;
        }
    }
}

pub fn dequant_q6_k(b: &BlockQ6K, y: &mut [f32]) {
    let d = f16_le(b.d);
    for h in 0..2 {
        let ql = &b.ql[64 * h..64 * h + 64];
        let qh = &b.qh[32 * h..32 * h + 32];
        let sc = &b.scales[8 * h..8 * h + 8];
        let out = &mut y[128 * h..128 * h + 128];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let dl = d * (sc[is + 2 * k] as i8) as f32;
                out[l + 32 * k] = dl * (qk as i32 - 32) as f32;
            }
        }
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
