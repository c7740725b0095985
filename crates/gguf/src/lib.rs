//! # gguf: the GGUF file format, and nothing else
//!
//! Map of the crate:
//! - [`types`]: ggml tensor types ([`GgmlType`]): ids, block sizes, bytes per block.
//! - [`value`]: metadata values ([`Value`]) of the thirteen GGUF value types.
//! - [`reader`]: [`GgufFile`], a memory-mapped file with parsed metadata and tensor infos;
//!   every length and offset read from the file is checked before it is used.
//! - [`writer`]: [`GgufWriter`], builds GGUF files (tests make synthetic models with it), whole
//!   or as a [`TensorStream`] that takes one tensor after another (`lume quantize`).
//! - [`error`]: [`GgufError`], which always names the file and the key or tensor at fault.
//!
//! No arithmetic on tensor values lives here: dequantization is in the `kernels` crate.

pub mod error;
pub mod reader;
pub mod types;
pub mod value;
pub mod writer;

pub use error::{GgufError, Result};
pub use reader::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use writer::{GgufWriter, TensorSpec, TensorStream};

/// The four magic bytes at the start of every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest `general.alignment` accepted (it must also be a power of two).
pub const MAX_ALIGNMENT: u32 = 1 << 16;
/// Most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
pub const MAX_DIMS: usize = 4;
