//! Request fields shared by `/v1/chat/completions` and `/v1/completions`, and their checks.
//!
//! Every number from a request is range-checked before use, and every size taken from one is
//! bounded (`max_tokens` by the context, `top_logprobs` by 20, stop strings by `--max-stops`).
//!
//! Sampling defaults when the request says nothing (OpenAI's where OpenAI has one, llama-server's
//! otherwise): temperature 1, top_p 1, top_k 40, min_p 0.05, no penalties (repeat_penalty 1 over
//! the last 64 tokens), a random seed; temperature 0 is greedy. `max_tokens` defaults to "until
//! an end-of-generation token or the context is full".

use std::collections::BTreeMap;

use engine::{GenerateParams, SamplerConfig};
use serde::Deserialize;
use serde_json::Value;

use crate::ServerError;

/// Most alternatives per token (`top_logprobs`, completions' `logprobs`).
pub const MAX_TOP_LOGPROBS: i64 = engine::scheduler::MAX_TOP_LOGPROBS as i64;
/// Most `logit_bias` entries.
pub const MAX_LOGIT_BIAS: usize = 1024;

pub const DEFAULT_TEMPERATURE: f64 = 1.0;
pub const DEFAULT_TOP_P: f64 = 1.0;
pub const DEFAULT_TOP_K: usize = 40;
pub const DEFAULT_MIN_P: f64 = 0.05;
pub const DEFAULT_REPEAT_LAST_N: usize = 64;

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// The sampling and length fields (unknown fields are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Sampling {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub seed: Option<serde_json::Number>,
    pub stop: Option<Value>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub repeat_penalty: Option<f64>,
    pub repeat_last_n: Option<i64>,
    pub logit_bias: Option<BTreeMap<String, f64>>,
    pub n: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

/// What [`Sampling::params`] needs to know about the server and the model.
pub struct Limits {
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub max_stops: usize,
}

