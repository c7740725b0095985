//! The real models' chat templates must render exactly the `prompt_text` of the chat cases in
//! `testdata/greedy/*.json` (made by llama.cpp from the same templates).

mod common;

use common::model_file;
use engine::{ChatMessage, ChatTemplate, EngineError};

fn check(model: &str, fixture: &str) {
    let path = model_file(model);
    let f = gguf::GgufFile::open(&path).unwrap();
    let tmpl = ChatTemplate::from_gguf(&f).unwrap();
    let text = std::fs::read_to_string(format!(
        "{}/../../testdata/greedy/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut n = 0;
    for case in json["cases"].as_array().unwrap() {
        if case["kind"] != "chat" {
            continue;
        }
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let got = tmpl.render(&messages, true).unwrap();
        assert_eq!(
            got,
            case["prompt_text"].as_str().unwrap(),
            "{model} {}",
            case["name"]
        );
        n += 1;
    }
    assert!(n >= 3, "{fixture}: only {n} chat cases");
}

#[test]
fn smollm2_template_matches_reference() {
    check("smollm2-135m", "smollm2.json");
}

#[test]
fn qwen2_template_matches_reference() {
    check("qwen2.5-coder-0.5b", "qwen2.json");
}

#[test]
fn qwen2_template_multi_turn() {
    let f = gguf::GgufFile::open(model_file("qwen2.5-coder-0.5b")).unwrap();
    let tmpl = ChatTemplate::from_gguf(&f).unwrap();
    let msgs = [
        ChatMessage::new("user", "a"),
        ChatMessage::new("assistant", "b"),
        ChatMessage::new("user", "c"),
    ];
    let s = tmpl.render(&msgs, false).unwrap();
    assert!(
        s.ends_with("<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n"),
        "{s:?}"
    );
}

#[test]
fn gemma3_has_no_template() {
    let f = gguf::GgufFile::open(model_file("gemma3-270m")).unwrap();
    let err = ChatTemplate::from_gguf(&f).unwrap_err();
    assert!(matches!(err, EngineError::NoChatTemplate { .. }));
    assert!(err.to_string().contains("gemma-3-270m"), "{err}");
}
