//! The generation and scoring loops, written against two small traits so they can be tested
//! with a fake model: [`Forward`] (a causal LM with a KV cache) and [`Vocab`] (token bytes,
//! end-of-generation ids).
//!
//! A [`Session`] remembers which tokens are in the KV cache, so a new request that starts
//! with the same tokens (a chat's next turn, `--echo` scoring followed by generation) only
//! evaluates the part that differs.

use std::time::Instant;

use grammar::Constraint;

use crate::logprobs::top_logprobs;
use crate::text::TextStream;
use crate::EngineError;

/// A causal language model with its KV cache (one sequence).
pub trait Forward {
    fn n_vocab(&self) -> usize;
    /// Positions the cache holds.
    fn n_ctx(&self) -> usize;
    /// Forgets cached positions `pos..` and returns where the next forward must start: `pos`
    /// (or less when fewer are cached), or 0 when the cache cannot go back to `pos` (a
    /// sliding-window ring that has overwritten the window before it: it is emptied).
    fn truncate(&mut self, pos: usize) -> usize;
    /// Evaluates `tokens` at positions `pos0..pos0 + tokens.len()`, writing the logits of every
    /// row (`all`) or of the last row only into `logits`: `[rows, n_vocab]`.
    fn forward(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        all: bool,
        logits: &mut Vec<f32>,
    ) -> Result<(), EngineError>;
}

/// What generation needs to know about tokens.
pub trait Vocab {
    /// The bytes a token stands for (special tokens: empty or their text).
    fn token_bytes(&self, id: u32) -> &[u8];
    /// End-of-generation token (EOS, `<|im_end|>`, ...).
    fn is_eog(&self, id: u32) -> bool;
}

/// One generated token as reported to the caller.
#[derive(Debug)]
pub struct TokenEvent<'a> {
    pub id: u32,
    /// Text that became printable with this token: whole UTF-8 characters, stop strings and
    /// their possible beginnings held back; the last event carries everything left.
    pub text: &'a str,
    /// The most likely tokens of the distribution `id` was drawn from (empty unless asked).
    pub top_logprobs: &'a [(u32, f32)],
    /// `id` is an end-of-generation token (it has no text).
    pub is_eog: bool,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token was produced.
    Eog,
    /// A stop string appeared in the text.
    StopString,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The callback asked to stop.
    Callback,
    /// The context is full.
    ContextFull,
    /// The output's grammar (JSON schema, regex, ...) admits nothing more.
    GrammarEnd,
}

impl StopReason {
    /// Whether generation ends after a token, in order of precedence: it was an
    /// end-of-generation token, it completed a stop string, it completed the output's
    /// grammar, it was the last allowed one, or the context has no room to feed it.
    pub fn after_token(
        is_eog: bool,
        hit_stop: bool,
        grammar_end: bool,
        max_reached: bool,
        ctx_full: bool,
    ) -> Option<StopReason> {
        if is_eog {
            Some(StopReason::Eog)
        } else if hit_stop {
            Some(StopReason::StopString)
        } else if grammar_end {
            Some(StopReason::GrammarEnd)
        } else if max_reached {
            Some(StopReason::MaxTokens)
        } else if ctx_full {
            Some(StopReason::ContextFull)
        } else {
            None
        }
    }
}

/// Timings and counts of one `generate` call.
#[derive(Clone, Copy, Debug)]
pub struct GenerateStats {
    /// Prompt tokens.
    pub n_prompt: usize,
    /// Prompt tokens actually evaluated (the rest were already in the KV cache).
    pub n_prompt_evaluated: usize,
    pub prompt_ms: f64,
    /// Generated tokens (an end-of-generation token counts).
    pub n_gen: usize,
    pub gen_ms: f64,
    pub stop: StopReason,
}

impl GenerateStats {
    /// Prompt tokens evaluated per second.
    pub fn prompt_tps(&self) -> f64 {
        per_second(self.n_prompt_evaluated, self.prompt_ms)
    }

    /// Generated tokens per second.
    pub fn gen_tps(&self) -> f64 {
        per_second(self.n_gen, self.gen_ms)
    }
}