impl Sampling {
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The engine's generation parameters and logit bias. `max_tokens` is the length field
    /// that applies (`max_completion_tokens` or `max_tokens`) with its name.
    pub fn params(
        &self,
        max_tokens: (Option<i64>, &'static str),
        lim: &Limits,
    ) -> Result<(GenerateParams, Vec<(u32, f32)>), ServerError> {
        if let Some(n) = self.n {
            if n > 1 {
                return Err(ServerError::bad("n > 1 is not supported", "n"));
            }
            if n < 1 {
                return Err(ServerError::bad(format!("'n' must be 1 (got {n})"), "n"));
            }
        }
        let (mt, mt_name) = max_tokens;
        let max_tokens = match mt {
            None => lim.n_ctx,
            Some(v) if v < 0 => {
                return Err(ServerError::bad(
                    format!("'{mt_name}' must be >= 0 (got {v})"),
                    mt_name,
                ))
            }
            Some(v) => (v as u64).min(lim.n_ctx as u64) as usize,
        };
        let temperature = ranged(self.temperature, "temperature", 0.0, 2.0)?
            .unwrap_or(DEFAULT_TEMPERATURE) as f32;
        let top_p = match self.top_p {
            Some(v) if !(v > 0.0 && v <= 1.0) => {
                return Err(ServerError::bad(
                    format!("'top_p' must be in (0, 1] (got {v})"),
                    "top_p",
                ))
            }
            v => v.unwrap_or(DEFAULT_TOP_P) as f32,
        };
        let min_p = ranged(self.min_p, "min_p", 0.0, 1.0)?.unwrap_or(DEFAULT_MIN_P) as f32;
        let top_k = match self.top_k {
            None => DEFAULT_TOP_K,
            Some(k) if k <= 0 => 0,
            Some(k) => (k as u64).min(lim.n_vocab as u64) as usize,
        };
        let presence = ranged(self.presence_penalty, "presence_penalty", -2.0, 2.0)?.unwrap_or(0.0);
        let frequency =
            ranged(self.frequency_penalty, "frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0);
        let repeat_penalty = match self.repeat_penalty {
            Some(v) if !(v > 0.0 && v.is_finite()) => {
                return Err(ServerError::bad(
                    format!("'repeat_penalty' must be a number > 0 (got {v})"),
                    "repeat_penalty",
                ))
            }
            v => v.unwrap_or(1.0) as f32,
        };
        let repeat_last_n = match self.repeat_last_n {
            None => DEFAULT_REPEAT_LAST_N,
            Some(-1) => lim.n_ctx,
            Some(v) if v < 0 => {
                return Err(ServerError::bad(
                    format!("'repeat_last_n' must be >= 0, or -1 for the whole context (got {v})"),
                    "repeat_last_n",
                ))
            }
            Some(v) => (v as u64).min(lim.n_ctx as u64) as usize,
        };
        let seed = match &self.seed {
            None => None,
            Some(n) => match (n.as_u64(), n.as_i64()) {
                (Some(s), _) => Some(s),
                // Negative (llama-server's -1): a random seed.
                (None, Some(_)) => None,
                _ => {
                    return Err(ServerError::bad(
                        format!("'seed' must be an integer (got {n})"),
                        "seed",
                    ))
                }
            },
        };
        let sampler = if temperature <= 0.0 {
            SamplerConfig {
                repeat_penalty,
                repeat_last_n,
                frequency_penalty: frequency as f32,
                presence_penalty: presence as f32,
                seed,
                ..SamplerConfig::greedy()
            }
        } else {
            SamplerConfig {
                temperature,
                top_k,
                top_p,
                min_p,
                repeat_penalty,
                repeat_last_n,
                frequency_penalty: frequency as f32,
                presence_penalty: presence as f32,
                seed,
            }
        };
        let stop = stops(self.stop.as_ref(), lim.max_stops)?;
        let bias = logit_bias(self.logit_bias.as_ref(), lim.n_vocab)?;
        Ok((
            GenerateParams {
                max_tokens,
                sampler,
                stop,
                logprobs: 0,
                constraint: None,
            },
            bias,
        ))
    }
}

/// `Some(v)` must be finite and in `lo..=hi`.
fn ranged(v: Option<f64>, name: &str, lo: f64, hi: f64) -> Result<Option<f64>, ServerError> {
    match v {
        Some(x) if !(x.is_finite() && (lo..=hi).contains(&x)) => Err(ServerError::bad(
            format!("'{name}' must be between {lo} and {hi} (got {x})"),
            name,
        )),
        v => Ok(v),
    }
}

/// `stop`: a string, a list of strings, or null; empty strings are dropped.
fn stops(v: Option<&Value>, max: usize) -> Result<Vec<String>, ServerError> {
    let list: Vec<String> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > max {
                return Err(too_many_stops(items.len(), max));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str().map(str::to_string).ok_or_else(|| {
                        ServerError::bad(format!("'stop[{i}]' must be a string"), "stop")
                    })
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(ServerError::bad(
                "'stop' must be a string or a list of strings",
                "stop",
            ))
        }
    };
    if list.len() > max {
        return Err(too_many_stops(list.len(), max));
    }
    Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
}

fn too_many_stops(n: usize, max: usize) -> ServerError {
    ServerError::bad(
        format!("'stop' has {n} strings; at most {max} are allowed"),
        "stop",
    )
}

/// `logit_bias`: token id (as a string) -> bias in -100..=100; -100 bans the token.
fn logit_bias(
    v: Option<&BTreeMap<String, f64>>,
    n_vocab: usize,
) -> Result<Vec<(u32, f32)>, ServerError> {
    let Some(map) = v else {
        return Ok(Vec::new());
    };
    if map.len() > MAX_LOGIT_BIAS {
        return Err(ServerError::bad(
            format!(
                "'logit_bias' has {} entries; at most {MAX_LOGIT_BIAS} are allowed",
                map.len()
            ),
            "logit_bias",
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (k, &b) in map {
        let id: u32 = k.trim().parse().map_err(|_| {
            ServerError::bad(
                format!("'logit_bias' key '{k}' is not a token id"),
                "logit_bias",
            )
        })?;
        if id as usize >= n_vocab {
            return Err(ServerError::bad(
                format!("'logit_bias' token id {id} is out of range (vocabulary of {n_vocab})"),
                "logit_bias",
            ));
        }
        if !(b.is_finite() && (-100.0..=100.0).contains(&b)) {
            return Err(ServerError::bad(
                format!("'logit_bias' for token {id} must be between -100 and 100 (got {b})"),
                "logit_bias",
            ));
        }
        let b = if b <= -100.0 {
            f32::NEG_INFINITY
        } else {
            b as f32
        };
        out.push((id, b));
    }
    Ok(out)
}

/// `top_logprobs` / completions' `logprobs`: `None` or `0..=20`.
pub fn top_n(v: Option<i64>, name: &'static str) -> Result<Option<usize>, ServerError> {
    match v {
        None => Ok(None),
        Some(n) if (0..=MAX_TOP_LOGPROBS).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(ServerError::bad(
            format!("'{name}' must be between 0 and {MAX_TOP_LOGPROBS} (got {n})"),
            name,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits {
            n_ctx: 100,
            n_vocab: 1000,
            max_stops: 2,
        }
    }

    fn parse(v: Value) -> Sampling {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_greedy() {
        let (p, bias) = parse(serde_json::json!({}))
            .params((None, "max_tokens"), &lim())
            .unwrap();
        assert_eq!(p.max_tokens, 100);
        assert_eq!(p.sampler.temperature, 1.0);
        assert_eq!(p.sampler.top_k, 40);
        assert!(bias.is_empty());
        let (p, _) = parse(serde_json::json!({"temperature": 0, "max_tokens": 1000}))
            .params((Some(1000), "max_tokens"), &lim())
            .unwrap();
        assert_eq!(p.sampler.temperature, 0.0);
        assert_eq!(p.max_tokens, 100, "capped at the context");
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let cases = [
            (serde_json::json!({"temperature": 2.5}), "temperature"),
            (serde_json::json!({"temperature": -1}), "temperature"),
            (serde_json::json!({"top_p": 0}), "top_p"),
            (
                serde_json::json!({"presence_penalty": 3}),
                "presence_penalty",
            ),
            (serde_json::json!({"stop": ["a", "b", "c"]}), "stop"),
            (serde_json::json!({"stop": 3}), "stop"),
            (serde_json::json!({"logit_bias": {"x": 1}}), "logit_bias"),
            (serde_json::json!({"logit_bias": {"5": 101}}), "logit_bias"),
            (serde_json::json!({"logit_bias": {"5000": 1}}), "logit_bias"),
            (serde_json::json!({"n": 2}), "n"),
            (serde_json::json!({"seed": 1.5}), "seed"),
        ];
        for (v, field) in cases {
            let err = parse(v.clone())
                .params((None, "max_tokens"), &lim())
                .unwrap_err();
            match &err {
                ServerError::BadRequest { param, message, .. } => {
                    assert_eq!(param.as_deref(), Some(field), "{v}: {message}");
                    assert!(message.contains(field), "{v}: {message}");
                }
                other => panic!("{v}: {other:?}"),
            }
        }
        let err = parse(serde_json::json!({}))
            .params((Some(-1), "max_completion_tokens"), &lim())
            .unwrap_err();
        assert!(err.to_string().contains("max_completion_tokens"));
    }

    #[test]
    fn logit_bias_minus_100_bans() {
        let (_, bias) = parse(serde_json::json!({"logit_bias": {"7": -100, "8": 2.5}}))
            .params((None, "max_tokens"), &lim())
            .unwrap();
        assert_eq!(bias, vec![(7, f32::NEG_INFINITY), (8, 2.5)]);
    }
}
