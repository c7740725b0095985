//! [`Engine`]: a loaded model with its tokenizer, KV cache and generation session.

use std::path::Path;

use gguf::GgufFile;
use sampling::{Sampler, SamplerConfig};
use std::sync::Arc;

use grammar::{Constraint, Spec};
use tokenizer::Tokenizer;

use crate::guided::GrammarCell;

use crate::backend::ModelBackend;
use crate::chat::ChatTemplate;
use crate::options::EngineOptions;
use crate::session::{Forward, GenerateStats, LoopParams, Picker, Session, TokenEvent, Vocab};
use crate::EngineError;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Most tokens to generate (an end-of-generation token counts).
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation stops when the text contains one of these (which is not emitted).
    pub stop: Vec<String>,
    /// Report the top-N log-probabilities of each step (0 = none).
    pub logprobs: usize,
    /// The output must fit this grammar (compiled with [`Engine::compile`] or
    /// [`crate::Scheduler::compile`]); generation ends where the grammar does.
    pub constraint: Option<Constraint>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            logprobs: 0,
            constraint: None,
        }
    }
}

/// A loaded model ready to generate.
pub struct Engine {
    tokenizer: Arc<Tokenizer>,
    grammars: GrammarCell,
    backend: ModelBackend,
    session: Session,
    batch: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("file", &self.gguf().path())
            .field("n_ctx", &self.backend.n_ctx())
            .finish()
    }
}

/// The tokenizer seen through the [`Vocab`] trait.
struct TokVocab<'a>(&'a Tokenizer);

impl Vocab for TokVocab<'_> {
    fn token_bytes(&self, id: u32) -> &[u8] {
        self.0.token_bytes(id)
    }
    fn is_eog(&self, id: u32) -> bool {
        self.0.is_eog(id)
    }
}

impl Engine {
    /// Opens `path`, builds the tokenizer and the model, and allocates the KV cache.
    pub fn load(path: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine, EngineError> {
        // The kernels' pool is process-wide; 0 keeps its default (all cores).
        if opts.threads > 0 {
            kernels::set_num_threads(opts.threads);
        }
        let file = GgufFile::open(path.as_ref())?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let backend = ModelBackend::load(file, &opts)?;
        Ok(Engine {
            tokenizer: Arc::new(tokenizer),
            grammars: GrammarCell::default(),
            backend,
            session: Session::default(),
            batch: opts.batch.max(1),
        })
    }

    /// The model file.
    pub fn gguf(&self) -> &GgufFile {
        self.backend.model().gguf()
    }

    /// Facts about the model (architecture, sizes).
    pub fn info(&self) -> &model::ModelInfo {
        self.backend.model().info()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Compiles a JSON schema, regex or grammar into a constraint for
    /// [`GenerateParams::constraint`] (the first call builds the vocabulary's token trie).
    pub fn compile(&self, spec: &Spec) -> Result<Constraint, EngineError> {
        self.grammars
            .compile(&self.tokenizer, self.backend.n_vocab(), spec)
    }

    pub fn n_vocab(&self) -> usize {
        self.backend.n_vocab()
    }

    pub fn n_ctx(&self) -> usize {
        self.backend.n_ctx()
    }

    /// Text to token ids (`add_special`: BOS where the model wants one; `parse_special`:
    /// control-token text such as `<|im_start|>` becomes its id).
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.tokenizer.encode(text, add_special, parse_special)
    }

    /// Token ids to bytes (special tokens as their text).
    pub fn detokenize(&self, ids: &[u32]) -> Vec<u8> {
        self.tokenizer.decode(ids)
    }

    /// The model's chat template ([`EngineError::NoChatTemplate`] for base models).
    pub fn chat_template(&self) -> Result<ChatTemplate, EngineError> {
        ChatTemplate::from_gguf(self.gguf())
    }

    /// Renders `messages` with the chat template (ending where the assistant's answer starts)
    /// and tokenizes the result, special-token text parsed.
    pub fn chat_prompt(&self, messages: &[crate::ChatMessage]) -> Result<Vec<u32>, EngineError> {
        let text = self.chat_template()?.render(messages, true)?;
        Ok(self.tokenize(&text, true, true))
    }

    /// Generates after `prompt`, calling `on_event` for every token (return false to stop).
    /// Stops at an end-of-generation token, a stop string, `max_tokens`, or a full context.
    /// A prompt that starts like the previous request reuses its KV cache.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        mut on_event: impl FnMut(&TokenEvent) -> bool,
    ) -> Result<GenerateStats, EngineError> {
        params.sampler.validate()?;
        let mut sampler = Sampler::new(params.sampler.clone());
        let lp = LoopParams {
            max_tokens: params.max_tokens,
            stop: &params.stop,
            logprobs: params.logprobs,
            batch: self.batch,
        };
        let vocab = TokVocab(&self.tokenizer);
        let mut guide = params.constraint.clone();
        self.session.generate(
            &mut self.backend,
            &vocab,
            prompt,
            &lp,
            Picker {
                guide: guide.as_mut(),
                choose: &mut |logits, history| sampler.sample(logits, history),
            },
            &mut on_event,
        )
    }