fn per_second(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

/// What the loop needs from `GenerateParams` (the sampler is passed as a closure).
pub struct LoopParams<'a> {
    pub max_tokens: usize,
    pub stop: &'a [String],
    /// Top-N log-probabilities per generated token (0 = none).
    pub logprobs: usize,
    /// Prompt tokens per forward call.
    pub batch: usize,
}

/// How [`Session::generate`] chooses each token: `choose(logits, history)`, from the logits
/// masked by `guide` when there is one.
pub struct Picker<'a> {
    pub guide: Option<&'a mut Constraint>,
    pub choose: &'a mut dyn FnMut(&[f32], &[u32]) -> u32,
}

impl<'a> Picker<'a> {
    /// Unconstrained.
    pub fn free(choose: &'a mut dyn FnMut(&[f32], &[u32]) -> u32) -> Picker<'a> {
        Picker {
            guide: None,
            choose,
        }
    }
}

/// Receives the logits of a chunk (`[rows, n_vocab]`) and the index of its first token.
type RowSink<'a> = &'a mut dyn FnMut(usize, &[f32]);

/// Reusable buffers and the record of what the KV cache holds.
#[derive(Debug, Default)]
pub struct Session {
    /// Tokens whose keys/values are in the cache, at positions 0.. in order.
    cached: Vec<u32>,
    /// `[rows, n_vocab]` logits of the last forward.
    logits: Vec<f32>,
    /// `[n_vocab]`: the last row with the grammar's mask applied.
    masked: Vec<f32>,
    top: Vec<(u32, f32)>,
    /// Prompt and generated tokens (for repetition penalties).
    history: Vec<u32>,
    text: String,
}

impl Session {
    /// The tokens in the KV cache.
    pub fn cached(&self) -> &[u32] {
        &self.cached
    }

    /// Forgets the cache contents (the next request evaluates everything).
    pub fn clear(&mut self, fwd: &mut dyn Forward) {
        self.cached.clear();
        fwd.truncate(0);
    }

    /// Forgets what the cache holds without touching the model (after raw evaluations).
    pub fn forget(&mut self) {
        self.cached.clear();
    }

    /// The logits buffer (for raw evaluations).
    pub fn logits_mut(&mut self) -> &mut Vec<f32> {
        &mut self.logits
    }

    fn check_ids(&self, fwd: &dyn Forward, ids: &[u32]) -> Result<(), EngineError> {
        let n_vocab = fwd.n_vocab();
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(EngineError::BadToken { id: bad, n_vocab });
        }
        if ids.len() > fwd.n_ctx() {
            return Err(EngineError::ContextTooLong {
                n_tokens: ids.len(),
                n_ctx: fwd.n_ctx(),
            });
        }
        Ok(())
    }

    /// Evaluates `ids[from..]` (positions `from..`) in chunks; with `all`, `on_rows` sees each
    /// chunk's logits with the index of its first token, else only the last row is kept in
    /// `self.logits`.
    /// Returns the position evaluation started from (`from`, or 0 when the cache could not go
    /// back to it).
    fn eval(
        &mut self,
        fwd: &mut dyn Forward,
        ids: &[u32],
        from: usize,
        batch: usize,
        mut on_rows: Option<RowSink>,
    ) -> Result<usize, EngineError> {
        let from = fwd.truncate(from).min(from);
        self.cached.truncate(from);
        let batch = batch.max(1);
        let mut start = from;
        while start < ids.len() {
            let end = (start + batch).min(ids.len());
            let all = on_rows.is_some();
            if let Err(e) = fwd.forward(&ids[start..end], start, all, &mut self.logits) {
                // The cache state is unknown now: start from scratch next time.
                self.clear(fwd);
                return Err(e);
            }
            self.cached.extend_from_slice(&ids[start..end]);
            if let Some(f) = on_rows.as_mut() {
                f(start, &self.logits);
            }
            start = end;
        }
        Ok(from)
    }

    /// Scores `ids`: entry `i` holds the `n` most likely tokens (with log-probabilities) of the
    /// next-token distribution after reading `ids[..=i]`.
    pub fn score(
        &mut self,
        fwd: &mut dyn Forward,
        ids: &[u32],
        n: usize,
        batch: usize,
    ) -> Result<Vec<Vec<(u32, f32)>>, EngineError> {
        self.check_ids(fwd, ids)?;
        let n_vocab = fwd.n_vocab();
        let mut rows: Vec<Vec<(u32, f32)>> = Vec::with_capacity(ids.len());
        let mut top = std::mem::take(&mut self.top);
        let mut collect = |_start: usize, logits: &[f32]| {
            for row in logits.chunks_exact(n_vocab) {
                top_logprobs(row, n, &mut top);
                rows.push(top.clone());
            }
        };
        let r = self.eval(fwd, ids, 0, batch, Some(&mut collect));
        self.top = top;
        r?;
        Ok(rows)
    }

