//! From a [`Spec`] (a JSON schema, a regex, a grammar) to a [`Constraint`]: the set of tokens a
//! sequence may take next, step by step.
//!
//! [`Grammars`] is built once per model: llguidance's token trie over the raw bytes of every
//! token of the vocabulary (what [`tokenizer::Tokenizer::token_bytes`] gives, so no
//! `tokenizer.json` is needed), and its parser factory. Control tokens (`<|im_end|>`, ...) enter
//! the trie behind llguidance's special-token marker byte, so no text grammar can produce them;
//! every end-of-generation token is an EOS to the grammar.
//!
//! A [`Constraint`] is one sequence's matcher. Per generated token:
//!
//! ```text
//! prepare()          compute the mask of allowed tokens ([n_vocab] bits), e.g. on another
//!                    thread while the forward pass computes the logits
//! apply(logits)      disallowed tokens' logits become -inf (prepare() first if not done)
//! accept(id)         advance; Ok(true) when the grammar has ended (nothing more may follow)
//! ```

use std::sync::Arc;
use std::time::Instant;

use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use tokenizer::Tokenizer;
use toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};

use crate::GrammarError;

/// What a sequence's output must fit.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// A JSON schema (draft 2020-12 keywords; see llguidance's list).
    JsonSchema(Value),
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A regular expression the whole output matches.
    Regex(String),
    /// A grammar in llguidance's Lark syntax.
    Lark(String),
    /// A llama.cpp GBNF grammar (converted to Lark by [`crate::gbnf`]).
    Gbnf(String),
}

impl Spec {
    /// The name of the input kind, for error messages (`json_schema`, `regex`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::JsonSchema(_) => "json_schema",
            Spec::JsonObject => "json_object",
            Spec::Regex(_) => "regex",
            Spec::Lark(_) => "lark",
            Spec::Gbnf(_) => "gbnf",
        }
    }
}

/// Whitespace a JSON value may have between its tokens: at most a short run per gap, so a
/// model cannot fill its whole budget with spaces while still "inside" the schema.
const JSON_WHITESPACE: &str = r"[\x20\x0A\x0D\x09]{1,20}";

/// The vocabulary seen by llguidance: the trie, and tokenization for its forced tokens.
struct Env {
    trie: TokTrie,
    tok: Arc<Tokenizer>,
    /// Bytes the grammar forces are given as their canonical tokens (see [`Grammars::new`]).
    canonical: bool,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_is_canonical(&self) -> bool {
        self.canonical
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        match std::str::from_utf8(s) {
            Ok(text) => self.tok.encode(text, false, false),
            // Not whole characters: the trie's longest-match split is the best we can do.
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Compiles specs for one model's vocabulary (cheap to share: `Arc` inside).
#[derive(Clone)]
pub struct Grammars {
    factory: Arc<ParserFactory>,
    n_vocab: usize,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars")
            .field("n_vocab", &self.n_vocab)
            .finish()
    }
}

impl Grammars {
    /// The trie and parser factory for `tok`'s vocabulary; `n_vocab` is the model's logits
    /// width (at least the tokenizer's; rows past it are tokens no grammar allows).
    ///
    /// Where the grammar leaves only one way on (`{"name": ` after `{`), the mask holds just
    /// the first token of that text's canonical tokenization, as the model saw such text in
    /// training, rather than every token that spells a piece of it.
    pub fn new(tok: Arc<Tokenizer>, n_vocab: usize) -> Result<Grammars, GrammarError> {
        Self::with_forcing(tok, n_vocab, true)
    }

    /// [`Grammars::new`], with `canonical_forcing` false: every token consistent with the
    /// grammar is allowed everywhere (the plain mask, e.g. for a brute-force check).
    pub fn with_forcing(
        tok: Arc<Tokenizer>,
        n_vocab: usize,
        canonical_forcing: bool,
    ) -> Result<Grammars, GrammarError> {
        let n_tok = tok.vocab_size();
        let n_vocab = n_vocab.max(n_tok);
        let eog: Vec<u32> = (0..n_tok as u32).filter(|&id| tok.is_eog(id)).collect();
        let Some(&first_eog) = eog.first() else {
            return Err(GrammarError::Vocabulary {
                msg: "the vocabulary has no end-of-generation token".into(),
            });
        };
        let words: Vec<Vec<u8>> = (0..n_vocab as u32)
            .map(|id| {
                let bytes = if (id as usize) < n_tok {
                    tok.token_bytes(id)
                } else {
                    &[]
                };
                if (id as usize) < n_tok && !tok.is_control(id) && !bytes.is_empty() {
                    bytes.to_vec()
                } else {
                    // Control tokens and tokens without text: reachable only by name.
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    let text = if (id as usize) < n_tok {
                        tok.token_text(id)
                    } else {
                        ""
                    };
                    if text.starts_with('<') && text.ends_with('>') && text.len() > 2 {
                        w.extend_from_slice(text.as_bytes());
                    } else {
                        w.extend_from_slice(format!("<[{id}]>").as_bytes());
                    }
                    w
                }
            })
            .collect();
        let info = TokRxInfo::new(n_vocab as u32, first_eog);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
        let env: TokEnv = Arc::new(Env {
            trie,
            tok,
            canonical: canonical_forcing,
        });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| GrammarError::Vocabulary { msg: e.to_string() })?;
        factory.quiet();
        *factory.limits_mut() = ParserLimits {
            // Errors are for users: no parser dump inside them.
            verbose_errors: false,
            ..ParserLimits::default()
        };
        Ok(Grammars {
            factory: Arc::new(factory),
            n_vocab,
        })
    }

    /// The logits width masks are made for.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Compiles `spec` into a fresh constraint (its mask not computed yet).
    pub fn compile(&self, spec: &Spec) -> Result<Constraint, GrammarError> {
        let t0 = Instant::now();
        let kind = spec.kind();
        let grammar = match spec {
            Spec::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(GrammarError::Compile {
                        kind,
                        msg: "a JSON schema must be an object (or true/false)".into(),
                    });
                }
                crate::check_schema(schema)?;
                TopLevelGrammar::from_json_schema(with_json_defaults(schema.clone()))
            }
            Spec::JsonObject => TopLevelGrammar::from_json_schema(with_json_defaults(
                serde_json::json!({"type": "object"}),
            )),
            Spec::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Spec::Lark(src) => TopLevelGrammar::from_lark(src.clone()),
            Spec::Gbnf(src) => TopLevelGrammar::from_lark(crate::gbnf::to_lark(src)?),
        };
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| GrammarError::Compile {
                kind,
                msg: clean(&e.to_string()),
            })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher_error(&matcher) {
            return Err(GrammarError::Compile { kind, msg: e });
        }
        Ok(Constraint {
            matcher,
            mask: None,
            n_vocab: self.n_vocab,
            compile_ms: t0.elapsed().as_secs_f64() * 1e3,
            ended: false,
        })
    }
}

