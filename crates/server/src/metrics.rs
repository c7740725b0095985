//! `GET /metrics`: Prometheus text from [`engine::Metrics`] under llama-server's names
//! (`llamacpp:*`) and vLLM's (`vllm:*`, labelled `model_name`), plus the server's own
//! per-route request counter `lume_http_requests_total{route,status}` ([`count`]) and the
//! per-model `lume_model_*` gauges and counters (loaded, memory, loads, unloads). With several
//! models every per-model sample carries `model_name` (llama-server's `llamacpp:*` too).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::embeddings::EmbedStats;
use engine::metrics::Histogram;
use engine::Metrics;

use crate::models::{Listing, Unload};
use crate::state::{AppState, Kind};
use crate::ServerError;

/// Middleware: counts every answer by matched route (`other` when none matched) and status.
pub async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let resp = next.run(req).await;
    state.count(&route, resp.status().as_u16());
    resp
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ServerError> {
    state.ready()?;
    let multi = state.multi();
    let list = state.models.list();
    let mut langs: Vec<(String, Metrics)> = Vec::new();
    let mut embeds: Vec<(String, EmbedStats)> = Vec::new();
    for l in &list {
        let Some(r) = &l.resident else { continue };
        if let Kind::Language(m) = &r.kind {
            langs.push((l.id.clone(), m.sched.metrics()));
        }
        if let Some(q) = r.kind.embed_queue() {
            embeds.push((l.id.clone(), q.stats()));
        }
    }
    let mut text = if multi || !langs.is_empty() {
        let refs: Vec<(&str, &Metrics)> = langs.iter().map(|(n, m)| (n.as_str(), m)).collect();
        render_all(&refs, multi, &state.http_counts())
    } else {
        let mut p = Prom { out: String::new() };
        http_counts(&mut p, &state.http_counts());
        p.out
    };
    let refs: Vec<(&str, &EmbedStats)> = embeds.iter().map(|(n, s)| (n.as_str(), s)).collect();
    text.push_str(&render_embed_all(&refs, multi));
    text.push_str(&render_models(&list));
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// Per model: `lume_model_loaded`, `lume_model_memory_bytes` (the estimate, 0 when not
/// loaded), `lume_model_requests_active`, `lume_model_loads_total`,
/// `lume_model_load_seconds_total`, `lume_model_unloads_total{reason}`.
fn render_models(list: &[Listing]) -> String {
    let mut p = Prom { out: String::new() };
    let label = |l: &Listing| format!("model=\"{}\"", esc(&l.id));
    let families: [Family<Listing>; 5] = [
        (
            "lume_model_loaded",
            "gauge",
            "1 while the model is in memory.",
            |l| f64::from(u8::from(l.resident.is_some())),
        ),
        (
            "lume_model_memory_bytes",
            "gauge",
            "Estimated memory of the model in memory (file and KV cache).",
            |l| l.resident.as_ref().map_or(0.0, |r| r.bytes as f64),
        ),
        (
            "lume_model_requests_active",
            "gauge",
            "Requests holding the model.",
            |l| l.busy as f64,
        ),
        (
            "lume_model_loads_total",
            "counter",
            "Times the model was loaded.",
            |l| l.loads as f64,
        ),
        (
            "lume_model_load_seconds_total",
            "counter",
            "Seconds spent loading the model.",
            |l| l.load_seconds,
        ),
    ];
    for (name, kind, help, get) in families {
        p.head(name, kind, help);
        for l in list {
            p.sample(name, &label(l), get(l));
        }
    }
    let name = "lume_model_unloads_total";
    p.head(name, "counter", "Times the model left memory, by reason.");
    for l in list {
        for reason in [Unload::Expired, Unload::Evicted] {
            let n = l.unloads.get(&reason).copied().unwrap_or(0);
            p.sample(
                name,
                &format!("{},reason=\"{}\"", label(l), reason.label()),
                n as f64,
            );
        }
    }
    p.out
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Prom {
    out: String,
}

impl Prom {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, v: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {v}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {v}");
        }
    }

    /// A histogram's samples (its head written once before, by the caller).
    fn histogram_samples(&mut self, name: &str, labels: &str, h: &Histogram) {
        let sep = if labels.is_empty() { "" } else { "," };
        let cum = h.cumulative();
        for (b, c) in h.bounds.iter().zip(&cum) {
            let _ = writeln!(self.out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            self.out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            h.count
        );
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }
}

/// The whole `/metrics` text of one model (llama-server's names unlabelled).
#[cfg(test)]
pub fn render(m: &Metrics, model: &str, http: &BTreeMap<(String, u16), u64>) -> String {
    render_all(&[(model, m)], false, http)
}

type Get = fn(&Metrics) -> f64;
/// (name, type, help, value) of a metric family with one sample per `T`.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> f64);
/// (name, help, histogram) of a histogram family.
type HistFamily = (&'static str, &'static str, fn(&Metrics) -> &Histogram);
/// (name, help, value) of an embedding-queue counter.
type EmbedFamily = (&'static str, &'static str, fn(&EmbedStats) -> u64);

/// llama-server's names: (name, type, help, value).
fn llamacpp_families() -> [(&'static str, &'static str, &'static str, Get); 11] {
    [
        (
            "llamacpp:prompt_tokens_total",
            "counter",
            "Prompt tokens evaluated (tokens reused from a slot's cache excluded).",
            |m| m.prompt_tokens_evaluated as f64,
        ),
        (
            "llamacpp:prompt_seconds_total",
            "counter",
            "Seconds spent in steps that evaluated prompt tokens.",
            |m| m.prompt_seconds,
        ),
        (
            "llamacpp:tokens_predicted_total",
            "counter",
            "Generated tokens.",
            |m| m.generation_tokens as f64,
        ),
        (
            "llamacpp:tokens_predicted_seconds_total",
            "counter",
            "Seconds spent in steps that generated tokens.",
            |m| m.generation_seconds,
        ),
        (
            "llamacpp:prompt_tokens_seconds",
            "gauge",
            "Prompt tokens evaluated per second of prompt work.",
            |m| m.prompt_tps(),
        ),
        (
            "llamacpp:predicted_tokens_seconds",
            "gauge",
            "Generated tokens per second of generation work.",
            |m| m.generation_tps(),
        ),
        (
            "llamacpp:requests_processing",
            "gauge",
            "Requests holding a slot.",
            |m| m.running as f64,
        ),
        (
            "llamacpp:requests_deferred",
            "gauge",
            "Requests waiting for a slot.",
            |m| m.waiting as f64,
        ),
        (
            "llamacpp:n_decode_total",
            "counter",
            "Forward passes (batches) evaluated.",
            |m| m.n_decode as f64,
        ),
        (
            "llamacpp:n_busy_slots_per_decode",
            "gauge",
            "Mean slots taking part in a forward pass.",
            |m| m.busy_slots_per_decode(),
        ),
        (
            "llamacpp:kv_cache_usage_ratio",
            "gauge",
            "Fraction of the KV cache held by running requests.",
            |m| m.kv_usage(),
        ),
    ]
}

/// vLLM's one-sample names (labelled `model_name`).
fn vllm_families() -> [(&'static str, &'static str, &'static str, Get); 5] {
    [
        (
            "vllm:num_requests_running",
            "gauge",
            "Requests holding a slot.",
            |m| m.running as f64,
        ),
        (
            "vllm:num_requests_waiting",
            "gauge",
            "Requests waiting for a slot.",
            |m| m.waiting as f64,
        ),
        (
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage (1 = full).",
            |m| m.kv_usage(),
        ),
        (
            "vllm:prompt_tokens_total",
            "counter",
            "Prompt tokens of every started request (cached ones included).",
            |m| m.prompt_tokens as f64,
        ),
        (
            "vllm:generation_tokens_total",
            "counter",
            "Generated tokens.",
            |m| m.generation_tokens as f64,
        ),
    ]
}

/// The `/metrics` text of the language models in memory: each family once, a sample per
/// model. `labelled`: llama-server's and lume's per-model names carry `model_name` too (several
/// models; with one they are unlabelled, as llama-server has them).
pub fn render_all(
    models: &[(&str, &Metrics)],
    labelled: bool,
    http: &BTreeMap<(String, u16), u64>,
) -> String {
    let mut p = Prom {
        out: String::with_capacity(8192 * models.len().max(1)),
    };
    let ml = |model: &str| format!("model_name=\"{}\"", esc(model));
    let own = |model: &str| if labelled { ml(model) } else { String::new() };
    for (name, kind, help, get) in llamacpp_families() {
        p.head(name, kind, help);
        for (model, m) in models {
            p.sample(name, &own(model), get(m));
        }
    }
    for (name, kind, help, get) in vllm_families() {
        p.head(name, kind, help);
        for (model, m) in models {
            p.sample(name, &ml(model), get(m));
        }
    }
    let name = "vllm:request_success_total";
    p.head(name, "counter", "Requests that ended, by finish reason.");
    for (model, m) in models {
        for (reason, v) in [
            ("stop", m.finished.stop),
            ("length", m.finished.length),
            ("abort", m.finished.abort),
        ] {
            p.sample(
                name,
                &format!("{},finished_reason=\"{reason}\"", ml(model)),
                v as f64,
            );
        }
    }
    let hists: [HistFamily; 4] = [
        (
            "vllm:time_to_first_token_seconds",
            "Time from arrival to the first generated token.",
            |m| &m.ttft,
        ),
        (
            "vllm:inter_token_latency_seconds",
            "Time between two generated tokens of a request.",
            |m| &m.itl,
        ),
        (
            "vllm:e2e_request_latency_seconds",
            "Time from arrival to the end of a request.",
            |m| &m.e2e,
        ),
        (
            "vllm:request_queue_time_seconds",
            "Time a request waited for a slot.",
            |m| &m.queue_time,
        ),
    ];
    for (name, help, get) in hists {
        p.head(name, "histogram", help);
        for (model, m) in models {
            p.histogram_samples(name, &ml(model), get(m));
        }
    }
    // lume's own.
    let lume: [(&str, &str, Get); 2] = [
        (
            "lume_prompt_tokens_cached_total",
            "Prompt tokens reused from a slot's cache.",
            |m| m.prompt_tokens_cached as f64,
        ),
        (
            "lume_requests_rejected_total",
            "Requests refused because the queue was full.",
            |m| m.rejected as f64,
        ),
    ];
    for (name, help, get) in lume {
        p.head(name, "counter", help);
        for (model, m) in models {
            p.sample(name, &own(model), get(m));
        }
    }
    http_counts(&mut p, http);
    p.out
}

/// The embedding queues' counters (`lume_embedding_*`), labelled `model_name` when `labelled`.
pub fn render_embed_all(queues: &[(&str, &EmbedStats)], labelled: bool) -> String {
    let mut p = Prom { out: String::new() };
    if queues.is_empty() {
        return p.out;
    }
    let families: [EmbedFamily; 4] = [
        (
            "lume_embedding_requests_total",
            "Embedding requests answered.",
            |s| s.requests,
        ),
        ("lume_embedding_sequences_total", "Inputs embedded.", |s| {
            s.sequences
        }),
        ("lume_embedding_tokens_total", "Tokens embedded.", |s| {
            s.tokens
        }),
        (
            "lume_embedding_steps_total",
            "Embedding steps (every request waiting at a step shares it).",
            |s| s.steps,
        ),
    ];
    for (name, help, get) in families {
        p.head(name, "counter", help);
        for (model, st) in queues {
            let labels = if labelled {
                format!("model_name=\"{}\"", esc(model))
            } else {
                String::new()
            };
            p.sample(name, &labels, get(st) as f64);
        }
    }
    p.out
}

fn http_counts(p: &mut Prom, http: &BTreeMap<(String, u16), u64>) {
    let name = "lume_http_requests_total";
    p.head(
        name,
        "counter",
        "HTTP requests answered, by route and status.",
    );
    for ((route, status), n) in http {
        p.sample(
            name,
            &format!("route=\"{}\",status=\"{status}\"", esc(route)),
            *n as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_and_labels() {
        let mut m = Metrics::new(2, 16);
        m.generation_tokens = 7;
        m.finished.length = 3;
        m.ttft.observe(0.002);
        let mut http = BTreeMap::new();
        http.insert(("/v1/completions".to_string(), 200), 3);
        let t = render(&m, "a\"b", &http);
        assert!(t.contains("# TYPE llamacpp:tokens_predicted_total counter\n"));
        assert!(t.contains("llamacpp:tokens_predicted_total 7\n"));
        assert!(t.contains("vllm:generation_tokens_total{model_name=\"a\\\"b\"} 7\n"));
        assert!(t.contains(
            "vllm:request_success_total{model_name=\"a\\\"b\",finished_reason=\"length\"} 3\n"
        ));
        assert!(t.contains(
            "vllm:time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",le=\"0.001\"} 0\n"
        ));
        assert!(t.contains(
            "vllm:time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",le=\"0.005\"} 1\n"
        ));
        assert!(t.contains(
            "vllm:time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",le=\"+Inf\"} 1\n"
        ));
        assert!(
            t.contains("lume_http_requests_total{route=\"/v1/completions\",status=\"200\"} 3\n")
        );
    }
}
