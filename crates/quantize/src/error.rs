use std::path::PathBuf;

use gguf::GgmlType;

/// Everything `lume quantize` can refuse or fail at. Every variant names the file, and where
/// it applies the tensor or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: metadata: {msg}")]
    Metadata { path: PathBuf, msg: String },
    #[error("{path}: tensor '{tensor}': {msg}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    #[error(
        "{path}: tensor '{tensor}' is {from}: requantizing a quantized file loses quality; \
         pass --allow-requantize to do it anyway"
    )]
    Requantize {
        path: PathBuf,
        tensor: String,
        from: GgmlType,
    },
    #[error(
        "{path}: tensor '{tensor}' would be {ty}, which needs an importance matrix \
         (lume imatrix is not built yet; choose a type of 3.5 bits or more, e.g. Q3_K_M or IQ4_XS)"
    )]
    NeedsImatrix {
        path: PathBuf,
        tensor: String,
        ty: GgmlType,
    },
    #[error(
        "{path}: tensor '{tensor}' would be {ty}, which lume cannot write yet \
         (its quantizer is missing; --dry-run shows the plan)"
    )]
    NoQuantizer {
        path: PathBuf,
        tensor: String,
        ty: GgmlType,
    },
    #[error("{path}: tensor '{tensor}': {source}")]
    Kernel {
        path: PathBuf,
        tensor: String,
        #[source]
        source: kernels::KernelError,
    },
}

pub type Result<T> = std::result::Result<T, QuantizeError>;