/// Our JSON defaults unless the schema sets llguidance's options itself (`x-guidance`).
fn with_json_defaults(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance")
            .or_insert_with(|| serde_json::json!({ "whitespace_pattern": JSON_WHITESPACE }));
    }
    schema
}

/// llguidance's messages, on one line, without its internal context lines.
fn clean(msg: &str) -> String {
    let mut lines = msg.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("unknown error").to_string();
    lines.fold(first, |acc, l| format!("{acc}; {l}"))
}

fn matcher_error(m: &Matcher) -> Option<String> {
    m.get_error().map(|e| clean(&e))
}

/// One sequence's constraint (see the module docs for the per-token protocol).
pub struct Constraint {
    matcher: Matcher,
    /// The allowed tokens at the current position, once computed.
    mask: Option<SimpleVob>,
    n_vocab: usize,
    compile_ms: f64,
    /// The grammar has ended (or an end-of-generation token was accepted).
    ended: bool,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("ended", &self.ended)
            .field("compile_ms", &self.compile_ms)
            .finish()
    }
}

impl Clone for Constraint {
    /// An independent copy in the same state (llguidance's deep clone).
    fn clone(&self) -> Self {
        Constraint {
            matcher: self.matcher.deep_clone(),
            mask: self.mask.clone(),
            n_vocab: self.n_vocab,
            compile_ms: self.compile_ms,
            ended: self.ended,
        }
    }
}

impl Constraint {
    /// Milliseconds [`Grammars::compile`] took.
    pub fn compile_ms(&self) -> f64 {
        self.compile_ms
    }

    /// The grammar has ended: nothing may follow.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Computes the mask of the next position (no-op when already computed). Errors are kept
    /// and reported by [`Constraint::apply`].
    pub fn prepare(&mut self) {
        if self.mask.is_none() && !self.ended {
            if let Ok(m) = self.matcher.compute_mask() {
                self.mask = Some(m);
            }
        }
    }

    /// Whether `id` is allowed at the current position (computes the mask if needed).
    pub fn allows(&mut self, id: u32) -> Result<bool, GrammarError> {
        self.prepare();
        match &self.mask {
            Some(m) => Ok((id as usize) < m.len() && m.is_allowed(id)),
            None => Err(self.runtime_error()),
        }
    }

    /// Sets the logits of every token the grammar does not allow now to -inf.
    /// `logits` is one row, `[n_vocab]` (a shorter row is masked as far as it goes).
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<(), GrammarError> {
        self.prepare();
        let Some(mask) = &self.mask else {
            return Err(self.runtime_error());
        };
        let words = mask.as_slice();
        for (w, chunk) in logits.chunks_mut(32).enumerate() {
            let bits = words.get(w).copied().unwrap_or(0);
            if bits == u32::MAX {
                continue;
            }
            for (b, l) in chunk.iter_mut().enumerate() {
                if bits & (1 << b) == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        Ok(())
    }

    /// Advances past `id` (which `apply` allowed). Returns true when the output is complete:
    /// `id` ended generation or the grammar admits nothing more.
    pub fn accept(&mut self, id: u32) -> Result<bool, GrammarError> {
        if self.ended {
            return Ok(true);
        }
        self.mask = None;
        let eos = self
            .matcher
            .tok_env()
            .map(|env| env.tok_trie().eos_tokens().contains(&id))
            .unwrap_or(false);
        if eos {
            self.ended = true;
            return Ok(true);
        }
        if self.matcher.consume_token(id).is_err() {
            return Err(self.runtime_error());
        }
        if self.matcher.is_stopped() {
            self.ended = true;
        }
        Ok(self.ended)
    }

    fn runtime_error(&self) -> GrammarError {
        GrammarError::Runtime {
            msg: matcher_error(&self.matcher).unwrap_or_else(|| "the grammar is stuck".into()),
        }
    }
}
