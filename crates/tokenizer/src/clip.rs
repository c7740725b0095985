//! CLIP's BPE tokenizer, read from a Hugging Face tokenizer folder (the `tokenizer/` and
//! `tokenizer_2/` folders of a diffusion pipeline), matching `CLIPTokenizerFast`.
//!
//! Map of this file:
//! - [`ClipTokenizer::from_dir`]: reads `vocab.json` (token -> id), `merges.txt` (`#version`
//!   line, then one `left right` rule per line, highest priority first),
//!   `tokenizer_config.json` and `special_tokens_map.json` (BOS / EOS / UNK / PAD token texts,
//!   `model_max_length`, `added_tokens_decoder`); every problem is a [`TokenizerError`]
//!   naming the file and the key or line.
//! - [`ClipTokenizer::encode`]: added tokens (every special token the configs name: BOS,
//!   EOS, UNK, PAD, `additional_special_tokens`, and `added_tokens_decoder`) are cut out of the
//!   raw text first, as transformers does; each text fragment between them
//!   is normalized ([`normalize`]: NFC, every run of whitespace -> one space, trimmed,
//!   lower-cased), split into words ([`split_words`]), and each word's UTF-8 bytes are merged
//!   by rank ([`ClipTokenizer::encode_word`]) with `</w>` on the word's last symbol. BOS in
//!   front, EOS after.
//! - [`ClipTokenizer::encode_padded`]: what a diffusion pipeline feeds its text encoder:
//!   truncated to `model_max_length` (77) keeping BOS and EOS, then padded with the folder's own
//!   pad id (49407 `<|endoftext|>` for SD's `tokenizer/`, 0 `!` for SDXL's `tokenizer_2/`).
//!
//! The merges work on token ids: a word starts as one symbol per byte (the token spelling the
//! byte through GPT-2's `bytes_to_unicode`, with `</w>` appended for the last byte), and the
//! adjacent pair with the lowest merge rank is merged (leftmost first on ties) until no pair
//! has a rule. A min-heap of candidate pairs keeps a word O(n log n).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasherDefault;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::bpe::PairHasher;
use crate::unicode::{byte_to_char_table, flags, is_whitespace, F_LETTER, F_NUMBER};
use crate::vocab::{Vocab, NONE};
use crate::TokenizerError;

/// The suffix CLIP's vocabulary puts on the last symbol of each word.
pub const END_OF_WORD: &str = "</w>";

/// `model_max_length` when the config does not say, or says a placeholder larger than any
/// real CLIP text encoder (transformers writes 1e30 for "unset").
pub const DEFAULT_MAX_LENGTH: usize = 77;

/// Defaults of `CLIPTokenizer` for the special tokens a folder does not name.
const DEFAULT_BOS: &str = "<|startoftext|>";
const DEFAULT_EOS: &str = "<|endoftext|>";

#[derive(Clone, Copy)]
struct Merge {
    /// Line of the rule among the rules of `merges.txt` (0 = highest priority).
    rank: u32,
    /// The token the pair becomes.
    result: u32,
}

type MergeMap = HashMap<u64, Merge, BuildHasherDefault<PairHasher>>;

fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// A CLIP tokenizer. Immutable; share it freely between threads.
pub struct ClipTokenizer {
    vocab: Vocab,
    merges: MergeMap,
    /// The token spelling each byte inside a word, or NONE. [256]
    byte_token: [u32; 256],
    /// The token spelling each byte as the last symbol of a word (`</w>` appended). [256]
    byte_token_end: [u32; 256],
    /// Added tokens matched in the raw text: (text, id), longest text first.
    added: Vec<(String, u32)>,
    bos: u32,
    eos: u32,
    pad: u32,
    unk: Option<u32>,
    max_length: usize,
}

/// A piece of raw text: plain text to normalize and merge, or an added token.
enum Piece {
    Text(Range<usize>),
    Token(u32),
}

