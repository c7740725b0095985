//! A bounded load test of `lume serve` on the real default model, loopback only.
//!
//! One server (`--parallel 8 --batch-invariant`) on a free 127.0.0.1 port, then:
//! 1. references: each (prompt, max_tokens) case streamed alone, one client at a time;
//! 2. load: 16 concurrent streaming clients, 3 requests each, mixed prompt lengths and
//!    `max_tokens`: every request completes, its tokens and log-probabilities equal the
//!    reference bit for bit (no token lost or in another stream), while `/health` and
//!    `/metrics` keep answering;
//! 3. a client that drops its connection mid-stream frees its slot;
//! 4. chunked prefill: while a ~2000-token prompt comes in, three running streams' worst
//!    inter-token gap stays under 4x their median gap;
//! 5. SIGTERM: the server finishes and exits 0.
//!
//! Every loop is bounded in count and time; the server is killed if the test fails.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// End-of-generation ids of SmolLM2 (`<|im_end|>`, `<|endoftext|>`), banned where a stream
/// must run to its `max_tokens`.
const EOG_BANS: &str = r#"{"0": -100, "2": -100}"#;

struct Server {
    child: Option<Child>,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            common::print_log_if_panicking(&self.log);
        }
    }
}

fn start(args: &[&str]) -> Server {
    let port = common::free_port();
    let log = std::env::temp_dir().join(format!("lume-serve-load-{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_lume"))
        .args(["serve", "-m", "smollm2-135m", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("starts lume serve");
    let srv = Server {
        child: Some(child),
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    let a = common::agent(Duration::from_secs(5));
    let t0 = Instant::now();
    loop {
        if let Ok(r) = a.get(format!("{}/health", srv.base)).call() {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "server not healthy in 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    srv
}

/// One streamed chat completion, as received.
#[derive(Debug, Default)]
struct Streamed {
    text: String,
    /// (token, logprob bits) of every generated token with text.
    tokens: Vec<(String, u32)>,
    /// Arrival time of each content chunk with the number of tokens it carried.
    arrivals: Vec<(Instant, usize)>,
    finish: Option<String>,
    done: bool,
}

fn chat_body(prompt: &str, max_tokens: usize, ban_eog: bool) -> Value {
    let mut b = json!({
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true,
        "logprobs": true,
        "top_logprobs": 1,
    });
    if ban_eog {
        b["logit_bias"] = serde_json::from_str(EOG_BANS).unwrap();
    }
    b
}

/// Streams `body` to the chat route; `stop_after` chunks ends early (dropping the connection).
fn stream(base: &str, body: &Value, stop_after: Option<usize>) -> Streamed {
    let a = common::agent(Duration::from_secs(120));
    let resp = a
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("request sent");
    assert_eq!(resp.status(), 200);
    let reader = BufReader::new(resp.into_body().into_reader());
    let mut s = Streamed::default();
    let mut chunks = 0;
    for line in reader.lines() {
        let line = line.expect("stream readable");
        let Some(data) = line.strip_prefix("data: ") else {
            assert!(
                line.is_empty() || line.starts_with(':'),
                "SSE line {line:?}"
            );
            continue;
        };
        if data == "[DONE]" {
            s.done = true;
            break;
        }
        let v: Value = serde_json::from_str(data).expect("chunk is JSON");
        assert!(v.get("error").is_none(), "stream error {v}");
        let Some(c) = v["choices"].get(0) else {
            continue;
        };
        if let Some(t) = c["delta"]["content"].as_str() {
            if !t.is_empty() {
                s.text.push_str(t);
                let n = c["logprobs"]["content"].as_array().map_or(0, |a| a.len());
                s.arrivals.push((Instant::now(), n.max(1)));
            }
        }
        if let Some(lp) = c["logprobs"]["content"].as_array() {
            for e in lp {
                let tok = e["token"].as_str().unwrap_or_default().to_string();
                let l = e["logprob"].as_f64().expect("logprob") as f32;
                s.tokens.push((tok, l.to_bits()));
            }
        }
        if let Some(f) = c["finish_reason"].as_str() {
            s.finish = Some(f.to_string());
        }
        chunks += 1;
        if stop_after.is_some_and(|n| chunks >= n) {
            break;
        }
    }
    s
}

fn get_json(base: &str, path: &str) -> Value {
    let mut r = common::agent(Duration::from_secs(10))
        .get(format!("{base}{path}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metrics(base: &str) -> String {
    let mut r = common::agent(Duration::from_secs(10))
        .get(format!("{base}/metrics"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.body_mut().read_to_string().unwrap()
}

fn wait_idle(base: &str, within: Duration) {
    let t0 = Instant::now();
    loop {
        let slots = get_json(base, "/slots");
        let busy = slots
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["is_processing"].as_bool() == Some(true))
            .count();
        if busy == 0 {
            return;
        }
        assert!(t0.elapsed() < within, "{busy} slots still busy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cases() -> Vec<(String, usize)> {
    let long = "The old harbour town kept its records in a stone tower by the sea. ".repeat(20);
    let prompts = [
        "Hi".to_string(),
        "What is the capital of France?".to_string(),
        "Write a short poem about autumn leaves.".to_string(),
        long,
        "Explain in two sentences why bread rises.".to_string(),
        "List five colours.".to_string(),
    ];
    let lens = [8, 16, 24];
    let mut out = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        for (j, &n) in lens.iter().enumerate() {
            if (i + j) % 2 == 0 || i == 3 {
                out.push((p.clone(), n));
            }
        }
    }
    out
}

#[test]
fn serve_under_load() {
    let mut srv = start(&[
        "--parallel",
        "8",
        "--batch-invariant",
        "--ctx-size",
        "2048",
        "--threads",
        "2",
    ]);
    let base = srv.base.clone();

    // 1. References, one client at a time.
    let cases = cases();
    let refs: Vec<Streamed> = cases
        .iter()
        .map(|(p, n)| stream(&base, &chat_body(p, *n, false), None))
        .collect();
    for (r, (_, n)) in refs.iter().zip(&cases) {
        assert!(r.done && r.finish.is_some());
        assert!(!r.tokens.is_empty() && r.tokens.len() <= *n);
    }
    let before = metrics(&base);

    // 2. Load: 16 clients x 3 requests, watched by a monitor.
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (base, stop) = (base.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let a = common::agent(Duration::from_secs(5));
            let mut polls = 0;
            let t0 = Instant::now();
            while !stop.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(300) {
                for path in ["/health", "/metrics"] {
                    let r = a
                        .get(format!("{base}{path}"))
                        .call()
                        .expect("answers under load");
                    assert_eq!(r.status(), 200, "{path} under load");
                }
                polls += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            polls
        })
    };
    let t_load = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (base, cases) = (base.clone(), cases.clone());
            std::thread::spawn(move || {
                (0..3)
                    .map(|k| {
                        let i = (c * 3 + k * 5) % cases.len();
                        let (p, n) = &cases[i];
                        (i, stream(&base, &chat_body(p, *n, false), None))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut n_done = 0;
    let mut gen_tokens = 0;
    for c in clients {
        for (i, got) in c.join().expect("client thread") {
            assert!(got.done, "request {i} completed");
            assert_eq!(
                got.tokens, refs[i].tokens,
                "case {i}: tokens and logprobs equal alone"
            );
            assert_eq!(got.text, refs[i].text, "case {i}");
            assert_eq!(got.finish, refs[i].finish, "case {i}");
            n_done += 1;
            gen_tokens += got.tokens.len();
        }
    }
    let load_s = t_load.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let polls = monitor.join().expect("monitor");
    assert_eq!(n_done, 48);
    assert!(polls >= 1);
    let after = metrics(&base);
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    eprintln!(
        "load: 48 requests, {gen_tokens} content tokens in {load_s:.1} s ({:.1} tok/s), {polls} health/metrics polls",
        gen_tokens as f64 / load_s
    );
    assert_eq!(delta("vllm:request_success_total"), 48.0);
    assert!(delta("vllm:generation_tokens_total") >= gen_tokens as f64);
    assert!(metric(&after, "llamacpp:n_busy_slots_per_decode") > 1.0);
    assert_eq!(metric(&after, "vllm:num_requests_running"), 0.0);
    wait_idle(&base, Duration::from_secs(5));

    // 3. A client that goes away mid-stream frees its slot.
    let aborted = metric(
        &after,
        "vllm:request_success_total{finished_reason=\"abort\"}",
    );
    let cut = stream(
        &base,
        &chat_body("Count to one thousand.", 1000, true),
        Some(4),
    );
    assert!(!cut.done);
    wait_idle(&base, Duration::from_secs(10));
    let m = metrics(&base);
    let abort_line = m
        .lines()
        .find(|l| l.starts_with("vllm:request_success_total") && l.contains("abort"))
        .expect("abort counter");
    let now_aborted: f64 = abort_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(now_aborted >= aborted + 1.0, "{abort_line}");

    // 4. Chunked prefill: three streams keep their pace while a long prompt is read.
    let long = "Every morning the baker opened the shop and swept the floor. ".repeat(150);
    let n_long = {
        let mut r = common::agent(Duration::from_secs(10))
            .post(format!("{base}/tokenize"))
            .send(json!({ "content": long }).to_string())
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v["tokens"].as_array().unwrap().len()
    };
    assert!((1800..=2040).contains(&n_long), "{n_long} tokens");
    let streams: Vec<_> = [
        "Tell me about cats.",
        "Tell me about dogs.",
        "Tell me about owls.",
    ]
    .iter()
    .map(|p| {
        let (base, body) = (base.clone(), chat_body(p, 120, true));
        std::thread::spawn(move || stream(&base, &body, None))
    })
    .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let t_long = Instant::now();
    let mut r = common::agent(Duration::from_secs(120))
        .post(format!("{base}/v1/completions"))
        .send(json!({"prompt": long, "max_tokens": 1, "temperature": 0}).to_string())
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap_or_default()
    );
    let long_s = t_long.elapsed().as_secs_f64();
    let mut gaps = Vec::new();
    let mut during = Vec::new();
    for s in streams {
        let s = s.join().expect("stream thread");
        assert!(s.done);
        for w in s.arrivals.windows(2) {
            let g = w[1].0.duration_since(w[0].0).as_secs_f64() / w[1].1 as f64;
            gaps.push(g);
            if w[1].0 > t_long && w[0].0 < t_long + Duration::from_secs_f64(long_s) {
                during.push(g);
            }
        }
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    let worst = gaps[gaps.len() - 1];
    eprintln!(
        "chunked prefill: {n_long}-token prompt read in {long_s:.2} s; stream gaps median {:.1} ms, worst {:.1} ms, {} gaps during the prompt",
        median * 1e3,
        worst * 1e3,
        during.len()
    );
    assert!(
        !during.is_empty(),
        "the streams ran while the prompt was read"
    );
    assert!(worst < 4.0 * median, "worst gap {worst} vs median {median}");

    // Still healthy; then SIGTERM ends it cleanly.
    assert_eq!(get_json(&base, "/health")["status"], "ok");
    let mut child = srv.child.take().unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "exits within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");
}
