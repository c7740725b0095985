//! `lume serve` end to end: real servers on free 127.0.0.1 ports, the real smollm2-135m model
//! (pulled into the cache when missing), a small HTTP/1.1 client over a TCP socket (so that
//! SSE framing, 413 answers and dropped connections are seen exactly as sent).
//!
//! Servers: `shared()` (API key, 4 slots) serves most tests at once; tests that compare two
//! greedy answers take `GATE` for writing so no other request shares their batches. `quiet()`
//! (1 slot, queue 1, no key) is for counter deltas and slot checks, one test at a time
//! (`QUIET`). A few tests start private servers. Every request has a time limit and every wait
//! loop a deadline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server::{KeepAlive, ModelSpec, Server, ServerConfig, ServerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::RwLock;

const KEY: &str = "test-key-123";
const MODEL: &str = "smollm2-135m";
const SHARED_CTX: usize = 1024;
const SHARED_SLOTS: usize = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Taken for writing by tests whose greedy answers must not share batches with other requests.
static GATE: RwLock<()> = RwLock::const_new(());
/// One test at a time on the quiet server.
static QUIET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// Servers

struct Handle {
    addr: SocketAddr,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<Result<(), ServerError>>>>,
}

impl Handle {
    /// Signals shutdown and waits for `run` to return (bounded by the server's own grace).
    fn stop(&self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let t = self.thread.lock().unwrap().take().expect("stopped once");
        t.join().expect("server thread panicked")
    }
}

/// A catalogue model; one line naming it and `lume pull` when it is missing and cannot be pulled.
fn model_path(name: &str) -> PathBuf {
    hub::require(name).unwrap_or_else(|e| panic!("{e}"))
}

fn config(model: &str, n_slots: usize, n_ctx: usize) -> ServerConfig {
    let mut cfg = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        model_path: model_path(model),
        model_id: model.into(),
        drain_timeout: Duration::from_secs(10),
        log: false,
        ..Default::default()
    };
    cfg.scheduler.n_slots = n_slots;
    cfg.scheduler.n_ctx = n_ctx;
    cfg.scheduler.threads = 2;
    cfg
}

/// Starts `cfg` on a runtime of its own (port 0) and returns once it is bound.
fn spawn(cfg: ServerConfig) -> Handle {
    let (atx, arx) = std::sync::mpsc::channel();
    let (stx, srx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let r = rt.block_on(async move {
            let s = Server::bind(cfg).await?;
            let _ = atx.send(s.local_addr());
            s.run(async move {
                let _ = srx.await;
            })
            .await
        });
        rt.shutdown_timeout(Duration::from_secs(1));
        r
    });
    let addr = arx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server did not bind");
    Handle {
        addr,
        stop: Mutex::new(Some(stx)),
        thread: Mutex::new(Some(thread)),
    }
}

async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = get(addr, "/health", None).await {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server at {addr} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The shared server: API key, 4 slots of 1024 tokens.
async fn shared() -> SocketAddr {
    static H: OnceLock<Handle> = OnceLock::new();
    let h = H.get_or_init(|| {
        let mut cfg = config(MODEL, SHARED_SLOTS, SHARED_CTX);
        cfg.api_keys = vec![KEY.into()];
        spawn(cfg)
    });
    wait_ready(h.addr).await;
    h.addr
}

/// The quiet server: 1 slot of 512 tokens, queue 1, no key (use under `QUIET`).
async fn quiet() -> SocketAddr {
    static H: OnceLock<Handle> = OnceLock::new();
    let h = H.get_or_init(|| {
        let mut cfg = config(MODEL, 1, 512);
        cfg.scheduler.queue = 1;
        spawn(cfg)
    });
    wait_ready(h.addr).await;
    h.addr
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 client (one request per connection)

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts an OpenAI-style error with `status` whose message mentions `needle`.
    fn error(&self, status: u16, needle: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        let e = v["error"].clone();
        for k in ["message", "type", "param", "code"] {
            assert!(e.get(k).is_some(), "error lacks {k}: {v}");
        }
        let msg = e["message"].as_str().expect("message").to_lowercase();
        assert!(
            msg.contains(&needle.to_lowercase()),
            "error message should mention {needle:?}: {msg}"
        );
        e
    }
}

fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        head += &format!("Authorization: Bearer {k}\r\n");
    }
    for (k, v) in extra {
        head += &format!("{k}: {v}\r\n");
    }
    if let Some(b) = body {
        head += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    head += "\r\n";
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// Sends a request and reads the whole answer. Writing runs beside reading, so an answer that
/// comes before the body is sent in full (413) is still heard; the write side stays open until
/// the answer is read (an early half-close would end the response).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let raw = request_bytes(addr, method, path, key, extra, body);
    let fut = async move {
        let (mut rd, mut wr) = TcpStream::connect(addr).await?.into_split();
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&raw).await;
            wr
        });
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A reset after the answer (the server did not read all of a refused body).
                Err(_) if !buf.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        drop(writer);
        Ok(parse_response(&buf))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| std::io::Error::other("request timed out"))?
}

