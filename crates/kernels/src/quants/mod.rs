//! Quantization formats: block layouts, scalar dequantization (the reference), reference
//! quantizers.
//!
//! Map:
//! - [`blocks`]: one `#[repr(C)]` byte-only struct per ggml block type, with size checks and
//!   layout docs, and [`blocks::cast_blocks`] to view mmap bytes as blocks.
//! - `legacy`: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//! - `kquants`: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
//! - `nonlinear`: IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4.
//! - `iq`: the lattice types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M
//!   (grid tables in `iq_grids`).
//! - [`dequantize_row`] / [`quantize_row`]: the public entry points, which check lengths and
//!   dispatch on the type.
//!
//! Everything here is plain scalar code: it is the reference the fast kernels are tested
//! against, written to match ggml's reference results bit for bit (`testdata/quant`).

use gguf::GgmlType;
use half::{bf16, f16};

use crate::KernelError;

pub mod blocks;
mod iq;
mod iq_grids;
mod kquants;
pub(crate) mod legacy;
mod nonlinear;

pub use blocks::*;
pub use iq::KSIGNS;
pub use kquants::nearest_int;
pub use nonlinear::{KVALUES_IQ4NL, KVALUES_MXFP4};

/// Whether [`dequantize_row`] (and so `matmul`) handles `ty`.
pub fn supports(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q8_1
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | Q8_K
            | IQ4_NL
            | IQ4_XS
            | TQ1_0
            | TQ2_0
            | MXFP4
            | IQ2_XXS
            | IQ2_XS
            | IQ2_S
            | IQ3_XXS
            | IQ3_S
            | IQ1_S
            | IQ1_M
    )
}

/// Whether [`quantize_row`] can write `ty`.
pub fn can_quantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q8_1
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | Q8_K
            | TQ1_0
            | TQ2_0
            | MXFP4
            | IQ4_NL
            | IQ4_XS
    )
}

/// Bytes needed for `n` values of `ty`, after checking `n` is a whole number of blocks.
fn bytes_for(ty: GgmlType, n: usize) -> Result<usize, KernelError> {
    let block = ty.block_size();
    if !n.is_multiple_of(block) {
        return Err(KernelError::PartialBlock { ty, n, block });
    }
    Ok(n / block * ty.type_size())
}

/// Dequantizes `dst.len()` values (a whole number of blocks) from the start of `src`.
///
/// Errors (never panics) if `ty` is unsupported, `dst.len()` is not a whole number of blocks,
/// or `src` is too short.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    if !supports(ty) {
        return Err(KernelError::UnsupportedType(ty));
    }
    let n = dst.len();
    let need = bytes_for(ty, n)?;
    if src.len() < need {
        return Err(KernelError::ShortBuffer {
            ty,
            n,
            need,
            got: src.len(),
        });
    }
    let src = &src[..need];
    use GgmlType::*;
    match ty {
        F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        F16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16_bits_to_f32(u16::from_le_bytes([s[0], s[1]]));
            }
        }
        BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        Q4_0 => each(src, dst, legacy::dequant_q4_0),
        Q4_1 => each(src, dst, legacy::dequant_q4_1),
        Q5_0 => each(src, dst, legacy::dequant_q5_0),
        Q5_1 => each(src, dst, legacy::dequant_q5_1),
        Q8_0 => each(src, dst, legacy::dequant_q8_0),
        Q8_1 => each(src, dst, legacy::dequant_q8_1),
        Q2_K => each(src, dst, kquants::dequant_q2_k),
        Q3_K => each(src, dst, kquants::dequant_q3_k),
        Q4_K => each(src, dst, kquants::dequant_q4_k),
        Q5_K => each(src, dst, kquants::dequant_q5_k),
        Q6_K => each(src, dst, kquants::dequant_q6_k),
        Q8_K => each(src, dst, kquants::dequant_q8_k),
        IQ4_NL => each(src, dst, nonlinear::dequant_iq4_nl),
        IQ4_XS => each(src, dst, nonlinear::dequant_iq4_xs),
        TQ1_0 => each(src, dst, nonlinear::dequant_tq1_0),
        TQ2_0 => each(src, dst, nonlinear::dequant_tq2_0),
        MXFP4 => each(src, dst, nonlinear::dequant_mxfp4),
        IQ2_XXS => each(src, dst, iq::dequant_iq2_xxs),
        IQ2_XS => each(src, dst, iq::dequant_iq2_xs),
        IQ2_S => each(src, dst, iq::dequant_iq2_s),
        IQ3_XXS => each(src, dst, iq::dequant_iq3_xxs),
        IQ3_S => each(src, dst, iq::dequant_iq3_s),
        IQ1_S => each(src, dst, iq::dequant_iq1_s),
        IQ1_M => each(src, dst, iq::dequant_iq1_m),
        other => return Err(KernelError::UnsupportedType(other)),
    }
    Ok(())
}

