//! Hyper-parameters read from GGUF metadata (`{arch}.*` keys), checked for sanity.

use gguf::GgufFile;

use crate::error::{ModelError, Result};

/// No single dimension read from a file may exceed this (guards every allocation made from it).
pub const MAX_DIM: usize = 1 << 20;
/// Most layers a model may declare.
pub const MAX_LAYERS: usize = 1024;

/// The shape of a decoder-only transformer, as declared in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    /// `general.architecture`.
    pub arch: String,
    /// `{arch}.block_count`.
    pub n_layer: usize,
    /// `{arch}.embedding_length`.
    pub n_embd: usize,
    /// `{arch}.feed_forward_length` (0 when absent, e.g. MoE-only models).
    pub n_ff: usize,
    /// `{arch}.attention.head_count`.
    pub n_head: usize,
    /// `{arch}.attention.head_count_kv` (defaults to `n_head`).
    pub n_head_kv: usize,
    /// Size of one query/key head: `{arch}.attention.key_length`, else `n_embd / n_head`.
    pub head_dim: usize,
    /// Size of one value head: `{arch}.attention.value_length`, else `head_dim`.
    pub head_dim_v: usize,
    /// `{arch}.context_length`.
    pub n_ctx_train: usize,
    /// `{arch}.attention.layer_norm_rms_epsilon`, else `{arch}.attention.layer_norm_epsilon`,
    /// else 1e-5.
    pub norm_eps: f32,
    /// `{arch}.rope.freq_base` (default 10000).
    pub rope_base: f32,
    /// `{arch}.rope.dimension_count`: dims rotated per head (default `head_dim`).
    pub n_rot: usize,
}

/// Reads `{arch}.*` keys with the architecture prefix filled in.
pub struct Meta<'a> {
    pub file: &'a GgufFile,
    pub arch: &'a str,
}

impl<'a> Meta<'a> {
    pub fn key(&self, suffix: &str) -> String {
        format!("{}.{}", self.arch, suffix)
    }

    pub fn has(&self, suffix: &str) -> bool {
        self.file.get(&self.key(suffix)).is_some()
    }

    /// A required dimension in `1..=MAX_DIM`.
    pub fn dim(&self, suffix: &str) -> Result<usize> {
        let key = self.key(suffix);
        let v = self.file.get_u32(&key)? as usize;
        check_dim(&key, v)
    }

    /// An optional dimension in `1..=MAX_DIM`.
    pub fn dim_opt(&self, suffix: &str) -> Result<Option<usize>> {
        if self.has(suffix) {
            self.dim(suffix).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional finite float.
    pub fn f32_opt(&self, suffix: &str) -> Result<Option<f32>> {
        if !self.has(suffix) {
            return Ok(None);
        }
        let key = self.key(suffix);
        let v = self.file.get_f32(&key)?;
        if !v.is_finite() {
            return Err(ModelError::BadHparam {
                key,
                msg: format!("{v} is not a finite number"),
            });
        }
        Ok(Some(v))
    }
}

fn check_dim(key: &str, v: usize) -> Result<usize> {
    if v == 0 || v > MAX_DIM {
        return Err(ModelError::BadHparam {
            key: key.to_string(),
            msg: format!("{v} is outside 1..={MAX_DIM}"),
        });
    }
    Ok(v)
}

fn bad(key: String, msg: String) -> ModelError {
    ModelError::BadHparam { key, msg }
}

impl HParams {
    /// Reads the common decoder hyper-parameters of `file`, whose architecture is `arch`.
    pub fn read(file: &GgufFile, arch: &str) -> Result<HParams> {
        let m = Meta { file, arch };
        let n_layer = m.dim("block_count")?;
        if n_layer > MAX_LAYERS {
            return Err(bad(
                m.key("block_count"),
                format!("{n_layer} layers is more than {MAX_LAYERS}"),
            ));
        }
        let n_embd = m.dim("embedding_length")?;
        let n_ff = m.dim_opt("feed_forward_length")?.unwrap_or(0);
        let n_head = m.dim("attention.head_count")?;
        let n_head_kv = m.dim_opt("attention.head_count_kv")?.unwrap_or(n_head);
        if !n_head.is_multiple_of(n_head_kv) {
            return Err(bad(
                m.key("attention.head_count_kv"),
                format!("{n_head} query heads are not a multiple of {n_head_kv} KV heads"),
            ));
        }
        let head_dim = match m.dim_opt("attention.key_length")? {
            Some(d) => d,
            None => {
                if !n_embd.is_multiple_of(n_head) {
                    return Err(bad(
                        m.key("attention.head_count"),
                        format!("embedding length {n_embd} is not a multiple of {n_head} heads"),
                    ));
                }
                n_embd / n_head
            }
        };
        let head_dim_v = m.dim_opt("attention.value_length")?.unwrap_or(head_dim);
        if n_head * head_dim.max(head_dim_v) > MAX_DIM {
            return Err(bad(
                m.key("attention.head_count"),
                format!("{n_head} heads of size {head_dim} are too many"),
            ));
        }
        let n_ctx_train = m.dim("context_length")?;
        let norm_eps = match m.f32_opt("attention.layer_norm_rms_epsilon")? {
            Some(e) => e,
            None => m.f32_opt("attention.layer_norm_epsilon")?.unwrap_or(1e-5),
        };
        let rope_base = m.f32_opt("rope.freq_base")?.unwrap_or(10000.0);
        if rope_base <= 0.0 {
            return Err(bad(
                m.key("rope.freq_base"),
                format!("{rope_base} is not positive"),
            ));
        }
        let n_rot = m.dim_opt("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(bad(
                m.key("rope.dimension_count"),
                format!("{n_rot} must be even and at most the head size {head_dim}"),
            ));
        }
        Ok(HParams {
            arch: arch.to_string(),
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ctx_train,
            norm_eps,
            rope_base,
            n_rot,
        })
    }

