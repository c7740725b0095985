//! `lume chat` as a REPL, on the cached smollm2-135m model: piped stdin (scripts) and a
//! pseudo-terminal (line editing, history, Ctrl-C, Ctrl-D).

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod common;

use common::{lume_with_stdin, smollm2};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lume-chat-repl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_json(p: &Path) -> Value {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}: {s}", p.display()))
}

fn chat(script: &str) -> Output {
    let model = smollm2();
    lume_with_stdin(&["chat", "-m", &model], script.as_bytes())
}

fn roles(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn piped_save_then_load() {
    let dir = scratch("save-load");
    let first = dir.join("first.json");
    let second = dir.join("second.json");
    // Settings first, so that both replies are greedy.
    let script = format!(
        "/set temp 0\n/set max_tokens 12\n/system You are terse.\nHello!\n\"\"\"\nline one\nline two\n\"\"\"\n/save {}\n",
        first.display()
    );
    let out = chat(&script);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = text(&out.stdout);
    // Only the replies on stdout: no prompt, no command chatter.
    assert!(
        !stdout.contains(">>>") && !stdout.contains("(saved"),
        "{stdout:?}"
    );
    assert!(err.contains("(saved 4 messages to"), "{err}");

    let v = read_json(&first);
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["system"], "You are terse.", "{v}");
    assert_eq!(v["settings"]["temperature"], 0.0, "{v}");
    assert_eq!(v["settings"]["max_tokens"], 12, "{v}");
    assert_eq!(v["settings"]["top_k"], 40, "{v}");
    assert!(v["settings"]["seed"].is_null(), "{v}");
    assert_eq!(roles(&v), ["user", "assistant", "user", "assistant"], "{v}");
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["content"], "Hello!");
    assert_eq!(
        msgs[2]["content"], "line one\nline two",
        "the \"\"\" block is one message"
    );
    for reply in [&msgs[1], &msgs[3]] {
        let r = reply["content"].as_str().unwrap();
        assert!(!r.is_empty(), "{v}");
        assert!(stdout.contains(r), "{r:?} not in {stdout:?}");
    }

    // Greedy: the same script gives the same replies.
    let again = chat(&script);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), stdout);

    // A second run restores conversation, system prompt and settings (its command line has
    // the default temperature and max tokens), and goes on from there, deterministically.
    let script2 = format!(
        "/load {}\nAnd 3+3?\n/save {}\n",
        first.display(),
        second.display()
    );
    let out2 = chat(&script2);
    let err2 = text(&out2.stderr);
    assert!(out2.status.success(), "{err2}");
    assert!(err2.contains("(loaded 4 messages from"), "{err2}");
    let w = read_json(&second);
    assert_eq!(w["system"], v["system"]);
    assert_eq!(w["settings"], v["settings"]);
    assert_eq!(w["messages"].as_array().unwrap()[..4], msgs[..]);
    assert_eq!(roles(&w).len(), 6, "{w}");
    assert_eq!(w["messages"][4]["content"], "And 3+3?");
    let out3 = chat(&script2);
    assert_eq!(text(&out3.stdout), text(&out2.stdout));
}

#[test]
fn piped_bad_load_files_are_clear_errors() {
    let dir = scratch("bad-load");
    let missing = dir.join("missing.json");
    let not_json = dir.join("not.json");
    std::fs::write(&not_json, "{ not json").unwrap();
    let bad_field = dir.join("bad_field.json");
    std::fs::write(
        &bad_field,
        r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 5}]}"#,
    )
    .unwrap();
    let bad_setting = dir.join("bad_setting.json");
    std::fs::write(
        &bad_setting,
        r#"{"messages": [], "settings": {"top_p": "high"}}"#,
    )
    .unwrap();
    for (file, what) in [
        (&missing, "reading"),
        (&not_json, "not valid JSON"),
        (&bad_field, "field 'messages[1].content': expected a string"),
        (&bad_setting, "field 'settings.top_p': must be a number"),
    ] {
        // chat() fails the test on a panic.
        let out = chat(&format!("/load {}\n", file.display()));
        let err = text(&out.stderr);
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(what), "{what}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn piped_commands_aliases_and_errors() {
    let dir = scratch("commands");
    let cleared = dir.join("cleared.json");
    let never = dir.join("never.json");
    let script = format!(
        "/set temp 0\n/set max_tokens 3\n/set seed 7\n/set top-p 0.5\nHi\n/reset\n/show\n/save {}\n/exit\n/save {}\n",
        cleared.display(),
        never.display()
    );
    let out = chat(&script);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v = read_json(&cleared);
    assert_eq!(v["messages"], serde_json::json!([]), "{v}");
    assert_eq!(v["settings"]["seed"], 7, "{v}");
    assert_eq!(v["settings"]["top_p"], 0.5, "{v}");
    assert!(err.contains("messages: 0"), "{err}");
    assert!(!never.exists(), "/exit should have ended the session");

    // In a script, a bad command ends the run with a clear error, before any reply.
    for (line, want) in [
        ("/bogus", "unknown command /bogus"),
        ("/set temp warm", "temperature: 'warm' is not a number"),
        ("/set top_p 7", "top_p"),
        ("/set warmth 1", "unknown setting 'warmth'"),
        ("/save", "/save: give a file name"),
    ] {
        let out = chat(&format!("{line}\nHello\n"));
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{line}: {err}");
        assert!(err.contains(want), "{line}: {err}");
        assert!(out.stdout.is_empty(), "{line}");
    }
}

#[cfg(unix)]
mod pty {
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use rexpect::process::WaitStatus;
    use rexpect::reader::Options;
    use rexpect::session::{spawn_with_options, PtySession};

