//! [`Batch`]: the tokens of one forward pass, possibly from several sequences.

/// Most tokens one [`crate::Model::forward`] call accepts; split longer prompts into chunks.
pub const MAX_BATCH: usize = 512;

/// Tokens to evaluate together. Entry `i` is token `tokens[i]` at position `positions[i]` of the
/// sequence held in KV-cache slot `seq_ids[i]`; `logits[i]` asks for its logits row.
///
/// Rules (checked by [`crate::Model::forward`]): per slot, the batch's positions continue the
/// slot exactly (`len, len+1, …` in batch order, where `len` is the slot's filled length), and
/// stay below the cache's `n_ctx`. Entries of different slots may be interleaved freely.
///
/// `types` holds each token's type id (BERT's segment: 0 for the first text of a pair, 1 for
/// the second), one per token, or nothing at all: empty means every token has type 0 (the
/// only type a decoder or a single text has).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    pub seq_ids: Vec<usize>,
    pub logits: Vec<bool>,
    /// `[n]` token types, or empty (all 0).
    pub types: Vec<u32>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// `tokens` of slot `seq` at positions `start..`, logits for the last token only (or for
    /// every token when `all_logits`).
    pub fn from_tokens(tokens: &[u32], start: u32, seq: usize, all_logits: bool) -> Batch {
        let mut b = Batch::new();
        b.push_seq(tokens, start, seq, all_logits);
        b
    }

    /// Appends one token.
    pub fn push(&mut self, token: u32, pos: u32, seq: usize, logits: bool) {
        self.tokens.push(token);
        self.positions.push(pos);
        self.seq_ids.push(seq);
        self.logits.push(logits);
        if !self.types.is_empty() {
            self.types.push(0);
        }
    }

    /// Appends one token of type `ty` (see [`Batch::types`]).
    pub fn push_typed(&mut self, token: u32, ty: u32, pos: u32, seq: usize, logits: bool) {
        if self.types.is_empty() && ty != 0 {
            // The tokens so far were all of type 0.
            self.types.resize(self.tokens.len(), 0);
        }
        self.push(token, pos, seq, logits);
        if let Some(last) = self.types.last_mut() {
            *last = ty;
        }
    }

    /// Appends `tokens` of slot `seq` with their `types` (as long as `tokens`) at positions
    /// `start..`, logits for the last one (or all).
    pub fn push_seq_typed(
        &mut self,
        tokens: &[u32],
        types: &[u32],
        start: u32,
        seq: usize,
        all_logits: bool,
    ) {
        for (i, (&t, &ty)) in tokens.iter().zip(types).enumerate() {
            let last = i + 1 == tokens.len();
            self.push_typed(t, ty, start + i as u32, seq, all_logits || last);
        }
    }

    /// The type of token `i` (0 when the batch has no types).
    pub fn type_of(&self, i: usize) -> u32 {
        self.types.get(i).copied().unwrap_or(0)
    }

    /// Appends `tokens` of slot `seq` at positions `start..`, logits for the last one (or all).
    pub fn push_seq(&mut self, tokens: &[u32], start: u32, seq: usize, all_logits: bool) {
        for (i, &t) in tokens.iter().enumerate() {
            let last = i + 1 == tokens.len();
            self.push(t, start + i as u32, seq, all_logits || last);
        }
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.positions.clear();
        self.seq_ids.clear();
        self.logits.clear();
        self.types.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of logits rows the batch asks for.
    pub fn n_outputs(&self) -> usize {
        self.logits.iter().filter(|&&l| l).count()
    }
}
