//! llama.cpp's WordPiece (`tokenizer.ggml.model = "bert"`, its `WPM` type) over a GGUF
//! vocabulary, for parity with llama.cpp (the Hugging Face flavour of WordPiece, used for the
//! encoders' `tokenizer.json`, is [`crate::wordpiece`]).
//!
//! llama.cpp's converter writes a word-initial piece as `▁piece` and a continuation piece bare.
//! Encoding a fragment:
//! 1. NFD when accents are stripped; then per character: whitespace ends the word; NUL,
//!    U+FFFD and control characters (category C) are dropped; with `strip_accents`, marks
//!    (category M) are dropped; the character is lowercased when `lowercase`; punctuation
//!    (category P), ASCII symbols and CJK ideographs are words of one character;
//! 2. each word, as `▁word`, is cut greedily into the longest vocabulary strings from the
//!    left (byte positions, at most the longest token's length); a word with a part that
//!    matches nothing becomes the unknown token.

use crate::unicode::{flags, in_table, F_MARK, F_PUNCT, F_SPACE};
use crate::vocab::Vocab;
use crate::wordpiece::{is_chinese_char, nfd};
use crate::wordpiece_tables::OTHER;

/// The normalizer switches (`tokenizer.ggml.normalizer.lowercase` / `.strip_accents`).
#[derive(Clone, Copy, Debug)]
pub struct Wpm {
    pub lowercase: bool,
    pub strip_accents: bool,
    /// Longest token, in bytes.
    pub max_token_len: usize,
    pub unk: Option<u32>,
}

/// ASCII symbols (category S): `$ + < = > ^ ` | ~`.
fn is_ascii_symbol(c: char) -> bool {
    matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~')
}

impl Wpm {
    /// Appends the ids of `text` (one fragment, no special tokens) to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut chars: Vec<char> = text.chars().collect();
        if self.strip_accents {
            let mut tmp = Vec::with_capacity(chars.len());
            nfd(&mut chars, &mut tmp);
        }
        let mut word = String::from("\u{2581}");
        let flush = |word: &mut String, out: &mut Vec<u32>| {
            if word.len() > '\u{2581}'.len_utf8() {
                self.word(vocab, word.as_bytes(), out);
            }
            word.truncate('\u{2581}'.len_utf8());
        };
        for c in chars {
            let f = flags(c);
            if f & F_SPACE != 0 {
                flush(&mut word, out);
                continue;
            }
            if c == '\0' || c == '\u{FFFD}' || in_table(OTHER, c as u32) {
                continue;
            }
            if self.strip_accents && f & F_MARK != 0 {
                continue;
            }
            let c = if self.lowercase {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                c
            };
            if f & F_PUNCT != 0 || is_ascii_symbol(c) || is_chinese_char(c) {
                flush(&mut word, out);
                word.push(c);
                flush(&mut word, out);
            } else {
                word.push(c);
            }
        }
        flush(&mut word, out);
    }

    /// Greedy longest match of one `▁word`.
    fn word(&self, vocab: &Vocab, w: &[u8], out: &mut Vec<u32>) {
        let mark = out.len();
        let n = w.len();
        let mut i = 0;
        while i < n {
            let longest = n.min(i + self.max_token_len + 1);
            match (i + 1..=longest)
                .rev()
                .find_map(|j| vocab.get(&w[i..j]).map(|id| (j, id)))
            {
                Some((j, id)) => {
                    out.push(id);
                    i = j;
                }
                None => {
                    out.truncate(mark);
                    break;
                }
            }
        }
        if out.len() == mark {
            out.extend(self.unk);
        }
    }
}
