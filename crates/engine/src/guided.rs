//! Constrained decoding for the engine: one [`grammar::Grammars`] per loaded model, built on
//! first use (the token trie of a 262k vocabulary takes a moment; most requests never need it).

use std::sync::{Arc, OnceLock};

use grammar::{Constraint, Grammars, Spec};
use tokenizer::Tokenizer;

use crate::EngineError;

/// The model's grammar compiler, built the first time a request brings a constraint.
#[derive(Debug, Default)]
pub(crate) struct GrammarCell(OnceLock<Grammars>);

impl GrammarCell {
    fn get(&self, tok: &Arc<Tokenizer>, n_vocab: usize) -> Result<&Grammars, EngineError> {
        if let Some(g) = self.0.get() {
            return Ok(g);
        }
        let built = Grammars::new(Arc::clone(tok), n_vocab)?;
        // Two threads may race to build it; either result is the same.
        let _ = self.0.set(built);
        Ok(self.0.get().expect("just set"))
    }

    /// Compiles `spec` for this model.
    pub(crate) fn compile(
        &self,
        tok: &Arc<Tokenizer>,
        n_vocab: usize,
        spec: &Spec,
    ) -> Result<Constraint, EngineError> {
        Ok(self.get(tok, n_vocab)?.compile(spec)?)
    }
}