    /// Width of all query heads together: `n_head * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of all key heads together: `n_head_kv * head_dim`.
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of all value heads together: `n_head_kv * head_dim_v`.
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}

/// Reads an optional positive soft-cap `{arch}.{suffix}`.
pub fn read_softcap(file: &GgufFile, key: &str) -> Result<Option<f32>> {
    if file.get(key).is_none() {
        return Ok(None);
    }
    let v = file.get_f32(key)?;
    if !(v.is_finite() && v > 0.0) {
        return Err(ModelError::BadHparam {
            key: key.to_string(),
            msg: format!("soft-cap {v} is not a positive number"),
        });
    }
    Ok(Some(v))
}

/// Reads the linear RoPE scaling factor (`{arch}.rope.scaling.type` = "linear",
/// `{arch}.rope.scaling.factor`); `None` when absent, "none", or a factor of 1. Another scaling
/// type is an error (rather than silently wrong positions).
pub fn read_linear_rope_scaling(file: &GgufFile, arch: &str) -> Result<Option<f32>> {
    let tkey = format!("{arch}.rope.scaling.type");
    let fkey = format!("{arch}.rope.scaling.factor");
    let ty = match file.get(&tkey) {
        None => "none",
        Some(_) => file.get_str(&tkey)?,
    };
    match ty {
        "none" => Ok(None),
        "linear" => {
            let f = file.get_f32(&fkey)?;
            if !f.is_finite() || f <= 0.0 {
                return Err(ModelError::BadHparam {
                    key: fkey,
                    msg: format!("{f} is not a positive number"),
                });
            }
            Ok((f != 1.0).then_some(f))
        }
        other => Err(ModelError::BadHparam {
            key: tkey,
            msg: format!("RoPE scaling '{other}' is not supported for {arch} (only linear)"),
        }),
    }
}

/// Reads `{arch}.attention.sliding_window` (required for sliding architectures) as a window.
pub fn read_window(file: &GgufFile, arch: &str, n_ctx_train: usize) -> Result<usize> {
    let key = format!("{arch}.attention.sliding_window");
    let w = file.get_u32(&key)? as usize;
    if w == 0 {
        return Err(ModelError::BadHparam {
            key,
            msg: "a sliding window of 0 positions".into(),
        });
    }
    // A window past the context is the same as none; clamp so nothing sized from it is huge.
    Ok(w.min(n_ctx_train.max(1)))
}