    /// One pass over `ids`: entry `i` holds the `n` most likely next tokens (id, log-prob)
    /// after reading `ids[..=i]`.
    pub fn score(&mut self, ids: &[u32], n: usize) -> Result<Vec<Vec<(u32, f32)>>, EngineError> {
        self.session.score(&mut self.backend, ids, n, self.batch)
    }

    /// Whether [`Engine::eval`] at `pos` can keep the cached positions before it (false when
    /// fewer are cached, or a sliding-window ring has overwritten what lies before `pos`).
    pub fn can_rewind(&self, pos: usize) -> bool {
        self.backend.can_rewind(pos)
    }

    /// Empties the KV cache.
    pub fn reset(&mut self) {
        self.session.clear(&mut self.backend);
    }

    /// Low level (benchmarks): evaluates `tokens` at positions `pos0..` with only the last
    /// row's logits computed, and returns them. Bypasses the prefix bookkeeping, so call
    /// [`Engine::reset`] before the next `generate`.
    pub fn eval(&mut self, tokens: &[u32], pos0: usize) -> Result<&[f32], EngineError> {
        let n_vocab = self.backend.n_vocab();
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::BadToken { id: bad, n_vocab });
        }
        if pos0 + tokens.len() > self.backend.n_ctx() {
            return Err(EngineError::ContextTooLong {
                n_tokens: pos0 + tokens.len(),
                n_ctx: self.backend.n_ctx(),
            });
        }
        self.session.forget();
        let kept = self.backend.truncate(pos0);
        if kept != pos0 {
            return Err(EngineError::Internal {
                msg: format!(
                    "eval at position {pos0}: the cache holds {kept} positions there (fewer \
                     cached, or a sliding-window ring that cannot go back that far)"
                ),
            });
        }
        let logits = self.session.logits_mut();
        self.backend.forward(tokens, pos0, false, logits)?;
        Ok(&self.session.logits_mut()[..])
    }

    /// Perplexity (and KL divergence) of `tokens` (the whole text, tokenized once with
    /// [`Engine::tokenize`]`(text, true, false)`), chunk by chunk; `progress` sees each chunk.
    pub fn perplexity(
        &mut self,
        tokens: &[u32],
        params: &crate::perplexity::PerplexityParams,
        kl: crate::perplexity::KlMode,
        progress: &mut dyn FnMut(&crate::perplexity::ChunkProgress),
    ) -> Result<crate::perplexity::PerplexityResult, EngineError> {
        if params.n_ctx > self.backend.n_ctx() {
            return Err(EngineError::PerplexityInput {
                msg: format!(
                    "a context of {} tokens was asked for; the engine was loaded with {}",
                    params.n_ctx,
                    self.backend.n_ctx()
                ),
            });
        }
        let n_vocab = self.backend.n_vocab();
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::BadToken { id: bad, n_vocab });
        }
        let bos = if self.tokenizer.add_bos() {
            self.tokenizer.bos()
        } else {
            None
        };
        self.session.forget();
        let backend = &mut self.backend;
        let mut eval = |toks: &[u32], pos0: usize, out: &mut Vec<f32>| {
            let kept = backend.truncate(pos0);
            if kept != pos0 {
                return Err(EngineError::Internal {
                    msg: format!("perplexity: the cache cannot go back to position {pos0}"),
                });
            }
            backend.forward(toks, pos0, true, out)
        };
        let r = crate::perplexity::run(&mut eval, n_vocab, tokens, bos, params, kl, progress);
        self.session.clear(&mut self.backend);
        r
    }
}
