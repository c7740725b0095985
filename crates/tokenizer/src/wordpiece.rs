//! WordPiece, the tokenizer of BERT-family encoders, as Hugging Face `tokenizers` runs it.
//!
//! Encoding a text:
//! 1. added tokens (`[CLS]`, `[SEP]`, `[MASK]`, ... written in the text) are cut out first and
//!    kept whole, as `tokenizers` does for its unnormalized added tokens;
//! 2. each other fragment goes through the **BertNormalizer**: clean text (drop NUL, U+FFFD
//!    and category C except tab / newline / return; every whitespace becomes a space), spaces
//!    around CJK ideographs, strip accents (NFD, then drop category Mn) when `strip_accents`
//!    says so (unset = follow `lowercase`), lowercase (per character);
//! 3. **BertPreTokenizer**: split at whitespace (dropped) and around every punctuation
//!    character (ASCII punctuation or category P);
//! 4. **WordPiece** per word: greedy longest match from the left, pieces after the first
//!    written with the `##` prefix; a word of more than `max_input_chars_per_word` (100)
//!    characters, or one with a part that matches nothing, becomes one `[UNK]`;
//! 5. `[CLS] ... [SEP]` around it, after cutting the content to `max_len - 2` tokens.
//!
//! Loaded from `tokenizer.json` ([`WordPiece::from_tokenizer_json`]), `vocab.txt` plus an
//! optional `tokenizer_config.json` ([`WordPiece::from_vocab_txt`]) or GGUF metadata with
//! `tokenizer.ggml.model = "bert"` ([`WordPiece::from_gguf`]: llama.cpp's converter writes
//! word-initial pieces with a leading `▁` and continuation pieces bare; they are turned back
//! into the `##` convention here). Unicode data beyond [`crate::unicode`] is in
//! `wordpiece_tables.rs` (written by `tools/gen_wordpiece_tables.py`).

use std::path::{Path, PathBuf};

use gguf::GgufFile;
use serde_json::Value;

use crate::error::TokenizerError;
use crate::unicode::{flags, in_table, F_PUNCT};
use crate::vocab::Vocab;
use crate::wordpiece_tables::{
    COMBINING_CLASS, DECOMP_CHARS, DECOMP_INDEX, MARK_NONSPACING, OTHER,
};

/// BertNormalizer's switches (`tokenizer.json` `normalizer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BertNormalizer {
    pub clean_text: bool,
    pub handle_chinese_chars: bool,
    /// `None`: strip accents exactly when lowercasing.
    pub strip_accents: Option<bool>,
    pub lowercase: bool,
}

impl Default for BertNormalizer {
    /// The uncased BERT setting.
    fn default() -> Self {
        BertNormalizer {
            clean_text: true,
            handle_chinese_chars: true,
            strip_accents: None,
            lowercase: true,
        }
    }
}

/// A WordPiece tokenizer. Immutable; share it freely between threads.
pub struct WordPiece {
    /// Token strings in the `##` convention.
    vocab: Vocab,
    normalizer: BertNormalizer,
    prefix: String,
    max_chars: usize,
    unk: u32,
    cls: u32,
    sep: u32,
    pad: u32,
    /// Added tokens matched in the raw text: (content, id), longest first.
    added: Vec<(String, u32)>,
    /// Encodings are cut to this many ids, `[CLS]` and `[SEP]` included.
    max_len: Option<usize>,
}

impl std::fmt::Debug for WordPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPiece")
            .field("n_vocab", &self.vocab.len())
            .field("normalizer", &self.normalizer)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// BERT's notion of a control character: category C, except tab, newline and return.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && in_table(OTHER, c as u32)
}

fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// The CJK ideograph blocks BERT puts spaces around.
pub(crate) fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

fn is_bert_punct(c: char) -> bool {
    c.is_ascii_punctuation() || flags(c) & F_PUNCT != 0
}

fn combining_class(c: char) -> u8 {
    let cp = c as u32;
    let i = COMBINING_CLASS.partition_point(|&(start, _, _)| start <= cp);
    match i.checked_sub(1).map(|i| COMBINING_CLASS[i]) {
        Some((_, end, class)) if cp <= end => class,
        _ => 0,
    }
}

