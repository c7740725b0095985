//! # tokenizer: text <-> token ids, built from a GGUF file's metadata, matching llama.cpp
//!
//! Map of the crate:
//! - [`Tokenizer`] (this file): loads `tokenizer.ggml.*` metadata, applies llama.cpp's
//!   load-time fix-ups (token attributes, end-of-generation set), and runs `encode` /
//!   `decode`.
//! - [`special`]: cuts special tokens (control, user-defined, unknown) out of the text first.
//! - [`pretokenize`]: splits text into words for byte-level BPE (GPT-2, Llama 3, Qwen2, ...).
//! - [`bpe`]: byte-level BPE merges by rank (`tokenizer.ggml.model = "gpt2"`).
//! - [`spm`]: SentencePiece-style merges by score with byte fallback (`"llama"`).
//! - [`bpe`] over raw UTF-8 with `▁` for spaces (`"gemma4"`).
//! - [`wpm`]: llama.cpp's WordPiece over a GGUF vocabulary (`"bert"`).
//! - [`vocab`]: token strings in one buffer with a hash index.
//! - [`wordpiece`]: BERT's WordPiece ([`wordpiece::WordPiece`]: BertNormalizer, BertPreTokenizer,
//!   `##` pieces), from `tokenizer.json`, `vocab.txt` or GGUF `"bert"` metadata.
//! - [`unicode`] / `unicode_tables`: character classes (letter, number, punctuation, space).
//!
//! Outside the library: `examples/tok.rs` (ids and pieces of a text, or a batch as JSON),
//! `examples/bench.rs` (timings), `tools/gen_unicode_tables.py` (writes `unicode_tables.rs`),
//! `tools/crosscheck.py` (random strings against an independent regex-based reference).
//!
//! Encoding, as llama.cpp does it: (1) special tokens are cut out of the text (user-defined
//! ones always, control ones only with `parse_special`), longest first; (2) each remaining
//! text fragment is tokenized on its own: BPE splits it into words with the pre-tokenizer
//! and merges each word's bytes; SentencePiece writes spaces as `▁` (and prepends one at the
//! start and after special tokens when `add_space_prefix`) and merges the whole fragment;
//! (3) with `add_special`, BOS / EOS are added as `add_bos_token` / `add_eos_token` say.

#![forbid(unsafe_code)]

pub mod bpe;
pub mod clip;
mod error;
pub mod pretokenize;
pub mod special;
pub mod spm;
pub mod unicode;
mod unicode_tables;
pub mod vocab;
pub mod wordpiece;
mod wordpiece_tables;
pub mod wpm;

use std::borrow::Cow;

use gguf::GgufFile;

pub use error::{TokenizerError, TokenizerWarning};
pub use pretokenize::PreTokenizer;

use special::{Fragment, Specials};
use vocab::{Vocab, NONE};

/// Token attributes (llama.cpp's `llama_token_attr` bits), from `tokenizer.ggml.token_type`
/// plus load-time fix-ups.
pub mod attr {
    pub const NORMAL: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const CONTROL: u8 = 4;
    pub const USER_DEFINED: u8 = 8;
    pub const UNUSED: u8 = 16;
    pub const BYTE: u8 = 32;
    pub const UNDEFINED: u8 = 64;

    /// The attribute of a GGUF token type (1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte; anything else undefined).
    pub fn from_token_type(t: i64) -> u8 {
        match t {
            1 => NORMAL,
            2 => UNKNOWN,
            3 => CONTROL,
            4 => USER_DEFINED,
            5 => UNUSED,
            6 => BYTE,
            _ => UNDEFINED,
        }
    }
}

/// Token texts that llama.cpp treats as end-of-generation (and re-types as control tokens).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "<EOS_TOKEN>",
];

/// Texts llama.cpp uses to find an end-of-turn token when the file names none.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle token texts (prefix, suffix, middle, pad, repo, file separator);
/// llama.cpp re-types the first one found of each kind as a control token, and treats
/// pad / repo / separator as end-of-generation.
const FIM_TEXTS: [&[&str]; 6] = [
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
    &["<|file_sep|>"],
];

