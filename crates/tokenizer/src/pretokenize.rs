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
//! - `qwen35`: the Qwen2 regex with marks (`\p{M}`) counted with the letters:
//!   `[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+` and ` ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*`.
//! - `falcon`: ``[\p{P}\$\+<=>\^~\|`]+``, then GPT-2, then `[0-9][0-9][0-9]`.
//! - `deepseek-coder`: `[\r\n]`, `\s?\p{L}+`, `\s?\p{P}+`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}`.
//! - `deepseek-llm`: `[\r\n]`, `\s?[A-Za-zµÀ-Ö…]+` (an explicit list of cased-letter ranges,
//!   [`DEEPSEEK_LETTERS`]), `\s?[!-/:-~！-／：-～‘-‟　-。]+`, `\s+$`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}+`.
//! - `gemma4` (the `gemma4` tokenizer model, not a `pre` name): runs of newlines and runs of
//!   everything else (`[^\n]+|[\n]+`); spaces were written as `▁` before.
//!
//! llama.cpp runs the patterns it has no hand-written splitter for with `std::regex`, on a
//! copy of the text in which every non-ASCII whitespace character became U+000B; so in
//! those patterns `\s` is [`F_SPACE`] and an explicit range never matches a whitespace
//! character (U+3000 in `　-。`, for one).

use std::ops::Range;

