//! Portable scalar block dots: the reference twins of the SIMD kernels. Each reads one weight
//! block and one activation block and returns their f32 dot product.

use std::marker::PhantomData;

use super::{drive, rd_f16, rd_f32, rd_i16, rd_u32, Micro, Region};
use crate::act::{A256, A32};
use crate::quants::{block_at, scale_min_k4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};

/// One weight block type's scalar dot with its activation block.
pub trait BlockDot {
    /// Weight block bytes.
    const WB: usize;
    /// Activation block bytes.
    const AB: usize;
    /// # Safety
    /// `w` and `a` must point at one whole block each.
    unsafe fn dot(w: *const u8, a: *const u8) -> f32;
}

/// The scalar tile: every (row, token) pair is an independent dot.
pub struct Scalar<B>(PhantomData<B>);

impl<B: BlockDot> Micro for Scalar<B> {
    #[inline(always)]
    unsafe fn tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        a: [*const u8; T],
        nb: usize,
    ) -> [[f32; T]; R] {
        // SAFETY: `w[i]` points at `nb` weight blocks and `a[j]` at `nb` activation blocks (the
        // trait's contract): block `b < nb` lies at `b` times the block size, so each `B::dot`
        // gets one whole block of each.
        unsafe {
            let mut out = [[0f32; T]; R];
            for (wi, o) in w.iter().zip(out.iter_mut()) {
                for (aj, v) in a.iter().zip(o.iter_mut()) {
                    let mut s = 0f32;
                    for b in 0..nb {
                        s += B::dot(wi.add(b * B::WB), aj.add(b * B::AB));
                    }
                    *v = s;
                }
            }
            out
        }
    }
}

/// 32 weight values as integers with `w = d · q + m`.
struct W32 {
    q: [i32; 32],
    d: f32,
    m: f32,
}

/// Nibbles of 16 bytes: byte `j` holds value `j` (low) and `j + 16` (high).
#[inline(always)]
unsafe fn nibbles(qs: *const u8, q: &mut [i32; 32]) {
    // SAFETY: callers pass `qs` readable for 16 bytes (a block's packed nibbles).
    unsafe {
        for j in 0..16 {
            let b = *qs.add(j);
            q[j] = (b & 0x0F) as i32;
            q[j + 16] = (b >> 4) as i32;
        }
    }
}

/// Adds the 5th bits of a Q5 block (bit `i` of `qh` to value `i`).
#[inline(always)]
fn fifth_bits(qh: u32, q: &mut [i32; 32]) {
    for (i, v) in q.iter_mut().enumerate() {
        *v |= (((qh >> i) & 1) << 4) as i32;
    }
}

#[inline(always)]
unsafe fn dot32(w: &W32, a: *const u8) -> f32 {
    // SAFETY: callers pass `a` pointing at one whole A32 block; the reads are at offsets below
    // `A32::BYTES`.
    unsafe {
        let da = rd_f32(a);
        let sa = rd_f32(a.add(4));
        let mut s = 0i32;
        for i in 0..32 {
            s += w.q[i] * (*a.add(A32::Q + i) as i8 as i32);
        }
        w.d * da * s as f32 + w.m * sa
    }
}

macro_rules! block32 {
    ($name:ident, $wb:expr, |$w:ident| $unpack:block) => {
        pub struct $name;
        impl BlockDot for $name {
            const WB: usize = $wb;
            const AB: usize = A32::BYTES;
            #[inline(always)]
            unsafe fn dot($w: *const u8, a: *const u8) -> f32 {
                let w: W32 = $unpack;
                // SAFETY: `a` points at one whole A32 block (this function's contract).
                unsafe { dot32(&w, a) }
            }
        }
    };
}

block32!(Q4_0, 18, |p| {
    // SAFETY: `p` points at one whole 18-byte Q4_0 block (`BlockDot::dot`'s contract); every offset
    // read is inside it (layout: `quants::blocks`).
    unsafe {
        let mut q = [0; 32];
        nibbles(p.add(2), &mut q);
        let d = rd_f16(p);
        W32 { q, d, m: -8.0 * d }
    }
});
block32!(Q4_1, 20, |p| {
    // SAFETY: `p` points at one whole 20-byte Q4_1 block (`BlockDot::dot`'s contract); every offset
    // read is inside it (layout: `quants::blocks`).
    unsafe {
        let mut q = [0; 32];
        nibbles(p.add(4), &mut q);
        W32 {
            q,
            d: rd_f16(p),
            m: rd_f16(p.add(2)),
        }
    }
});
block32!(Q5_0, 22, |p| {
    // SAFETY: `p` points at one whole 22-byte Q5_0 block (`BlockDot::dot`'s contract); every offset
    // read is inside it (layout: `quants::blocks`).
    unsafe {
        let mut q = [0; 32];
        nibbles(p.add(6), &mut q);
        fifth_bits(rd_u32(p.add(2)), &mut q);
        let d = rd_f16(p);
        W32 { q, d, m: -16.0 * d }
    }
});
block32!(Q5_1, 24, |p| {
    // SAFETY: `p` points at one whole 24-byte Q5_1 block (`BlockDot::dot`'s contract); every offset
    // read is inside it (layout: `quants::blocks`).
    unsafe {
        let mut q = [0; 32];
        nibbles(p.add(8), &mut q);
        fifth_bits(rd_u32(p.add(4)), &mut q);
        W32 {
            q,
            d: rd_f16(p),
            m: rd_f16(p.add(2)),
        }
    }
});
block32!(Q8_0, 34, |p| {
    // SAFETY: `p` points at one whole 34-byte Q8_0 block (`BlockDot::dot`'s contract); every offset
    // read is inside it (layout: `quants::blocks`).
    unsafe {
        let mut q = [0; 32];
        for (i, v) in q.iter_mut().enumerate() {
            *v = *p.add(2 + i) as i8 as i32;
        }
        W32 {
            q,
            d: rd_f16(p),
            m: 0.0,
        }
    }
});

