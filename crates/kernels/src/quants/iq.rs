//! Lattice ("i-quant") types: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M.
//!
//! Groups of 8 (or 4) values are stored as an index into a fixed grid of lattice points, with
//! the signs kept separately: IQ2_XXS / IQ2_XS / IQ3_XXS store a 7-bit sign index whose 8th
//! sign is implied by even parity ([`KSIGNS`]), IQ2_S / IQ3_S store all 8 sign bits, and the
//! IQ1 types have no signs (the grid is ternary, shifted by ±1/8). Dequantization only; there
//! are no quantizers for these types here.

#![allow(clippy::needless_range_loop)]

use super::blocks::*;
use super::iq_grids::*;

/// Expands 8-value grid codes (2 bits each) into value vectors.
const fn expand8<const N: usize>(codes: &[u16; N], levels: [i8; 3]) -> [[i8; 8]; N] {
    let mut out = [[0i8; 8]; N];
    let mut i = 0;
    while i < N {
        let mut j = 0;
        while j < 8 {
            out[i][j] = levels[((codes[i] >> (2 * j)) & 3) as usize];
            j += 1;
        }
        i += 1;
    }
    out
}

/// Expands 4-value grid codes (3 bits each) into value vectors.
const fn expand4<const N: usize>(codes: &[u16; N], levels: [i8; 8]) -> [[i8; 4]; N] {
    let mut out = [[0i8; 4]; N];
    let mut i = 0;
    while i < N {
        let mut j = 0;
        while j < 4 {
            out[i][j] = levels[((codes[i] >> (3 * j)) & 7) as usize];
            j += 1;
        }
        i += 1;
    }
    out
}

const IQ2_LEVELS: [i8; 3] = [8, 25, 43];
static IQ2XXS_GRID: [[i8; 8]; 256] = expand8(&IQ2XXS_CODES, IQ2_LEVELS);
static IQ2XS_GRID: [[i8; 8]; 512] = expand8(&IQ2XS_CODES, IQ2_LEVELS);
static IQ2S_GRID: [[i8; 8]; 1024] = expand8(&IQ2S_CODES, IQ2_LEVELS);
static IQ3XXS_GRID: [[i8; 4]; 256] = expand4(&IQ3XXS_CODES, [4, 12, 20, 28, 36, 44, 52, 62]);
static IQ3S_GRID: [[i8; 4]; 512] = expand4(&IQ3S_CODES, [1, 3, 5, 7, 9, 11, 13, 15]);
static IQ1S_GRID: [[i8; 8]; 2048] = expand8(&IQ1S_CODES, [-1, 0, 1]);

/// The ±1/8 shift of the IQ1 grids.
const IQ1_DELTA: f32 = 0.125;

/// 7 stored sign bits → 8 sign bits: bit 7 makes the number of negative signs even.
pub const KSIGNS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = i as u8 | (((i as u32).count_ones() as u8 & 1) << 7);
        i += 1;
    }
    t
};

#[inline]
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

#[inline]
fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

/// `value · (−1 if bit j of signs)`.
#[inline]
fn signed(v: f32, signs: u8, j: usize) -> f32 {
    if (signs >> j) & 1 == 1 {
        -v
    } else {
        v
    }
}

pub fn dequant_iq2_xxs(b: &BlockIQ2XXS, y: &mut [f32]) {
    let d = f16_le(b.d);
    for ib in 0..8 {
        let grids = u32_at(&b.qs, 8 * ib);
        let aux = u32_at(&b.qs, 8 * ib + 4);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.25;
        for l in 0..4 {
            let grid = &IQ2XXS_GRID[((grids >> (8 * l)) & 0xFF) as usize];
            let signs = KSIGNS[((aux >> (7 * l)) & 0x7F) as usize];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = signed(db * grid[j] as f32, signs, j);
            }
        }
    }
}

pub fn dequant_iq2_xs(b: &BlockIQ2XS, y: &mut [f32]) {
    let d = f16_le(b.d);
    for g in 0..32 {
        let q = u16_at(&b.qs, 2 * g);
        let s = (b.scales[g / 4] >> (4 * ((g / 2) % 2))) & 0x0F;
        let db = d * (0.5 + s as f32) * 0.25;
        let grid = &IQ2XS_GRID[(q & 511) as usize];
        let signs = KSIGNS[(q >> 9) as usize];
        for j in 0..8 {
            y[8 * g + j] = signed(db * grid[j] as f32, signs, j);
        }
    }
}

pub fn dequant_iq2_s(b: &BlockIQ2S, y: &mut [f32]) {
    let d = f16_le(b.d);
    for g in 0..32 {
        let idx = b.qs[g] as usize | ((((b.qh[g / 4] >> (2 * (g % 4))) & 3) as usize) << 8);
        let s = (b.scales[g / 4] >> (4 * ((g / 2) % 2))) & 0x0F;
        let db = d * (0.5 + s as f32) * 0.25;
        let grid = &IQ2S_GRID[idx];
        for j in 0..8 {
            y[8 * g + j] = signed(db * grid[j] as f32, b.signs[g], j);
        }
    }
}