/// The GGUF keys of the FIM token ids, in the order of [`FIM_TEXTS`].
const FIM_KEYS: [&str; 6] = [
    "tokenizer.ggml.fim_pre_token_id",
    "tokenizer.ggml.fim_suf_token_id",
    "tokenizer.ggml.fim_mid_token_id",
    "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id",
    "tokenizer.ggml.fim_sep_token_id",
];

// How metadata that refers to tokens is checked: an error where no correct tokenization
// exists; where the file stays usable, a warning (one `warning:` line on stderr, also kept in
// `Tokenizer::warnings`) and the id ignored, as llama.cpp (`llama_vocab::impl::load`) does.
//
// key `tokenizer.ggml.*`      bad value           lume                         llama.cpp
// --------------------------  ------------------  ---------------------------  ----------------------------
// merges[i]                   not "left right"    error BadMerge (the writer   keeps it silently; it never
//                             (one space, both    lost or mangled a rule)      applies (rank lookups
//                             pieces non-empty)                                assert pieces have no space)
// bos_token_id                id >= vocab size    error IdOutOfRange if the    warns, uses the type's
//                                                 file sets add_bos_token =    default (llama 1, gpt2 none:
//                                                 true; else warning, no BOS   then it asserts at encode)
// eos_token_id                id >= vocab size    the same, add_eos_token      the same
// eot_token_id, eom_token_id  id >= vocab size    warning; found by text as    warns; found by text
//                                                 if the key were absent
// fim_{pre,suf,mid,pad,rep,   id >= vocab size    warning; found by text as    warns; found by text
//   sep}_token_id                                 if the key were absent
// unknown_token_id            id >= vocab size    warning, no unknown token    warns, uses 0 (llama)
//                                                 (SentencePiece drops a byte
//                                                 that has no byte token)
// padding_token_id,           id >= vocab size    warning (lume does not use   warns, uses the default
//   seperator_token_id,                           them)                        (none)
//   mask_token_id
//
// A bad id is ignored outright where llama.cpp falls back to the default: a file that names a
// wrong token gives no reason to trust the usual one. A default that does not fit the
// vocabulary is dropped silently (the file is not at fault). A key of the wrong type (not an
// unsigned integer) is an error, as for every key.

const MERGES_KEY: &str = "tokenizer.ggml.merges";
const BOS_KEY: &str = "tokenizer.ggml.bos_token_id";
const EOS_KEY: &str = "tokenizer.ggml.eos_token_id";
const ADD_BOS_KEY: &str = "tokenizer.ggml.add_bos_token";
const ADD_EOS_KEY: &str = "tokenizer.ggml.add_eos_token";

/// Special token ids lume does not use, read only to be checked (llama.cpp's spelling,
/// `seperator` included).
const UNUSED_ID_KEYS: [&str; 3] = [
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.mask_token_id",
];

/// `tokenizer.ggml.model`, as read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Algo {
    Spm,
    Bpe,
    Gemma4,
    Wpm,
}

/// Which merge algorithm the vocabulary uses.
enum Model {
    /// Byte-level BPE with a pre-tokenizer (or, when `bpe` is over raw UTF-8, Gemma 4's BPE
    /// with spaces written as `▁`).
    Bpe {
        bpe: Box<bpe::Bpe>,
        pre: PreTokenizer,
    },
    /// llama.cpp's WordPiece.
    Wpm(wpm::Wpm),
    /// SentencePiece-style BPE by scores.
    Spm {
        scores: Vec<f32>,
        byte_token: Box<[u32; 256]>,
    },
}

/// A tokenizer built from GGUF metadata. Immutable; share it freely between threads.
pub struct Tokenizer {
    model: Model,
    vocab: Vocab,
    /// Attribute bits of each token ([`attr`]). [n_vocab]
    attrs: Vec<u8>,
    /// The bytes each token decodes to, back to back; token i is `pieces[piece_offs[i]..piece_offs[i+1]]`.
    pieces: Vec<u8>,
    /// [n_vocab + 1]
    piece_offs: Vec<u32>,
    specials: Specials,
    /// Whether each token ends generation. [n_vocab]
    eog: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    /// What was wrong in the metadata and worked around.
    warnings: Vec<TokenizerWarning>,
}

