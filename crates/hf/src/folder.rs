//! [`HfFolder`]: a Hugging Face model folder (`config.json`, `model.safetensors`, tokenizer
//! files, optional sentence-transformers files).

use std::path::{Path, PathBuf};

use crate::config::JsonFile;
use crate::error::{HfError, Result};
use crate::sentence::SentenceConfig;

/// Weight file names tried in order.
const WEIGHTS: &[&str] = &["model.safetensors", "model.fp16.safetensors"];

/// What a model folder holds.
#[derive(Clone, Debug)]
pub struct HfFolder {
    pub dir: PathBuf,
    pub config: JsonFile,
    /// The safetensors file (the first of [`WEIGHTS`] present).
    pub weights: PathBuf,
    /// `tokenizer.json`, if present.
    pub tokenizer_json: Option<PathBuf>,
    /// `vocab.txt`, if present.
    pub vocab_txt: Option<PathBuf>,
    pub sentence: Option<SentenceConfig>,
}

impl HfFolder {
    pub fn open(dir: impl AsRef<Path>) -> Result<HfFolder> {
        let dir = dir.as_ref().to_path_buf();
        let config = JsonFile::open(dir.join("config.json"))?;
        let weights = WEIGHTS
            .iter()
            .map(|w| dir.join(w))
            .find(|p| p.is_file())
            .ok_or_else(|| HfError::Io {
                path: dir.join(WEIGHTS[0]),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no weights file ({}) in the folder", WEIGHTS.join(" or ")),
                ),
            })?;
        let opt = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Ok(HfFolder {
            tokenizer_json: opt("tokenizer.json"),
            vocab_txt: opt("vocab.txt"),
            sentence: SentenceConfig::read(&dir)?,
            config,
            weights,
            dir,
        })
    }

    /// Whether `dir` looks like such a folder (has a `config.json`).
    pub fn is_folder(dir: &Path) -> bool {
        dir.is_dir() && dir.join("config.json").is_file()
    }
}
