//! [`Batch`]: the tokens of one forward pass, possibly from several sequences.

/// Most tokens one [`crate::Model::forward`] call accepts; split longer prompts into chunks.
pub const MAX_BATCH: usize = 512;

/// Tokens to evaluate together. Entry `i` is token `tokens[i]` at position `positions[i]` of the
/// sequence held in KV-cache slot `seq_ids[i]`; `logits[i]` asks for its logits row.
///
/// Rules (checked by [`crate::Model::forward`]): per slot, the batch's positions continue the
/// slot exactly (`len, len+1, …` in batch order, where `len` is the slot's filled length), and
/// stay below the cache's `n_ctx`. Entries of different slots may be interleaved freely.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    pub seq_ids: Vec<usize>,
    pub logits: Vec<bool>,
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
