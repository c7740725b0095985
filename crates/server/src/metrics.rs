//! `GET /metrics`: Prometheus text from [`engine::Metrics`] under llama-server's names
//! (`llamacpp:*`) and vLLM's (`vllm:*`, labelled `model_name`), plus the server's own
//! per-route request counter `lume_http_requests_total{route,status}` ([`count`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::metrics::Histogram;
use engine::Metrics;

use crate::state::AppState;
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
    let m = state.model()?;
    let text = render(&m.sched.metrics(), state.id(), &state.http_counts());
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
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

    fn one(&mut self, name: &str, kind: &str, help: &str, labels: &str, v: f64) {
        self.head(name, kind, help);
        self.sample(name, labels, v);
    }

    fn histogram(&mut self, name: &str, help: &str, labels: &str, h: &Histogram) {
        self.head(name, "histogram", help);
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

/// The whole `/metrics` text.
pub fn render(m: &Metrics, model: &str, http: &BTreeMap<(String, u16), u64>) -> String {
    let mut p = Prom {
        out: String::with_capacity(8192),
    };
    // llama-server's names.
    p.one(
        "llamacpp:prompt_tokens_total",
        "counter",
        "Prompt tokens evaluated (tokens reused from a slot's cache excluded).",
        "",
        m.prompt_tokens_evaluated as f64,
    );
    p.one(
        "llamacpp:prompt_seconds_total",
        "counter",
        "Seconds spent in steps that evaluated prompt tokens.",
        "",
        m.prompt_seconds,
    );
    p.one(
        "llamacpp:tokens_predicted_total",
        "counter",
        "Generated tokens.",
        "",
        m.generation_tokens as f64,
    );
    p.one(
        "llamacpp:tokens_predicted_seconds_total",
        "counter",
        "Seconds spent in steps that generated tokens.",
        "",
        m.generation_seconds,
    );
    p.one(
        "llamacpp:prompt_tokens_seconds",
        "gauge",
        "Prompt tokens evaluated per second of prompt work.",
        "",
        m.prompt_tps(),
    );
    p.one(
        "llamacpp:predicted_tokens_seconds",
        "gauge",
        "Generated tokens per second of generation work.",
        "",
        m.generation_tps(),
    );
    p.one(
        "llamacpp:requests_processing",
        "gauge",
        "Requests holding a slot.",
        "",
        m.running as f64,
    );
    p.one(
        "llamacpp:requests_deferred",
        "gauge",
        "Requests waiting for a slot.",
        "",
        m.waiting as f64,
    );
    p.one(
        "llamacpp:n_decode_total",
        "counter",
        "Forward passes (batches) evaluated.",
        "",
        m.n_decode as f64,
    );
    p.one(
        "llamacpp:n_busy_slots_per_decode",
        "gauge",
        "Mean slots taking part in a forward pass.",
        "",
        m.busy_slots_per_decode(),
    );
    p.one(
        "llamacpp:kv_cache_usage_ratio",
        "gauge",
        "Fraction of the KV cache held by running requests.",
        "",
        m.kv_usage(),
    );
    // vLLM's names.
    let ml = format!("model_name=\"{}\"", esc(model));
    p.one(
        "vllm:num_requests_running",
        "gauge",
        "Requests holding a slot.",
        &ml,
        m.running as f64,
    );
    p.one(
        "vllm:num_requests_waiting",
        "gauge",
        "Requests waiting for a slot.",
        &ml,
        m.waiting as f64,
    );
    p.one(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage (1 = full).",
        &ml,
        m.kv_usage(),
    );
    p.one(
        "vllm:prompt_tokens_total",
        "counter",
        "Prompt tokens of every started request (cached ones included).",
        &ml,
        m.prompt_tokens as f64,
    );
    p.one(
        "vllm:generation_tokens_total",
        "counter",
        "Generated tokens.",
        &ml,
        m.generation_tokens as f64,
    );
    let name = "vllm:request_success_total";
    p.head(name, "counter", "Requests that ended, by finish reason.");
    for (reason, v) in [
        ("stop", m.finished.stop),
        ("length", m.finished.length),
        ("abort", m.finished.abort),
    ] {
        p.sample(
            name,
            &format!("{ml},finished_reason=\"{reason}\""),
            v as f64,
        );
    }
    p.histogram(
        "vllm:time_to_first_token_seconds",
        "Time from arrival to the first generated token.",
        &ml,
        &m.ttft,
    );
    p.histogram(
        "vllm:inter_token_latency_seconds",
        "Time between two generated tokens of a request.",
        &ml,
        &m.itl,
    );
    p.histogram(
        "vllm:e2e_request_latency_seconds",
        "Time from arrival to the end of a request.",
        &ml,
        &m.e2e,
    );
    p.histogram(
        "vllm:request_queue_time_seconds",
        "Time a request waited for a slot.",
        &ml,
        &m.queue_time,
    );
    // lume's own.
    p.one(
        "lume_prompt_tokens_cached_total",
        "counter",
        "Prompt tokens reused from a slot's cache.",
        "",
        m.prompt_tokens_cached as f64,
    );
    p.one(
        "lume_requests_rejected_total",
        "counter",
        "Requests refused because the queue was full.",
        "",
        m.rejected as f64,
    );
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
    p.out
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