fn read_text(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| TokenizerError::Json {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// A JSON file that may be absent (`Ok(None)`); present and unreadable or malformed is an error.
fn read_optional_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.exists() {
        return Ok(None);
    }
    let v = read_json(path)?;
    if !v.is_object() {
        return Err(TokenizerError::Json {
            path: path.to_path_buf(),
            msg: "expected a JSON object at the top level".into(),
        });
    }
    Ok(Some(v))
}

fn config_error(path: &Path, key: &str, msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Config {
        path: path.to_path_buf(),
        key: key.to_string(),
        msg: msg.into(),
    }
}

/// A special-token entry: a string, or an object with a string `content` (the form
/// `AddedToken` is serialized in).
fn token_content<'a>(v: &'a Value, path: &Path, key: &str) -> Result<&'a str, TokenizerError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Object(o) => o.get("content").and_then(Value::as_str).ok_or_else(|| {
            config_error(
                path,
                key,
                "expected a string or an object with a string 'content'",
            )
        }),
        _ => Err(config_error(
            path,
            key,
            "expected a string or an object with a string 'content'",
        )),
    }
}

/// The two optional config files of a tokenizer folder, with their paths.
struct Configs {
    files: Vec<(PathBuf, Value)>,
}

impl Configs {
    /// The text of special token `key` (`bos_token`, ...): `tokenizer_config.json` first, then
    /// `special_tokens_map.json`; `Ok(None)` when neither has it (or it is `null`).
    fn token(&self, key: &str) -> Result<Option<(&str, &Path)>, TokenizerError> {
        for (path, v) in &self.files {
            match v.get(key) {
                None | Some(Value::Null) => continue,
                Some(x) => return Ok(Some((token_content(x, path, key)?, path))),
            }
        }
        Ok(None)
    }
}

