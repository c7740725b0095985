//! [`KernelError`]: what the fallible kernel entry points report.

use gguf::GgmlType;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("tensor type {0} is not supported by lume's kernels")]
    UnsupportedType(GgmlType),
    #[error("{ty}: {n} values is not a whole number of {block}-value blocks")]
    PartialBlock {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    #[error("{ty}: {n} values need {need} bytes of blocks, the buffer has {got}")]
    ShortBuffer {
        ty: GgmlType,
        n: usize,
        need: usize,
        got: usize,
    },
    #[error("lume has no quantizer for {0}")]
    NoQuantizer(GgmlType),
}
