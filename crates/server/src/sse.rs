//! Streamed answers. OpenAI's server-sent events: `data: {json}\n\n` per chunk,
//! `data: [DONE]\n\n` at the end; Anthropic's named events (no end marker); ollama's NDJSON
//! ([`Framing`]). An [`Encoder`] turns the scheduler's events into chunks; the driver owns the
//! [`Running`] requests, so a client that disconnects drops the body stream, which cancels them.
//! An error after the stream began goes out as an error chunk in the stream's shape
//! (`data: {"error":{...}}` then `[DONE]`, `event: error`, or a line `{"error": "..."}`).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use engine::Event;

use crate::error::Dialect;
use crate::generate::Running;
use crate::ServerError;

/// How a stream's chunks go on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `data: {chunk}\n\n`, then `data: [DONE]\n\n` (OpenAI).
    OpenAi,
    /// Each chunk is a whole event, `event: NAME\ndata: {json}`, followed by a blank line; no
    /// end marker (Anthropic).
    Events,
    /// One JSON object per line (ollama).
    Ndjson,
}

impl Framing {
    fn push(self, b: &mut String, chunk: &str) {
        match self {
            Framing::OpenAi => {
                b.push_str("data: ");
                b.push_str(chunk);
                b.push_str("\n\n");
            }
            Framing::Events => {
                b.push_str(chunk);
                b.push_str("\n\n");
            }
            Framing::Ndjson => {
                b.push_str(chunk);
                b.push('\n');
            }
        }
    }

    /// The chunk that reports `e` mid-stream.
    fn error(self, e: &ServerError) -> String {
        match self {
            Framing::OpenAi => e.body().to_string(),
            Framing::Events => format!("event: error\ndata: {}", e.body_in(Dialect::Anthropic)),
            Framing::Ndjson => e.body_in(Dialect::Ollama).to_string(),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Framing::OpenAi | Framing::Events => "text/event-stream",
            Framing::Ndjson => "application/x-ndjson",
        }
    }
}

/// Turns events into chunk JSON texts.
pub trait Encoder: Send + 'static {
    /// Chunks sent before any event (e.g. the assistant role).
    fn start(&mut self, out: &mut Vec<String>);
    /// An event of request `i`; an error ends the stream with an error event.
    fn event(&mut self, i: usize, ev: Event, out: &mut Vec<String>) -> Result<(), ServerError>;
    /// After every request finished (e.g. the usage chunk).
    fn end(&mut self, out: &mut Vec<String>);
}

enum Phase {
    Start,
    Events,
    End,
}

struct Driver<E> {
    run: Running,
    enc: E,
    phase: Phase,
    left: usize,
    framing: Framing,
}

impl<E: Encoder> Driver<E> {
    /// The next piece of the body (one or more events), `None` at the end.
    async fn next(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        loop {
            if !out.is_empty() {
                return Some(frames(self.framing, &out));
            }
            match self.phase {
                Phase::End => return None,
                Phase::Start => {
                    self.phase = Phase::Events;
                    self.enc.start(&mut out);
                    if self.left == 0 {
                        self.finish(&mut out);
                    }
                }
                Phase::Events => match self.run.rx.recv().await {
                    // The scheduler dropped the requests (shutdown past its grace period).
                    None => self.fail(ServerError::ShuttingDown, &mut out),
                    Some((i, ev)) => {
                        let last = matches!(ev, Event::Done(_) | Event::Error(_));
                        if last {
                            self.run.finished(i);
                        }
                        match self.enc.event(i, ev, &mut out) {
                            Err(e) => self.fail(e, &mut out),
                            Ok(()) if last => {
                                self.left = self.left.saturating_sub(1);
                                if self.left == 0 {
                                    self.finish(&mut out);
                                }
                            }
                            Ok(()) => {}
                        }
                    }
                },
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<String>) {
        self.enc.end(out);
        if self.framing == Framing::OpenAi {
            out.push("[DONE]".into());
        }
        self.phase = Phase::End;
    }

    fn fail(&mut self, e: ServerError, out: &mut Vec<String>) {
        out.push(self.framing.error(&e));
        if self.framing == Framing::OpenAi {
            out.push("[DONE]".into());
        }
        self.phase = Phase::End;
    }
}

fn frames(framing: Framing, chunks: &[String]) -> Bytes {
    let mut b = String::with_capacity(chunks.iter().map(|c| c.len() + 8).sum());
    for c in chunks {
        framing.push(&mut b, c);
    }
    Bytes::from(b)
}

/// The streamed response for `run` (OpenAI's server-sent events).
pub fn response(run: Running, enc: impl Encoder) -> Response {
    response_framed(run, enc, Framing::OpenAi)
}

/// The streamed response for `run`, framed as `framing` says.
pub fn response_framed(run: Running, enc: impl Encoder, framing: Framing) -> Response {
    let left = run.len();
    let driver = Driver {
        run,
        enc,
        phase: Phase::Start,
        left,
        framing,
    };
    let stream = futures_util::stream::unfold(driver, |mut d| async move {
        d.next().await.map(|b| (Ok::<_, Infallible>(b), d))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(framing.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
