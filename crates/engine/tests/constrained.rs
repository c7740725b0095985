//! Constrained decoding on the real default model, through the Scheduler and the Engine:
//! every sequence of a batch has its own constraint (or none) and gets what it would alone;
//! the output fits the schema; the grammar's end ends the stream.

mod common;

use common::*;
use engine::{Engine, EngineOptions, Request, SchedulerOptions, Spec, StopReason};
use serde_json::{json, Value};

fn opts(n_slots: usize) -> SchedulerOptions {
    SchedulerOptions {
        n_slots,
        n_ctx: 1024,
        threads: 2,
        batch_invariant: true,
        ..SchedulerOptions::default()
    }
}

fn person() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": false
    })
}

fn specs() -> Vec<Option<Spec>> {
    vec![
        Some(Spec::JsonSchema(person())),
        None,
        Some(Spec::Regex("(yes|no), because [a-z ]{1,30}\\.".into())),
        Some(Spec::JsonObject),
        None,
        Some(Spec::Lark(
            "start: \"Answer: \" NUMBER\nNUMBER: /[0-9]{1,4}/".into(),
        )),
    ]
}

fn requests(s: &engine::Scheduler) -> Vec<Request> {
    let ps = prompts(s);
    specs()
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut r = greedy(ps[i % ps.len()].clone(), 48);
            r.params.constraint = spec.map(|sp| s.compile(&sp).expect("compiles"));
            r
        })
        .collect()
}

fn check(i: usize, o: &Outcome) {
    assert!(o.error.is_none(), "request {i}: {:?}", o.error);
    let f = o.finish.expect("finished");
    match i {
        0 => {
            assert_eq!(f.reason, StopReason::GrammarEnd, "{:?}", o.text);
            let v: Value = serde_json::from_str(&o.text).expect("JSON");
            assert!(v["name"].as_str().is_some_and(|n| n.chars().count() <= 20));
            let age = v["age"].as_i64().expect("integer age");
            assert!((0..=120).contains(&age));
            assert!(v["tags"].as_array().is_some_and(|t| t.len() <= 3));
            assert_eq!(v.as_object().unwrap().len(), 3);
        }
        2 => {
            let ok = o.text.starts_with("yes, because ") || o.text.starts_with("no, because ");
            assert!(ok, "{:?}", o.text);
        }
        3 if f.reason != StopReason::MaxTokens => {
            assert!(serde_json::from_str::<Value>(&o.text).unwrap().is_object());
        }
        5 => {
            assert!(o.text.starts_with("Answer: "), "{:?}", o.text);
            assert!(o.text[8..].chars().all(|c| c.is_ascii_digit()));
        }
        _ => {}
    }
}

#[test]
fn each_sequence_has_its_own_constraint() {
    let reqs = requests(&sched(opts(1)));
    let alone: Vec<Outcome> = reqs
        .iter()
        .map(|r| run(&sched(opts(1)), r.clone()))
        .collect();
    for (i, o) in alone.iter().enumerate() {
        check(i, o);
    }
    let s = sched(opts(6));
    let rxs: Vec<_> = reqs.iter().map(|r| submit(&s, r.clone())).collect();
    for (i, rx) in rxs.into_iter().enumerate() {
        let got = collect(rx);
        check(i, &got);
        assert_eq!(
            got.ids, alone[i].ids,
            "request {i}: batched differs from alone"
        );
    }
}

/// The default model in an Engine with a 512-token context, 2 threads.
fn small_engine() -> Engine {
    Engine::load(
        default_model(),
        EngineOptions {
            threads: 2,
            n_ctx: 512,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn engine_generate_follows_the_constraint_and_sampling() {
    let mut eng = small_engine();
    let prompt = eng.tokenize("A person as JSON:", true, true);
    for temperature in [0.0, 1.0] {
        let params = engine::GenerateParams {
            max_tokens: 80,
            sampler: engine::SamplerConfig {
                temperature,
                seed: Some(3),
                ..engine::SamplerConfig::default()
            },
            constraint: Some(eng.compile(&Spec::JsonSchema(person())).unwrap()),
            ..engine::GenerateParams::default()
        };
        let mut text = String::new();
        let st = eng
            .generate(&prompt, &params, |ev| {
                text.push_str(ev.text);
                true
            })
            .unwrap();
        assert_eq!(st.stop, StopReason::GrammarEnd, "{text:?}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert!(v["age"].is_i64(), "{text}");
    }
}

/// Every llama.cpp grammar file of testdata/grammars constrains a real run: the output is a
/// prefix the grammar accepts token by token (replayed through a fresh constraint), and when
/// the grammar ended the output is whole (json.gbnf's then parses as JSON).
#[test]
fn every_gbnf_file_constrains_a_run() {
    let mut eng = small_engine();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/grammars");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gbnf"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let prompt = eng.tokenize("Here is an example:", true, true);
    let mut nonempty = 0;
    for f in &files {
        let spec = Spec::Gbnf(std::fs::read_to_string(f).unwrap());
        let c = eng
            .compile(&spec)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let params = engine::GenerateParams {
            max_tokens: 40,
            sampler: engine::SamplerConfig::greedy(),
            constraint: Some(c),
            ..engine::GenerateParams::default()
        };
        let (mut ids, mut text) = (Vec::new(), String::new());
        let st = eng
            .generate(&prompt, &params, |ev| {
                if !ev.is_eog {
                    ids.push(ev.id);
                }
                text.push_str(ev.text);
                true
            })
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        // (A grammar whose language holds the empty text may end at once, when the model's
        // first choice is its end-of-generation token.)
        if !ids.is_empty() {
            nonempty += 1;
        }
        let mut replay = eng.compile(&spec).unwrap();
        for &id in &ids {
            assert!(replay.allows(id).unwrap(), "{}: {text:?}", f.display());
            replay.accept(id).unwrap();
        }
        let whole = matches!(st.stop, StopReason::GrammarEnd | StopReason::Eog);
        if whole && f.file_name().unwrap() == "json.gbnf" {
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("json.gbnf: {e}: {text:?}"));
        }
        eprintln!(
            "{}: {:?} {text:?}",
            f.file_name().unwrap().to_string_lossy(),
            st.stop
        );
    }
    assert!(
        nonempty >= files.len() - 2,
        "{nonempty} of {} runs wrote something",
        files.len()
    );
}