impl ClipTokenizer {
    /// Load a Hugging Face CLIP tokenizer folder: `vocab.json` and `merges.txt` (required),
    /// `tokenizer_config.json` and `special_tokens_map.json` (optional; `CLIPTokenizer`'s
    /// defaults apply to what they leave out: BOS `<|startoftext|>`, EOS = UNK = PAD
    /// `<|endoftext|>`, `model_max_length` 77).
    pub fn from_dir(dir: &Path) -> Result<ClipTokenizer, TokenizerError> {
        // --- vocab.json: {"token": id, ...}, ids exactly 0..n
        let vocab_path = dir.join("vocab.json");
        let vocab_json = read_json(&vocab_path)?;
        let Value::Object(map) = vocab_json else {
            return Err(TokenizerError::Json {
                path: vocab_path,
                msg: "expected an object mapping token strings to ids".into(),
            });
        };
        let n = map.len();
        let mut by_id: Vec<Option<&str>> = vec![None; n];
        for (tok, id) in &map {
            let id = id.as_u64().filter(|&i| (i as usize) < n).ok_or_else(|| {
                config_error(
                    &vocab_path,
                    tok,
                    format!("id {id} is not an integer below the vocabulary size {n}"),
                )
            })? as usize;
            if let Some(other) = by_id[id] {
                return Err(config_error(
                    &vocab_path,
                    tok,
                    format!("id {id} is also the id of {other:?}"),
                ));
            }
            by_id[id] = Some(tok);
        }
        // n distinct ids below n: every id 0..n is taken.
        let tokens: Vec<&str> = by_id.into_iter().map(|t| t.unwrap_or("")).collect();
        let vocab = Vocab::new(&tokens).map_err(|(a, b)| {
            config_error(
                &vocab_path,
                tokens[b as usize],
                format!("ids {a} and {b} have the same text"),
            )
        })?;

        // --- merges.txt: optional "#version" line, then "left right" per line
        let merges_path = dir.join("merges.txt");
        let merges_text = read_text(&merges_path)?;
        let mut merges = MergeMap::with_capacity_and_hasher(n, Default::default());
        let mut joined = String::new();
        let mut rank = 0u32;
        for (i, line) in merges_text.lines().enumerate() {
            if i == 0 && line.starts_with("#version") {
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let bad = |msg: &str| TokenizerError::MergeLine {
                path: merges_path.clone(),
                line: i + 1,
                entry: line.to_string(),
                msg: msg.to_string(),
            };
            let Some((a, b)) = line.split_once(' ') else {
                return Err(bad("expected two pieces separated by one space"));
            };
            if a.is_empty() || b.is_empty() || b.contains(' ') {
                return Err(bad("expected two pieces separated by one space"));
            }
            let (Some(ia), Some(ib)) = (vocab.get(a.as_bytes()), vocab.get(b.as_bytes())) else {
                return Err(bad("a piece is not in vocab.json"));
            };
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let Some(result) = vocab.get(joined.as_bytes()) else {
                return Err(bad("the merged piece is not in vocab.json"));
            };
            // A repeated rule keeps its first (highest) priority.
            merges
                .entry(pair_key(ia, ib))
                .or_insert(Merge { rank, result });
            rank += 1;
        }

        // --- byte symbols
        let byte_char = byte_to_char_table();
        let mut byte_token = [NONE; 256];
        let mut byte_token_end = [NONE; 256];
        let mut s = String::new();
        for b in 0..256 {
            s.clear();
            s.push(byte_char[b]);
            byte_token[b] = vocab.get(s.as_bytes()).unwrap_or(NONE);
            s.push_str(END_OF_WORD);
            byte_token_end[b] = vocab.get(s.as_bytes()).unwrap_or(NONE);
        }

        // --- special tokens and limits
        let mut files = Vec::new();
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let path = dir.join(name);
            if let Some(v) = read_optional_json(&path)? {
                files.push((path, v));
            }
        }
        let configs = Configs { files };
        let id_of = |key: &str, default: Option<&str>| -> Result<Option<u32>, TokenizerError> {
            let (text, path) = match configs.token(key)? {
                Some((t, p)) => (t, p.to_path_buf()),
                None => match default {
                    Some(d) => (d, dir.join("tokenizer_config.json")),
                    None => return Ok(None),
                },
            };
            vocab
                .get(text.as_bytes())
                .map(Some)
                .ok_or_else(|| config_error(&path, key, format!("{text:?} is not in vocab.json")))
        };
        let bos = id_of("bos_token", Some(DEFAULT_BOS))?.unwrap_or(NONE);
        let eos = id_of("eos_token", Some(DEFAULT_EOS))?.unwrap_or(NONE);
        let unk = id_of("unk_token", Some(DEFAULT_EOS))?;
        let pad_named = id_of("pad_token", None)?;
        let pad = pad_named.unwrap_or(eos);

        let mut max_length = DEFAULT_MAX_LENGTH;
        // Every special token the configs name is cut out of the raw text, as transformers
        // does (SDXL's `tokenizer_2` pads with `!`, so a `!` in its prompts is token 0 alone).
        let mut added: Vec<(String, u32)> = Vec::new();
        let mut specials = vec![Some(bos), Some(eos), unk, pad_named];
        for key in ["cls_token", "sep_token", "mask_token"] {
            specials.push(id_of(key, None)?);
        }
        for (path, cfg) in &configs.files {
            let key = "additional_special_tokens";
            let Some(list) = cfg.get(key).filter(|v| !v.is_null()) else {
                continue;
            };
            let list = list
                .as_array()
                .ok_or_else(|| config_error(path, key, "expected a list of tokens"))?;
            for (i, t) in list.iter().enumerate() {
                let k = format!("{key}[{i}]");
                let text = token_content(t, path, &k)?;
                let id = vocab.get(text.as_bytes()).ok_or_else(|| {
                    config_error(path, &k, format!("{text:?} is not in vocab.json"))
                })?;
                specials.push(Some(id));
            }
        }
        for t in specials.into_iter().flatten() {
            let text = vocab.text(t);
            if !text.is_empty() && !added.iter().any(|(a, _)| a == text) {
                added.push((text.to_string(), t));
            }
        }
        if let Some((path, cfg)) = configs
            .files
            .iter()
            .find(|(p, _)| p.ends_with("tokenizer_config.json"))
        {
            if let Some(v) = cfg.get("model_max_length") {
                let m = v
                    .as_f64()
                    .filter(|&m| m >= 3.0 && m.fract() == 0.0)
                    .ok_or_else(|| {
                        config_error(
                            path,
                            "model_max_length",
                            "expected an integer of at least 3",
                        )
                    })?;
                if m <= (1u64 << 20) as f64 {
                    max_length = m as usize;
                }
            }
            if let Some(v) = cfg.get("added_tokens_decoder") {
                let key = "added_tokens_decoder";
                let obj = v
                    .as_object()
                    .ok_or_else(|| config_error(path, key, "expected an object id -> token"))?;
                for (id, tok) in obj {
                    let key = format!("{key}.{id}");
                    let text = token_content(tok, path, &key)?;
                    let id: u32 = id
                        .parse()
                        .map_err(|_| config_error(path, &key, "the key is not a token id"))?;
                    if (id as usize) >= n || vocab.text(id) != text {
                        return Err(config_error(
                            path,
                            &key,
                            format!("{text:?} is not token {id} of vocab.json"),
                        ));
                    }
                    if !text.is_empty() && !added.iter().any(|(t, _)| t == text) {
                        added.push((text.to_string(), id));
                    }
                }
            }
        }
        // Longest first: at one position the longest added token wins.
        added.sort_by_key(|a| Reverse(a.0.len()));

        Ok(ClipTokenizer {
            vocab,
            merges,
            byte_token,
            byte_token_end,
            added,
            bos,
            eos,
            pad,
            unk,
            max_length,
        })
    }

