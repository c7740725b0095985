//! [`SamplingError`]: a sampler setting that makes no sense.

/// A sampler setting that makes no sense, named by field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("sampling setting '{field}' = {value} is invalid: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}