pub fn dequant_iq3_xxs(b: &BlockIQ3XXS, y: &mut [f32]) {
    let d = f16_le(b.d);
    for ib in 0..8 {
        let aux = u32_at(&b.scales_signs, 4 * ib);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
        for l in 0..4 {
            let signs = KSIGNS[((aux >> (7 * l)) & 0x7F) as usize];
            let g1 = &IQ3XXS_GRID[b.qs[8 * ib + 2 * l] as usize];
            let g2 = &IQ3XXS_GRID[b.qs[8 * ib + 2 * l + 1] as usize];
            for j in 0..8 {
                let g = if j < 4 { g1[j] } else { g2[j - 4] };
                y[32 * ib + 8 * l + j] = signed(db * g as f32, signs, j);
            }
        }
    }
}

pub fn dequant_iq3_s(b: &BlockIQ3S, y: &mut [f32]) {
    let d = f16_le(b.d);
    for ib in 0..8 {
        let s = (b.scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        let db = d * (1 + 2 * s) as f32;
        for k in 8 * ib..8 * ib + 8 {
            let idx = b.qs[k] as usize | ((((b.qh[k / 8] >> (k % 8)) & 1) as usize) << 8);
            let grid = &IQ3S_GRID[idx];
            for j in 0..4 {
                let i = 4 * k + j;
                y[i] = signed(db * grid[j] as f32, b.signs[i / 8], i % 8);
            }
        }
    }
}

pub fn dequant_iq1_s(b: &BlockIQ1S, y: &mut [f32]) {
    let d = f16_le(b.d);
    for ib in 0..8 {
        let qh = u16_at(&b.qh, 2 * ib);
        let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
        let delta = if qh & 0x8000 == 0 {
            IQ1_DELTA
        } else {
            -IQ1_DELTA
        };
        for l in 0..4 {
            let idx = b.qs[4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
            let grid = &IQ1S_GRID[idx];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = dl * (grid[j] as f32 + delta);
            }
        }
    }
}

pub fn dequant_iq1_m(b: &BlockIQ1M, y: &mut [f32]) {
    let sc = [
        u16_at(&b.scales, 0),
        u16_at(&b.scales, 2),
        u16_at(&b.scales, 4),
        u16_at(&b.scales, 6),
    ];
    // the f16 super-block scale is spread over the top nibbles of the four scale words
    let d_bits =
        (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000);
    let d = f16_le(d_bits.to_le_bytes());
    for k in 0..32 {
        let s = (sc[k / 8] >> (3 * ((k / 2) % 4))) & 7;
        let dl = d * (2 * s + 1) as f32;
        let nib = (b.qh[k / 2] >> (4 * (k % 2))) & 0x0F;
        let idx = b.qs[k] as usize | (((nib & 7) as usize) << 8);
        let delta = if nib & 8 == 0 { IQ1_DELTA } else { -IQ1_DELTA };
        let grid = &IQ1S_GRID[idx];
        for j in 0..8 {
            y[8 * k + j] = dl * (grid[j] as f32 + delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grids list their points in increasing code order; a damaged table breaks that.
    #[test]
    fn grid_codes_strictly_increase() {
        let tables: [(&str, &[u16]); 6] = [
            ("IQ2XXS", &IQ2XXS_CODES),
            ("IQ2XS", &IQ2XS_CODES),
            ("IQ2S", &IQ2S_CODES),
            ("IQ3XXS", &IQ3XXS_CODES),
            ("IQ3S", &IQ3S_CODES),
            ("IQ1S", &IQ1S_CODES),
        ];
        for (name, codes) in tables {
            assert!(codes.windows(2).all(|w| w[0] < w[1]), "{name}");
        }
        // 4-value grids use 12 bits, 8-value grids 16
        assert!(IQ3XXS_CODES.iter().chain(&IQ3S_CODES).all(|&c| c < 1 << 12));
        // the ternary codes never use the unused value 3
        for codes in [&IQ2XXS_CODES[..], &IQ2XS_CODES, &IQ2S_CODES, &IQ1S_CODES] {
            for &c in codes {
                assert!((0..8).all(|j| (c >> (2 * j)) & 3 != 3), "{c:#06x}");
            }
        }
    }

    #[test]
    fn expanded_grids_hold_the_levels() {
        assert_eq!(IQ2XXS_GRID[0], [8; 8]);
        assert_eq!(IQ1S_GRID[0], [-1; 8]);
        assert_eq!(IQ3XXS_GRID[0], [4; 4]);
        assert_eq!(IQ3S_GRID[0], [1; 4]);
        assert!(IQ2S_GRID.iter().flatten().all(|v| [8, 25, 43].contains(v)));
    }
}