    /// The token ids of `text` with BOS in front and EOS after; no truncation, no padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        self.encode_into(text, &mut out);
        out
    }

    /// [`ClipTokenizer::encode`], appending to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        out.push(self.bos);
        let mut norm = String::new();
        let mut words = Vec::new();
        let mut scratch = Scratch::default();
        for piece in self.partition(text) {
            match piece {
                Piece::Token(id) => out.push(id),
                Piece::Text(r) => {
                    normalize(&text[r], &mut norm);
                    words.clear();
                    split_words(&norm, &mut words);
                    for w in &words {
                        self.encode_word(norm[w.clone()].as_bytes(), out, &mut scratch);
                    }
                }
            }
        }
        out.push(self.eos);
    }

    /// What a diffusion pipeline feeds the text encoder: [`ClipTokenizer::encode`] cut to
    /// `model_max_length` tokens (the content is truncated, BOS and EOS stay), then padded to
    /// exactly `model_max_length` with this folder's pad id.
    pub fn encode_padded(&self, text: &str) -> Vec<u32> {
        let mut ids = self.encode(text);
        self.truncate_and_pad(&mut ids, self.max_length, self.pad);
        ids
    }

    /// Cut `ids` (BOS ... EOS) to `len` tokens keeping the final EOS, then pad to `len` with
    /// `pad`. `len` below 2 keeps the first `len` ids.
    pub fn truncate_and_pad(&self, ids: &mut Vec<u32>, len: usize, pad: u32) {
        if ids.len() > len {
            ids.truncate(len);
            if len >= 2 {
                ids[len - 1] = self.eos;
            }
        }
        ids.resize(len, pad);
    }

    /// Cut the raw text at the added tokens (leftmost match first, the longest at one
    /// position).
    fn partition(&self, text: &str) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut i = 0;
        let bytes = text.as_bytes();
        while i < bytes.len() {
            let hit = self
                .added
                .iter()
                .find(|(t, _)| bytes[i..].starts_with(t.as_bytes()));
            if let Some((t, id)) = hit {
                if start < i {
                    pieces.push(Piece::Text(start..i));
                }
                pieces.push(Piece::Token(*id));
                i += t.len();
                start = i;
            } else {
                i += 1;
            }
        }
        if start < bytes.len() {
            pieces.push(Piece::Text(start..bytes.len()));
        }
        pieces
    }

    /// Append the tokens of one word (its normalized UTF-8 bytes) to `out`.
    fn encode_word(&self, word: &[u8], out: &mut Vec<u32>, s: &mut Scratch) {
        let n = word.len();
        if n == 0 {
            return;
        }
        s.ids.clear();
        s.next.clear();
        s.prev.clear();
        s.heap.clear();
        for (i, &b) in word.iter().enumerate() {
            let last = i + 1 == n;
            s.ids.push(if last {
                self.byte_token_end[b as usize]
            } else {
                self.byte_token[b as usize]
            });
            s.prev.push(if i == 0 { NONE } else { i as u32 - 1 });
            s.next.push(if last { NONE } else { i as u32 + 1 });
        }
        for i in 1..n as u32 {
            self.push_pair(s, i - 1, i);
        }
        while let Some(Reverse((_, left, right_id, left_id))) = s.heap.pop() {
            let l = left as usize;
            let right = s.next[l];
            // Skip candidates made stale by an earlier merge of either side.
            if s.ids[l] != left_id || right == NONE || s.ids[right as usize] != right_id {
                continue;
            }
            let merged = self.merges[&pair_key(left_id, right_id)].result;
            s.ids[l] = merged;
            let after = s.next[right as usize];
            s.next[l] = after;
            s.ids[right as usize] = NONE;
            if after != NONE {
                s.prev[after as usize] = left;
                self.push_pair(s, left, after);
            }
            if s.prev[l] != NONE {
                self.push_pair(s, s.prev[l], left);
            }
        }
        let mut i = 0u32;
        while i != NONE {
            match s.ids[i as usize] {
                NONE => out.extend(self.unk),
                id => out.push(id),
            }
            i = s.next[i as usize];
        }
    }

    fn push_pair(&self, s: &mut Scratch, left: u32, right: u32) {
        let (a, b) = (s.ids[left as usize], s.ids[right as usize]);
        if a == NONE || b == NONE {
            return;
        }
        if let Some(m) = self.merges.get(&pair_key(a, b)) {
            s.heap.push(Reverse((m.rank, left, b, a)));
        }
    }

    /// `<|startoftext|>` (49406 in CLIP's vocabulary).
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// `<|endoftext|>` (49407).
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The pad id of this folder (`pad_token`; EOS when the folder names none).
    pub fn pad(&self) -> u32 {
        self.pad
    }

    /// `model_max_length` (77 for every CLIP text encoder).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The token's string in `vocab.json` (empty for ids outside the vocabulary).
    pub fn token_text(&self, id: u32) -> &str {
        self.vocab.text_or_empty(id)
    }

    /// The id of the token spelled exactly `text` in `vocab.json`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.get(text.as_bytes())
    }

    /// The position of the first EOS in `ids` (where CLIP pools), or the last position when
    /// there is none.
    pub fn eos_position(&self, ids: &[u32]) -> usize {
        ids.iter()
            .position(|&i| i == self.eos)
            .unwrap_or(ids.len().saturating_sub(1))
    }
}

