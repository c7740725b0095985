//! Every chat template of llama.cpp's collection (`testdata/templates/*.jinja`) rendered by lume
//! for every conversation of `testdata/templates/conversations.json`, with add_generation_prompt
//! true and false, must equal byte for byte what Hugging Face transformers renders
//! (`testdata/templates/expected.json`, made by `scripts/gen_template_refs.py`). Where
//! transformers refuses a conversation, lume must refuse it too, with the same message when the
//! template raised it on purpose (`raise_exception`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use engine::chat::ChatInput;
use engine::{ChatTemplate, EngineError};
use serde_json::Value;

/// 2026-01-15T10:30:00 UTC, the time the expectations were made with (`fixed_now`).
const FIXED_NOW_SECS: u64 = 1_768_473_000;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/templates")
}

fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Where `got` first differs from `want`, with a little context of both.
fn first_difference(want: &str, got: &str) -> String {
    let w: Vec<char> = want.chars().collect();
    let g: Vec<char> = got.chars().collect();
    let i = w.iter().zip(&g).take_while(|(a, b)| a == b).count();
    let ctx = |s: &[char]| -> String {
        let lo = i.saturating_sub(40);
        let hi = (i + 40).min(s.len());
        format!("{:?}", s[lo..hi].iter().collect::<String>())
    };
    let at = |s: &[char]| {
        s.get(i)
            .map_or("end of text".to_string(), |c| format!("{c:?}"))
    };
    format!(
        "first difference at character {i} (want {}, got {}):\n      want ...{}...\n      got  ...{}...",
        at(&w),
        at(&g),
        ctx(&w),
        ctx(&g)
    )
}

#[test]
fn every_template_renders_like_transformers() {
    let convs = load("conversations.json");
    let tokens = load("tokens.json");
    let expected = load("expected.json");
    assert_eq!(expected["fixed_now"], "2026-01-15T10:30:00");
    let results = expected["results"].as_object().unwrap();

    // The expectations cover exactly the templates in the folder.
    let files: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".jinja").map(str::to_string)
        })
        .collect();
    let covered: BTreeSet<String> = results.keys().cloned().collect();
    assert_eq!(
        files, covered,
        "expected.json is stale: run scripts/gen_template_refs.py"
    );

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(FIXED_NOW_SECS);
    let (mut identical, mut same_error, mut failures) = (0, 0, Vec::new());
    for (name, per) in results {
        let source = std::fs::read_to_string(dir().join(format!("{name}.jinja"))).unwrap();
        let tok = &tokens["templates"][name];
        let tmpl = ChatTemplate::new(
            source,
            tok["bos_token"].as_str().unwrap(),
            tok["eos_token"].as_str().unwrap(),
        )
        .with_time(now);
        for conv in convs["conversations"].as_array().unwrap() {
            for agp in [true, false] {
                let key = format!(
                    "{}/{}",
                    conv["name"].as_str().unwrap(),
                    if agp { "gen" } else { "nogen" }
                );
                let want = &per[&key];
                assert!(!want.is_null(), "{name}: no expectation for {key}");
                let input = ChatInput {
                    messages: conv["messages"].as_array().unwrap().clone(),
                    tools: (conv["tools"] == true).then(|| convs["tools"].clone()),
                    documents: None,
                    add_generation_prompt: agp,
                    kwargs: conv["kwargs"].as_object().cloned().unwrap_or_default(),
                };
                let got = tmpl.render_input(&input);
                let what = format!("{name} × {key}");
                match (want["text"].as_str(), got) {
                    (Some(w), Ok(g)) if w == g => identical += 1,
                    (Some(w), Ok(g)) => {
                        failures.push(format!("{what}: {}", first_difference(w, &g)))
                    }
                    (Some(_), Err(e)) => failures.push(format!(
                        "{what}: lume refused ({e}); transformers renders it"
                    )),
                    (None, Ok(g)) => failures.push(format!(
                        "{what}: transformers refuses ({}: {}); lume renders {:?}",
                        want["kind"],
                        want["error"],
                        g.chars().take(120).collect::<String>()
                    )),
                    (None, Err(e)) => {
                        let msg = want["error"].as_str().unwrap();
                        if want["raised"] == true {
                            match &e {
                                EngineError::TemplateRaised { msg: m } if m == msg => {
                                    same_error += 1
                                }
                                _ => failures.push(format!(
                                    "{what}: the template raises {msg:?}; lume says {e}"
                                )),
                            }
                        } else {
                            same_error += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "{} templates: {identical} identical, {same_error} refused by both, {} differ",
        results.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} renders differ from transformers:\n  {}",
        failures.len(),
        identical + same_error + failures.len(),
        failures.join("\n  ")
    );
}
