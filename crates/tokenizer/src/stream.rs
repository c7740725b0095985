//! Incremental detokenization for streaming output: token bytes go in, only complete UTF-8
//! characters come out. A character split across tokens (byte-level BPE and byte-fallback
//! tokens split emoji and CJK this way) is held back until its last byte arrives.

use crate::Tokenizer;

/// See [`Tokenizer::stream`].
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    /// Bytes received but not yet emitted (at most the start of one character, after a push).
    pending: Vec<u8>,
    /// The text emitted by the last `push`.
    out: String,
}

impl<'a> StreamDecoder<'a> {
    pub(crate) fn new(tok: &'a Tokenizer) -> StreamDecoder<'a> {
        StreamDecoder {
            tok,
            pending: Vec::with_capacity(16),
            out: String::with_capacity(64),
        }
    }

    /// Feed one token; returns the text that is now complete (possibly empty). Invalid
    /// byte sequences (that no later byte can complete) come out as U+FFFD.
    pub fn push(&mut self, id: u32) -> &str {
        self.out.clear();
        self.pending.extend_from_slice(self.tok.token_bytes(id));
        let mut done = 0;
        loop {
            match std::str::from_utf8(&self.pending[done..]) {
                Ok(s) => {
                    self.out.push_str(s);
                    done = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = done + e.valid_up_to();
                    // The bytes before the error are valid, so this always succeeds.
                    if let Ok(s) = std::str::from_utf8(&self.pending[done..valid]) {
                        self.out.push_str(s);
                    }
                    match e.error_len() {
                        Some(bad) => {
                            self.out.push(char::REPLACEMENT_CHARACTER);
                            done = valid + bad;
                        }
                        None => {
                            // An incomplete character at the end: keep it for the next token.
                            done = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..done);
        &self.out
    }

    /// Whether bytes of an unfinished character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Flush what is held back (an unfinished character becomes U+FFFD) and reset.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
