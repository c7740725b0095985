//! # kernels: every numeric hot loop of lume
//!
//! Map (grows with the crate):
//! - [`QMatrix`]: a weight matrix borrowed straight from the GGUF mapping, still quantized.
//! - [`dequantize_row`]: one row of any supported type to f32 (the reference path).
//! - [`matmul`]: `y = x · Wᵀ` for a batch of `n` activation rows, taking quantized weights
//!   directly (never dequantizing the whole model).
//!
//! Every fast kernel has a scalar twin; tests compare them.

use gguf::GgmlType;
use half::{bf16, f16};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("tensor type {0} is not supported by lume's kernels")]
    UnsupportedType(GgmlType),
}

/// A row-major weight matrix of `rows` rows of `cols` values, in its file type.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    /// `rows * row_bytes` bytes.
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> QMatrix<'a> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.type_size()
    }

    /// The bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// Whether [`dequantize_row`] and [`matmul`] handle `ty`.
pub fn supports(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
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
        other => return Err(KernelError::UnsupportedType(other)),
    }
    Ok(())
}

/// `y[t, r] = Σ_c x[t, c] · W[r, c]` for `t < n`.
///
/// `x`: `[n, w.cols]`, `y`: `[n, w.rows]`. Reference implementation: dequantizes one row at a
/// time (the fast paths come later and are tested against this one).
pub fn matmul(w: &QMatrix, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(x.len(), n * w.cols);
    assert_eq!(y.len(), n * w.rows);
    let mut row = vec![0f32; w.cols];
    for r in 0..w.rows {
        dequantize_row(w.ty, w.row(r), &mut row).expect("type checked at load");
        for t in 0..n {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            y[t * w.rows + r] = row.iter().zip(xt).map(|(a, b)| a * b).sum();
        }
    }
}