fn parse_response(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let rest = &buf[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let size_s = String::from_utf8_lossy(&b[..p]);
        let size = usize::from_str_radix(size_s.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        b = &b[p + 2..];
        if size == 0 || b.len() < size {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

async fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> std::io::Result<Resp> {
    send(addr, "GET", path, key, &[], None).await
}

async fn post(addr: SocketAddr, path: &str, key: Option<&str>, body: &Value) -> Resp {
    let b = serde_json::to_vec(body).unwrap();
    send(addr, "POST", path, key, &[], Some(&b))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// POST to the shared server with the key.
async fn api(path: &str, body: &Value) -> Resp {
    post(shared().await, path, Some(KEY), body).await
}

async fn api_get(path: &str) -> Resp {
    get(shared().await, path, Some(KEY)).await.expect(path)
}

/// The SSE payloads of a streamed body, checking the framing: every event is one `data: `
/// line, events end with a blank line, the last is `[DONE]`.
fn sse(body: &str) -> Vec<Value> {
    assert!(body.ends_with("data: [DONE]\n\n"), "stream end: {body:?}");
    let events: Vec<&str> = body.strip_suffix("\n\n").unwrap().split("\n\n").collect();
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    events[..events.len() - 1]
        .iter()
        .map(|e| {
            assert!(!e.contains('\n'), "an event of more than one line: {e:?}");
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {e:?}"));
            serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"))
        })
        .collect()
}

/// Sum of the samples of `name` whose labels contain `labels` (`None` when there are none).
fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = key.split_once('{').unwrap_or((key, ""));
        if n == name && l.contains(labels) {
            *total.get_or_insert(0.0) += value.parse::<f64>().expect("sample value");
        }
    }
    total
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

// ---------------------------------------------------------------------------------------------
// Loading, health, models

#[tokio::test]
async fn loading_answers_503_then_a_load_failure_ends_run() {
    // A FIFO as the model file: opening it blocks the loader until we open the other end.
    let dir = std::env::temp_dir().join(format!("lume-server-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("model.gguf");
    let _ = std::fs::remove_file(&fifo);
    match std::process::Command::new("mkfifo").arg(&fifo).status() {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("skipped: mkfifo is not available ({other:?})");
            return;
        }
    }
    let mut cfg = config(MODEL, 1, 64);
    cfg.model_path = fifo.clone();
    cfg.model_id = "blocked".into();
    let h = spawn(cfg);
    let want =
        json!({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}});
    for path in ["/health", "/v1/models", "/props", "/slots", "/metrics"] {
        let r = get(h.addr, path, None).await.unwrap();
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.json(), want, "{path}");
    }
    let r = post(h.addr, "/v1/completions", None, &json!({"prompt": "Hi"})).await;
    assert_eq!(r.status, 503);
    // Unblock the loader with an empty "file": the load fails and `run` returns the error.
    let f = fifo.clone();
    let opener = std::thread::spawn(move || drop(std::fs::OpenOptions::new().write(true).open(f)));
    let joined = tokio::task::spawn_blocking(move || h.stop_after_failure())
        .await
        .unwrap();
    opener.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    match joined {
        Err(ServerError::Load { path, .. }) => assert_eq!(path, fifo),
        other => panic!("expected a load error, got {other:?}"),
    }
}

impl Handle {
    /// Waits (at most 30 s) for `run` to end by itself.
    fn stop_after_failure(&self) -> Result<(), ServerError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let t = self.thread.lock().unwrap().take().unwrap();
        while !t.is_finished() {
            assert!(
                Instant::now() < deadline,
                "run did not end after the load failed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        t.join().unwrap()
    }
}

#[tokio::test]
async fn health_and_models() {
    let addr = shared().await;
    let r = get(addr, "/health", None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok"}));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let r = api_get("/v1/models").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    let m = &v["data"][0];
    assert_eq!(m["id"], MODEL);
    assert_eq!(m["object"], "model");
    assert_eq!(m["owned_by"], "lume");
    assert!(m["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(m["meta"]["n_ctx"], SHARED_CTX);
    assert!(m["meta"]["n_params"].as_u64().unwrap() > 100_000_000);
    let r = api_get(&format!("/v1/models/{MODEL}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], MODEL);
    let e = api_get("/v1/models/no-such-model").await.error(404, MODEL);
    assert_eq!(e["code"], "model_not_found");
    // The root page is open.
    let r = get(addr, "/", None).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("lume"));
}

#[tokio::test]
async fn model_names_served_and_unknown_404() {
    let _g = GATE.read().await;
    for name in [json!(MODEL), json!(""), json!("default"), Value::Null] {
        let mut body = json!({"messages": user("Hi"), "max_tokens": 2, "temperature": 0});
        if !name.is_null() {
            body["model"] = name.clone();
        }
        let r = api("/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "model {name}: {}", r.text());
        assert_eq!(r.json()["model"], MODEL);
    }
    let r = api(
        "/v1/chat/completions",
        &json!({"model": "gpt-4o", "messages": user("Hi"), "max_tokens": 2}),
    )
    .await;
    let e = r.error(404, &format!("this server serves '{MODEL}'"));
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");
    let r = api(
        "/v1/completions",
        &json!({"model": "gpt-4o", "prompt": "Hi", "max_tokens": 2}),
    )
    .await;
    assert_eq!(r.error(404, "gpt-4o")["code"], "model_not_found");
}

#[tokio::test]
async fn unknown_route_404_and_wrong_method_405_are_json() {
    let addr = shared().await;
    let e = get(addr, "/v1/audio/speech", Some(KEY))
        .await
        .unwrap()
        .error(404, "/v1/audio/speech");
    assert_eq!(e["code"], "not_found");
    let r = send(addr, "DELETE", "/v1/models", Some(KEY), &[], None)
        .await
        .unwrap();
    r.error(405, "DELETE");
}

// ---------------------------------------------------------------------------------------------
// Chat

#[tokio::test]
async fn chat_whole_and_streamed_agree() {
    let _g = GATE.write().await;
    let body = json!({"model": MODEL, "messages": user("What is the capital of France?"),
                      "max_tokens": 10, "temperature": 0});
    let r = api("/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let full = r.json();
    assert_eq!(full["object"], "chat.completion");
    assert!(full["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(full["created"].as_u64().unwrap() > 1_600_000_000);
    assert!(full["system_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("lume-"));
    let c = &full["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["message"]["role"], "assistant");
    assert!(c["logprobs"].is_null());
    let text = c["message"]["content"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    let u = &full["usage"];
    let n_gen = u["completion_tokens"].as_u64().unwrap();
    assert!(n_gen > 0 && n_gen <= 10);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + n_gen
    );
    assert!(u["prompt_tokens_details"]["cached_tokens"].is_u64());
    if n_gen == 10 {
        assert_eq!(c["finish_reason"], "length");
    }

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let r = api("/v1/chat/completions", &sbody).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = sse(&r.text());
    let id = chunks[0]["id"].clone();
    assert!(chunks
        .iter()
        .all(|c| c["id"] == id && c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (usage_chunk, choice_chunks) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], n_gen);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], u["prompt_tokens"]);
    let streamed: String = choice_chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        streamed, text,
        "greedy streamed text differs from the whole answer"
    );
    let (last, rest) = choice_chunks.split_last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], c["finish_reason"]);
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(rest
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null() && c.get("usage").is_none()));

    // Without include_usage there is no usage chunk.
    sbody["stream_options"] = json!({"include_usage": false});
    let chunks = sse(&api("/v1/chat/completions", &sbody).await.text());
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert!(!chunks.last().unwrap()["choices"][0]["finish_reason"].is_null());
}

#[tokio::test]
async fn chat_logprobs_whole_and_streamed() {
    let _g = GATE.read().await;
    let body = json!({"messages": user("What is the capital of France?"), "max_tokens": 5,
                      "temperature": 0, "logprobs": true, "top_logprobs": 3});
    let v = api("/v1/chat/completions", &body).await.json();
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let mut joined = String::new();
    for e in content {
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{e}");
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0]["token"], e["token"]);
        assert!((top[0]["logprob"].as_f64().unwrap() - lp).abs() < 1e-4);
        let bytes: Vec<u8> = e["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            e["token"].as_str().unwrap()
        );
        joined += e["token"].as_str().unwrap();
    }
    assert_eq!(
        joined,
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );

    let mut sbody = body;
    sbody["stream"] = json!(true);
    sbody["top_logprobs"] = json!(2);
    let chunks = sse(&api("/v1/chat/completions", &sbody).await.text());
    let entries: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
        .flatten()
        .collect();
    assert_eq!(entries.len(), 5);
    assert!(entries
        .iter()
        .all(|e| e["top_logprobs"].as_array().unwrap().len() == 2));
}

#[tokio::test]
async fn chat_content_parts_roles_and_prefix_reuse() {
    let _g = GATE.write().await;
    let first = json!([
        {"role": "system", "content": "You are a geography tutor."},
        {"role": "user", "content": [{"type": "text", "text": "Which river flows through Vienna?"}]},
    ]);
    let r = api(
        "/v1/chat/completions",
        &json!({"messages": first, "max_tokens": 6, "temperature": 0}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let reply = v["choices"][0]["message"]["content"].as_str().unwrap();
    let n1 = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let mut second = first.as_array().unwrap().clone();
    second.push(json!({"role": "assistant", "content": reply}));
    second.push(json!({"role": "user", "content": "Into which sea does it flow?"}));
    let v = api(
        "/v1/chat/completions",
        &json!({"messages": second, "max_tokens": 4, "temperature": 0}),
    )
    .await
    .json();
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    // Other tests may have taken the slot in between; when it is reused, the whole first prompt is.
    assert!(
        cached == 0 || cached >= n1 - 1,
        "cached {cached}, first prompt {n1}"
    );
    assert!(cached < v["usage"]["prompt_tokens"].as_u64().unwrap());
}

// ---------------------------------------------------------------------------------------------
// Completions

#[tokio::test]
async fn completions_prompt_forms() {
    let _g = GATE.write().await;
    let one = |p: Value| json!({"prompt": p, "max_tokens": 4, "temperature": 0});
    let r = api("/v1/completions", &one(json!("The capital of France is"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let by_text = v["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(!by_text.is_empty());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 4);

    // Token ids give the same answer as the text they encode.
    let ids = api("/tokenize", &json!({"content": "The capital of France is"}))
        .await
        .json()["tokens"]
        .clone();
    let v2 = api("/v1/completions", &one(ids.clone())).await.json();
    assert_eq!(v2["choices"][0]["text"], by_text.as_str());
    assert_eq!(v2["usage"]["prompt_tokens"], v["usage"]["prompt_tokens"]);

    // A list: one choice per prompt, each as if asked alone.
    let prompts = [
        "The capital of France is",
        "One, two, three,",
        "Water boils at",
    ];
    let v = api("/v1/completions", &one(json!(prompts))).await.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    let mut usage_sum = 0;
    for (i, p) in prompts.iter().enumerate() {
        assert_eq!(choices[i]["index"], i);
        let alone = api("/v1/completions", &one(json!(p))).await.json();
        assert_eq!(
            choices[i]["text"], alone["choices"][0]["text"],
            "prompt {p:?}"
        );
        usage_sum += alone["usage"]["completion_tokens"].as_u64().unwrap();
    }
    assert_eq!(v["usage"]["completion_tokens"], usage_sum);

    // A list of id lists.
    let v = api("/v1/completions", &one(json!([ids.clone(), ids])))
        .await
        .json();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(v["choices"][1]["text"], by_text.as_str());
}

#[tokio::test]
async fn completions_echo_logprobs_scoring() {
    let _g = GATE.read().await;
    let prompt = "The capital of France is";
    let v = api(
        "/v1/completions",
        &json!({"prompt": prompt, "echo": true, "logprobs": 1, "max_tokens": 0}),
    )
    .await
    .json();
    let c = &v["choices"][0];
    assert_eq!(c["text"], prompt);
    assert_eq!(c["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 0);
    let lp = &c["logprobs"];
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tokens.len() as u64,
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(tokens.concat(), prompt);
    let tlp = lp["token_logprobs"].as_array().unwrap();
    assert!(tlp[0].is_null());
    assert!(tlp[1..].iter().all(|x| x.as_f64().unwrap() <= 0.0));
    let top = lp["top_logprobs"].as_array().unwrap();
    assert!(top[0].is_null());
    for t in &top[1..] {
        let n = t.as_object().unwrap().len();
        assert!((1..=2).contains(&n), "{t}");
    }
    let mut pos = 0;
    for (tok, off) in tokens.iter().zip(lp["text_offset"].as_array().unwrap()) {
        assert_eq!(off.as_u64().unwrap(), pos);
        pos += tok.chars().count() as u64;
    }

    // Echo with generation; generated logprobs continue after the prompt.
    let v = api(
        "/v1/completions",
        &json!({"prompt": prompt, "echo": true, "logprobs": 2, "max_tokens": 3, "temperature": 0}),
    )
    .await
    .json();
    let c = &v["choices"][0];
    let text = c["text"].as_str().unwrap();
    assert!(
        text.starts_with(prompt) && text.len() > prompt.len(),
        "{text}"
    );
    let n_prompt = v["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    let n_gen = v["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    let toks = c["logprobs"]["tokens"].as_array().unwrap();
    assert_eq!(toks.len(), n_prompt + n_gen);
    let offs = c["logprobs"]["text_offset"].as_array().unwrap();
    assert_eq!(
        offs[n_prompt].as_u64().unwrap() as usize,
        prompt.chars().count()
    );

    // Without echo: only generated tokens, their text is the answer.
    let v = api(
        "/v1/completions",
        &json!({"prompt": prompt, "logprobs": 3, "max_tokens": 4, "temperature": 0}),
    )
    .await
    .json();
    let c = &v["choices"][0];
    let toks: String = c["logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(toks, c["text"].as_str().unwrap());
    assert!(c["logprobs"]["top_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t.as_object().unwrap().len() == 3));

    // max_tokens 0 without echo: nothing generated.
    let v = api(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 0}),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["text"], "");
    assert_eq!(v["usage"]["completion_tokens"], 0);
}

#[tokio::test]
async fn completions_streamed_matches_whole() {
    let _g = GATE.write().await;
    let body = json!({"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0});
    let full = api("/v1/completions", &body).await.json();
    let mut sbody = body;
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let r = api("/v1/completions", &sbody).await;
    assert_eq!(r.status, 200);
    let chunks = sse(&r.text());
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let (usage, choice_chunks) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][k], full["usage"][k], "{k}");
    }
    let text: String = choice_chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, full["choices"][0]["text"].as_str().unwrap());
    assert_eq!(
        choice_chunks.last().unwrap()["choices"][0]["finish_reason"],
        full["choices"][0]["finish_reason"]
    );
}

#[tokio::test]
async fn sampling_stop_seed_and_logit_bias() {
    let _g = GATE.write().await;
    let prompt = "Count: 1, 2, 3, 4,";
    let greedy = |extra: Value| {
        let mut b = json!({"prompt": prompt, "max_tokens": 8, "temperature": 0});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let full = api("/v1/completions", &greedy(json!({}))).await.json()["choices"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let cut = full.find(',').expect("greedy counting has a comma");
    let v = api("/v1/completions", &greedy(json!({"stop": [",", "zzz"]})))
        .await
        .json();
    assert_eq!(v["choices"][0]["text"], &full[..cut]);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Banning the greedy first token changes it; +100 forces another.
    let first = api("/v1/completions", &greedy(json!({"max_tokens": 1})))
        .await
        .json()["choices"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = api("/tokenize", &json!({"content": first})).await.json()["tokens"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 1, "{first:?} is one token");
    let ban = json!({ids[0].to_string(): -100});
    let v = api(
        "/v1/completions",
        &greedy(json!({"max_tokens": 1, "logit_bias": ban})),
    )
    .await
    .json();
    assert_ne!(v["choices"][0]["text"].as_str().unwrap(), first);
    let banana = api("/tokenize", &json!({"content": " banana"}))
        .await
        .json()["tokens"][0]
        .clone();
    let v = api(
        "/v1/completions",
        &greedy(json!({"max_tokens": 1, "logit_bias": {banana.to_string(): 100}})),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["text"], " banana");

    // A seed makes sampling reproducible.
    let seeded =
        json!({"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0.9, "seed": 42});
    let a = api("/v1/completions", &seeded).await.json()["choices"][0]["text"].clone();
    let b = api("/v1/completions", &seeded).await.json()["choices"][0]["text"].clone();
    assert_eq!(a, b);
}

// ---------------------------------------------------------------------------------------------
// The llama-server routes

#[tokio::test]
async fn tokenize_detokenize_template_props_slots() {
    let v = api("/tokenize", &json!({"content": "Hello world"}))
        .await
        .json();
    assert_eq!(v["tokens"], json!([19556, 905]));
    let v = api(
        "/tokenize",
        &json!({"content": "Hello world", "with_pieces": true}),
    )
    .await
    .json();
    assert_eq!(
        v["tokens"],
        json!([{"id": 19556, "piece": "Hello"}, {"id": 905, "piece": " world"}])
    );
    let text = "Grüße, 世界! 🙂";
    let ids = api("/tokenize", &json!({"content": text})).await.json()["tokens"].clone();
    let v = api("/detokenize", &json!({"tokens": ids})).await.json();
    assert_eq!(v["content"], text);
    api("/detokenize", &json!({"tokens": [99999999]}))
        .await
        .error(400, "99999999");
    api("/detokenize", &json!({"tokens": [-1]}))
        .await
        .error(400, "tokens");

    let v = api(
        "/apply-template",
        &json!({"messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Hello there"}]}),
    )
    .await
    .json();
    let p = v["prompt"].as_str().unwrap();
    assert!(p.contains("<|im_start|>system\nBe brief.<|im_end|>"), "{p}");
    assert!(p.contains("<|im_start|>user\nHello there<|im_end|>"), "{p}");
    assert!(p.ends_with("<|im_start|>assistant\n"), "{p}");

    let v = api_get("/props").await.json();
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["n_ctx"], SHARED_CTX);
    assert_eq!(v["total_slots"], SHARED_SLOTS);
    assert!(v["chat_template"]
        .as_str()
        .unwrap()
        .contains("<|im_start|>"));
    assert!(v["model_path"].as_str().unwrap().ends_with(".gguf"));
    assert_eq!(v["default_generation_settings"]["params"]["top_k"], 40);
    assert_eq!(v["default_generation_settings"]["n_ctx"], SHARED_CTX);
    assert!(v["build_info"].as_str().unwrap().starts_with("lume "));

    let v = api_get("/slots").await.json();
    let slots = v.as_array().unwrap();
    assert_eq!(slots.len(), SHARED_SLOTS);
    for (i, s) in slots.iter().enumerate() {
        assert_eq!(s["id"], i);
        assert_eq!(s["n_ctx"], SHARED_CTX);
        for k in [
            "is_processing",
            "n_cached",
            "n_prompt_left",
            "n_decoded",
            "id_task",
        ] {
            assert!(s.get(k).is_some(), "slot lacks {k}: {s}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn request_errors_are_400_naming_the_field() {
    let _g = GATE.read().await;
    let chat = |extra: Value| {
        let mut b = json!({"messages": user("Hi"), "max_tokens": 2});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"messages": "Hi"}), "messages"),
        (
            json!({"messages": {"role": "user", "content": "Hi"}}),
            "messages",
        ),
        (json!({"messages": [1, 2]}), "messages[0]"),
        (json!({"messages": []}), "messages"),
        (json!({"messages": null}), "messages"),
        (
            json!({"messages": [{"role": "wizard", "content": "Hi"}]}),
            "wizard",
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            "image_url",
        ),
        (json!({"max_tokens": -1}), "max_tokens"),
        (
            json!({"max_completion_tokens": -1}),
            "max_completion_tokens",
        ),
        (json!({"max_tokens": "many"}), "max_tokens"),
        (json!({"temperature": 5}), "temperature"),
        (json!({"temperature": -1}), "temperature"),
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"min_p": 2}), "min_p"),
        (json!({"presence_penalty": 3}), "presence_penalty"),
        (json!({"frequency_penalty": -3}), "frequency_penalty"),
        (json!({"repeat_penalty": 0}), "repeat_penalty"),
        (json!({"n": 2}), "n > 1 is not supported"),
        (
            json!({"stop": (0..17).map(|i| format!("s{i}")).collect::<Vec<_>>()}),
            "stop",
        ),
        (json!({"stop": 5}), "stop"),
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"logit_bias": {"abc": 1}}), "logit_bias"),
        (json!({"logit_bias": {"5": 500}}), "logit_bias"),
        (json!({"logit_bias": {"99999999": 1}}), "logit_bias"),
        (json!({"seed": 1.5}), "seed"),
        (json!({"stream": "yes"}), "stream"),
    ];
    for (extra, needle) in cases {
        let body = chat(extra.clone());
        let r = api("/v1/chat/completions", &body).await;
        let e = r.error(400, needle);
        assert_eq!(e["type"], "invalid_request_error", "{extra}");
    }
    let comp = [
        (
            json!({"prompt": [1, 2, 99999999], "max_tokens": 2}),
            "99999999",
        ),
        (json!({"prompt": [1, -2]}), "prompt"),
        (json!({"prompt": []}), "prompt"),
        (json!({"prompt": [1, "a"]}), "prompt"),
        (json!({"prompt": 5}), "prompt"),
        (json!({}), "prompt"),
        (json!({"prompt": "Hi", "max_tokens": -1}), "max_tokens"),
        (json!({"prompt": "Hi", "logprobs": 21}), "logprobs"),
        (json!({"prompt": vec!["a"; 65]}), "prompt"),
    ];
    for (body, needle) in comp {
        api("/v1/completions", &body).await.error(400, needle);
    }
    // Malformed JSON and a body that is not an object.
    let addr = shared().await;
    for raw in [&b"{\"messages\": ["[..], b"not json at all", b"[1, 2]"] {
        let r = send(
            addr,
            "POST",
            "/v1/chat/completions",
            Some(KEY),
            &[],
            Some(raw),
        )
        .await
        .unwrap();
        r.error(400, "json");
    }
    // Unknown fields are ignored.
    let r = api(
        "/v1/chat/completions",
        &chat(json!({"frobnicate": true, "vendor": {"a": [1]}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Still serving.
    assert_eq!(get(addr, "/health", None).await.unwrap().status, 200);
}

#[tokio::test]
async fn body_too_large_is_413() {
    let addr = shared().await;
    let filler = "a".repeat(9 << 20);
    let body = serde_json::to_vec(&json!({"messages": user(&filler), "max_tokens": 2})).unwrap();
    let r = send(
        addr,
        "POST",
        "/v1/chat/completions",
        Some(KEY),
        &[],
        Some(&body),
    )
    .await
    .unwrap();
    let e = r.error(413, "--max-body");
    assert_eq!(e["code"], "request_too_large");
    assert_eq!(get(addr, "/health", None).await.unwrap().status, 200);
}

#[tokio::test]
async fn prompt_longer_than_context_is_400() {
    let prompt = "hello ".repeat(1500);
    let n = api("/tokenize", &json!({"content": prompt})).await.json()["tokens"]
        .as_array()
        .unwrap()
        .len();
    assert!(n > SHARED_CTX);
    let want = format!("the prompt has {n} tokens; the context holds {SHARED_CTX} (--ctx-size)");
    for stream in [false, true] {
        let r = api(
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": 2, "stream": stream}),
        )
        .await;
        let e = r.error(400, &want);
        assert_eq!(e["param"], "prompt");
        assert_eq!(e["code"], "context_length_exceeded");
    }
    let e = api(
        "/v1/chat/completions",
        &json!({"messages": user(&prompt), "max_tokens": 2}),
    )
    .await
    .error(400, &format!("the context holds {SHARED_CTX}"));
    assert_eq!(e["param"], "messages");
}

// ---------------------------------------------------------------------------------------------
// Auth

#[tokio::test]
async fn api_keys_bearer_and_x_api_key() {
    let _g = GATE.read().await;
    let addr = shared().await;
    let body = serde_json::to_vec(&json!({"messages": user("Hi"), "max_tokens": 1})).unwrap();
    let chat = |key: Option<&'static str>, extra: &'static [(&'static str, &'static str)]| {
        let body = body.clone();
        async move {
            send(
                addr,
                "POST",
                "/v1/chat/completions",
                key,
                extra,
                Some(&body),
            )
            .await
            .unwrap()
        }
    };
    let want = json!({"error": {"message": "invalid or missing API key",
                                "type": "authentication_error", "param": null,
                                "code": "invalid_api_key"}});
    let r = chat(None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), want);
    assert_eq!(chat(Some("nope"), &[]).await.status, 401);
    assert_eq!(chat(None, &[("x-api-key", "nope")]).await.status, 401);
    assert_eq!(chat(None, &[("Authorization", KEY)]).await.status, 401);
    assert_eq!(chat(Some(KEY), &[]).await.status, 200);
    assert_eq!(chat(None, &[("x-api-key", KEY)]).await.status, 200);
    for path in ["/v1/models", "/props", "/slots"] {
        assert_eq!(get(addr, path, None).await.unwrap().status, 401, "{path}");
    }
    let r = post(addr, "/tokenize", None, &json!({"content": "x"})).await;
    assert_eq!(r.status, 401);
    // Open routes.
    assert_eq!(get(addr, "/health", None).await.unwrap().status, 200);
    assert_eq!(get(addr, "/", None).await.unwrap().status, 200);
    assert_eq!(get(addr, "/metrics", None).await.unwrap().status, 200);
}

#[tokio::test]
async fn metrics_need_key_when_asked() {
    let mut cfg = config(MODEL, 1, 64);
    cfg.api_keys = vec!["k1".into(), "k2".into()];
    cfg.metrics_need_key = true;
    let h = spawn(cfg);
    wait_ready(h.addr).await;
    assert_eq!(get(h.addr, "/metrics", None).await.unwrap().status, 401);
    let r = get(h.addr, "/metrics", Some("k2")).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(get(h.addr, "/health", None).await.unwrap().status, 200);
    tokio::task::spawn_blocking(move || h.stop())
        .await
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Metrics, cancellation, busy, shutdown (quiet or private servers)

#[tokio::test]
async fn metrics_after_a_known_workload() {
    let _q = QUIET.lock().await;
    let addr = quiet().await;
    let scrape = || async { get(addr, "/metrics", None).await.unwrap().text() };
    let before = scrape().await;
    let mut n_prompt = 0.0;
    for _ in 0..3 {
        let r = post(
            addr,
            "/v1/completions",
            None,
            &json!({"prompt": "Once upon a time, in a land far away,", "max_tokens": 5,
                    "temperature": 0}),
        )
        .await;
        let v = r.json();
        assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
        assert_eq!(v["usage"]["completion_tokens"], 5);
        n_prompt += v["usage"]["prompt_tokens"].as_f64().unwrap();
    }
    let after = scrape().await;
    let delta = |name: &str, labels: &str| {
        metric(&after, name, labels).unwrap_or_else(|| panic!("{name} missing:\n{after}"))
            - metric(&before, name, labels).unwrap_or(0.0)
    };
    let ml = format!("model_name=\"{MODEL}\"");
    assert_eq!(delta("vllm:generation_tokens_total", &ml), 15.0);
    assert_eq!(delta("llamacpp:tokens_predicted_total", ""), 15.0);
    assert_eq!(delta("vllm:prompt_tokens_total", &ml), n_prompt);
    assert_eq!(
        delta("vllm:request_success_total", "finished_reason=\"length\""),
        3.0
    );
    assert_eq!(
        delta("vllm:request_success_total", "finished_reason=\"stop\""),
        0.0
    );
    assert_eq!(delta("vllm:e2e_request_latency_seconds_count", &ml), 3.0);
    assert_eq!(
        delta("vllm:time_to_first_token_seconds_bucket", "le=\"+Inf\""),
        3.0
    );
    assert_eq!(delta("vllm:inter_token_latency_seconds_count", &ml), 12.0);
    assert_eq!(delta("vllm:request_queue_time_seconds_count", &ml), 3.0);
    assert_eq!(
        delta(
            "lume_http_requests_total",
            "route=\"/v1/completions\",status=\"200\""
        ),
        3.0
    );
    assert!(delta("llamacpp:n_decode_total", "") >= 5.0);
    assert_eq!(metric(&after, "vllm:num_requests_running", &ml), Some(0.0));
    assert_eq!(
        metric(&after, "llamacpp:requests_processing", ""),
        Some(0.0)
    );
    for name in [
        "llamacpp:prompt_tokens_total",
        "llamacpp:prompt_seconds_total",
        "llamacpp:tokens_predicted_seconds_total",
        "llamacpp:prompt_tokens_seconds",
        "llamacpp:predicted_tokens_seconds",
        "llamacpp:requests_deferred",
        "llamacpp:n_busy_slots_per_decode",
        "llamacpp:kv_cache_usage_ratio",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
    ] {
        assert!(metric(&after, name, "").is_some(), "{name} missing");
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "{name} has no TYPE"
        );
        assert!(
            after.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
}

/// Opens a streamed completion and reads until `n` text chunks arrived; returns the socket.
async fn open_stream(addr: SocketAddr, body: &Value, n: usize) -> TcpStream {
    let b = serde_json::to_vec(body).unwrap();
    let raw = request_bytes(addr, "POST", "/v1/completions", None, &[], Some(&b));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&raw).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while String::from_utf8_lossy(&seen)
        .matches("\"text\":\"")
        .count()
        < n
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let k = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("no stream data in time")
            .unwrap();
        assert!(
            k > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..k]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    s
}

async fn slots_idle(addr: SocketAddr) -> bool {
    let v = get(addr, "/slots", None).await.unwrap().json();
    v.as_array()
        .unwrap()
        .iter()
        .all(|s| s["is_processing"] == false)
}

#[tokio::test]
async fn dropped_stream_frees_its_slot_and_a_full_queue_is_503() {
    let _q = QUIET.lock().await;
    let addr = quiet().await;
    let before = get(addr, "/metrics", None).await.unwrap().text();
    let long = json!({"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0,
                      "stream": true});
    let running = open_stream(addr, &long, 2).await;
    assert!(!slots_idle(addr).await, "the stream holds the slot");
    // One slot busy, queue 1: a second request waits (held open here), a third is refused.
    let waiting = {
        let b = serde_json::to_vec(&long).unwrap();
        let raw = request_bytes(addr, "POST", "/v1/completions", None, &[], Some(&b));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&raw).await.unwrap();
        s
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = get(addr, "/metrics", None).await.unwrap().text();
        if metric(&m, "llamacpp:requests_deferred", "") == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second request never queued:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = post(
        addr,
        "/v1/completions",
        None,
        &json!({"prompt": "Hi", "max_tokens": 1}),
    )
    .await;
    let e = r.error(503, "busy");
    assert_eq!(e["type"], "unavailable_error");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Both clients go away: the slot and the queue empty within a few seconds.
    drop(running);
    drop(waiting);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = get(addr, "/metrics", None).await.unwrap().text();
        let run = metric(&m, "vllm:num_requests_running", "");
        let wait = metric(&m, "vllm:num_requests_waiting", "");
        if run == Some(0.0) && wait == Some(0.0) && slots_idle(addr).await {
            let aborted = metric(
                &m,
                "vllm:request_success_total",
                "finished_reason=\"abort\"",
            )
            .unwrap()
                - metric(
                    &before,
                    "vllm:request_success_total",
                    "finished_reason=\"abort\"",
                )
                .unwrap_or(0.0);
            assert!(aborted >= 1.0, "the dropped stream counts as aborted");
            let generated = metric(&m, "vllm:generation_tokens_total", "").unwrap()
                - metric(&before, "vllm:generation_tokens_total", "").unwrap_or(0.0);
            assert!(generated < 400.0, "the stream ran to the end: {generated}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot not freed after the client left:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the server serves again.
    let r = post(
        addr,
        "/v1/completions",
        None,
        &json!({"prompt": "Hi", "max_tokens": 1}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn shutdown_lets_streams_in_flight_finish() {
    let h = spawn(config(MODEL, 1, 256));
    wait_ready(h.addr).await;
    let addr = h.addr;
    let body = json!({"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0,
                      "stream": true});
    let mut s = open_stream(addr, &body, 1).await;
    let stopper = tokio::task::spawn_blocking(move || h.stop());
    let mut rest = Vec::new();
    tokio::time::timeout(REQUEST_TIMEOUT, s.read_to_end(&mut rest))
        .await
        .expect("the stream did not end")
        .unwrap();
    let rest = String::from_utf8_lossy(&rest).into_owned();
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    stopper.await.unwrap().expect("run ends with Ok");
    // Nothing listens any more.
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// A base model without a chat template

#[tokio::test]
async fn base_model_chat_is_400_completions_work() {
    let h = spawn(config("gemma3-270m", 1, 128));
    wait_ready(h.addr).await;
    let r = post(
        h.addr,
        "/v1/chat/completions",
        None,
        &json!({"messages": user("Hi"), "max_tokens": 2}),
    )
    .await;
    let e = r.error(
        400,
        "the model has no chat template; use /v1/completions with a plain prompt",
    );
    assert_eq!(e["param"], "messages");
    post(
        h.addr,
        "/apply-template",
        None,
        &json!({"messages": user("Hi")}),
    )
    .await
    .error(400, "chat template");
    let v = get(h.addr, "/props", None).await.unwrap().json();
    assert!(v["chat_template"].is_null());
    let r = post(
        h.addr,
        "/v1/completions",
        None,
        &json!({"prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "gemma3-270m");
    tokio::task::spawn_blocking(move || h.stop())
        .await
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// A chat template given by the operator, and per-request template variables

#[tokio::test]
async fn chat_template_override_and_per_request_kwargs() {
    let mut cfg = config(MODEL, 1, 256);
    cfg.chat_template = Some(
        "{% if messages[0].role == 'system' %}{{ raise_exception('no system here') }}{% endif %}\
         <|im_start|>user\n{{ messages[0].content }} ({{ tone }}, thinking={{ enable_thinking }})\
         <|im_end|>\n<|im_start|>assistant\n"
            .into(),
    );
    cfg.chat_template_kwargs =
        serde_json::from_value(json!({"tone": "dry", "enable_thinking": true})).unwrap();
    let h = spawn(cfg);
    wait_ready(h.addr).await;
    let addr = h.addr;
    let apply = |body: Value| async move { post(addr, "/apply-template", None, &body).await };
    let v = apply(json!({"messages": user("Hi")})).await.json();
    // (The template's last newline is dropped, as jinja2 does by default.)
    assert_eq!(
        v["prompt"],
        "<|im_start|>user\nHi (dry, thinking=True)<|im_end|>\n<|im_start|>assistant"
    );
    // The request's variables go over the server's.
    let v = apply(json!({"messages": user("Hi"),
                         "chat_template_kwargs": {"enable_thinking": false, "extra": 1}}))
    .await
    .json();
    assert_eq!(
        v["prompt"],
        "<|im_start|>user\nHi (dry, thinking=False)<|im_end|>\n<|im_start|>assistant"
    );
    let v = apply(json!({"messages": user("Hi"), "chat_template_kwargs": null}))
        .await
        .json();
    assert!(
        v["prompt"].as_str().unwrap().contains("thinking=True"),
        "{v}"
    );
    // /props shows the template in use.
    let v = get(h.addr, "/props", None).await.unwrap().json();
    assert!(v["chat_template"].as_str().unwrap().contains("tone"), "{v}");

    // The chat route renders the same way.
    let r = post(
        h.addr,
        "/v1/chat/completions",
        None,
        &json!({"messages": user("Hi"), "max_tokens": 1, "temperature": 0,
                "chat_template_kwargs": {"tone": "warm"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        h.addr,
        "/v1/chat/completions",
        None,
        &json!({"messages": user("Hi"), "max_tokens": 1, "chat_template_kwargs": [1]}),
    )
    .await;
    assert_eq!(
        r.error(400, "'chat_template_kwargs' must be an object")["param"],
        "chat_template_kwargs"
    );
    let e = apply(json!({"messages": user("Hi"), "chat_template_kwargs": {"messages": []}}))
        .await
        .error(400, "cannot set 'messages'");
    assert_eq!(e["param"], "chat_template_kwargs.messages");
    // The template's own refusal is a 400 with its message.
    let e = apply(json!({"messages": [{"role": "system", "content": "S"},
                                      {"role": "user", "content": "U"}]}))
    .await
    .error(400, "refuses this conversation: no system here");
    assert_eq!(e["param"], "messages");
    tokio::task::spawn_blocking(move || h.stop())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_bad_chat_template_stops_the_server_at_bind() {
    let mut cfg = config(MODEL, 1, 128);
    cfg.chat_template = Some("{% for %}".into());
    let err = Server::bind(cfg).await.err().expect("bind refuses it");
    assert!(err.to_string().contains("chat template"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Several models by name (private multi-model servers)

const BASE: &str = "gemma3-270m";
const QWEN: &str = "qwen2.5-coder-0.5b";

/// A multi-model server of the catalogue models `names`, each loaded on first use.
fn multi_config(names: &[&str], n_slots: usize, n_ctx: usize) -> ServerConfig {
    let mut cfg = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        multi: true,
        models: names
            .iter()
            .map(|n| ModelSpec {
                id: n.to_string(),
                path: model_path(n),
            })
            .collect(),
        drain_timeout: Duration::from_secs(10),
        log: false,
        ..Default::default()
    };
    cfg.scheduler.n_slots = n_slots;
    cfg.scheduler.n_ctx = n_ctx;
    cfg.scheduler.threads = 2;
    cfg
}

/// The names `/api/ps` lists (the models in memory), sorted.
async fn in_memory(addr: SocketAddr) -> Vec<String> {
    let v = get(addr, "/api/ps", None).await.unwrap().json();
    let mut names: Vec<String> = v["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Reads a streamed answer to its end (`[DONE]` or the connection's end).
async fn read_to_end(mut s: TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let k = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("the stream did not end in time")
            .unwrap_or(0);
        if k == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..k]);
        if String::from_utf8_lossy(&seen).contains("data: [DONE]") {
            break;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

async fn stop(h: Handle) {
    tokio::task::spawn_blocking(move || h.stop())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn multi_budget_refuses_a_model_too_large_and_waits_for_busy_ones() {
    // 1 model at a time, 256 MiB: smollm2 (about 105 MiB at 1 x 512) and gemma3 (about
    // 250 MiB) fit alone, qwen (over 460 MiB) never does.
    let mut cfg = multi_config(&[MODEL, BASE, QWEN], 1, 512);
    cfg.max_loaded = 1;
    cfg.max_memory = Some(256 << 20);
    cfg.keep_alive = KeepAlive::For(Duration::from_secs(600));
    let h = spawn(cfg);
    wait_ready(h.addr).await;
    let addr = h.addr;
    assert!(in_memory(addr).await.is_empty(), "nothing loads at start");

    let one = |model: &str| json!({"model": model, "prompt": "Hi", "max_tokens": 1});
    let r = post(addr, "/v1/completions", None, &one(QWEN)).await;
    let e = r.error(400, "--max-memory");
    assert_eq!(e["code"], "model_too_large");
    assert!(e["message"].as_str().unwrap().contains(QWEN), "{e}");

    // smollm2 streams: it holds the only place, so gemma3 is refused with a retry.
    let long = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 400,
                      "temperature": 0, "stream": true, "logit_bias": {"0": -100, "2": -100}});
    let running = open_stream(addr, &long, 2).await;
    let r = post(addr, "/v1/completions", None, &one(BASE)).await;
    let e = r.error(503, "--max-loaded 1");
    assert_eq!(e["code"], "models_busy");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(in_memory(addr).await, vec![format!("{MODEL}:latest")]);

    // Once the stream is gone, gemma3 takes its place (the idle model is evicted).
    drop(running);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = post(addr, "/v1/completions", None, &one(BASE)).await;
        if r.status == 200 {
            assert_eq!(r.json()["model"], BASE);
            break;
        }
        r.error(503, "--max-loaded 1");
        assert!(Instant::now() < deadline, "gemma3 never got the place");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(in_memory(addr).await, vec![format!("{BASE}:latest")]);
    let m = get(addr, "/metrics", None).await.unwrap().text();
    let evicted = format!("model=\"{MODEL}\",reason=\"evicted\"");
    assert_eq!(metric(&m, "lume_model_unloads_total", &evicted), Some(1.0));
    assert_eq!(
        metric(&m, "lume_model_loaded", &format!("model=\"{BASE}\"")),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "lume_model_loads_total", &format!("model=\"{QWEN}\"")),
        Some(0.0)
    );
    stop(h).await;
}

#[tokio::test]
async fn multi_keep_alive_never_unloads_a_model_under_a_request() {
    let mut cfg = multi_config(&[MODEL], 1, 512);
    cfg.keep_alive = KeepAlive::For(Duration::from_millis(500));
    let h = spawn(cfg);
    wait_ready(h.addr).await;
    let addr = h.addr;
    let long = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 400,
                      "temperature": 0, "stream": true, "logit_bias": {"0": -100, "2": -100}});
    let t0 = Instant::now();
    let s = open_stream(addr, &long, 2).await;
    let reader = tokio::spawn(read_to_end(s));
    // While the request runs (well past the keep_alive), the model stays.
    let mut busy_late = 0;
    while !reader.is_finished() {
        let busy = !slots_idle(addr).await;
        if busy {
            assert_eq!(
                in_memory(addr).await,
                vec![format!("{MODEL}:latest")],
                "unloaded under a running request"
            );
            if t0.elapsed() > Duration::from_millis(1500) {
                busy_late += 1;
            }
        }
        assert!(t0.elapsed() < REQUEST_TIMEOUT, "the stream did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = reader.await.unwrap();
    assert!(body.contains("data: [DONE]"), "{body}");
    assert!(
        busy_late > 0,
        "the request ended before its keep_alive ran out twice over"
    );
    // Once it is done, the keep_alive runs out and the model unloads.
    let done = Instant::now();
    while !in_memory(addr).await.is_empty() {
        assert!(
            done.elapsed() < Duration::from_secs(10),
            "never unloaded after its keep_alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done.elapsed() >= Duration::from_millis(300));
    let m = get(addr, "/metrics", None).await.unwrap().text();
    let expired = format!("model=\"{MODEL}\",reason=\"expired\"");
    assert_eq!(metric(&m, "lume_model_unloads_total", &expired), Some(1.0));
    stop(h).await;
}

#[tokio::test]
async fn multi_names_and_lists() {
    let cfg = multi_config(&[MODEL, BASE], 1, 256);
    let h = spawn(cfg);
    let addr = h.addr;
    // Ready at once: there is nothing to load before the first request.
    wait_ready(addr).await;
    let r = post(
        addr,
        "/v1/completions",
        None,
        &json!({"prompt": "Hi", "max_tokens": 1}),
    )
    .await;
    let e = r.error(400, "serves several models");
    assert_eq!(e["code"], "model_required");
    let r = post(
        addr,
        "/v1/completions",
        None,
        &json!({"model": "no-such-model", "prompt": "Hi", "max_tokens": 1}),
    )
    .await;
    let e = r.error(404, "no-such-model");
    assert_eq!(e["code"], "model_not_found");
    assert!(e["message"].as_str().unwrap().contains(BASE), "{e}");
    // Listed before any is loaded.
    let v = get(addr, "/v1/models", None).await.unwrap().json();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![BASE, MODEL]);
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["meta"]["loaded"] == false));
    // ollama's `:latest` names the same model; the tokenizer routes take a `model`.
    let r = post(
        addr,
        "/tokenize",
        None,
        &json!({"model": format!("{MODEL}:latest"), "content": "Hello"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = get(addr, &format!("/v1/models/{MODEL}"), None)
        .await
        .unwrap()
        .json();
    assert_eq!(v["meta"]["loaded"], true);
    assert_eq!(v["meta"]["n_ctx"], 256);
    let v = get(addr, "/props", None).await.unwrap().json();
    assert!(v["model"].is_null(), "{v}");
    assert_eq!(v["models"].as_array().unwrap().len(), 2);
    let v = get(addr, &format!("/props?model={MODEL}"), None)
        .await
        .unwrap()
        .json();
    assert_eq!(v["model"], MODEL);
    let v = get(addr, &format!("/slots?model={BASE}"), None)
        .await
        .unwrap()
        .json();
    assert_eq!(v, json!([]), "a model not in memory has no slots");
    let r = get(addr, "/slots?model=nope", None).await.unwrap();
    r.error(404, "nope");
    stop(h).await;
}

#[tokio::test]
async fn multi_keep_alive_zero_serves_each_request_then_unloads() {
    let mut cfg = multi_config(&[MODEL], 1, 256);
    cfg.keep_alive = KeepAlive::For(Duration::ZERO);
    let h = spawn(cfg);
    wait_ready(h.addr).await;
    let addr = h.addr;
    let body = json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2, "temperature": 0});
    for round in 1..=2 {
        // The load's own waiters get the model before it can expire.
        let r = post(addr, "/v1/completions", None, &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let t0 = Instant::now();
        while !in_memory(addr).await.is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(10), "not unloaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let m = get(addr, "/metrics", None).await.unwrap().text();
        let label = format!("model=\"{MODEL}\"");
        assert_eq!(
            metric(&m, "lume_model_loads_total", &label),
            Some(round as f64)
        );
    }
    stop(h).await;
}