    /// Generates after `prompt`: one batched prompt evaluation (reusing the cached prefix),
    /// then one token per step. `pick(logits, history)` chooses each token, from the logits
    /// masked by `guide` when there is one (whose next mask is computed on another thread
    /// while the forward pass runs); `on_event` sees each token and returns false to stop.
    pub fn generate(
        &mut self,
        fwd: &mut dyn Forward,
        vocab: &dyn Vocab,
        prompt: &[u32],
        p: &LoopParams,
        picker: Picker,
        on_event: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<GenerateStats, EngineError> {
        let Picker {
            mut guide,
            choose: pick,
        } = picker;
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        self.check_ids(fwd, prompt)?;
        let n_vocab = fwd.n_vocab();
        let n_ctx = fwd.n_ctx();
        let mut stats = GenerateStats {
            n_prompt: prompt.len(),
            n_prompt_evaluated: 0,
            prompt_ms: 0.0,
            n_gen: 0,
            gen_ms: 0.0,
            stop: StopReason::MaxTokens,
        };
        if p.max_tokens == 0 {
            return Ok(stats);
        }

        // Reuse the longest cached prefix, but evaluate at least the last prompt token.
        let common = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        let t0 = Instant::now();
        let from = self.eval(fwd, prompt, common, p.batch, None)?;
        stats.n_prompt_evaluated = prompt.len() - from;
        stats.prompt_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        self.history.clear();
        self.history.extend_from_slice(prompt);
        let mut stream = TextStream::new(p.stop);
        let mut pos = prompt.len();
        loop {
            let row = &self.logits[self.logits.len() - n_vocab..];
            let id = match guide.as_deref_mut() {
                None => pick(row, &self.history),
                Some(g) => {
                    self.masked.clear();
                    self.masked.extend_from_slice(row);
                    g.apply(&mut self.masked)?;
                    pick(&self.masked, &self.history)
                }
            };
            if p.logprobs > 0 {
                top_logprobs(row, p.logprobs, &mut self.top);
            } else {
                self.top.clear();
            }
            let is_eog = vocab.is_eog(id);
            self.text.clear();
            let hit_stop = !is_eog && stream.push(vocab.token_bytes(id), &mut self.text);
            let grammar_end = match guide.as_deref_mut() {
                Some(g) if !is_eog => g.accept(id)?,
                _ => false,
            };
            stats.n_gen += 1;
            self.history.push(id);
            let reason = StopReason::after_token(
                is_eog,
                hit_stop,
                grammar_end,
                stats.n_gen >= p.max_tokens,
                pos >= n_ctx,
            );
            if reason.is_some() && !hit_stop {
                stream.finish(&mut self.text);
            }
            let event = TokenEvent {
                id,
                text: &self.text,
                top_logprobs: &self.top,
                is_eog,
            };
            let keep_going = on_event(&event);
            if let Some(r) = reason {
                stats.stop = r;
                break;
            }
            if !keep_going {
                stats.stop = StopReason::Callback;
                break;
            }
            let logits = &mut self.logits;
            let r = match guide.as_deref_mut() {
                // The next mask is computed while the model computes the next logits.
                Some(g) => std::thread::scope(|sc| {
                    sc.spawn(|| g.prepare());
                    fwd.forward(&[id], pos, false, logits)
                }),
                None => fwd.forward(&[id], pos, false, logits),
            };
            if let Err(e) = r {
                self.clear(fwd);
                return Err(e);
            }
            self.cached.push(id);
            pos += 1;
        }
        stats.gen_ms = t1.elapsed().as_secs_f64() * 1e3;
        Ok(stats)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake LM: the logits at a position depend on every token up to it (through a hash),
    /// and it checks that positions arrive contiguously, as a real KV cache needs.
    pub struct FakeLm {
        pub n_vocab: usize,
        pub n_ctx: usize,
        pub kv: Vec<u32>,
        pub evaluated: usize,
        /// Forced next token after a given token (to steer greedy decoding in tests).
        pub next: fn(&[u32]) -> u32,
    }

    impl Forward for FakeLm {
        fn n_vocab(&self) -> usize {
            self.n_vocab
        }
        fn n_ctx(&self) -> usize {
            self.n_ctx
        }
        fn truncate(&mut self, pos: usize) -> usize {
            self.kv.truncate(pos);
            self.kv.len()
        }
        fn forward(
            &mut self,
            tokens: &[u32],
            pos0: usize,
            all: bool,
            logits: &mut Vec<f32>,
        ) -> Result<(), EngineError> {
            assert_eq!(pos0, self.kv.len(), "positions must be contiguous");
            assert!(pos0 + tokens.len() <= self.n_ctx);
            logits.clear();
            for (i, &t) in tokens.iter().enumerate() {
                self.kv.push(t);
                self.evaluated += 1;
                if all || i + 1 == tokens.len() {
                    let want = (self.next)(&self.kv) as usize;
                    logits.extend((0..self.n_vocab).map(|v| if v == want { 5.0 } else { 0.0 }));
                }
            }
            Ok(())
        }
    }

    /// Token i is the letter `a + i % 26`; token 0 is the EOG token.
    pub struct FakeVocab {
        pub bytes: Vec<Vec<u8>>,
    }

    impl FakeVocab {
        pub fn new(n: usize) -> FakeVocab {
            FakeVocab {
                bytes: (0..n).map(|i| vec![b'a' + (i % 26) as u8]).collect(),
            }
        }
    }

    impl Vocab for FakeVocab {
        fn token_bytes(&self, id: u32) -> &[u8] {
            &self.bytes[id as usize]
        }
        fn is_eog(&self, id: u32) -> bool {
            id == 0
        }
    }

    fn greedy(logits: &[f32], _h: &[u32]) -> u32 {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        best as u32
    }

    fn lm(next: fn(&[u32]) -> u32) -> FakeLm {
        FakeLm {
            n_vocab: 30,
            n_ctx: 64,
            kv: Vec::new(),
            evaluated: 0,
            next,
        }
    }

    fn params(max_tokens: usize, stop: &[String]) -> LoopParams<'_> {
        LoopParams {
            max_tokens,
            stop,
            logprobs: 2,
            batch: 3,
        }
    }

    /// Runs a generation and returns (ids, concatenated text, stats).
    fn gen(
        s: &mut Session,
        f: &mut FakeLm,
        prompt: &[u32],
        p: &LoopParams,
    ) -> (Vec<u32>, String, GenerateStats) {
        let v = FakeVocab::new(30);
        let (mut ids, mut text) = (Vec::new(), String::new());
        let stats = s
            .generate(f, &v, prompt, p, Picker::free(&mut greedy), &mut |e| {
                ids.push(e.id);
                text.push_str(e.text);
                assert_eq!(e.top_logprobs.len(), 2);
                assert_eq!(e.top_logprobs[0].0, e.id);
                true
            })
            .unwrap();
        (ids, text, stats)
    }

    #[test]
    fn generates_until_max_tokens_then_eog() {
        // Next token = last token + 1; token 0 never comes up until wrapping at 30.
        let mut f = lm(|kv| (kv.last().unwrap() + 1) % 30);
        let mut s = Session::default();
        let (ids, text, st) = gen(&mut s, &mut f, &[1, 2, 3, 4, 5, 6, 7], &params(4, &[]));
        assert_eq!(ids, vec![8, 9, 10, 11]);
        assert_eq!(text, "ijkl");
        assert_eq!(st.stop, StopReason::MaxTokens);
        assert_eq!((st.n_prompt, st.n_prompt_evaluated, st.n_gen), (7, 7, 4));

        // 27 → 28 → 29 → 0 (EOG): the EOG token is reported without text.
        s.clear(&mut f);
        let (ids, text, st) = gen(&mut s, &mut f, &[27], &params(10, &[]));
        assert_eq!(ids, vec![28, 29, 0]);
        assert_eq!(text, "cd");
        assert_eq!(st.stop, StopReason::Eog);
    }

    #[test]
    fn stop_string_is_not_emitted() {
        let mut f = lm(|kv| (kv.last().unwrap() + 1) % 30);
        let mut s = Session::default();
        let stop = vec!["def".to_string()];
        // Prompt ends with 1 ('b'): generates c d e f ...
        let (ids, text, st) = gen(&mut s, &mut f, &[1], &params(10, &stop));
        assert_eq!(text, "c");
        assert_eq!(ids, vec![2, 3, 4, 5]);
        assert_eq!(st.stop, StopReason::StopString);
    }

    #[test]
    fn reuses_the_cached_prefix() {
        let mut f = lm(|kv| (kv.len() % 29 + 1) as u32);
        let mut s = Session::default();
        let (a, _, st) = gen(&mut s, &mut f, &[3, 4, 5, 6, 7], &params(3, &[]));
        assert_eq!(st.n_prompt_evaluated, 5);
        // Same conversation continued: only the new tokens are evaluated.
        let mut next: Vec<u32> = vec![3, 4, 5, 6, 7];
        next.extend(&a[..2]); // the third generated token was never fed to the model
        next.extend([9, 9]);
        let evaluated_before = f.evaluated;
        let (b, _, st) = gen(&mut s, &mut f, &next, &params(2, &[]));
        assert_eq!(st.n_prompt_evaluated, 2);
        assert_eq!(f.evaluated - evaluated_before, 2 + 1);
        // And the result equals a fresh run.
        let mut f2 = lm(|kv| (kv.len() % 29 + 1) as u32);
        let (c, _, _) = gen(&mut Session::default(), &mut f2, &next, &params(2, &[]));
        assert_eq!(b, c);

        // The same prompt again: only the last token is re-evaluated.
        let (_, _, st) = gen(&mut s, &mut f, &next, &params(1, &[]));
        assert_eq!(st.n_prompt_evaluated, 1);
    }

    #[test]
    fn score_rows_and_generate_after_score() {
        let mut f = lm(|kv| (kv.last().unwrap() * 2) % 30);
        let mut s = Session::default();
        let ids = [1, 2, 3, 4, 5, 6, 7];
        let rows = s.score(&mut f, &ids, 3, 2).unwrap();
        assert_eq!(rows.len(), ids.len());
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.len(), 3);
            assert_eq!(r[0].0, (ids[i] * 2) % 30);
        }
        let (g, _, st) = gen(&mut s, &mut f, &ids, &params(2, &[]));
        assert_eq!(g, vec![14, 28]);
        assert_eq!(st.n_prompt_evaluated, 1);
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut f = lm(|_| 1);
        let mut s = Session::default();
        let v = FakeVocab::new(30);
        let p = params(5, &[]);
        let mut cb = |_: &TokenEvent| true;
        let r = s.generate(&mut f, &v, &[], &p, Picker::free(&mut greedy), &mut cb);
        assert!(matches!(r, Err(EngineError::EmptyPrompt)));
        let r = s.generate(&mut f, &v, &[1, 99], &p, Picker::free(&mut greedy), &mut cb);
        assert!(matches!(r, Err(EngineError::BadToken { id: 99, .. })));
        let long = vec![1u32; 65];
        let r = s.generate(&mut f, &v, &long, &p, Picker::free(&mut greedy), &mut cb);
        assert!(matches!(r, Err(EngineError::ContextTooLong { .. })));
    }

    #[test]
    fn context_full_stops_generation() {
        let mut f = lm(|_| 1);
        let mut s = Session::default();
        let prompt = vec![2u32; 60];
        let (ids, _, st) = gen(&mut s, &mut f, &prompt, &params(100, &[]));
        assert_eq!(st.stop, StopReason::ContextFull);
        assert_eq!(
            ids.len(),
            5,
            "positions 60..63 are fed, the 5th token is not"
        );
    }

    #[test]
    fn callback_can_stop() {
        let mut f = lm(|_| 1);
        let mut s = Session::default();
        let v = FakeVocab::new(30);
        let mut n = 0;
        let st = s
            .generate(
                &mut f,
                &v,
                &[2],
                &params(100, &[]),
                Picker::free(&mut greedy),
                &mut |_| {
                    n += 1;
                    n < 3
                },
            )
            .unwrap();
        assert_eq!(st.stop, StopReason::Callback);
        assert_eq!(st.n_gen, 3);
    }
}