/// Buffers reused across the words of one `encode` call.
#[derive(Default)]
struct Scratch {
    /// Token of each symbol (NONE once merged into its left neighbour). [n_bytes]
    ids: Vec<u32>,
    /// Linked list of live symbols. [n_bytes]
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Min-heap of (rank, left symbol, right token, left token): lowest rank, then leftmost.
    heap: BinaryHeap<Reverse<(u32, u32, u32, u32)>>,
}

/// CLIP's normalizer into `out`: NFC, every run of whitespace (`\s`) -> one space, leading and
/// trailing space removed, lower-cased character by character (`char::to_lowercase`, as the
/// tokenizers library does: no final-sigma rule).
pub fn normalize(text: &str, out: &mut String) {
    out.clear();
    let mut space = false;
    for c in text.nfc() {
        if is_whitespace(c as u32) {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
}

/// CLIP's pre-tokenizer: the matches of
/// `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` in order (so each digit is a
/// word of its own); whitespace between matches is dropped. Appends byte ranges to `out`.
pub fn split_words(text: &str, out: &mut Vec<Range<usize>>) {
    let class = |c: char| {
        if is_whitespace(c as u32) {
            Class::Space
        } else {
            match flags(c) {
                f if f & F_LETTER != 0 => Class::Letter,
                f if f & F_NUMBER != 0 => Class::Number,
                _ => Class::Other,
            }
        }
    };
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c == '\'' {
            let rest = &text[i + 1..];
            let len = ["re", "ve", "ll", "s", "t", "m", "d"]
                .iter()
                .find(|s| rest.starts_with(*s))
                .map(|s| s.len());
            if let Some(len) = len {
                out.push(i..i + 1 + len);
                for _ in 0..len {
                    it.next();
                }
                continue;
            }
        }
        let k = class(c);
        match k {
            Class::Space => continue,
            Class::Number => {
                out.push(i..i + c.len_utf8());
                continue;
            }
            Class::Letter | Class::Other => {}
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = it.peek() {
            if class(d) != k {
                break;
            }
            end = j + d.len_utf8();
            it.next();
        }
        out.push(i..end);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Space,
    Letter,
    Number,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        let mut r = Vec::new();
        split_words(s, &mut r);
        r.into_iter().map(|x| &s[x]).collect()
    }

    #[test]
    fn split() {
        assert_eq!(words("don't 1,000"), ["don", "'t", "1", ",", "0", "0", "0"]);
        assert_eq!(words("a!'s  b"), ["a", "!'", "s", "b"]);
        assert_eq!(words("x'll'q"), ["x", "'ll", "'", "q"]);
        assert_eq!(words(""), Vec::<&str>::new());
    }

    #[test]
    fn normalizer() {
        let mut s = String::new();
        normalize("  A\u{A0}\u{A0}Cafe\u{301}\t\nX ", &mut s);
        assert_eq!(s, "a café x");
        normalize("ẞ ΣΑΣ", &mut s);
        assert_eq!(s, "ß σασ");
    }
}
