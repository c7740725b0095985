//! Weights: matrices stay in the GGUF mapping (quantized); small vectors are dequantized at load.
//!
//! A [`Matrix`] remembers only its [`TensorInfo`]; the bytes are borrowed from the [`GgufFile`]
//! at each use (a slice, no copy), so the model owns the file and nothing self-referential.

use gguf::{GgmlType, GgufFile, TensorInfo};
use kernels::QMatrix;

use crate::error::{ModelError, Result};

/// A weight matrix of `rows` rows of `cols` values, still in the file's type.
#[derive(Clone, Debug)]
pub struct Matrix {
    pub info: TensorInfo,
    pub rows: usize,
    pub cols: usize,
}

impl Matrix {
    /// The matrix as the kernels see it, borrowing `file`'s mapping.
    pub fn q<'f>(&self, file: &'f GgufFile) -> QMatrix<'f> {
        QMatrix {
            ty: self.info.ty,
            data: file.tensor_data(&self.info),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Rows `start..start + rows` of this matrix: a view of the same bytes, no copy (one part
    /// of a fused tensor, one expert of a stack). Panics when the range is out of bounds.
    pub fn rows_view(&self, start: usize, rows: usize) -> Matrix {
        assert!(start + rows <= self.rows, "rows_view out of bounds");
        let row_bytes = self
            .info
            .ty
            .row_bytes(self.cols as u64)
            .expect("whole blocks per row: checked at load");
        let mut info = self.info.clone();
        info.offset += start as u64 * row_bytes;
        info.size = rows as u64 * row_bytes;
        info.dims = vec![self.cols as u64, rows as u64];
        Matrix {
            info,
            rows,
            cols: self.cols,
        }
    }

    /// Dequantizes row `r` into `dst` (`[cols]`): the embedding lookup.
    pub fn row_f32(&self, file: &GgufFile, r: usize, dst: &mut [f32]) {
        let q = self.q(file);
        kernels::dequantize_row(q.ty, q.row(r), dst).expect("type checked at load");
    }
}

/// `y = x · Wᵀ (+ b)`: a matrix with an optional bias of `rows` values.
#[derive(Clone, Debug)]
pub struct Linear {
    pub w: Matrix,
    /// `[rows]`
    pub b: Option<Vec<f32>>,
}

impl Linear {
    /// Input width.
    pub fn cols(&self) -> usize {
        self.w.cols
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.w.rows
    }

    /// `x`: `[n, cols]` → `y`: `[n, rows]` (exactly these lengths).
    pub fn forward(&self, file: &GgufFile, x: &[f32], n: usize, y: &mut [f32]) {
        kernels::matmul(&self.w.q(file), x, n, y);
        self.add_bias(y);
    }

    fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = &self.b {
            for row in y.chunks_exact_mut(b.len()) {
                for (v, bb) in row.iter_mut().zip(b) {
                    *v += bb;
                }
            }
        }
    }

    /// Several linears of the same input (q/k/v, gate/up) in one matrix-product job:
    /// `ys[i] = x · lins[i].wᵀ (+ b)`; `x`: `[n, cols]`, `ys[i]`: `[n, lins[i].rows()]`.
    pub fn forward_many<const N: usize>(
        lins: [&Linear; N],
        file: &GgufFile,
        x: &[f32],
        n: usize,
        mut ys: [&mut [f32]; N],
    ) {
        const { assert!(N <= kernels::MAX_MULTI) };
        let ws: [kernels::QMatrix; N] = std::array::from_fn(|i| lins[i].w.q(file));
        kernels::matmul_multi(&ws, x, n, &mut ys);
        for (l, y) in lins.iter().zip(ys.iter_mut()) {
            l.add_bias(y);
        }
    }
}

/// Looks tensors up by name, checking shape and type against what the architecture expects.
pub struct Loader<'a> {
    pub file: &'a GgufFile,
}

impl<'a> Loader<'a> {
    pub fn new(file: &'a GgufFile) -> Self {
        Loader { file }
    }

