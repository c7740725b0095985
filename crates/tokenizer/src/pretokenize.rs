//! Pre-tokenizers for byte-level BPE: cut a text fragment into "words" before the merges run.
//!
//! Each pre-tokenizer is a chain of patterns, applied the way llama.cpp applies its list of
//! regexes: the first pattern cuts the text into pieces (its matches, and the gaps between
//! them), the next pattern cuts each of those pieces again, and so on. A piece boundary acts
//! as the end of the text for look-ahead. The patterns are written by hand here as
//! "does the regex match at this position, and where does the match end" functions that
//! follow the regex semantics (alternatives tried in order, greedy repetition with
//! backtracking where it matters).
//!
//! The regexes, by `tokenizer.ggml.pre` name:
//! - `gpt-2` (and `mpt`, `olmo`, ...): `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! - `smollm` (and `starcoder`, `refact`, ...): first `\p{N}` (every digit alone), then GPT-2.
//! - `default`: `[\p{P}\$\+<=>\^~\|]+`, then GPT-2, then `\p{N}+`, then `[0-9][0-9][0-9]`.
//! - `llama-bpe` (Llama 3): `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//!   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! - `qwen2`: the Llama 3 regex with `\p{N}` (single digits) instead of `\p{N}{1,3}`.

use std::ops::Range;

use crate::unicode::{flags, F_LETTER, F_NUMBER, F_PUNCT, F_SPACE};

/// The pre-tokenizer named by `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's `default` chain (punctuation runs, GPT-2, number runs, 3-digit groups).
    Default,
    /// The GPT-2 regex.
    Gpt2,
    /// Every digit alone, then the GPT-2 regex (SmolLM, StarCoder).
    DigitsThenGpt2,
    /// The Llama 3 regex family; `max_digits` is 3 for Llama 3, 1 for Qwen2.
    Llama3 { max_digits: usize },
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value, and whether llama.cpp skips the
    /// merges for words that are already whole tokens (`ignore_merges`). `None` for an
    /// unknown name.
    pub fn from_name(name: &str) -> Option<(PreTokenizer, bool)> {
        Some(match name {
            "" | "default" => (PreTokenizer::Default, false),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo"
            | "jais" | "trillion" | "exaone4" | "a.x-4.0" | "mellum" | "granite-docling" => {
                (PreTokenizer::Gpt2, false)
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => (PreTokenizer::DigitsThenGpt2, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => (PreTokenizer::Llama3 { max_digits: 3 }, true),
            "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" => {
                (PreTokenizer::Llama3 { max_digits: 3 }, false)
            }
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" | "hunyuan" => {
                (PreTokenizer::Llama3 { max_digits: 1 }, false)
            }
            _ => return None,
        })
    }

    /// Cut `text` into words; appends their byte ranges (in order, covering all of `text`)
    /// to `out`.
    pub fn split(self, text: &str, out: &mut Vec<Range<usize>>) {
        if text.is_empty() {
            return;
        }
        let chars = Chars::new(text);
        let n = chars.len();
        let mut pieces: Vec<Range<usize>> = std::iter::once(0..n).collect();
        match self {
            PreTokenizer::Default => {
                pieces = cut(&chars, &pieces, punct_run);
                pieces = cut(&chars, &pieces, gpt2);
                pieces = cut(&chars, &pieces, number_run);
                pieces = cut(&chars, &pieces, three_ascii_digits);
            }
            PreTokenizer::Gpt2 => pieces = cut(&chars, &pieces, gpt2),
            PreTokenizer::DigitsThenGpt2 => {
                pieces = cut(&chars, &pieces, one_number);
                pieces = cut(&chars, &pieces, gpt2);
            }
            PreTokenizer::Llama3 { max_digits } => {
                pieces = cut(&chars, &pieces, |c, pos, end| {
                    llama3(c, pos, end, max_digits)
                });
            }
        }
        out.extend(
            pieces
                .into_iter()
                .map(|r| chars.offs[r.start]..chars.offs[r.end]),
        );
    }
}

/// A text as characters with their flags and byte offsets.
struct Chars {
    cps: Vec<char>,
    flags: Vec<u8>,
    /// Byte offset of each character, plus the text length at the end.
    offs: Vec<usize>,
}

