//! Quantized weight × 8-bit activation dot products, organised as register tiles.
//!
//! A [`Region`] is a rectangle of the output: `rows` weight rows × `tokens` activation rows.
//! Each weight type has, per dispatch level, one [`RegionFn`] that walks the region in tiles of
//! `R` rows × `T` tokens ([`drive`]): every weight block loaded and unpacked is used for `T`
//! tokens, every activation block for `R` rows.
//!
//! [`kernels`] is the one table of which weight type has what at each level
//! ([`TypeKernels`]: the region kernel, the interleaved prompt kernel, the batch-invariant
//! one-token kernel); the block layouts are decoded by `crate::quants::blocks`.
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
    // SAFETY: `rows` gets token groups `t0 .. t0 + T ≤ tokens` (then single tokens) of the region
    // the caller guarantees (`# Safety`).
    unsafe {
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
}

#[inline(always)]
unsafe fn rows<M: Micro, const R: usize, const T: usize>(g: &Region, t0: usize) {
    // SAFETY: row tiles `r0 .. r0 + R ≤ rows` (then single rows) and tokens `t0 .. t0 + T` lie
    // inside the region the caller guarantees, so the pointers formed here are in its buffers and
    // `M::tile` gets `nb` blocks per row and per token.
    unsafe {
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
}

#[inline(always)]
unsafe fn store<const R: usize, const T: usize>(
    g: &Region,
    r0: usize,
    t0: usize,
    out: [[f32; T]; R],
) {
    // SAFETY: `y[(t0 + j) · y_stride + r0 + i]` for `i < R`, `j < T` is an output of the region
    // (the caller's contract).
    unsafe {
        for (i, row) in out.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                *g.y.add((t0 + j) * g.y_stride + r0 + i) = *v;
            }
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

/// One level's kernels of a weight type.
#[derive(Clone, Copy)]
pub struct LevelKernels {
    /// Any number of tokens over plain activation rows (for one token: the decode kernel).
    pub region: RegionFn,
    /// The prompt kernel over interleaved activations (the `A32xN` / `A256xN` layouts of
    /// [`crate::act`], one token per SIMD lane) and its tokens per group, where the level has
    /// one.
    pub xn: Option<(RegionFn, usize)>,
    /// The batch-invariant one-token kernel, where the level has one: over plain activations,
    /// token by token, bit for bit what a lane of `xn` computes for that token ([`exact`]).
    pub exact1: Option<RegionFn>,
}

impl LevelKernels {
    /// A level with only a region kernel (the scalar twins).
    pub const fn plain(region: RegionFn) -> LevelKernels {
        LevelKernels {
            region,
            xn: None,
            exact1: None,
        }
    }
}

/// What the integer path has for one weight type, at every level (see [`kernels`]).
#[derive(Clone, Copy)]
pub struct TypeKernels {
    /// The activation format every level's kernels take.
    pub act: ActKind,
    pub scalar: LevelKernels,
    pub avx2: LevelKernels,
    /// AVX-512 without VNNI runs the AVX2 kernels.
    pub avx512: LevelKernels,
    pub avx512vnni: LevelKernels,
}

/// The x86-64 SIMD kernels of one type: those of the AVX2 levels (`Avx2` and `Avx512`) and of
/// `Avx512Vnni`.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Simd {
    avx2: LevelKernels,
    vnni: LevelKernels,
}

impl TypeKernels {
    /// The kernels of `level` (calling them needs the level to be available).
    #[inline]
    pub fn at(&self, level: Level) -> &LevelKernels {
        match level {
            Level::Scalar => &self.scalar,
            Level::Avx2 => &self.avx2,
            Level::Avx512 => &self.avx512,
            Level::Avx512Vnni => &self.avx512vnni,
        }
    }

    /// A type with scalar twin `scalar` and, on x86-64, the SIMD kernels `simd`; without them
    /// (`None`: a type with no SIMD kernels yet, or any other architecture) every level runs
    /// the scalar twin.
    const fn new(act: ActKind, scalar: RegionFn, simd: Option<Simd>) -> TypeKernels {
        let scalar = LevelKernels::plain(scalar);
        match simd {
            Some(x) => TypeKernels {
                act,
                scalar,
                avx2: x.avx2,
                avx512: x.avx2,
                avx512vnni: x.vnni,
            },
            None => TypeKernels {
                act,
                scalar,
                avx2: scalar,
                avx512: scalar,
                avx512vnni: scalar,
            },
        }
    }
}

/// `Some(the x86-64 kernels)` on x86-64, `None` elsewhere (where the tokens are not compiled).
#[cfg(target_arch = "x86_64")]
macro_rules! x86 {
    ($($simd:tt)*) => {
        Some($($simd)*)
    };
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! x86 {
    ($($simd:tt)*) => {
        None
    };
}

/// The x86-64 kernels of a 32-value type, by its unpacker `U` ([`avx2::Unpack32`], with its
/// two-block form for the AVX-512 one-token kernel and its `mw` for the exact kernel).
#[cfg(target_arch = "x86_64")]
const fn simd_b32<U: avx2::Unpack32 + avx512::Pair32 + exact::Min32>() -> Simd {
    Simd {
        avx2: LevelKernels {
            region: avx2::b32::<U, false>,
            xn: Some((avx2::x8::<U, false>, 8)),
            exact1: Some(exact::e32::<U, false>),
        },
        vnni: LevelKernels {
            region: avx512::one::<U>,
            xn: Some((avx512::x16::<U>, 16)),
            exact1: Some(exact::e32::<U, true>),
        },
    }
}

/// The x86-64 kernels of a K-quant, by its tile kernel `M` (one token and small batches) and
/// its unpacker `U` (prompt and exact kernels). Its integer sums need no VNNI variant.
#[cfg(target_arch = "x86_64")]
const fn simd_kq<M: Micro, U: avx2::UnpackK>() -> Simd {
    Simd {
        avx2: LevelKernels {
            region: avx2::k::<M>,
            xn: Some((avx2::kx8::<U, false>, 8)),
            exact1: Some(exact::ek::<U>),
        },
        vnni: LevelKernels {
            region: avx2::k::<M>,
            xn: Some((avx512::kx16::<U>, 16)),
            exact1: Some(exact::ek::<U>),
        },
    }
}

/// A row of [`kernels`] for a 32-value type: activation format, scalar twin, SIMD unpacker.
macro_rules! b32 {
    ($act:ident, $twin:ident, $simd:ty) => {
        &const {
            TypeKernels::new(
                ActKind::$act,
                scalar::region::<scalar::$twin>,
                x86!(simd_b32::<$simd>()),
            )
        }
    };
}

/// A row of [`kernels`] for a K-quant: scalar twin, SIMD tile kernel, SIMD unpacker.
macro_rules! kq {
    ($twin:ident, $tile:ty, $simd:ty) => {
        &const {
            TypeKernels::new(
                ActKind::A256,
                scalar::region::<scalar::$twin>,
                x86!(simd_kq::<$tile, $simd>()),
            )
        }
    };
}

/// The integer kernels of `ty` at every level, `None` for float types and types without an
/// integer kernel (`matmul` gives those f32 dots). The one table of which type has what: a
/// new type is one row here, plus its scalar twin in [`scalar`] and, where it has SIMD
/// kernels, its unpacker in [`avx2`] (a type without them passes `None` to
/// `TypeKernels::new`, and every level runs its scalar twin).
pub fn kernels(ty: GgmlType) -> Option<&'static TypeKernels> {
    use GgmlType as G;
    Some(match ty {
        G::Q4_0 => b32!(A32, Q4_0, avx2::Q4_0),
        G::Q4_1 => b32!(A32M, Q4_1, avx2::Q4_1),
        G::Q5_0 => b32!(A32, Q5_0, avx2::Q5_0),
        G::Q5_1 => b32!(A32M, Q5_1, avx2::Q5_1),
        G::Q8_0 => b32!(A32, Q8_0, avx2::Q8_0),
        G::Q2_K => kq!(Q2K, avx2::K23<false>, avx2::UQ23K<false>),
        G::Q3_K => kq!(Q3K, avx2::K23<true>, avx2::UQ23K<true>),
        G::Q4_K => kq!(Q4K, avx2::K45<false>, avx2::UQ4K<false>),
        G::Q5_K => kq!(Q5K, avx2::K45<true>, avx2::UQ4K<true>),
        G::Q6_K => kq!(Q6K, avx2::K6, avx2::UQ6K),
        _ => return None,
    })
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
            // `level` is available (checked above), and levels >= Avx2 are only available
            // when AVX2 and FMA are present; the functions check their lengths themselves.
            // SAFETY: AVX2 and FMA are present (above).
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

// Little-endian helpers for reading block fields through raw pointers (any alignment).

/// The f32 at `p`.
///
/// # Safety
/// `p` must be readable for 4 bytes.
#[inline(always)]
pub(crate) unsafe fn rd_f32(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees `p` readable for 4 bytes (an unaligned read).
    unsafe { f32::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 4])) }
}

/// The u32 at `p`.
///
/// # Safety
/// `p` must be readable for 4 bytes.
#[inline(always)]
pub(crate) unsafe fn rd_u32(p: *const u8) -> u32 {
    // SAFETY: the caller guarantees `p` readable for 4 bytes (an unaligned read).
    unsafe { u32::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 4])) }
}

/// The i16 at `p`.
///
/// # Safety
/// `p` must be readable for 2 bytes.
#[inline(always)]
pub(crate) unsafe fn rd_i16(p: *const u8) -> i16 {
    // SAFETY: the caller guarantees `p` readable for 2 bytes (an unaligned read).
    unsafe { i16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2])) }
}

/// The f16 (as f32) at `p`.
///
/// # Safety
/// `p` must be readable for 2 bytes.
#[inline(always)]
pub(crate) unsafe fn rd_f16(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees `p` readable for 2 bytes (an unaligned read).
    unsafe { half::f16::from_le_bytes(std::ptr::read_unaligned(p as *const [u8; 2])).to_f32() }
}