/// Activation value `i` of an A256 block.
#[inline(always)]
unsafe fn aq(a: *const u8, i: usize) -> i32 {
    // SAFETY: callers pass `a` pointing at one whole A256 block and `i < 256`.
    unsafe { *a.add(A256::Q + i) as i8 as i32 }
}

/// The 16-value sum `j` of an A256 block.
#[inline(always)]
unsafe fn bsum(a: *const u8, j: usize) -> i32 {
    // SAFETY: callers pass `a` pointing at one whole A256 block and `j < 16`.
    unsafe { rd_i16(a.add(A256::BSUMS + 2 * j)) as i32 }
}

macro_rules! block256 {
    ($name:ident, $wb:expr, |$w:ident, $a:ident| $body:block) => {
        pub struct $name;
        impl BlockDot for $name {
            const WB: usize = $wb;
            const AB: usize = A256::BYTES;
            #[inline(always)]
            unsafe fn dot($w: *const u8, $a: *const u8) -> f32 {
                $body
            }
        }
    };
}

/// Σ over 8 sub-blocks of 32: `sc · Σ q·a` and `m · Σ a`, for Q4_K and Q5_K values `v` with
/// the packed `scales` (f16 `d` and `dmin` are the block's first 4 bytes, at `p`).
#[inline(always)]
unsafe fn k4_sums(p: *const u8, scales: &[u8; 12], a: *const u8, v: &[u8; 256]) -> f32 {
    // SAFETY: callers pass `p` pointing at one whole Q4_K / Q5_K block (`d` and `dmin` are its
    // first 4 bytes) and `a` at one whole A256 block.
    unsafe {
        let (mut sumi, mut summ) = (0i32, 0i32);
        for s in 0..8 {
            let (sc, m) = scale_min_k4(s, scales);
            let dot: i32 = (0..32)
                .map(|i| v[32 * s + i] as i32 * aq(a, 32 * s + i))
                .sum();
            sumi += sc as i32 * dot;
            summ += m as i32 * (bsum(a, 2 * s) + bsum(a, 2 * s + 1));
        }
        rd_f32(a) * (rd_f16(p) * sumi as f32 - rd_f16(p.add(2)) * summ as f32)
    }
}

block256!(Q4K, 144, |p, a| {
    // SAFETY: `p` points at one whole 144-byte Q4_K block and `a` at one whole A256 block
    // (`BlockDot::dot`'s contract); every offset read is inside them (layout: `quants::blocks`).
    unsafe {
        let b = block_at::<BlockQ4K>(p);
        k4_sums(p, &b.scales, a, &b.values())
    }
});

block256!(Q5K, 176, |p, a| {
    // SAFETY: `p` points at one whole 176-byte Q5_K block and `a` at one whole A256 block
    // (`BlockDot::dot`'s contract); every offset read is inside them (layout: `quants::blocks`).
    unsafe {
        let b = block_at::<BlockQ5K>(p);
        k4_sums(p, &b.scales, a, &b.values())
    }
});

block256!(Q6K, 210, |p, a| {
    // SAFETY: `p` points at one whole 210-byte Q6_K block and `a` at one whole A256 block
    // (`BlockDot::dot`'s contract); every offset read is inside them (layout: `quants::blocks`).
    unsafe {
        let b = block_at::<BlockQ6K>(p);
        let v = b.values();
        let mut sumi = 0i32;
        for s in 0..16 {
            let dot: i32 = (0..16)
                .map(|i| v[16 * s + i] as i32 * aq(a, 16 * s + i))
                .sum();
            sumi += b.scale(s) as i32 * dot;
        }
        rd_f32(a) * rd_f16(p.add(208)) * sumi as f32
    }
});

block256!(Q2K, 84, |p, a| {
    // SAFETY: `p` points at one whole 84-byte Q2_K block and `a` at one whole A256 block
    // (`BlockDot::dot`'s contract); every offset read is inside them (layout: `quants::blocks`).
    unsafe {
        let b = block_at::<BlockQ2K>(p);
        let v = b.values();
        let (mut sumi, mut summ) = (0i32, 0i32);
        for (i, &q) in v.iter().enumerate() {
            sumi += b.scale_min(i / 16).0 as i32 * q as i32 * aq(a, i);
        }
        for j in 0..16 {
            summ += b.scale_min(j).1 as i32 * bsum(a, j);
        }
        rd_f32(a) * (rd_f16(p.add(80)) * sumi as f32 - rd_f16(p.add(82)) * summ as f32)
    }
});

block256!(Q3K, 110, |p, a| {
    // SAFETY: `p` points at one whole 110-byte Q3_K block and `a` at one whole A256 block
    // (`BlockDot::dot`'s contract); every offset read is inside them (layout: `quants::blocks`).
    unsafe {
        let b = block_at::<BlockQ3K>(p);
        let (sc, v) = (b.scales(), b.values());
        let mut sumi = 0i32;
        for i in 0..256 {
            sumi += sc[i / 16] as i32 * v[i] as i32 * aq(a, i);
        }
        rd_f32(a) * rd_f16(p.add(108)) * sumi as f32
    }
});

/// The scalar region kernel of block type `B` (every `(row, token)` an independent dot).
///
/// # Safety
/// As [`super::RegionFn`].
pub(crate) unsafe fn region<B: BlockDot>(g: &Region) {
    // SAFETY: the callee's contract is this function's (see `# Safety`), and the CPU features it
    // needs are the caller's guarantee and enabled here.
    unsafe { drive::<Scalar<B>, 1, 1>(g) }
}