impl Chars {
    fn new(text: &str) -> Chars {
        let mut cps = Vec::with_capacity(text.len());
        let mut fl = Vec::with_capacity(text.len());
        let mut offs = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            cps.push(c);
            fl.push(flags(c));
            offs.push(i);
        }
        offs.push(text.len());
        Chars {
            cps,
            flags: fl,
            offs,
        }
    }

    fn len(&self) -> usize {
        self.cps.len()
    }

    fn is(&self, pos: usize, flag: u8) -> bool {
        self.flags[pos] & flag != 0
    }

    /// Not whitespace, not a letter, not a number: `[^\s\p{L}\p{N}]`.
    fn is_other(&self, pos: usize) -> bool {
        self.flags[pos] & (F_SPACE | F_LETTER | F_NUMBER) == 0
    }

    fn is_rn(&self, pos: usize) -> bool {
        matches!(self.cps[pos], '\r' | '\n')
    }

    /// End of the run of characters from `pos` (below `end`) that satisfy `pred`.
    fn run(&self, mut pos: usize, end: usize, pred: impl Fn(usize) -> bool) -> usize {
        while pos < end && pred(pos) {
            pos += 1;
        }
        pos
    }
}

/// Apply one pattern (a function giving where a match starting exactly at `pos` ends,
/// never empty, within `..end`) to every piece: each match becomes a piece, and so does each gap
/// between matches.
fn cut<F>(chars: &Chars, pieces: &[Range<usize>], pattern: F) -> Vec<Range<usize>>
where
    F: Fn(&Chars, usize, usize) -> Option<usize>,
{
    let mut out = Vec::with_capacity(pieces.len() * 2);
    for piece in pieces {
        let end = piece.end;
        let mut gap_start = piece.start;
        let mut pos = piece.start;
        while pos < end {
            match pattern(chars, pos, end) {
                Some(m) => {
                    debug_assert!(m > pos && m <= end);
                    if gap_start < pos {
                        out.push(gap_start..pos);
                    }
                    out.push(pos..m);
                    pos = m;
                    gap_start = m;
                }
                None => pos += 1,
            }
        }
        if gap_start < end {
            out.push(gap_start..end);
        }
    }
    out
}

/// The GPT-2 regex `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
fn gpt2(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    let ch = c.cps[pos];
    if ch == '\'' && pos + 1 < end {
        match c.cps[pos + 1] {
            's' | 't' | 'm' | 'd' => return Some(pos + 2),
            c1 if pos + 2 < end => {
                if matches!((c1, c.cps[pos + 2]), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                    return Some(pos + 3);
                }
            }
            _ => {}
        }
    }
    // ` ?X+`: the optional space is U+0020 only; a space is never part of X itself.
    let q = if ch == ' ' { pos + 1 } else { pos };
    if q < end {
        if c.is(q, F_LETTER) {
            return Some(c.run(q + 1, end, |i| c.is(i, F_LETTER)));
        }
        if c.is(q, F_NUMBER) {
            return Some(c.run(q + 1, end, |i| c.is(i, F_NUMBER)));
        }
        if c.is_other(q) {
            return Some(c.run(q + 1, end, |i| c.is_other(i)));
        }
    }
    whitespace_tail(c, pos, end)
}

/// `\s+(?!\S)|\s+` at `pos`: a whitespace run leaves its last character to the next word
/// unless the run reaches the end.
fn whitespace_tail(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    if !c.is(pos, F_SPACE) {
        return None;
    }
    let run_end = c.run(pos + 1, end, |i| c.is(i, F_SPACE));
    if run_end == end || run_end - pos == 1 {
        Some(run_end)
    } else {
        Some(run_end - 1)
    }
}