    use super::{read_json, scratch, smollm2};
    use crate::common::LUME;

    /// Every wait on the terminal gives up after this long.
    const TIMEOUT_MS: u64 = 60_000;

    fn spawn(history: &Path) -> PtySession {
        let model = smollm2();
        let mut cmd = Command::new(LUME);
        cmd.args([
            "chat",
            "-m",
            &model,
            "--max-tokens",
            "400",
            "--temp",
            "0",
            "--verbose",
        ])
        .env("LUME_HISTORY", history)
        .env("TERM", "xterm");
        let opts = Options::new()
            .timeout_ms(Some(TIMEOUT_MS))
            .strip_ansi_escape_codes(true);
        spawn_with_options(cmd, opts).expect("spawning lume chat in a pty")
    }

    /// Waits (bounded) for the process to end; its exit code.
    fn exit_code(p: &mut PtySession) -> i32 {
        p.exp_eof().expect("lume chat should close the terminal");
        let deadline = Instant::now() + Duration::from_millis(TIMEOUT_MS);
        loop {
            match p.process().status() {
                Some(WaitStatus::Exited(_, code)) => return code,
                Some(WaitStatus::StillAlive) | None if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => panic!("lume chat did not exit cleanly: {other:?}"),
            }
        }
    }

    /// The reply length in the `--verbose` line that follows, and whether it says `stopped`.
    /// (rexpect reads bytes as chars: the line's `·` arrives as two.)
    fn speed(p: &mut PtySession) -> (usize, bool) {
        let (_, line) = p
            .exp_regex(r"reply \d+ tok [^\r\n]*\r?\n")
            .expect("a --verbose speed line");
        let n = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        (n, line.trim_end().ends_with("stopped"))
    }

    #[test]
    fn terminal_session_with_history_ctrl_c_and_blocks() {
        let dir = scratch("pty");
        let history = dir.join("history");
        let saved = dir.join("session.json");

        let mut p = spawn(&history);
        p.exp_string(">>> ").expect("the prompt");
        let story = "Write a very long story about a dragon who learns to fly.";
        p.send_line(story).unwrap();
        p.exp_string(story).expect("the line echoed");
        // The reply streams: some words arrive, then Ctrl-C.
        p.exp_regex(r"[A-Za-z]{3,}").expect("streamed reply text");
        let t0 = Instant::now();
        p.send_control('c').unwrap();
        p.exp_string("(stopped)").expect("Ctrl-C stops the reply");
        let (n, stopped) = speed(&mut p);
        assert!(stopped, "the speed line should say stopped");
        assert!(n < 200, "stopped after {n} of 400 tokens");
        p.exp_string(">>> ").expect("the prompt after Ctrl-C");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the prompt took {:?} to come back",
            t0.elapsed()
        );

        // A short second message.
        p.send_line("/set max_tokens 16").unwrap();
        p.exp_string("(max_tokens = 16)").unwrap();
        p.exp_string(">>> ").unwrap();
        p.send_line("Say hi.").unwrap();
        let (n, stopped) = speed(&mut p);
        assert!(n <= 16 && !stopped, "{n} {stopped}");
        p.exp_string(">>> ").unwrap();

        // Up recalls the last line; Ctrl-C at the prompt clears it.
        p.send("\x1b[A").unwrap();
        p.flush().unwrap();
        p.exp_string("Say hi.")
            .expect("Up recalls the previous line");
        p.send_control('c').unwrap();
        p.exp_string(">>> ").unwrap();

        // A """ block is one message.
        p.send_line("\"\"\"").unwrap();
        p.exp_string("... ").expect("the continuation prompt");
        p.send_line("first line").unwrap();
        p.exp_string("... ").unwrap();
        p.send_line("second line\"\"\"").unwrap();
        let (_, stopped) = speed(&mut p);
        assert!(!stopped);
        p.exp_string(">>> ").unwrap();

        p.send_line(&format!("/save {}", saved.display())).unwrap();
        p.exp_string("(saved 6 messages").unwrap();
        p.exp_string(">>> ").unwrap();
        p.send_line("/bye").unwrap();
        assert_eq!(exit_code(&mut p), 0, "/bye exits 0");

        let v = read_json(&saved);
        let m = v["messages"].as_array().unwrap();
        assert_eq!(m[0]["content"], story);
        assert_eq!(m[1]["role"], "assistant");
        assert!(
            !m[1]["content"].as_str().unwrap().is_empty(),
            "the stopped reply is kept: {v}"
        );
        assert_eq!(m[2]["content"], "Say hi.");
        assert_eq!(m[4]["content"], "first line\nsecond line");
        assert_eq!(v["settings"]["max_tokens"], 16);

        // The history file holds the lines typed, and a second session recalls them.
        let h = std::fs::read_to_string(&history).unwrap();
        for line in [story, "Say hi.", "/bye", "second line\"\"\""] {
            assert!(h.lines().any(|l| l == line), "{line:?} not in {h:?}");
        }
        let mut p = spawn(&history);
        p.exp_string(">>> ").unwrap();
        p.send("\x1b[A").unwrap();
        p.flush().unwrap();
        p.exp_string("/bye")
            .expect("the last line of the first session");
        p.send("\x1b[A").unwrap();
        p.flush().unwrap();
        p.exp_string("/save ").expect("the line before it");
        // Ctrl-C clears the line, Ctrl-D at the empty prompt leaves.
        p.send_control('c').unwrap();
        p.exp_string(">>> ").unwrap();
        p.send_control('d').unwrap();
        assert_eq!(exit_code(&mut p), 0, "Ctrl-D exits 0");
    }
}