/// Appends the canonical decomposition of `c` to `out` (Hangul syllables by arithmetic).
fn decompose(c: char, out: &mut Vec<char>) {
    const S_BASE: u32 = 0xAC00;
    const S_COUNT: u32 = 11172;
    let cp = c as u32;
    if (S_BASE..S_BASE + S_COUNT).contains(&cp) {
        let s = cp - S_BASE;
        let l = 0x1100 + s / 588;
        let v = 0x1161 + (s % 588) / 28;
        let t = 0x11A7 + s % 28;
        out.extend([l, v].iter().filter_map(|&x| char::from_u32(x)));
        if t != 0x11A7 {
            out.extend(char::from_u32(t));
        }
        return;
    }
    match DECOMP_INDEX.binary_search_by_key(&cp, |&(k, _, _)| k) {
        Ok(i) => {
            let (_, start, len) = DECOMP_INDEX[i];
            let d = &DECOMP_CHARS[start as usize..start as usize + len as usize];
            out.extend(d.iter().filter_map(|&x| char::from_u32(x)));
        }
        Err(_) => out.push(c),
    }
}

/// NFD of `chars` (decomposition, then canonical ordering of combining marks), in place
/// through the scratch buffer `tmp`.
pub(crate) fn nfd(chars: &mut Vec<char>, tmp: &mut Vec<char>) {
    tmp.clear();
    for &c in chars.iter() {
        decompose(c, tmp);
    }
    // Stable sort of every run of nonzero combining class (insertion sort: runs are short).
    let mut i = 0;
    while i < tmp.len() {
        if combining_class(tmp[i]) == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < tmp.len() && combining_class(tmp[i]) != 0 {
            i += 1;
        }
        let run = &mut tmp[start..i];
        for j in 1..run.len() {
            let mut k = j;
            while k > 0 && combining_class(run[k - 1]) > combining_class(run[k]) {
                run.swap(k - 1, k);
                k -= 1;
            }
        }
    }
    std::mem::swap(chars, tmp);
}

