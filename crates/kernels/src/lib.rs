//! # kernels: every numeric hot loop of lume
//!
//! Map (grows with the crate):
//! - [`QMatrix`]: a weight matrix borrowed straight from the GGUF mapping, still quantized.
//! - [`dequantize_row`]: one row of any supported type to f32 (the reference path).
//! - [`matmul()`]: `y = x · Wᵀ` for a batch of `n` activation rows, taking quantized weights
//!   directly (never dequantizing the whole model); [`matmul_at`] picks the level
//!   explicitly, [`matmul_reference`] is the dequantize-then-f32 ground truth.
//!   [`matmul_multi`]: several matrices of one input (q/k/v, gate/up) in one pool job.
//!   How: activations are rounded to 8-bit blocks once per call ([`act`]), then integer
//!   block dots run per output region on the pool ([`dot`]). One token: weight rows stream in
//!   order. Eight or more tokens: activations are interleaved 8 tokens per SIMD register
//!   (`act::A32x8`, `act::A256x8`) so each unpacked weight block serves 8 tokens at once and
//!   scales apply as whole vectors. Float weights (F32/F16/BF16) use f32 dot products.
//! - [`attn`]: tile kernels of the prompt attention (`Q·Kᵀ` and `P·V` per key block), in
//!   several row widths ([`attn::ROW_TILES`]) that compute each row identically.
//! - [`set_batch_invariant`], [`batch_invariant`] (or `LUME_BATCH_INVARIANT=1`, read once):
//!   the batch-invariant mode, where a token's results are bit-identical whatever shares its
//!   call: [`matmul()`] gives every token count the same per-token arithmetic (the xN kernels,
//!   or for 1..=3 tokens their exact one-token twins in `dot::exact`); the model's attention
//!   tiles every token. Details and costs: [`invariant`].
//! - [`kvq`]: Q8_0 / Q4_0 KV-cache rows: quantizing, integer q·k dots, dequantizing p·V.
//! - [`cpu`]: feature detection and the dispatch [`Level`] (`LUME_CPU` lowers it);
//!   [`cpu::describe`] is the one-line summary the CLI prints.
//! - [`act`]: 8-bit activation blocks (A32 for 32-value weight blocks, A256 for K-quants).
//! - [`dot`]: register-tiled integer block dots per weight type and level (scalar twins in
//!   `dot::scalar`, AVX2 / AVX-512 VNNI in `dot::avx2` and `dot::avx512`; `dot::exact`: the
//!   batch-invariant one-token kernels, bit-identical to a lane of the xN kernels).
//! - [`parallel_for`], [`set_num_threads`], [`num_threads`]: the persistent worker pool
//!   (default: physical cores, [`default_threads`]).
//! - Vector helpers (SIMD with scalar twins in [`vec::scalar`]): [`dot_f32`], [`axpy_f32`],
//!   [`dot_f16_f32`], [`axpy_f16`], [`f32_to_f16_slice`], [`f16_to_f32_slice`],
//!   [`dot_bf16_f32`].
//!
//! Every fast kernel has a scalar twin; tests compare them.
//!
//! Soundness: every safe function checks what its unsafe code relies on (lengths, shapes,
//! the CPU level) and panics with a message otherwise; unsafe functions state their
//! contract under `# Safety`, and every `unsafe` block says why it holds (`// SAFETY:`).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod act;
pub mod attn;
pub mod cpu;
pub mod dot;
mod error;
pub mod gelu;
pub mod gemm;
pub mod invariant;
pub mod kvq;
pub mod matmul;
mod pool;
pub mod quants;
pub mod vec;

pub use cpu::Level;
pub use error::KernelError;
pub use gemm::MAX_MULTI;
pub use invariant::{batch_invariant, set_batch_invariant};
pub use matmul::{matmul, matmul_at, matmul_multi, matmul_multi_at, matmul_reference};
pub use pool::{default_threads, num_threads, parallel_for, set_num_threads};
pub use quants::{can_quantize, dequantize_row, quantize_row, supports};
pub use vec::{
    axpy_f16, axpy_f32, dot_bf16_f32, dot_f16_f32, dot_f32, f16_to_f32_slice, f32_to_f16_slice,
};

use gguf::GgmlType;

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