    /// Whether a tensor named `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.file.tensor_info(name).is_some()
    }

    fn check_type(&self, t: &TensorInfo) -> Result<()> {
        if !kernels::supports(t.ty) || !t.n_cols().is_multiple_of(t.ty.block_size()) {
            return Err(ModelError::UnsupportedType {
                tensor: t.name.clone(),
                ty: t.ty,
            });
        }
        Ok(())
    }

    fn check_dims(t: &TensorInfo, expected: &[u64]) -> Result<()> {
        if t.dims != expected {
            return Err(ModelError::TensorShape {
                tensor: t.name.clone(),
                expected: expected.to_vec(),
                found: t.dims.clone(),
            });
        }
        Ok(())
    }

    /// Matrix `name` of `rows` rows of `cols` values (GGUF dims `[cols, rows]`).
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let t = self.file.require_tensor(name)?;
        Self::check_dims(t, &[cols as u64, rows as u64])?;
        self.check_type(t)?;
        Ok(Matrix {
            info: t.clone(),
            rows,
            cols,
        })
    }

    /// Matrix `name` whose row count is read from the file (checked against `max_rows`),
    /// e.g. the vocabulary size from `token_embd.weight`.
    pub fn matrix_any_rows(&self, name: &str, cols: usize, max_rows: usize) -> Result<Matrix> {
        let t = self.file.require_tensor(name)?;
        let rows = if t.dims.len() == 2 { t.dims[1] } else { 0 };
        if t.dims.len() != 2 || t.dims[0] != cols as u64 || rows == 0 || rows > max_rows as u64 {
            return Err(ModelError::TensorShape {
                tensor: t.name.clone(),
                expected: vec![cols as u64, rows.clamp(1, max_rows as u64)],
                found: t.dims.clone(),
            });
        }
        self.matrix(name, rows as usize, cols)
    }

    /// A 1-D tensor of `len` values, dequantized to f32.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.file.require_tensor(name)?;
        Self::check_dims(t, &[len as u64])?;
        if !matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            self.check_type(t)?;
        }
        let mut v = vec![0f32; len];
        kernels::dequantize_row(t.ty, self.file.tensor_data(t), &mut v).map_err(|_| {
            ModelError::UnsupportedType {
                tensor: t.name.clone(),
                ty: t.ty,
            }
        })?;
        Ok(v)
    }

    /// Like [`Loader::vector`] when present.
    pub fn vector_opt(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `{prefix}.weight` (`[rows, cols]`) and, when present, `{prefix}.bias` (`[rows]`).
    pub fn linear(&self, prefix: &str, rows: usize, cols: usize) -> Result<Linear> {
        let w = self.matrix(&format!("{prefix}.weight"), rows, cols)?;
        let b = self.vector_opt(&format!("{prefix}.bias"), rows)?;
        Ok(Linear { w, b })
    }

    /// A fused `{prefix}.weight` whose rows are the consecutive blocks `parts` (e.g. q, k, v
    /// stacked in `attn_qkv`), each `cols` wide, split into one [`Linear`] per block; a
    /// `{prefix}.bias`, when present, is split the same way.
    pub fn linear_split(&self, prefix: &str, parts: &[usize], cols: usize) -> Result<Vec<Linear>> {
        let total: usize = parts.iter().sum();
        let w = self.matrix(&format!("{prefix}.weight"), total, cols)?;
        let b = self.vector_opt(&format!("{prefix}.bias"), total)?;
        let mut out = Vec::with_capacity(parts.len());
        let mut start = 0;
        for &rows in parts {
            out.push(Linear {
                w: w.rows_view(start, rows),
                b: b.as_ref().map(|b| b[start..start + rows].to_vec()),
            });
            start += rows;
        }
        Ok(out)
    }

    /// A 3-D tensor `name` of `n` stacked matrices of `rows` x `cols` (GGUF dims
    /// `[cols, rows, n]`, e.g. the experts of a MoE layer), one [`Matrix`] view per matrix.
    pub fn matrix_stack(
        &self,
        name: &str,
        n: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<Matrix>> {
        let t = self.file.require_tensor(name)?;
        Self::check_dims(t, &[cols as u64, rows as u64, n as u64])?;
        self.check_type(t)?;
        let all = Matrix {
            info: t.clone(),
            rows: rows * n,
            cols,
        };
        Ok((0..n).map(|e| all.rows_view(e * rows, rows)).collect())
    }

    /// Like [`Loader::linear`] when `{prefix}.weight` is present.
    pub fn linear_opt(&self, prefix: &str, rows: usize, cols: usize) -> Result<Option<Linear>> {
        if self.has(&format!("{prefix}.weight")) {
            self.linear(prefix, rows, cols).map(Some)
        } else {
            Ok(None)
        }
    }
}