impl BertNormalizer {
    /// The normalized text of `text`.
    pub fn normalize(&self, text: &str) -> String {
        // [n_chars] working buffers
        let mut chars: Vec<char> = Vec::with_capacity(text.len());
        for c in text.chars() {
            if self.clean_text {
                if c == '\0' || c == '\u{FFFD}' || is_control(c) {
                    continue;
                }
                if is_bert_whitespace(c) {
                    chars.push(' ');
                    continue;
                }
            }
            if self.handle_chinese_chars && is_chinese_char(c) {
                chars.extend([' ', c, ' ']);
            } else {
                chars.push(c);
            }
        }
        if self.strip_accents.unwrap_or(self.lowercase) {
            let mut tmp = Vec::with_capacity(chars.len());
            nfd(&mut chars, &mut tmp);
            chars.retain(|&c| !in_table(MARK_NONSPACING, c as u32));
        }
        let mut out = String::with_capacity(chars.len());
        for c in chars {
            if self.lowercase {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// The lengths two texts of `n1` and `n2` tokens keep under `longest_first` truncation to
/// `room` content tokens (the rule of the `tokenizers` library's `truncate_encodings`).
pub fn longest_first(n1: usize, n2: usize, room: usize) -> (usize, usize) {
    if n1 + n2 <= room {
        return (n1, n2);
    }
    let swap = n1 > n2;
    let short = n1.min(n2);
    // Both over: the longer keeps what the shorter leaves, unless the shorter takes more
    // than half; then both get half.
    let (s, l) = if 2 * short > room {
        (room / 2, room / 2 + room % 2)
    } else {
        (short, room - short)
    };
    if swap {
        (l, s)
    } else {
        (s, l)
    }
}

/// Calls `f` on each word of BERT's pre-tokenization of `text` (normalized): split at
/// whitespace, every punctuation character a word of its own.
pub fn bert_words<'t>(text: &'t str, mut f: impl FnMut(&'t str)) {
    let mut start = None;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if ws || is_bert_punct(c) {
            if let Some(s) = start.take() {
                f(&text[s..i]);
            }
            if !ws {
                f(&text[i..i + c.len_utf8()]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

fn invalid(path: &Path, key: &str, msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        msg: msg.into(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    std::fs::read(path).map_err(|e| invalid(path, "(file)", format!("cannot read: {e}")))
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    serde_json::from_slice(&read_file(path)?)
        .map_err(|e| invalid(path, "(file)", format!("bad JSON: {e}")))
}

/// Ids of the special tokens, looked up by text where not given.
struct Specials {
    unk: Option<u32>,
    cls: Option<u32>,
    sep: Option<u32>,
    pad: Option<u32>,
}

impl WordPiece {
    fn build(
        path: &Path,
        tokens: &[&str],
        normalizer: BertNormalizer,
        prefix: String,
        max_chars: usize,
        sp: Specials,
        mut added: Vec<(String, u32)>,
    ) -> Result<WordPiece, TokenizerError> {
        let vocab = Vocab::new(tokens).map_err(|(a, b)| {
            invalid(
                path,
                "vocab",
                format!("tokens {a} and {b} are both {:?}", tokens[a as usize]),
            )
        })?;
        let n = vocab.len() as u32;
        let find = |given: Option<u32>, text: &str, what: &str| -> Result<u32, TokenizerError> {
            match given.or_else(|| vocab.get(text.as_bytes())) {
                Some(id) if id < n => Ok(id),
                Some(id) => Err(invalid(
                    path,
                    what,
                    format!("id {id} is outside the vocabulary of {n} tokens"),
                )),
                None => Err(invalid(
                    path,
                    what,
                    format!("no {text} token in the vocabulary"),
                )),
            }
        };
        let unk = find(sp.unk, "[UNK]", "unk_token")?;
        let cls = find(sp.cls, "[CLS]", "cls_token")?;
        let sep = find(sp.sep, "[SEP]", "sep_token")?;
        let pad = find(sp.pad, "[PAD]", "pad_token").unwrap_or(0);
        if let Some((t, id)) = added.iter().find(|(t, id)| *id >= n || t.is_empty()) {
            return Err(invalid(
                path,
                "added_tokens",
                format!("{t:?} has id {id}, outside the vocabulary of {n} tokens, or is empty"),
            ));
        }
        added.sort_by_key(|a| std::cmp::Reverse(a.0.len()));
        Ok(WordPiece {
            vocab,
            normalizer,
            prefix,
            max_chars,
            unk,
            cls,
            sep,
            pad,
            added,
            max_len: None,
        })
    }

    /// From a `tokenizer.json` whose model is WordPiece (normalizer, added tokens and
    /// `[CLS]` / `[SEP]` from the file; its own truncation and padding are ignored: callers
    /// set [`WordPiece::set_max_len`] from the model's config).
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<WordPiece, TokenizerError> {
        let path = path.as_ref();
        let j = read_json(path)?;
        let model = &j["model"];
        if model["type"].as_str() != Some("WordPiece") {
            return Err(invalid(
                path,
                "model.type",
                format!("{} is not \"WordPiece\"", model["type"]),
            ));
        }
        let Some(vocab) = model["vocab"].as_object() else {
            return Err(invalid(path, "model.vocab", "not an object of token -> id"));
        };
        let mut slots: Vec<Option<&str>> = vec![None; vocab.len()];
        for (tok, id) in vocab {
            let id = id
                .as_u64()
                .filter(|&i| (i as usize) < slots.len())
                .ok_or_else(|| {
                    invalid(
                        path,
                        "model.vocab",
                        format!("{tok:?} has id {id}, not in 0..{}", slots.len()),
                    )
                })?;
            if slots[id as usize].replace(tok).is_some() {
                return Err(invalid(
                    path,
                    "model.vocab",
                    format!("id {id} is used twice"),
                ));
            }
        }
        let tokens: Vec<&str> = slots
            .iter()
            .map(|s| s.expect("ids are a permutation"))
            .collect();

        let nj = &j["normalizer"];
        let normalizer = match nj["type"].as_str() {
            None => BertNormalizer {
                clean_text: false,
                handle_chinese_chars: false,
                strip_accents: Some(false),
                lowercase: false,
            },
            Some("BertNormalizer") => BertNormalizer {
                clean_text: nj["clean_text"].as_bool().unwrap_or(true),
                handle_chinese_chars: nj["handle_chinese_chars"].as_bool().unwrap_or(true),
                strip_accents: nj["strip_accents"].as_bool(),
                lowercase: nj["lowercase"].as_bool().unwrap_or(true),
            },
            Some(other) => {
                return Err(invalid(
                    path,
                    "normalizer.type",
                    format!("\"{other}\" is not supported (BertNormalizer is)"),
                ))
            }
        };
        match j["pre_tokenizer"]["type"].as_str() {
            None | Some("BertPreTokenizer") => {}
            Some(other) => {
                return Err(invalid(
                    path,
                    "pre_tokenizer.type",
                    format!("\"{other}\" is not supported (BertPreTokenizer is)"),
                ))
            }
        }
        let mut added = Vec::new();
        for t in j["added_tokens"].as_array().into_iter().flatten() {
            if let (Some(content), Some(id)) = (t["content"].as_str(), t["id"].as_u64()) {
                added.push((content.to_string(), id as u32));
            }
        }
        let post_id = |name: &str| {
            j["post_processor"]["special_tokens"][name]["ids"][0]
                .as_u64()
                .map(|i| i as u32)
                .or_else(|| {
                    // BertProcessing: "cls": ["[CLS]", 101]
                    j["post_processor"][name.trim_matches(['[', ']']).to_lowercase()][1]
                        .as_u64()
                        .map(|i| i as u32)
                })
        };
        let unk_text = model["unk_token"].as_str().unwrap_or("[UNK]");
        let sp = Specials {
            unk: vocab
                .get(unk_text)
                .and_then(|v| v.as_u64())
                .map(|i| i as u32),
            cls: post_id("[CLS]"),
            sep: post_id("[SEP]"),
            pad: j["padding"]["pad_id"].as_u64().map(|i| i as u32),
        };
        if sp.unk.is_none() {
            return Err(invalid(
                path,
                "model.unk_token",
                format!("{unk_text:?} is not in the vocabulary"),
            ));
        }
        let prefix = model["continuing_subword_prefix"]
            .as_str()
            .unwrap_or("##")
            .to_string();
        let max_chars = model["max_input_chars_per_word"].as_u64().unwrap_or(100) as usize;
        Self::build(path, &tokens, normalizer, prefix, max_chars, sp, added)
    }

    /// From `vocab.txt` (one token a line, id = line number); the normalizer from a
    /// `tokenizer_config.json` in the same folder when there is one (`do_lower_case`,
    /// `strip_accents`, `tokenize_chinese_chars`), else uncased BERT's.
    pub fn from_vocab_txt(path: impl AsRef<Path>) -> Result<WordPiece, TokenizerError> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| invalid(path, "(file)", format!("not UTF-8: {e}")))?;
        let tokens: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        let mut normalizer = BertNormalizer::default();
        let cfg_path = path.with_file_name("tokenizer_config.json");
        if cfg_path.is_file() {
            let c = read_json(&cfg_path)?;
            if let Some(b) = c["do_lower_case"].as_bool() {
                normalizer.lowercase = b;
            }
            normalizer.strip_accents = c["strip_accents"].as_bool();
            if let Some(b) = c["tokenize_chinese_chars"].as_bool() {
                normalizer.handle_chinese_chars = b;
            }
        }
        let added = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter_map(|t| {
                tokens
                    .iter()
                    .position(|x| x == t)
                    .map(|i| (t.to_string(), i as u32))
            })
            .collect();
        let sp = Specials {
            unk: None,
            cls: None,
            sep: None,
            pad: None,
        };
        Self::build(path, &tokens, normalizer, "##".into(), 100, sp, added)
    }

    /// From GGUF metadata with `tokenizer.ggml.model = "bert"`.
    pub fn from_gguf(file: &GgufFile) -> Result<WordPiece, TokenizerError> {
        let path: PathBuf = file.path().to_path_buf();
        let model = file.get_str("tokenizer.ggml.model")?;
        if model != "bert" {
            return Err(invalid(
                &path,
                "tokenizer.ggml.model",
                format!("\"{model}\" is not \"bert\" (WordPiece)"),
            ));
        }
        let raw = file.get_str_array("tokenizer.ggml.tokens")?;
        // Back to the `##` convention; a clash (two spellings of one piece) keeps the first
        // and makes the later one unreachable.
        let mut seen = std::collections::HashSet::with_capacity(raw.len());
        let mut tokens: Vec<String> = Vec::with_capacity(raw.len());
        for (i, t) in raw.iter().enumerate() {
            let t = if t.starts_with('[') && t.ends_with(']') {
                t.to_string()
            } else if let Some(word) = t.strip_prefix('\u{2581}') {
                word.to_string()
            } else {
                format!("##{t}")
            };
            let t = if seen.insert(t.clone()) {
                t
            } else {
                format!("\0dup{i}")
            };
            tokens.push(t);
        }
        let id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            Ok(match file.get(key) {
                None => None,
                Some(_) => Some(file.get_u32(key)?),
            })
        };
        let sp = Specials {
            unk: id("tokenizer.ggml.unknown_token_id")?,
            cls: id("tokenizer.ggml.cls_token_id")?.or(id("tokenizer.ggml.bos_token_id")?),
            sep: id("tokenizer.ggml.seperator_token_id")?.or(id("tokenizer.ggml.eos_token_id")?),
            pad: id("tokenizer.ggml.padding_token_id")?,
        };
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        // A vocabulary without "[UNK]" (such as a test file) falls back to id 0 for it.
        let sp = Specials {
            unk: sp
                .unk
                .or_else(|| refs.iter().position(|t| *t == "[UNK]").map(|i| i as u32))
                .or(Some(0)),
            ..sp
        };
        let added = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.len() > 2 && t.starts_with('[') && t.ends_with(']'))
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Self::build(
            &path,
            &refs,
            BertNormalizer::default(),
            "##".into(),
            100,
            sp,
            added,
        )
    }

    /// Cuts every encoding to `max_len` ids, `[CLS]` and `[SEP]` included (`None`: no limit).
    pub fn set_max_len(&mut self, max_len: Option<usize>) {
        self.max_len = max_len;
    }

    pub fn max_len(&self) -> Option<usize> {
        self.max_len
    }

    pub fn normalizer(&self) -> BertNormalizer {
        self.normalizer
    }

    pub fn set_normalizer(&mut self, n: BertNormalizer) {
        self.normalizer = n;
    }

    /// `[CLS] pieces of text [SEP]`, cut to [`WordPiece::max_len`].
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.cls];
        self.encode_pieces(text, &mut ids);
        if let Some(m) = self.max_len {
            ids.truncate(m.max(2) - 1);
        }
        ids.push(self.sep);
        ids
    }

    /// The pair encoding of a cross-encoder: `[CLS] a [SEP] b [SEP]` and its token types
    /// (0 up to the first `[SEP]` included, then 1), cut to [`WordPiece::max_len`] as the
    /// Hugging Face `tokenizers` library's `longest_first` does: with `room` = max_len - 3
    /// content tokens, when both texts do not fit, the shorter keeps all of itself if that
    /// leaves the longer at least as much, else each gets half of `room` (the second text,
    /// or the longer one when the first is longer, gets the odd one); the end of each is cut.
    pub fn encode_pair(&self, a: &str, b: &str) -> (Vec<u32>, Vec<u32>) {
        let mut pa = Vec::new();
        let mut pb = Vec::new();
        self.encode_pieces(a, &mut pa);
        self.encode_pieces(b, &mut pb);
        if let Some(m) = self.max_len {
            let (na, nb) = longest_first(pa.len(), pb.len(), m.saturating_sub(3));
            pa.truncate(na);
            pb.truncate(nb);
        }
        let mut ids = Vec::with_capacity(pa.len() + pb.len() + 3);
        ids.push(self.cls);
        ids.extend_from_slice(&pa);
        ids.push(self.sep);
        let first = ids.len();
        ids.extend_from_slice(&pb);
        ids.push(self.sep);
        let mut types = vec![0u32; ids.len()];
        types[first..].fill(1);
        (ids, types)
    }

    /// Appends the pieces of `text` to `out`, without `[CLS]` / `[SEP]` or truncation.
    pub fn encode_pieces(&self, text: &str, out: &mut Vec<u32>) {
        let mut rest = text;
        let mut scratch = String::new();
        while !rest.is_empty() {
            // The first added token in `rest` (longest at the same place).
            let mut hit: Option<(usize, usize, u32)> = None;
            for (t, id) in &self.added {
                if let Some(pos) = rest.find(t.as_str()) {
                    if hit.is_none_or(|(p, _, _)| pos < p) {
                        hit = Some((pos, t.len(), *id));
                    }
                }
            }
            let (plain, after) = match hit {
                Some((pos, len, id)) => {
                    self.encode_plain(&rest[..pos], out, &mut scratch);
                    out.push(id);
                    ("", &rest[pos + len..])
                }
                None => (rest, ""),
            };
            self.encode_plain(plain, out, &mut scratch);
            rest = after;
        }
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>, scratch: &mut String) {
        if text.is_empty() {
            return;
        }
        let norm = self.normalizer.normalize(text);
        bert_words(&norm, |w| self.word(w, out, scratch));
    }

    /// WordPiece of one word; `scratch` holds `##` + candidate pieces.
    fn word(&self, w: &str, out: &mut Vec<u32>, scratch: &mut String) {
        if w.chars().count() > self.max_chars {
            out.push(self.unk);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        while start < w.len() {
            let mut end = w.len();
            let mut found = None;
            while end > start {
                scratch.clear();
                if start > 0 {
                    scratch.push_str(&self.prefix);
                }
                scratch.push_str(&w[start..end]);
                if let Some(id) = self.vocab.get(scratch.as_bytes()) {
                    found = Some(id);
                    break;
                }
                // Back off by one character.
                end = w[..end]
                    .char_indices()
                    .next_back()
                    .map_or(start, |(i, _)| i);
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(mark);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }

    /// The token text (`##` convention).
    pub fn token_text(&self, id: u32) -> &str {
        self.vocab.text_or_empty(id)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.get(text.as_bytes())
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn unk_id(&self) -> u32 {
        self.unk
    }

    pub fn cls_id(&self) -> u32 {
        self.cls
    }

    pub fn sep_id(&self) -> u32 {
        self.sep
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let toks = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "a", "b", "##b",
            ",", ".", "cafe", "東", "hello",
        ];
        let added = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let sp = Specials {
            unk: None,
            cls: None,
            sep: None,
            pad: None,
        };
        WordPiece::build(
            Path::new("t"),
            &toks,
            BertNormalizer::default(),
            "##".into(),
            100,
            sp,
            added,
        )
        .unwrap()
    }

    #[test]
    fn normalizer() {
        let n = BertNormalizer::default();
        assert_eq!(n.normalize("Café\tCRÈME\u{200B}\u{0}x"), "cafe cremex");
        assert_eq!(n.normalize("cafe\u{301}"), "cafe");
        assert_eq!(n.normalize("大型"), " 大  型 ");
        // Hangul to jamo; the voiced mark of で is dropped.
        assert_eq!(n.normalize("안"), "\u{110B}\u{1161}\u{11AB}");
        assert_eq!(n.normalize("で"), "て");
        let cased = BertNormalizer {
            lowercase: false,
            ..n
        };
        assert_eq!(cased.normalize("Café"), "Café");
    }

    #[test]
    fn words() {
        let mut w = Vec::new();
        bert_words("  hi, there... $5 ", |x| w.push(x));
        assert_eq!(w, ["hi", ",", "there", ".", ".", ".", "$", "5"]);
    }

    #[test]
    fn wordpiece() {
        let t = tiny();
        assert_eq!(t.encode("unaffable"), [2, 5, 6, 7, 3]);
        assert_eq!(t.encode("A bbb, Café."), [2, 8, 9, 10, 10, 11, 13, 12, 3]);
        // A part that matches nothing makes the whole word one [UNK].
        assert_eq!(t.encode("unx"), [2, 1, 3]);
        assert_eq!(t.encode(&"b".repeat(101)), [2, 1, 3]);
        assert_eq!(t.encode(&"b".repeat(100)).len(), 102);
        assert_eq!(t.encode(""), [2, 3]);
        // Added tokens in the text are kept whole.
        assert_eq!(t.encode("a[SEP]b [MASK]"), [2, 8, 3, 9, 4, 3]);
        let mut t = t;
        t.set_max_len(Some(4));
        assert_eq!(t.encode("a b a b a"), [2, 8, 9, 3]);
    }

    #[test]
    fn longest_first_follows_tokenizers() {
        // Fits: nothing cut.
        assert_eq!(longest_first(3, 4, 7), (3, 4));
        // Only the longer is cut, to what the shorter leaves.
        assert_eq!(longest_first(2, 10, 7), (2, 5));
        assert_eq!(longest_first(10, 2, 7), (5, 2));
        // Both over half: halves, the odd one to the second (equal) or the longer.
        assert_eq!(longest_first(6, 6, 7), (3, 4));
        assert_eq!(longest_first(9, 6, 7), (4, 3));
        assert_eq!(longest_first(6, 9, 7), (3, 4));
        assert_eq!(longest_first(5, 5, 0), (0, 0));
    }

    #[test]
    fn pair_encoding_and_types() {
        let mut t = tiny();
        let (ids, types) = t.encode_pair("a b", "hello");
        assert_eq!(ids, [2, 8, 9, 3, 15, 3]);
        assert_eq!(types, [0, 0, 0, 0, 1, 1]);
        t.set_max_len(Some(6));
        let (ids, types) = t.encode_pair("a a a", "b b b");
        assert_eq!(ids, [2, 8, 3, 9, 9, 3]);
        assert_eq!(types, [0, 0, 0, 1, 1, 1]);
    }
}
