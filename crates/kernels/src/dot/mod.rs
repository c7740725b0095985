//! Quantized weight × 8-bit activation dot products, organised as register tiles.
//!
//! A [`Region`] is a rectangle of the output: `rows` weight rows × `tokens` activation rows.
//! Each weight type has, per dispatch level, one [`RegionFn`] that walks the region in tiles of
//! `R` rows × `T` tokens ([`drive`]): every weight block loaded and unpacked is used for `T`
//! tokens, every activation block for `R` rows.
//!
//! Formulas (per 32-value block; K-quants per sub-block, see each kernel):
//! weight `w = dw · qw + mw` (Q4_0: `mw = −8·dw`, Q5_0: `−16·dw`, Q4_1/Q5_1: the stored min,
//! Q8_0: signed `qw`, `mw = 0`), activation `a ≈ da · qa`, so
//! `Σ w·a ≈ dw·da·Σ qw·qa + mw·sa` with `sa = da·Σ qa` stored in the activation block.

use gguf::GgmlType;

use crate::act::{A256, A32};
use crate::cpu::Level;

pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod exact;

/// One rectangle of a matrix product, as raw pointers (the caller guarantees the extents).
#[derive(Clone, Copy)]
pub struct Region {
    /// First weight row of the region; row `r` starts at `w + r * w_stride`.
    pub w: *const u8,
    pub w_stride: usize,
    /// Weight blocks per row.
    pub nb: usize,
    pub rows: usize,
    /// First activation row; token `t` starts at `a + t * a_stride` (bytes).
    pub a: *const u8,
    pub a_stride: usize,
    pub tokens: usize,
    /// Output: `y[t * y_stride + r]`.
    pub y: *mut f32,
    pub y_stride: usize,
}

/// Computes a whole region.
///
/// # Safety
/// All pointers in the region must be valid for its extents and the CPU must support the
/// level the function belongs to.
pub type RegionFn = unsafe fn(&Region);

/// A register tile kernel: `R` weight rows × `T` tokens over `nb` blocks.
pub trait Micro {
    /// # Safety
    /// `w[i]` must point at `nb` weight blocks, `a[j]` at `nb` activation blocks, and the CPU
    /// must support the instructions the implementation uses.
    unsafe fn tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        a: [*const u8; T],
        nb: usize,
    ) -> [[f32; T]; R];
}

/// Walks a region in `R × T` tiles (with 1-wide tails).
///
/// # Safety
/// As [`RegionFn`].
#[inline(always)]
pub unsafe fn drive<M: Micro, const R: usize, const T: usize>(g: &Region) {
    let mut t0 = 0;
    while t0 + T <= g.tokens {
        rows::<M, R, T>(g, t0);
        t0 += T;
    }
    while t0 < g.tokens {
        rows::<M, R, 1>(g, t0);
        t0 += 1;
    }
}

#[inline(always)]
unsafe fn rows<M: Micro, const R: usize, const T: usize>(g: &Region, t0: usize) {
    let a: [*const u8; T] = std::array::from_fn(|j| g.a.add((t0 + j) * g.a_stride));
    let mut r0 = 0;
    while r0 + R <= g.rows {
        let w: [*const u8; R] = std::array::from_fn(|i| g.w.add((r0 + i) * g.w_stride));
        store(g, r0, t0, M::tile::<R, T>(w, a, g.nb));
        r0 += R;
    }
    while r0 < g.rows {
        store(
            g,
            r0,
            t0,
            M::tile::<1, T>([g.w.add(r0 * g.w_stride)], a, g.nb),
        );
        r0 += 1;
    }
}

#[inline(always)]
unsafe fn store<const R: usize, const T: usize>(
    g: &Region,
    r0: usize,
    t0: usize,
    out: [[f32; T]; R],
) {
    for (i, row) in out.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            *g.y.add((t0 + j) * g.y_stride + r0 + i) = *v;
        }
    }
}

/// Which activation format a weight type pairs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActKind {
    /// [`A32`] with the exact block sum `s = d·Σq` (offsets of Q4_0, Q5_0, and Q8_0 under VNNI).
    A32,
    /// [`A32`] with `s` rounded as GGUF's Q8_1 activation blocks keep it (`f16(d·Σq)`, `d`
    /// unrounded): for Q4_1 and Q5_1, whose minimum multiplies `s`. This is what the reference
    /// implementation computes; measured on SmolLM2 (all Q4_1) against its greedy references,
    /// worst |Δp| 0.166 → 0.095 and mean 0.0068 → 0.0062.
    A32M,
    A256,
}

impl ActKind {
    /// Values per activation block.
    pub fn values(self) -> usize {
        match self {
            ActKind::A32 | ActKind::A32M => A32::VALUES,
            ActKind::A256 => A256::VALUES,
        }
    }
    /// Bytes per activation block.
    pub fn bytes(self) -> usize {
        match self {
            ActKind::A32 | ActKind::A32M => A32::BYTES,
            ActKind::A256 => A256::BYTES,
        }
    }
}

