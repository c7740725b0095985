//! `--chat-template`, `--chat-template-file` and `--chat-template-kwargs` on `lume run`,
//! `lume chat` and `lume serve` (the cached smollm2-135m model), and their errors.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::*;

fn templates(name: &str) -> PathBuf {
    testdata("templates").join(name)
}

/// The prompt `lume run --chat` renders for `user` (nothing generated).
fn rendered(extra: &[&str], user: &str) -> String {
    let model = smollm2();
    let mut args = vec![
        "run",
        "-m",
        &model,
        "--chat",
        "--echo",
        "--max-tokens",
        "0",
        "--json",
    ];
    args.extend_from_slice(extra);
    args.push(user);
    let out = lume(&args);
    assert!(
        out.status.success(),
        "lume {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

/// A failing command's one-line error.
fn error_of(args: &[&str]) -> String {
    let out = lume(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "lume {args:?} should fail: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn run_chat_template_text_and_kwargs() {
    let own = rendered(&[], "hi");
    assert!(own.contains("<|im_start|>user\nhi<|im_end|>"), "{own:?}");
    let got = rendered(
        &[
            "--chat-template",
            "[{{ bos_token }}]{% for m in messages %}{{ m.role }}:{{ m.content }}{% endfor %}\
             |{{ flavour }}|{{ enable_thinking }}",
            "--chat-template-kwargs",
            r#"{"flavour": "mint", "enable_thinking": false}"#,
        ],
        "hi",
    );
    // SmolLM2's BOS token text is <|im_start|>.
    assert_eq!(got, "[<|im_start|>]user:hi|mint|False");
}

#[test]
fn run_chat_template_file_with_enable_thinking() {
    let qwen3 = templates("Qwen-Qwen3-0.6B.jinja");
    let file = qwen3.to_str().unwrap();
    let thinking = rendered(&["--chat-template-file", file], "hi");
    assert!(
        thinking.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        "{thinking:?}"
    );
    let plain = rendered(
        &[
            "--chat-template-file",
            file,
            "--chat-template-kwargs",
            r#"{"enable_thinking": false}"#,
        ],
        "hi",
    );
    assert!(
        plain.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{plain:?}"
    );
}

#[test]
fn bad_template_flags_are_clear_errors() {
    let model = smollm2();
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "-m", model.as_str(), "--chat", "-n", "1"];
        a.extend_from_slice(extra);
        a.push("hi");
        error_of(&a)
    };
    let e = run(&["--chat-template-kwargs", "{not json"]);
    assert!(e.contains("--chat-template-kwargs: not valid JSON"), "{e}");
    let e = run(&["--chat-template-kwargs", "[1, 2]"]);
    assert!(
        e.contains("--chat-template-kwargs: must be a JSON object"),
        "{e}"
    );
    let e = run(&["--chat-template-kwargs", r#"{"messages": []}"#]);
    assert!(e.contains("'messages' cannot be set"), "{e}");
    let e = run(&["--chat-template-file", "/nonexistent/t.jinja"]);
    assert!(
        e.contains("--chat-template-file: reading /nonexistent/t.jinja"),
        "{e}"
    );
    let e = run(&["--chat-template", "{% for %}"]);
    assert!(
        e.contains("--chat-template: chat template: syntax error"),
        "{e}"
    );
    let e = run(&["--chat-template", "{{ raise_exception('no system here') }}"]);
    assert!(
        e.contains("refuses this conversation: no system here"),
        "{e}"
    );
    let e = error_of(&["run", "-m", &model, "--chat-template", "x", "-n", "1", "hi"]);
    assert!(e.contains("need --chat"), "{e}");
    // clap's own usage error (several lines).
    let out = lume(&[
        "run",
        "-m",
        &model,
        "--chat",
        "--chat-template",
        "x",
        "--chat-template-file",
        "y",
        "hi",
    ]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("cannot be used with"), "{e}");
    // serve checks its flags before loading anything.
    let e = error_of(&["serve", "-m", &model, "--chat-template-kwargs", "7"]);
    assert!(
        e.contains("--chat-template-kwargs: must be a JSON object"),
        "{e}"
    );
    let e = error_of(&[
        "serve",
        "-m",
        &model,
        "--chat-template-file",
        "/nonexistent",
    ]);
    assert!(e.contains("--chat-template-file"), "{e}");
}

#[test]
fn chat_command_uses_the_override() {
    let model = smollm2();
    let template = "{% if messages[-1].content == 'stop' %}{{ raise_exception('told to stop') }}{% endif %}{{ messages[-1].content }}";
    let out = lume_with_stdin(
        &["chat", "-m", &model, "-n", "2", "--chat-template", template],
        b"Hello\nstop\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("told to stop"), "{err}");
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_renders_with_the_override_and_request_kwargs() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let model = smollm2();
    let _srv = Serve(
        Command::new(LUME)
            .args(["serve", "-m", &model, "--host", "127.0.0.1", "-c", "256"])
            .args(["--parallel", "1", "-t", "2", "--port", &port.to_string()])
            .args([
                "--chat-template",
                "{{ greeting }} {{ messages[0].content }}{{ mark }}",
            ])
            .args([
                "--chat-template-kwargs",
                r#"{"greeting": "hello", "mark": "."}"#,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let t0 = Instant::now();
    while !agent
        .get(format!("{base}/health"))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(t0.elapsed() < Duration::from_secs(120), "server not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let apply = |body: Value| -> (u16, Value) {
        let mut r = agent
            .post(format!("{base}/apply-template"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
        )
    };
    let msgs = json!([{"role": "user", "content": "world"}]);
    let (s, v) = apply(json!({"messages": msgs}));
    assert_eq!(
        (s, v["prompt"].as_str()),
        (200, Some("hello world.")),
        "{v}"
    );
    let (s, v) = apply(json!({"messages": msgs, "chat_template_kwargs": {"mark": "!"}}));
    assert_eq!(
        (s, v["prompt"].as_str()),
        (200, Some("hello world!")),
        "{v}"
    );
    let (s, v) = apply(json!({"messages": msgs, "chat_template_kwargs": "mark"}));
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "chat_template_kwargs", "{v}");
}
