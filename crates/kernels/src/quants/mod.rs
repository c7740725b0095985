//! Quantization formats: block layouts, scalar dequantization (the reference), reference quantizers.

use gguf::GgmlType;
use half::{bf16, f16};

use crate::KernelError;

mod interim;

/// Whether [`dequantize_row`] and [`matmul`] handle `ty`.
pub fn supports(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::Q8_0
            | GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q4_K
            | GgmlType::Q6_K
    )
}

/// Dequantizes `dst.len()` values (a whole number of blocks) from `src`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    match ty {
        GgmlType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        GgmlType::F16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => blocks(ty, src, dst, interim::q8_0),
        GgmlType::Q4_0 => blocks(ty, src, dst, interim::q4_0),
        GgmlType::Q4_1 => blocks(ty, src, dst, interim::q4_1),
        GgmlType::Q5_0 => blocks(ty, src, dst, interim::q5_0),
        GgmlType::Q5_1 => blocks(ty, src, dst, interim::q5_1),
        GgmlType::Q4_K => blocks(ty, src, dst, interim::q4_k),
        GgmlType::Q6_K => blocks(ty, src, dst, interim::q6_k),
        other => return Err(KernelError::UnsupportedType(other)),
    }
    Ok(())
}

/// Runs a per-block dequantizer over every block of `dst`.
fn blocks(ty: GgmlType, src: &[u8], dst: &mut [f32], f: fn(&[u8], &mut [f32])) {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    for (b, y) in src.chunks_exact(ts).zip(dst.chunks_exact_mut(bs)) {
        f(b, y);
    }
}