/// Reads an optional metadata value: `Ok(None)` when the key is absent, an error when it is
/// present with the wrong type.
fn optional<'a, T>(
    file: &'a GgufFile,
    key: &str,
    get: impl FnOnce(&'a GgufFile, &str) -> gguf::Result<T>,
) -> Result<Option<T>, TokenizerError> {
    if file.get(key).is_none() {
        return Ok(None);
    }
    Ok(Some(get(file, key)?))
}

/// A special token id: `Ok(None)` when absent and without a default; an id outside the
/// vocabulary is ignored with a warning, or an error when `add_key` (an `add_*_token` key set
/// to true) asks for the token (see the table above `MERGES_KEY`).
fn special_id(
    file: &GgufFile,
    key: &str,
    n_vocab: usize,
    default: Option<u32>,
    add_key: Option<&str>,
    warnings: &mut Vec<TokenizerWarning>,
) -> Result<Option<u32>, TokenizerError> {
    let Some(id) = optional(file, key, GgufFile::get_u32)? else {
        return Ok(default.filter(|&i| (i as usize) < n_vocab));
    };
    if (id as usize) < n_vocab {
        return Ok(Some(id));
    }
    let path = file.path().to_path_buf();
    if let Some(add_key) = add_key {
        return Err(TokenizerError::IdOutOfRange {
            path,
            key: key.to_string(),
            id,
            n_vocab,
            add_key: add_key.to_string(),
        });
    }
    warnings.push(TokenizerWarning::IdOutOfRange {
        path,
        key: key.to_string(),
        id,
        n_vocab,
    });
    Ok(None)
}

/// Whether a `tokenizer.ggml.merges` entry is a rule: two non-empty pieces and one space.
fn is_merge(entry: &str) -> bool {
    entry
        .split_once(' ')
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' '))
}

impl Tokenizer {
    /// Build the tokenizer from `tokenizer.ggml.*` metadata. Metadata that makes a correct
    /// tokenization impossible is an error; what can be worked around is, printed on stderr
    /// as `warning: ...` and kept in [`Tokenizer::warnings`].
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let path = file.path().to_path_buf();
        let invalid = |key: &str, msg: String| TokenizerError::Invalid {
            path: path.clone(),
            key: key.to_string(),
            msg,
        };