/// The activation format of a quantized weight type, `None` for float types and types
/// without an integer kernel.
pub fn act_kind(ty: GgmlType) -> Option<ActKind> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => Some(ActKind::A32),
        GgmlType::Q4_1 | GgmlType::Q5_1 => Some(ActKind::A32M),
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
            Some(ActKind::A256)
        }
        _ => None,
    }
}

/// The region kernel of `ty` at `level` (`None` if `ty` has no integer kernel).
pub fn region_fn(level: Level, ty: GgmlType) -> Option<RegionFn> {
    #[cfg(target_arch = "x86_64")]
    if level >= Level::Avx512Vnni {
        if let Some(f) = avx512::region_fn(ty) {
            return Some(f);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if level >= Level::Avx2 {
        return avx2::region_fn(ty, level >= Level::Avx512Vnni);
    }
    let _ = level;
    scalar::region_fn(ty)
}

/// The prompt kernel of `ty` at `level` over interleaved activations, where one exists, and
/// its tokens per group (`A32xN`/`A256xN` layouts of [`crate::act`], one token per SIMD
/// lane): 16 with AVX-512 VNNI, 8 with AVX2.
pub fn region_xn_fn(level: Level, ty: GgmlType) -> Option<(RegionFn, usize)> {
    #[cfg(target_arch = "x86_64")]
    if level >= Level::Avx512Vnni {
        if let Some(f) = avx512::region_x16_fn(ty) {
            return Some((f, 16));
        }
    }
    region_x8_fn(level, ty).map(|f| (f, 8))
}

/// The batch-invariant one-token kernel of `ty` at `level`, where one exists: over plain
/// (not interleaved) activations, token by token, it computes bit for bit what a lane of
/// [`region_xn_fn`]`(level, ty)` computes for that token (see [`exact`]).
pub fn region_exact1_fn(level: Level, ty: GgmlType) -> Option<RegionFn> {
    #[cfg(target_arch = "x86_64")]
    if level >= Level::Avx2 {
        return exact::region_fn(ty, level >= Level::Avx512Vnni);
    }
    let _ = (level, ty);
    None
}

/// The 8-token prompt kernel of `ty` at `level` over interleaved activations
/// ([`crate::act::A32x8`] or [`crate::act::A256x8`]), where one exists.
pub fn region_x8_fn(level: Level, ty: GgmlType) -> Option<RegionFn> {
    #[cfg(target_arch = "x86_64")]
    if level >= Level::Avx2 {
        let vnni = level >= Level::Avx512Vnni;
        return avx2::region_x8_fn(ty, vnni).or_else(|| avx2::region_kx8_fn(ty, vnni));
    }
    let _ = (level, ty);
    None
}

/// The activation quantizer of `kind` at `level` (which must be available on this CPU, see
/// [`Level::available`]). The quantizer takes a whole number of blocks and an output of at
/// least their bytes, and panics otherwise, at every level.
pub fn quantizer(level: Level, kind: ActKind) -> fn(&[f32], &mut [u8]) {
    assert!(
        level.available(),
        "{level} kernels are not available on this CPU"
    );
    #[cfg(target_arch = "x86_64")]
    if level >= Level::Avx2 {
        return match kind {
            // SAFETY (all three): `level` is available (checked), and levels >= Avx2 are only
            // available when AVX2 and FMA are present; the functions check their lengths.
            // SAFETY: as above.
            ActKind::A32 => |x, o| unsafe { crate::act::avx2::quantize_a32(x, o) },
            // SAFETY: as above.
            ActKind::A32M => |x, o| unsafe { crate::act::avx2::quantize_a32m(x, o) },
            // SAFETY: as above.
            ActKind::A256 => |x, o| unsafe { crate::act::avx2::quantize_a256(x, o) },
        };
    }
    let _ = level;
    match kind {
        ActKind::A32 => crate::act::quantize_a32_scalar,
        ActKind::A32M => crate::act::quantize_a32m_scalar,
        ActKind::A256 => crate::act::quantize_a256_scalar,
    }
}

/// Little-endian helpers for reading block fields through raw pointers.
#[inline(always)]
pub(crate) unsafe fn rd_f32(p: *const u8) -> f32 {
    f32::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 4]))
}

#[inline(always)]
pub(crate) unsafe fn rd_u32(p: *const u8) -> u32 {
    u32::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 4]))
}

#[inline(always)]
pub(crate) unsafe fn rd_i16(p: *const u8) -> i16 {
    i16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2]))
}

#[inline(always)]
pub(crate) unsafe fn rd_f16(p: *const u8) -> f32 {
    half::f16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2])).to_f32()
}
