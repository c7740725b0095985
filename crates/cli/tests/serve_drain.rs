//! `lume serve --drain-timeout`: what SIGTERM does to a stream in flight, on the real default
//! model, loopback only.
//!
//! 1. Within the drain time (`--drain-timeout 60`) a running stream completes (finish reason
//!    `length`, `[DONE]`), new connections are refused meanwhile, and the process exits 0.
//! 2. With `--drain-timeout 1` a stream longer than that is cut about 1 s after SIGTERM (an
//!    error event, no finish reason) and the process exits 0 soon after; with 0 at once.
//! 3. A bad `--drain-timeout` is refused, naming the flag.
//!
//! Every wait is bounded; the server is killed if a test fails.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// End-of-generation ids of SmolLM2 (`<|im_end|>`, `<|endoftext|>`), banned so that a stream
/// runs to its `max_tokens`.
const EOG_BANS: &str = r#"{"0": -100, "2": -100}"#;

struct Server {
    child: Option<Child>,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        common::print_log_if_panicking(&self.log);
    }
}

fn start(drain_timeout: &str) -> Server {
    common::real_model("smollm2-135m");
    let port = common::free_port();
    let log = std::env::temp_dir().join(format!("lume-serve-drain-{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(common::LUME)
        .args(["serve", "-m", "smollm2-135m", "--host", "127.0.0.1"])
        .args([
            "--port",
            &port.to_string(),
            "--parallel",
            "1",
            "--threads",
            "2",
        ])
        .args(["--ctx-size", "2048", "--drain-timeout", drain_timeout])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("starts lume serve");
    let srv = Server {
        child: Some(child),
        port,
        log,
    };
    let a = common::agent(Duration::from_secs(5));
    let t0 = Instant::now();
    loop {
        if let Ok(r) = a.get(format!("{}/health", srv.base())).call() {
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

impl Server {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn sigterm(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits (at most `limit`) for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(t0.elapsed() < limit, "exits within {limit:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a stream brought, and when it ended.
#[derive(Debug, Default)]
struct Streamed {
    chunks: usize,
    finish: Option<String>,
    done: bool,
    error: Option<String>,
    /// The stream's body ended (or broke) at this time.
    ended: Option<Instant>,
}

/// Streams a chat of `max_tokens` tokens (end of generation banned) on a thread; the first
/// content chunk is signalled on `first`.
fn stream_on_thread(
    base: String,
    max_tokens: usize,
    first: mpsc::Sender<()>,
) -> std::thread::JoinHandle<Streamed> {
    std::thread::spawn(move || {
        let mut body = json!({
            "model": "smollm2-135m",
            "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": true,
        });
        body["logit_bias"] = serde_json::from_str(EOG_BANS).unwrap();
        let resp = common::agent(Duration::from_secs(120))
            .post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .expect("request sent");
        assert_eq!(resp.status(), 200);
        let mut s = Streamed::default();
        let reader = BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else {
                s.error = Some("the connection broke".into());
                break;
            };
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                s.done = true;
                break;
            }
            let v: Value = serde_json::from_str(data).expect("chunk is JSON");
            if let Some(e) = v.get("error") {
                s.error = Some(e.to_string());
                continue;
            }
            let Some(c) = v["choices"].get(0) else {
                continue;
            };
            if c["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
            {
                s.chunks += 1;
                if s.chunks == 1 {
                    let _ = first.send(());
                }
            }
            if let Some(f) = c["finish_reason"].as_str() {
                s.finish = Some(f.to_string());
            }
        }
        s.ended = Some(Instant::now());
        s
    })
}

/// Starts a stream of `max_tokens`, sends SIGTERM once it produces, and returns the stream,
/// the SIGTERM time, the exit status and the exit time.
fn sigterm_mid_stream(
    srv: &mut Server,
    max_tokens: usize,
    exit_limit: Duration,
    while_draining: impl FnOnce(&Server),
) -> (Streamed, Instant, ExitStatus, Instant) {
    let (tx, rx) = mpsc::channel();
    let t = stream_on_thread(srv.base(), max_tokens, tx);
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the stream produces within 60 s");
    let term = Instant::now();
    srv.sigterm();
    while_draining(srv);
    let status = srv.wait_exit(exit_limit);
    let exited = Instant::now();
    let s = t.join().expect("stream thread");
    (s, term, status, exited)
}

#[test]
fn a_stream_within_the_drain_time_completes() {
    let mut srv = start("60");
    let port = srv.port;
    let (s, term, status, exited) =
        sigterm_mid_stream(&mut srv, 200, Duration::from_secs(60), |_| {
            // SIGTERM stops the accepting at once: a new connection is refused (bounded wait).
            let t0 = Instant::now();
            loop {
                let refused = std::net::TcpStream::connect_timeout(
                    &([127, 0, 0, 1], port).into(),
                    Duration::from_millis(500),
                )
                .is_err();
                if refused {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "still accepting connections 5 s after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    assert!(s.error.is_none(), "the stream was cut: {s:?}");
    assert_eq!(s.finish.as_deref(), Some("length"), "{s:?}");
    assert!(s.done, "[DONE] at the end: {s:?}");
    assert!(s.chunks >= 150, "{} content chunks of 200 tokens", s.chunks);
    assert!(status.success(), "exit status {status}");
    let ended = s.ended.unwrap();
    eprintln!(
        "drained: stream ended {:.2} s after SIGTERM, process exited {:.2} s after",
        (ended - term).as_secs_f64(),
        (exited - term).as_secs_f64()
    );
}

/// A stream far longer than `drain` seconds, SIGTERM once it runs: the seconds from SIGTERM to
/// the cut and to the exit (checked: cut, error event, exit 0).
fn cut_after_sigterm(drain: &str) -> (f64, f64) {
    let mut srv = start(drain);
    // 1800 tokens take far more than a few seconds on any machine this runs on.
    let (s, term, status, exited) =
        sigterm_mid_stream(&mut srv, 1800, Duration::from_secs(15), |_| {});
    let cut = (s.ended.unwrap() - term).as_secs_f64();
    let exit = (exited - term).as_secs_f64();
    eprintln!(
        "--drain-timeout {drain}: stream cut {cut:.2} s after SIGTERM, process exited at {exit:.2} s"
    );
    assert!(s.finish.is_none(), "the stream finished: {s:?}");
    // The cut is an error event (then [DONE]), not a silent end.
    assert!(
        s.error.is_some(),
        "the cut stream ends with an error: {s:?}"
    );
    assert!(s.chunks > 0, "{s:?}");
    assert!(status.success(), "exit status {status}");
    (cut, exit)
}

#[test]
fn a_longer_stream_is_cut_at_the_drain_timeout() {
    let (cut, exit) = cut_after_sigterm("1");
    // Drained for about the second it was given: not cut at once, not run on.
    assert!((0.9..6.0).contains(&cut), "cut {cut:.2} s after SIGTERM");
    assert!(exit < 8.0, "exited {exit:.2} s after SIGTERM");
}

#[test]
fn drain_timeout_zero_cuts_at_once() {
    let (cut, exit) = cut_after_sigterm("0");
    assert!(cut < 0.9, "cut {cut:.2} s after SIGTERM");
    assert!(exit < 6.0, "exited {exit:.2} s after SIGTERM");
}

#[test]
fn a_bad_drain_timeout_is_refused() {
    for bad in ["-1", "ten", "2.5", "86401"] {
        let flag = format!("--drain-timeout={bad}");
        let out = common::lume(&["serve", "--port", "0", &flag]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--drain-timeout {bad} accepted");
        assert!(err.contains("--drain-timeout"), "{bad}: {err}");
    }
}