        let model_name = file.get_str("tokenizer.ggml.model")?;
        let algo = match model_name {
            "llama" => Algo::Spm,
            "gpt2" => Algo::Bpe,
            "gemma4" => Algo::Gemma4,
            "bert" => Algo::Wpm,
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    path,
                    model: other.to_string(),
                })
            }
        };
        let is_spm = algo == Algo::Spm;
        // Token texts spell spaces as `▁` (decoded back to spaces).
        let escaped = algo != Algo::Bpe;

        // --- token strings, attributes, scores
        let raw = file.get_str_array("tokenizer.ggml.tokens")?;
        let n = raw.len();
        if n == 0 {
            return Err(invalid(
                "tokenizer.ggml.tokens",
                "the vocabulary is empty".into(),
            ));
        }
        if n >= NONE as usize {
            return Err(invalid(
                "tokenizer.ggml.tokens",
                format!("{n} tokens is too many"),
            ));
        }
        // llama.cpp renames empty tokens so that every token has a unique, non-empty text.
        let texts: Vec<Cow<str>> = raw
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    Cow::Owned(format!("[EMPTY_{i}]"))
                } else {
                    Cow::Borrowed(*t)
                }
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        let vocab = Vocab::new(&refs).map_err(|(a, b)| {
            invalid(
                "tokenizer.ggml.tokens",
                format!("duplicate token {:?} has ids {a} and {b}", refs[a as usize]),
            )
        })?;
        drop(refs);
        drop(texts);

        let mut attrs = vec![attr::NORMAL; n];
        if let Some(types) = optional(file, "tokenizer.ggml.token_type", GgufFile::get_i64_array)? {
            if types.len() < n {
                return Err(invalid(
                    "tokenizer.ggml.token_type",
                    format!("{} entries for {n} tokens", types.len()),
                ));
            }
            for (a, &t) in attrs.iter_mut().zip(&types) {
                *a = attr::from_token_type(t);
            }
        }
        let scores = match optional(file, "tokenizer.ggml.scores", GgufFile::get_f32_array)? {
            Some(s) if s.len() < n => {
                return Err(invalid(
                    "tokenizer.ggml.scores",
                    format!("{} entries for {n} tokens", s.len()),
                ));
            }
            Some(mut s) => {
                s.truncate(n);
                s
            }
            None => vec![0.0; n],
        };

        // --- flags
        let pre_name =
            optional(file, "tokenizer.ggml.pre", GgufFile::get_str)?.unwrap_or("default");
        let (pre, ignore_merges) = if is_spm || algo == Algo::Wpm {
            (PreTokenizer::Default, false)
        } else if algo == Algo::Gemma4 {
            (PreTokenizer::Newlines, false)
        } else {
            PreTokenizer::from_name(pre_name).ok_or_else(|| {
                TokenizerError::UnsupportedPreTokenizer {
                    path: path.clone(),
                    pre: pre_name.to_string(),
                }
            })?
        };
        let flag = |key: &str, default: bool| -> Result<bool, TokenizerError> {
            Ok(optional(file, key, GgufFile::get_bool)?.unwrap_or(default))
        };
        let is_llama3 = matches!(pre, PreTokenizer::Llama3 { max_digits: 3 }) && ignore_merges;
        let add_bos_key = optional(file, ADD_BOS_KEY, GgufFile::get_bool)?;
        let add_eos_key = optional(file, ADD_EOS_KEY, GgufFile::get_bool)?;
        // llama.cpp always adds BOS for Gemma 4, and [CLS] ... [SEP] for WordPiece.
        let add_bos = match algo {
            Algo::Gemma4 | Algo::Wpm => true,
            _ => add_bos_key.unwrap_or(is_spm || is_llama3),
        };
        let add_eos = algo == Algo::Wpm || add_eos_key.unwrap_or(false);
        let add_space_prefix = flag("tokenizer.ggml.add_space_prefix", is_spm)?;

        // --- special token ids (the table above MERGES_KEY says what a bad one does)
        let mut warnings = Vec::new();
        let mut id_key = |key: &str, default: Option<u32>, add_key: Option<&str>| {
            special_id(file, key, n, default, add_key, &mut warnings)
        };
        let bos = id_key(
            BOS_KEY,
            is_spm.then_some(1),
            (add_bos_key == Some(true)).then_some(ADD_BOS_KEY),
        )?;
        let eos = id_key(
            EOS_KEY,
            is_spm.then_some(2),
            (add_eos_key == Some(true)).then_some(ADD_EOS_KEY),
        )?;
        // WordPiece wraps a text in [CLS] ... [SEP].
        let (bos, eos) = if algo == Algo::Wpm {
            (
                id_key("tokenizer.ggml.cls_token_id", None, None)?.or(bos),
                id_key("tokenizer.ggml.seperator_token_id", None, None)?.or(eos),
            )
        } else {
            (bos, eos)
        };
        let mut eot = id_key("tokenizer.ggml.eot_token_id", None, None)?;
        let mut eom = id_key("tokenizer.ggml.eom_token_id", None, None)?;
        let unk = id_key("tokenizer.ggml.unknown_token_id", is_spm.then_some(0), None)?;
        let mut fim = [None; 6];
        for (slot, key) in fim.iter_mut().zip(FIM_KEYS) {
            *slot = id_key(key, None, None)?;
        }
        // Read only to be checked: lume has no use for them.
        for key in UNUSED_ID_KEYS {
            id_key(key, None, None)?;
        }

        // --- llama.cpp's load-time fix-ups, by token text
        let eog = fix_up(&vocab, &mut attrs, eos, &mut eot, &mut eom, &mut fim);

        // --- special-token matcher
        let special_mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let specials = Specials::new(
            (0..n as u32)
                .filter(|&id| attrs[id as usize] & special_mask != 0)
                .map(|id| {
                    (
                        id,
                        vocab.text(id),
                        attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0,
                    )
                }),
        );

        // --- decoded bytes of each token
        let byte_char = unicode::byte_to_char_table();
        let (pieces, piece_offs) =
            decode_pieces(&vocab, &attrs, escaped, &byte_char).ok_or_else(|| {
                invalid(
                    "tokenizer.ggml.tokens",
                    "the vocabulary text is too large".into(),
                )
            })?;

        // --- the merge model
        let model = if is_spm {
            let mut byte_token = Box::new([NONE; 256]);
            for (b, slot) in byte_token.iter_mut().enumerate() {
                *slot = vocab
                    .get(format!("<0x{b:02X}>").as_bytes())
                    .or_else(|| vocab.get(&[b as u8]))
                    .or(unk)
                    .unwrap_or(NONE);
            }
            Model::Spm { scores, byte_token }
        } else if algo == Algo::Wpm {
            let lowercase = flag("tokenizer.ggml.normalizer.lowercase", true)?;
            Model::Wpm(wpm::Wpm {
                lowercase,
                strip_accents: flag("tokenizer.ggml.normalizer.strip_accents", lowercase)?,
                max_token_len: (0..n as u32)
                    .map(|i| vocab.text(i).len())
                    .max()
                    .unwrap_or(0),
                unk,
            })
        } else {
            let merges = file.get_str_array(MERGES_KEY)?;
            if let Some((index, entry)) = merges.iter().enumerate().find(|(_, m)| !is_merge(m)) {
                return Err(TokenizerError::BadMerge {
                    path,
                    index,
                    entry: entry.to_string(),
                });
            }
            let bpe = bpe::Bpe::new(&vocab, &merges, byte_char, ignore_merges);
            let gemma4 = algo == Algo::Gemma4;
            Model::Bpe {
                bpe: Box::new(if gemma4 { bpe.raw_utf8(&vocab) } else { bpe }),
                pre,
            }
        };

        for w in &warnings {
            eprintln!("warning: {w}");
        }
        Ok(Tokenizer {
            model,
            vocab,
            attrs,
            pieces,
            piece_offs,
            specials,
            eog,
            bos,
            eos,
            eot,
            eom,
            add_bos,
            add_eos,
            add_space_prefix,
            warnings,
        })
    }

    /// Token ids of `text`. `add_special`: add BOS / EOS as the file's `add_bos_token` /
    /// `add_eos_token` say. `parse_special`: control tokens written in the text (such as
    /// `<|im_start|>`) become their ids; otherwise they are tokenized as plain text.
    /// User-defined tokens are matched in both modes.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut frags = Vec::new();
        self.specials.partition(text, parse_special, &mut frags);
        match &self.model {
            Model::Spm { scores, byte_token } => {
                let mut buf = String::new();
                let mut prev_special = true;
                for f in &frags {
                    match f {
                        Fragment::Token(id) => {
                            out.push(*id);
                            prev_special = true;
                        }
                        Fragment::Text(r) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for c in text[r.clone()].chars() {
                                buf.push(if c == ' ' { '▁' } else { c });
                            }
                            spm::encode(&self.vocab, scores, byte_token, &buf, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
            Model::Wpm(wpm) => {
                for f in &frags {
                    match f {
                        Fragment::Token(id) => out.push(*id),
                        Fragment::Text(r) => wpm.encode(&self.vocab, &text[r.clone()], &mut out),
                    }
                }
            }
            Model::Bpe { bpe, pre } => {
                // Gemma 4 (the only BPE over raw UTF-8): spaces as `▁`, newline runs kept whole.
                let gemma4 = bpe.is_raw_utf8();
                let mut words = Vec::new();
                let mut scratch = bpe::Scratch::default();
                let mut escaped = String::new();
                for f in &frags {
                    match f {
                        Fragment::Token(id) => out.push(*id),
                        Fragment::Text(r) => {
                            let mut frag = &text[r.clone()];
                            if gemma4 {
                                escaped.clear();
                                escaped
                                    .extend(frag.chars().map(|c| if c == ' ' { '▁' } else { c }));
                                frag = &escaped;
                            }
                            words.clear();
                            pre.split(frag, &mut words);
                            for w in &words {
                                let word = &frag[w.clone()];
                                // Gemma 4: a run of newlines that is a token stays whole.
                                if gemma4 && word.starts_with('\n') {
                                    if let Some(id) = self.vocab.get(word.as_bytes()) {
                                        out.push(id);
                                        continue;
                                    }
                                }
                                bpe.encode_word(
                                    &self.vocab,
                                    word.as_bytes(),
                                    &mut out,
                                    &mut scratch,
                                );
                            }
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// The bytes of `ids`, concatenated (special tokens rendered as their text; ids outside
    /// the vocabulary contribute nothing).
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        out
    }

    /// [`Tokenizer::decode`] as a string; invalid UTF-8 becomes U+FFFD.
    pub fn decode_string(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode(ids)).into_owned()
    }

    /// The raw bytes one token decodes to (empty for ids outside the vocabulary). A byte-level
    /// or byte-fallback token may hold part of a UTF-8 character.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        if (id as usize) < self.vocab.len() {
            let (a, b) = (
                self.piece_offs[id as usize] as usize,
                self.piece_offs[id as usize + 1] as usize,
            );
            &self.pieces[a..b]
        } else {
            &[]
        }
    }

    /// The token's string as stored in the vocabulary (e.g. `Ġthe`, `▁the`, `<0x0A>`);
    /// empty for ids outside the vocabulary.
    pub fn token_text(&self, id: u32) -> &str {
        self.vocab.text_or_empty(id)
    }

    /// The id of the token whose vocabulary string is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.get(text.as_bytes())
    }

    /// The attribute bits of a token ([`attr`]); 0 outside the vocabulary.
    pub fn token_attr(&self, id: u32) -> u8 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    /// Whether the token is a control token (rendered only as special text).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id) & attr::CONTROL != 0
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token (from metadata, or found by text as llama.cpp does).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// End-of-message token (`<|eom_id|>`).
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }

    /// Whether generation should stop at this token: EOS, EOT, EOM, the FIM pad / repo /
    /// separator tokens, and tokens whose text llama.cpp treats as end-of-generation
    /// (`<|im_end|>`, `<end_of_turn>`, `<|endoftext|>`, `</s>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.get(id as usize).copied().unwrap_or(false)
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos && self.eos.is_some()
    }

    /// Whether SentencePiece encoding prepends a space to the text.
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// What was wrong in the metadata and worked around at load (each was printed on stderr).
    pub fn warnings(&self) -> &[TokenizerWarning] {
        &self.warnings
    }
}

/// llama.cpp's load-time fix-ups: find EOT / EOM / FIM tokens by text when the file names
/// none (re-typing them as control tokens), build the end-of-generation set (also re-typing
/// its members as control), and the model-specific exceptions. Returns the EOG flags.
fn fix_up(
    vocab: &Vocab,
    attrs: &mut [u8],
    eos: Option<u32>,
    eot: &mut Option<u32>,
    eom: &mut Option<u32>,
    fim: &mut [Option<u32>; 6],
) -> Vec<bool> {
    let n = attrs.len();
    let find = |names: &[&str]| names.iter().find_map(|s| vocab.get(s.as_bytes()));
    if eot.is_none() {
        *eot = find(EOT_TEXTS);
        if let Some(id) = *eot {
            attrs[id as usize] |= attr::CONTROL;
        }
    }
    if eom.is_none() {
        *eom = vocab.get(b"<|eom_id|>");
        if let Some(id) = *eom {
            attrs[id as usize] |= attr::CONTROL;
        }
    }
    for (slot, names) in fim.iter_mut().zip(FIM_TEXTS) {
        if slot.is_none() {
            *slot = find(names);
            if let Some(id) = *slot {
                attrs[id as usize] |= attr::CONTROL;
            }
        }
    }
    let mut eog = vec![false; n];
    for id in fim[3..].iter().flatten() {
        eog[*id as usize] = true;
    }
    for name in EOG_TEXTS {
        if let Some(id) = vocab.get(name.as_bytes()) {
            eog[id as usize] = true;
            attrs[id as usize] |= attr::CONTROL;
        }
    }
    // gpt-oss: these are always rendered, never special.
    for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(id) = vocab.get(name.as_bytes()) {
            attrs[id as usize] = attr::USER_DEFINED;
        }
    }
    for id in [eos, *eot, *eom].into_iter().flatten() {
        eog[id as usize] = true;
    }
    // o200k_harmony / solar-open: "<|end|>" does not end generation there.
    let has = |eog: &[bool], s: &str| vocab.get(s.as_bytes()).is_some_and(|id| eog[id as usize]);
    if (has(&eog, "<|return|>") && has(&eog, "<|call|>") && has(&eog, "<|end|>"))
        || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>") && has(&eog, "<|end|>"))
    {
        if let Some(id) = vocab.get(b"<|end|>") {
            eog[id as usize] = false;
            attrs[id as usize] = attr::USER_DEFINED;
        }
    }
    // gemma4 / paddleocr: "</s>" is an ordinary token when "<|tool_response>" exists.
    if has(&eog, "<|tool_response>") && has(&eog, "</s>") {
        if let Some(id) = vocab.get(b"</s>") {
            eog[id as usize] = false;
            attrs[id as usize] = attr::NORMAL;
        }
    }
    eog
}