use crate::unicode::{flags, in_table, F_LETTER, F_MARK, F_NUMBER, F_PUNCT, F_SPACE};

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
    /// Qwen 3.5: Qwen2's regex with combining marks counted as letters.
    Qwen35,
    /// Falcon: punctuation runs (backtick included), GPT-2, 3-digit groups.
    Falcon,
    /// DeepSeek Coder's chain.
    DeepseekCoder,
    /// DeepSeek LLM's chain.
    DeepseekLlm,
    /// Gemma 4: newline runs and the text between them.
    Newlines,
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
            "qwen35" => (PreTokenizer::Qwen35, false),
            "falcon" => (PreTokenizer::Falcon, false),
            "deepseek-coder" => (PreTokenizer::DeepseekCoder, false),
            "deepseek-llm" => (PreTokenizer::DeepseekLlm, false),
            "gemma4" => (PreTokenizer::Newlines, false),
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
                    llama3(c, pos, end, max_digits, 0)
                });
            }
            PreTokenizer::Qwen35 => {
                pieces = cut(&chars, &pieces, |c, pos, end| {
                    llama3(c, pos, end, 1, F_MARK)
                });
            }
            PreTokenizer::Falcon => {
                pieces = cut(&chars, &pieces, ascii_punct_run);
                pieces = cut(&chars, &pieces, gpt2);
                pieces = cut(&chars, &pieces, three_ascii_digits);
            }
            PreTokenizer::DeepseekCoder => {
                pieces = cut(&chars, &pieces, one_newline);
                pieces = cut(&chars, &pieces, |c, pos, end| {
                    space_then_run(c, pos, end, |i| c.is(i, F_LETTER))
                });
                pieces = cut(&chars, &pieces, |c, pos, end| {
                    space_then_run(c, pos, end, |i| c.is(i, F_PUNCT))
                });
                pieces = cut(&chars, &pieces, cjk_run);
                pieces = cut(&chars, &pieces, one_number);
            }
            PreTokenizer::DeepseekLlm => {
                pieces = cut(&chars, &pieces, one_newline);
                pieces = cut(&chars, &pieces, |c, pos, end| {
                    space_then_run(c, pos, end, |i| {
                        !c.is(i, F_SPACE) && in_table(DEEPSEEK_LETTERS, c.cps[i] as u32)
                    })
                });
                pieces = cut(&chars, &pieces, |c, pos, end| {
                    space_then_run(c, pos, end, |i| {
                        !c.is(i, F_SPACE) && in_table(DEEPSEEK_PUNCT, c.cps[i] as u32)
                    })
                });
                pieces = cut(&chars, &pieces, trailing_space);
                pieces = cut(&chars, &pieces, cjk_run);
                pieces = cut(&chars, &pieces, number_run);
            }
            PreTokenizer::Newlines => {
                pieces = cut(&chars, &pieces, |c, pos, end| {
                    let nl = c.cps[pos] == '\n';
                    Some(c.run(pos + 1, end, |i| (c.cps[i] == '\n') == nl))
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

/// The Llama 3 / Qwen2 regex (see the module docs), with `\p{N}{1,max_digits}`; `marks`
/// ([`F_MARK`] or 0) are the flags that count as letters besides [`F_LETTER`] (Qwen 3.5).
fn llama3(c: &Chars, pos: usize, end: usize, max_digits: usize, marks: u8) -> Option<usize> {
    let letter = F_LETTER | marks;
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
    // [^\r\n\p{L}\p{N}]?\p{L}+ (with marks: [^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+)
    if !(c.is_rn(pos) || c.is(pos, F_NUMBER))
        && (c.is(pos, letter) || (pos + 1 < end && c.is(pos + 1, letter)))
    {
        return Some(c.run(pos + 1, end, |i| c.is(i, letter)));
    }
    // \p{N}{1,max}
    if c.is(pos, F_NUMBER) {
        let limit = (pos + max_digits).min(end);
        return Some(c.run(pos + 1, limit, |i| c.is(i, F_NUMBER)));
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*` (with marks: ` ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*`)
    let other = |i: usize| c.is_other(i) && !c.is(i, marks);
    let q = if ch == ' ' { pos + 1 } else { pos };
    if q < end && other(q) {
        let p = c.run(q + 1, end, other);
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

/// ``[\p{P}\$\+<=>\^~\|`]+`` (Falcon): every ASCII punctuation character, and category P.
fn ascii_punct_run(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    let is = |i: usize| {
        let ch = c.cps[i];
        if ch.is_ascii() {
            ch.is_ascii_punctuation()
        } else {
            c.is(i, F_PUNCT)
        }
    };
    is(pos).then(|| c.run(pos + 1, end, is))
}

/// `[\r\n]`.
fn one_newline(c: &Chars, pos: usize, _end: usize) -> Option<usize> {
    c.is_rn(pos).then_some(pos + 1)
}

/// `\s?X+` for the class `x`: one optional whitespace character, then a run of `x`.
fn space_then_run(
    c: &Chars,
    pos: usize,
    end: usize,
    x: impl Fn(usize) -> bool + Copy,
) -> Option<usize> {
    if c.is(pos, F_SPACE) && pos + 1 < end && x(pos + 1) {
        return Some(c.run(pos + 2, end, x));
    }
    x(pos).then(|| c.run(pos + 1, end, x))
}

/// `\s+$`: the whitespace that ends the piece.
fn trailing_space(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    (c.is(pos, F_SPACE) && c.run(pos + 1, end, |i| c.is(i, F_SPACE)) == end).then_some(end)
}

/// `[一-龥ࠀ-一가-퟿]+`: U+0800..=U+9FA5 and U+AC00..=U+D7FF, whitespace excepted.
fn cjk_run(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    let is = |i: usize| {
        matches!(c.cps[i] as u32, 0x0800..=0x9FA5 | 0xAC00..=0xD7FF) && !c.is(i, F_SPACE)
    };
    is(pos).then(|| c.run(pos + 1, end, is))
}

/// `[!-/:-~！-／：-～‘-‟　-。]` (DeepSeek LLM), as inclusive ranges.
const DEEPSEEK_PUNCT: &[(u32, u32)] = &[
    (0x0021, 0x002F),
    (0x003A, 0x007E),
    (0x2018, 0x201F),
    (0x3000, 0x3002),
    (0xFF01, 0xFF0F),
    (0xFF1A, 0xFF5E),
];

/// The letter class of DeepSeek LLM's second pattern (`[A-Za-zµÀ-ÖØ-öø-ƺ…𞤀-𞥃]`), as the
/// inclusive ranges its characters spell, sorted.
const DEEPSEEK_LETTERS: &[(u32, u32)] = &[
    (0x00041, 0x0005A),
    (0x00061, 0x0007A),
    (0x000B5, 0x000B5),
    (0x000C0, 0x000D6),
    (0x000D8, 0x000F6),
    (0x000F8, 0x001BA),
    (0x001BC, 0x001BF),
    (0x001C4, 0x00293),
    (0x00295, 0x002AF),
    (0x00370, 0x00373),
    (0x00376, 0x00377),
    (0x0037B, 0x0037D),
    (0x0037F, 0x0037F),
    (0x00386, 0x00386),
    (0x00388, 0x0038A),
    (0x0038C, 0x0038C),
    (0x0038E, 0x003A1),
    (0x003A3, 0x003F5),
    (0x003F7, 0x00481),
    (0x0048A, 0x0052F),
    (0x00531, 0x00556),
    (0x010A0, 0x010C5),
    (0x013A0, 0x013F5),
    (0x013F8, 0x013FD),
    (0x01C90, 0x01CBA),
    (0x01CBD, 0x01CBF),
    (0x01D00, 0x01D2B),
    (0x01D6B, 0x01D77),
    (0x01D79, 0x01D9A),
    (0x01E00, 0x01F15),
    (0x01F18, 0x01F1D),
    (0x01F20, 0x01F45),
    (0x01F48, 0x01F4D),
    (0x01F50, 0x01F57),
    (0x01F59, 0x01F59),
    (0x01F5B, 0x01F5B),
    (0x01F5D, 0x01F5D),
    (0x01F5F, 0x01F7D),
    (0x01F80, 0x01FB4),
    (0x01FB6, 0x01FBC),
    (0x01FBE, 0x01FBE),
    (0x01FC2, 0x01FC4),
    (0x01FC6, 0x01FCC),
    (0x01FD0, 0x01FD3),
    (0x01FD6, 0x01FDB),
    (0x01FE0, 0x01FEC),
    (0x01FF2, 0x01FF4),
    (0x01FF6, 0x01FFC),
    (0x02102, 0x02102),
    (0x02107, 0x02107),
    (0x0210A, 0x02113),
    (0x02115, 0x02115),
    (0x02119, 0x0211D),
    (0x02124, 0x02124),
    (0x02126, 0x02126),
    (0x02128, 0x02128),
    (0x0212A, 0x0212D),
    (0x0212F, 0x02134),
    (0x02139, 0x02139),
    (0x0213C, 0x0213F),
    (0x02145, 0x02149),
    (0x0214E, 0x0214E),
    (0x02183, 0x02184),
    (0x02C00, 0x02C7B),
    (0x02C7E, 0x02CE4),
    (0x02CEB, 0x02CEE),
    (0x02CF2, 0x02CF3),
    (0x0A640, 0x0A66D),
    (0x0A680, 0x0A69B),
    (0x0A722, 0x0A76F),
    (0x0A771, 0x0A787),
    (0x0A78B, 0x0A78E),
    (0x0AB70, 0x0ABBF),
    (0x0FB00, 0x0FB06),
    (0x0FB13, 0x0FB17),
    (0x0FF21, 0x0FF3A),
    (0x0FF41, 0x0FF5A),
    (0x10400, 0x1044F),
    (0x104B0, 0x104D3),
    (0x104D8, 0x104FB),
    (0x10C80, 0x10CB2),
    (0x10CC0, 0x10CF2),
    (0x118A0, 0x118DF),
    (0x1E900, 0x1E943),
];

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

    #[test]
    fn qwen35_keeps_marks_with_letters() {
        let q2 = PreTokenizer::Llama3 { max_digits: 1 };
        // "नमस्ते": the virama and vowel signs are marks.
        let text = "नमस्ते ok";
        assert_eq!(words(PreTokenizer::Qwen35, text), ["नमस्ते", " ok"]);
        assert_ne!(words(q2, text), words(PreTokenizer::Qwen35, text));
    }

    #[test]
    fn falcon_chain() {
        let p = PreTokenizer::Falcon;
        assert_eq!(words(p, "a`b 12345"), ["a", "`", "b", " ", "123", "45"]);
    }

    #[test]
    fn deepseek_chains() {
        let c = PreTokenizer::DeepseekCoder;
        // `=` is a symbol (S), not punctuation: it stays in the gap.
        assert_eq!(words(c, "x = 10;\n"), ["x", " = ", "1", "0", ";", "\n"]);
        assert_eq!(words(c, "你好 world"), ["你好", " world"]);
        let l = PreTokenizer::DeepseekLlm;
        assert_eq!(
            words(l, "Hello, world!  "),
            ["Hello", ",", " world", "!", "  "]
        );
        assert_eq!(words(l, "abc 123"), ["abc", " ", "123"]);
    }

    #[test]
    fn newline_runs() {
        let p = PreTokenizer::Newlines;
        assert_eq!(words(p, "a▁b\n\nc\n"), ["a▁b", "\n\n", "c", "\n"]);
    }
}