/// Runs a per-block dequantizer over every block (lengths already checked).
fn each<B: Block>(src: &[u8], dst: &mut [f32], f: fn(&B, &mut [f32])) {
    for (b, y) in cast_blocks::<B>(src)
        .iter()
        .zip(dst.chunks_exact_mut(B::VALUES))
    {
        f(b, y);
    }
}

/// Quantizes `src` (a whole number of blocks) into the start of `dst` with ggml's reference
/// quantizer for `ty`: bit-exact where `testdata/quant` has a case (F16, BF16, Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, TQ1_0, TQ2_0, MXFP4); the K-quant and IQ4 quantizers follow the
/// reference algorithms without an importance matrix and are checked by error bounds.
///
/// Errors (never panics) if `ty` has no quantizer here, `src.len()` is not a whole number of
/// blocks, or `dst` is too short.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    if !can_quantize(ty) {
        return Err(KernelError::NoQuantizer(ty));
    }
    let n = src.len();
    let need = bytes_for(ty, n)?;
    if dst.len() < need {
        return Err(KernelError::ShortBuffer {
            ty,
            n,
            need,
            got: dst.len(),
        });
    }
    let dst = &mut dst[..need];
    use GgmlType::*;
    match ty {
        F32 => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&s.to_le_bytes());
            }
        }
        F16 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&f16::from_f32(*s).to_le_bytes());
            }
        }
        BF16 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&f32_to_bf16_bits(*s).to_le_bytes());
            }
        }
        Q4_0 => each_mut(src, dst, legacy::quant_q4_0),
        Q4_1 => each_mut(src, dst, legacy::quant_q4_1),
        Q5_0 => each_mut(src, dst, legacy::quant_q5_0),
        Q5_1 => each_mut(src, dst, legacy::quant_q5_1),
        Q8_0 => each_mut(src, dst, legacy::quant_q8_0),
        Q8_1 => each_mut(src, dst, legacy::quant_q8_1),
        Q2_K => each_mut(src, dst, kquants::quant_q2_k),
        Q3_K => each_mut(src, dst, kquants::quant_q3_k),
        Q4_K => each_mut(src, dst, kquants::quant_q4_k),
        Q5_K => each_mut(src, dst, kquants::quant_q5_k),
        Q6_K => each_mut(src, dst, kquants::quant_q6_k),
        Q8_K => each_mut(src, dst, kquants::quant_q8_k),
        TQ1_0 => each_mut(src, dst, nonlinear::quant_tq1_0),
        TQ2_0 => each_mut(src, dst, nonlinear::quant_tq2_0),
        MXFP4 => each_mut(src, dst, nonlinear::quant_mxfp4),
        IQ4_NL => each_mut(src, dst, nonlinear::quant_iq4_nl),
        IQ4_XS => each_mut(src, dst, nonlinear::quant_iq4_xs),
        other => return Err(KernelError::NoQuantizer(other)),
    }
    Ok(())
}

/// Runs a per-block quantizer over every block (lengths already checked).
fn each_mut<B: Block>(src: &[f32], dst: &mut [u8], f: fn(&[f32], &mut B)) {
    for (x, b) in src.chunks_exact(B::VALUES).zip(cast_blocks_mut::<B>(dst)) {
        f(x, b);
    }
}

/// f32 → bf16 bits, rounding to nearest even; NaNs stay NaN (quieted).
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let n = x.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        return ((n >> 16) | 0x40) as u16;
    }
    ((n as u64 + (0x7fff + ((n >> 16) & 1)) as u64) >> 16) as u16
}