/// The bytes each token decodes to, back to back, and the offsets of each token's bytes
/// (`None` if they would not fit u32 offsets). Control, user-defined and unknown tokens are
/// their text; normal tokens are decoded (`▁` -> space for SentencePiece, GPT-2 characters
/// -> bytes for byte-level BPE); byte tokens `<0xXX>` are their byte; unused and undefined
/// tokens are empty, as in llama.cpp.
fn decode_pieces(
    vocab: &Vocab,
    attrs: &[u8],
    is_spm: bool,
    byte_char: &[char; 256],
) -> Option<(Vec<u8>, Vec<u32>)> {
    let n = attrs.len();
    let special_mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
    let char_byte = unicode::char_to_byte_table(byte_char);
    let mut pieces = Vec::with_capacity(n * 6);
    let mut piece_offs = Vec::with_capacity(n + 1);
    for id in 0..n as u32 {
        piece_offs.push(pieces.len() as u32);
        let a = attrs[id as usize];
        let text = vocab.text(id);
        if a & special_mask != 0 {
            pieces.extend_from_slice(text.as_bytes());
        } else if a & attr::NORMAL != 0 {
            if is_spm {
                let mut rest = text;
                while let Some(p) = rest.find('▁') {
                    pieces.extend_from_slice(&rest.as_bytes()[..p]);
                    pieces.push(b' ');
                    rest = &rest[p + '▁'.len_utf8()..];
                }
                pieces.extend_from_slice(rest.as_bytes());
            } else {
                let mut buf = [0u8; 4];
                for c in text.chars() {
                    match char_byte.get(c as usize).copied().flatten() {
                        Some(b) => pieces.push(b),
                        // Not a GPT-2 byte character: keep it as it is.
                        None => pieces.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
                    }
                }
            }
        } else if a & attr::BYTE != 0 {
            match parse_byte_token(text) {
                Some(b) => pieces.push(b),
                None => pieces.extend_from_slice(text.as_bytes()),
            }
        }
        // Unused and undefined tokens decode to nothing, as in llama.cpp.
        if pieces.len() > u32::MAX as usize {
            return None;
        }
    }
    piece_offs.push(pieces.len() as u32);
    Some((pieces, piece_offs))
}

/// The byte of a `<0xXX>` token.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
