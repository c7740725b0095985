//! sentence-transformers' files beside a model: `modules.json` (the pipeline),
//! `sentence_bert_config.json` (`max_seq_length`, `do_lower_case`) and the pooling module's
//! `config.json` (e.g. `1_Pooling/config.json`). All optional: a folder without `modules.json`
//! is a bare transformers model.

use std::path::Path;

use crate::config::JsonFile;
use crate::error::{HfError, Result};

/// How token states become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingMode {
    /// Mean over the positions whose attention mask is 1.
    Mean,
    /// The first position (`[CLS]`).
    Cls,
    /// The last non-padding position.
    Last,
}

/// The pipeline as sentence-transformers would run it.
#[derive(Clone, Debug, PartialEq)]
pub struct SentenceConfig {
    /// Inputs are cut to this many tokens, specials included (overrides tokenizer.json).
    pub max_seq_length: Option<usize>,
    pub do_lower_case: Option<bool>,
    pub pooling: Option<PoolingMode>,
    /// A `Normalize` module follows: divide by the L2 norm.
    pub normalize: bool,
}

const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

impl SentenceConfig {
    /// Reads the sentence-transformers files of `dir`; `None` when there is no `modules.json`.
    pub fn read(dir: &Path) -> Result<Option<SentenceConfig>> {
        let modules_path = dir.join("modules.json");
        if !modules_path.exists() {
            return Ok(None);
        }
        let modules = JsonFile::open(&modules_path)?;
        let Some(list) = modules.value.as_array() else {
            return Err(HfError::BadJson {
                path: modules_path,
                msg: "expected a list of modules".into(),
            });
        };
        let mut cfg = SentenceConfig {
            max_seq_length: None,
            do_lower_case: None,
            pooling: None,
            normalize: false,
        };
        for (i, m) in list.iter().enumerate() {
            let ty = m.get("type").and_then(|t| t.as_str()).unwrap_or("");
            let path = m.get("path").and_then(|t| t.as_str()).unwrap_or("");
            if ty == NORMALIZE {
                cfg.normalize = true;
            } else if ty == POOLING {
                if path.contains("..") {
                    return Err(HfError::BadKey {
                        path: modules_path.clone(),
                        key: format!("[{i}].path"),
                        msg: format!("\"{path}\" leaves the model folder"),
                    });
                }
                let pc = JsonFile::open(dir.join(path).join("config.json"))?;
                cfg.pooling = Some(pooling_mode(&pc)?);
            }
        }
        let sb = dir.join("sentence_bert_config.json");
        if sb.exists() {
            let sb = JsonFile::open(sb)?;
            cfg.max_seq_length = sb.opt_usize("max_seq_length")?;
            cfg.do_lower_case = sb.opt_bool("do_lower_case")?;
        }
        Ok(Some(cfg))
    }
}

/// The one pooling mode a pooling `config.json` turns on.
pub fn pooling_mode(pc: &JsonFile) -> Result<PoolingMode> {
    let on = |k: &str| pc.opt_bool(k).map(|b| b.unwrap_or(false));
    let mut modes = Vec::new();
    if on("pooling_mode_mean_tokens")? {
        modes.push(PoolingMode::Mean);
    }
    if on("pooling_mode_cls_token")? {
        modes.push(PoolingMode::Cls);
    }
    if on("pooling_mode_lasttoken")? {
        modes.push(PoolingMode::Last);
    }
    for k in [
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
    ] {
        if on(k)? {
            return Err(HfError::BadKey {
                path: pc.path.clone(),
                key: k.into(),
                msg: "this pooling mode is not supported (mean, cls and last are)".into(),
            });
        }
    }
    match modes[..] {
        [m] => Ok(m),
        _ => Err(HfError::BadKey {
            path: pc.path.clone(),
            key: "pooling_mode_*".into(),
            msg: format!("exactly one pooling mode must be on, found {}", modes.len()),
        }),
    }
}