/// The Llama 3 / Qwen2 regex (see the module docs), with `\p{N}{1,max_digits}`.
fn llama3(c: &Chars, pos: usize, end: usize, max_digits: usize) -> Option<usize> {
    let ch = c.cps[pos];
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if ch == '\'' && pos + 1 < end {
        let c1 = c.cps[pos + 1].to_ascii_lowercase();
        if matches!(c1, 's' | 't' | 'm' | 'd') {
            return Some(pos + 2);
        }
        if pos + 2 < end {
            let c2 = c.cps[pos + 2].to_ascii_lowercase();
            if matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                return Some(pos + 3);
            }
        }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if !(c.is_rn(pos) || c.is(pos, F_NUMBER))
        && (c.is(pos, F_LETTER) || (pos + 1 < end && c.is(pos + 1, F_LETTER)))
    {
        return Some(c.run(pos + 1, end, |i| c.is(i, F_LETTER)));
    }
    // \p{N}{1,max}
    if c.is(pos, F_NUMBER) {
        let limit = (pos + max_digits).min(end);
        return Some(c.run(pos + 1, limit, |i| c.is(i, F_NUMBER)));
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let q = if ch == ' ' { pos + 1 } else { pos };
    if q < end && c.is_other(q) {
        let p = c.run(q + 1, end, |i| c.is_other(i));
        return Some(c.run(p, end, |i| c.is_rn(i)));
    }
    if !c.is(pos, F_SPACE) {
        return None;
    }
    // \s*[\r\n]+ : up to and including the last \r or \n of the whitespace run.
    let run_end = c.run(pos, end, |i| c.is(i, F_SPACE));
    if let Some(last) = (pos..run_end).rev().find(|&i| c.is_rn(i)) {
        return Some(last + 1);
    }
    whitespace_tail(c, pos, end)
}

/// `\p{N}`: one number character.
fn one_number(c: &Chars, pos: usize, _end: usize) -> Option<usize> {
    c.is(pos, F_NUMBER).then_some(pos + 1)
}

/// `\p{N}+`.
fn number_run(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    c.is(pos, F_NUMBER)
        .then(|| c.run(pos + 1, end, |i| c.is(i, F_NUMBER)))
}

/// `[0-9][0-9][0-9]`.
fn three_ascii_digits(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    (pos + 3 <= end && c.cps[pos..pos + 3].iter().all(|d| d.is_ascii_digit())).then_some(pos + 3)
}

/// `[\p{P}\$\+<=>\^~\|]+` (llama.cpp reads ASCII `\p{P}` as ``!-#%-*,-/:-;?-@[-]_{}``,
/// which leaves out the backtick).
fn punct_run(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    let is = |i: usize| {
        let ch = c.cps[i];
        if ch.is_ascii() {
            ch.is_ascii_punctuation() && ch != '`'
        } else {
            c.is(i, F_PUNCT)
        }
    };
    is(pos).then(|| c.run(pos + 1, end, is))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreTokenizer, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        pre.split(text, &mut out);
        out.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_basics() {
        let p = PreTokenizer::Gpt2;
        assert_eq!(words(p, "Hello world"), ["Hello", " world"]);
        assert_eq!(words(p, "   leading"), ["  ", " leading"]);
        assert_eq!(words(p, "trailing   "), ["trailing", "   "]);
        assert_eq!(words(p, "it's I'll"), ["it", "'s", " I", "'ll"]);
        assert_eq!(words(p, "a\tb"), ["a", "\t", "b"]);
        assert_eq!(words(p, "x 123!!"), ["x", " 123", "!!"]);
        assert_eq!(words(p, "\n\n\n"), ["\n\n\n"]);
        assert_eq!(words(p, "a\r\nb"), ["a", "\r", "\n", "b"]);
    }

    #[test]
    fn smollm_digits() {
        let p = PreTokenizer::DigitsThenGpt2;
        assert_eq!(
            words(p, "year 2024!"),
            ["year", " ", "2", "0", "2", "4", "!"]
        );
    }

    #[test]
    fn default_chain() {
        let p = PreTokenizer::Default;
        assert_eq!(
            words(p, "Mr. Bennet, 12345"),
            ["Mr", ".", " Bennet", ",", " ", "123", "45"]
        );
    }

    #[test]
    fn llama3_and_qwen2() {
        let l3 = PreTokenizer::Llama3 { max_digits: 3 };
        let q = PreTokenizer::Llama3 { max_digits: 1 };
        assert_eq!(words(l3, "abc 12345"), ["abc", " ", "123", "45"]);
        assert_eq!(words(q, "abc 123"), ["abc", " ", "1", "2", "3"]);
        assert_eq!(words(q, "tab\tsep\t\tx"), ["tab", "\tsep", "\t", "\tx"]);
        assert_eq!(words(q, "a \n b"), ["a", " \n", " b"]);
        assert_eq!(words(q, "DON'T"), ["DON", "'T"]);
        assert_eq!(words(q, "x!!\n\ny"), ["x", "!!\n\n", "y"]);
    }
}
