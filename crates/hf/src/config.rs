//! JSON configuration files (`config.json`, `tokenizer_config.json`, ...): read once, then
//! typed look-ups whose errors name the file and the key.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{HfError, Result};

/// A parsed JSON object and the file it came from.
#[derive(Clone, Debug)]
pub struct JsonFile {
    pub path: PathBuf,
    pub value: Value,
}

impl JsonFile {
    pub fn open(path: impl AsRef<Path>) -> Result<JsonFile> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| HfError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses `bytes`; `path` names them in errors. The top level must be an object.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<JsonFile> {
        let path = path.into();
        let value: Value = serde_json::from_slice(bytes).map_err(|e| HfError::BadJson {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        if !value.is_object() && !value.is_array() {
            return Err(HfError::BadJson {
                path,
                msg: "the top level is neither an object nor an array".into(),
            });
        }
        Ok(JsonFile { path, value })
    }

    /// The value at `key` (`a.b` walks into objects), if present and not null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut v = &self.value;
        for part in key.split('.') {
            v = v.get(part)?;
        }
        (!v.is_null()).then_some(v)
    }

    fn bad(&self, key: &str, msg: impl Into<String>) -> HfError {
        HfError::BadKey {
            path: self.path.clone(),
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    fn missing(&self, key: &str) -> HfError {
        HfError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("{v} is not a non-negative integer"))),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("{v} is not a number"))),
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("{v} is not true or false"))),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("{v} is not a string"))),
        }
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }
}
