//! `lume run` with llama.cpp's output-shape flags on the real default model: -j/--json-schema,
//! --json-schema-file, --grammar, --grammar-file, --regex, --lark-file; bad ones exit non-zero
//! naming the flag and the keyword or position.

mod common;

use common::*;

fn run_ok(extra: &[&str]) -> String {
    let m = smollm2();
    let mut args = vec![
        "run",
        "-m",
        m.as_str(),
        "--temp",
        "0",
        "-n",
        "60",
        "-t",
        "2",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = lume(&args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

#[test]
fn every_flag_shapes_the_output() {
    let schema = r#"{"type":"object","properties":{"n":{"type":"integer","minimum":1,"maximum":9}},"required":["n"],"additionalProperties":false}"#;
    let t = run_ok(&["Pick a number:", "-j", schema]);
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert!((1..=9).contains(&v["n"].as_i64().unwrap()), "{t}");

    let dir = std::env::temp_dir().join(format!("lume-constrain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sf = dir.join("s.json");
    std::fs::write(&sf, schema).unwrap();
    let t = run_ok(&["Pick a number:", "--json-schema-file", sf.to_str().unwrap()]);
    assert!(serde_json::from_str::<serde_json::Value>(&t).is_ok(), "{t}");

    let t = run_ok(&[
        "Is water wet?",
        "--grammar",
        "root ::= (\"yes\" | \"no\") \".\"",
    ]);
    assert!(t == "yes." || t == "no.", "{t}");
    let gf = testdata("grammars/json_arr.gbnf");
    let t = run_ok(&["A list:", "--grammar-file", gf.to_str().unwrap()]);
    assert!(t.trim_start().starts_with('['), "{t}");

    let t = run_ok(&["The year:", "--regex", "[12][0-9]{3}"]);
    assert!(t.len() == 4 && t.chars().all(|c| c.is_ascii_digit()), "{t}");

    let lf = dir.join("g.lark");
    std::fs::write(&lf, "start: \"Colour: \" (\"red\" | \"blue\")\n").unwrap();
    let t = run_ok(&["Name a colour.", "--lark-file", lf.to_str().unwrap()]);
    assert!(t == "Colour: red" || t == "Colour: blue", "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_shapes_fail_clearly() {
    let m = smollm2();
    for (flag, value, needle) in [
        ("-j", r#"{"type":"string","maxLenght":3}"#, "maxLenght"),
        (
            "-j",
            r#"{"type":"array","uniqueItems":true}"#,
            "uniqueItems",
        ),
        ("-j", "{not json", "--json-schema"),
        ("--grammar", "root ::= undefined-rule", "undefined-rule"),
        ("--regex", "(unclosed", "--regex"),
    ] {
        let out = lume(&["run", "-m", m.as_str(), "x", "-n", "2", flag, value]);
        assert!(!out.status.success(), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{flag} {value}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = lume(&[
        "run",
        "-m",
        m.as_str(),
        "x",
        "--regex",
        "a",
        "--grammar",
        "root ::= \"a\"",
    ]);
    assert!(!out.status.success());
}
