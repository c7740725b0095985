//! Helpers shared by the scheduler tests: run requests and collect what they report.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use engine::{
    Event, Finish, GenerateParams, Request, SamplerConfig, Scheduler, SchedulerOptions,
    TokenLogprob,
};

/// What one request reported.
#[derive(Debug, Default)]
pub struct Outcome {
    pub cached: usize,
    pub ids: Vec<u32>,
    pub text: String,
    /// Log-probability bits of each generated token (exact comparisons).
    pub lp_bits: Vec<u32>,
    pub prompt_lp: Vec<Option<TokenLogprob>>,
    pub finish: Option<Finish>,
    pub error: Option<String>,
}

/// Catalogue model `name`; one line naming it and `lume pull` when it is missing and cannot
/// be pulled.
pub fn model_file(name: &str) -> std::path::PathBuf {
    hub::require(name).unwrap_or_else(|e| panic!("{e}"))
}

pub fn default_model() -> std::path::PathBuf {
    model_file("smollm2-135m")
}

pub fn sched(opts: SchedulerOptions) -> Scheduler {
    Scheduler::load(default_model(), &opts).unwrap()
}

pub fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        prompt,
        params: GenerateParams {
            max_tokens,
            sampler: SamplerConfig::greedy(),
            logprobs: 2,
            ..GenerateParams::default()
        },
        ..Request::default()
    }
}

/// Submits `req` and returns a receiver of its events.
pub fn submit(s: &Scheduler, req: Request) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    s.submit(req, Box::new(move |ev| tx.send(ev).is_ok()))
        .unwrap();
    rx
}

/// Collects every event of one request until it ends (60 s at most).
pub fn collect(rx: mpsc::Receiver<Event>) -> Outcome {
    let mut o = Outcome::default();
    loop {
        let ev = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the request ends within 60 s");
        match ev {
            Event::Started { cached, .. } => o.cached = cached,
            Event::PromptLogprobs(lp) => o.prompt_lp = lp,
            Event::Token(t) => {
                o.ids.push(t.id);
                o.text.push_str(&t.text);
                if let Some(lp) = t.logprob {
                    o.lp_bits.push(lp.logprob.to_bits());
                }
            }
            Event::Done(f) => {
                o.finish = Some(f);
                return o;
            }
            Event::Error(e) => {
                o.error = Some(e.to_string());
                return o;
            }
        }
    }
}

pub fn run(s: &Scheduler, req: Request) -> Outcome {
    collect(submit(s, req))
}

/// A chat prompt for `user`.
pub fn chat(s: &Scheduler, user: &str) -> Vec<u32> {
    let t = s.chat_template().unwrap();
    let text = t
        .render(&[engine::ChatMessage::new("user", user)], true)
        .unwrap();
    s.tokenizer().encode(&text, true, true)
}

/// Prompts of assorted lengths (4 to ~300 tokens).
pub fn prompts(s: &Scheduler) -> Vec<Vec<u32>> {
    let long = "The history of the city begins with a small river settlement. ".repeat(24);
    [
        "Hi",
        "What is the capital of France?",
        "Write a haiku about the sea.",
        long.as_str(),
        "List three prime numbers.",
        "Why is the sky blue? Answer in one sentence.",
        "Translate 'good morning' into Spanish.",
        "Name a famous painter.",
    ]
    .iter()
    .map(|p| chat(s, p))
    .collect()
}
