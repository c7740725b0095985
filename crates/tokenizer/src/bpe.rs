//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): a word's bytes start as one symbol
//! each (the vocabulary spells byte `b` as GPT-2's character for `b`), then the adjacent
//! pair with the lowest merge rank is merged, leftmost first on ties, until no pair of
//! neighbours has a merge. A priority queue keeps this O(n log n) in the word length.
//!
//! The same merges over raw UTF-8 ([`Bpe::raw_utf8`], Gemma 4's `gemma4` model): a word's
//! characters start as one symbol each, and a symbol that is not a token falls back to the
//! `<0xXX>` tokens of its bytes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::vocab::{Vocab, NONE};

/// A small multiply-rotate hasher for the merge table, keyed by a pair of token ids.
#[derive(Default)]
pub struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
        self.0 ^= self.0 >> 29;
    }
}

type PairMap = HashMap<u64, Merge, BuildHasherDefault<PairHasher>>;

#[derive(Clone, Copy)]
struct Merge {
    /// Position in `tokenizer.ggml.merges` (lower merges first).
    rank: u32,
    /// The token the pair becomes, or NONE if the vocabulary lacks it.
    result: u32,
}

fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

pub struct Bpe {
    merges: PairMap,
    /// The GPT-2 character standing for each byte. [256]
    byte_char: [char; 256],
    /// The token of each byte's character, or NONE. [256]
    byte_token: [u32; 256],
    /// Skip the merges for a word that is already a whole token (Llama 3 style).
    ignore_merges: bool,
    /// Symbols start as UTF-8 characters, not GPT-2 byte characters.
    raw: bool,
    /// The `<0xXX>` token of each byte, or NONE (raw mode's fallback). [256]
    hex_token: [u32; 256],
}

/// A symbol of the word being merged: a byte range with its token id.
#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    id: u32,
    prev: u32,
    next: u32,
}

/// A possible merge: (rank, left symbol, right symbol, left id, right id).
type Candidate = (u32, u32, u32, u32, u32);

/// Buffers reused across the words of one `encode` call.
#[derive(Default)]
pub struct Scratch {
    syms: Vec<Sym>,
    // Min-heap: lowest rank first, then leftmost.
    heap: BinaryHeap<Reverse<Candidate>>,
    mapped: String,
}

impl Bpe {
    /// Build the merge table. `merges` are "left right" strings, rank = index; a merge whose
    /// halves are not both tokens can never apply and is skipped.
    pub fn new(vocab: &Vocab, merges: &[&str], byte_char: [char; 256], ignore_merges: bool) -> Bpe {
        let mut table = PairMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut joined = String::new();
        for (rank, m) in merges.iter().enumerate() {
            // Split at the first space after the first byte, as llama.cpp does.
            let Some(sp) = m
                .as_bytes()
                .iter()
                .skip(1)
                .position(|&b| b == b' ')
                .map(|p| p + 1)
            else {
                continue;
            };
            let (a, b) = (&m[..sp], &m[sp + 1..]);
            let (Some(ia), Some(ib)) = (vocab.get(a.as_bytes()), vocab.get(b.as_bytes())) else {
                continue;
            };
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let result = vocab.get(joined.as_bytes()).unwrap_or(NONE);
            table.entry(pair_key(ia, ib)).or_insert(Merge {
                rank: rank as u32,
                result,
            });
        }
        let mut byte_token = [NONE; 256];
        let mut buf = [0u8; 4];
        for (b, t) in byte_token.iter_mut().enumerate() {
            *t = vocab
                .get(byte_char[b].encode_utf8(&mut buf).as_bytes())
                .unwrap_or(NONE);
        }
        Bpe {
            merges: table,
            byte_char,
            byte_token,
            ignore_merges,
            raw: false,
            hex_token: [NONE; 256],
        }
    }

    /// Switches to merges over raw UTF-8 characters (see the module docs).
    pub fn raw_utf8(mut self, vocab: &Vocab) -> Bpe {
        self.raw = true;
        for (b, t) in self.hex_token.iter_mut().enumerate() {
            *t = vocab.get(format!("<0x{b:02X}>").as_bytes()).unwrap_or(NONE);
        }
        self
    }

    /// Whether symbols start as UTF-8 characters ([`Bpe::raw_utf8`]).
    pub fn is_raw_utf8(&self) -> bool {
        self.raw
    }

    /// Append the tokens of one pre-tokenized word (raw bytes) to `out`.
    pub fn encode_word(&self, vocab: &Vocab, word: &[u8], out: &mut Vec<u32>, s: &mut Scratch) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges {
            s.mapped.clear();
            if self.raw {
                s.mapped.push_str(&String::from_utf8_lossy(word));
            } else {
                s.mapped
                    .extend(word.iter().map(|&b| self.byte_char[b as usize]));
            }
            if let Some(id) = vocab.get(s.mapped.as_bytes()) {
                out.push(id);
                return;
            }
        }
        s.syms.clear();
        s.heap.clear();
        if self.raw {
            // One symbol per UTF-8 character (an invalid byte is a symbol of its own).
            let mut at = 0;
            while at < word.len() {
                let len = utf8_len(word[at]).min(word.len() - at);
                let id = vocab.get(&word[at..at + len]).unwrap_or(NONE);
                s.syms.push(Sym {
                    start: at as u32,
                    len: len as u32,
                    id,
                    prev: NONE,
                    next: NONE,
                });
                at += len;
            }
        } else {
            for (i, &b) in word.iter().enumerate() {
                s.syms.push(Sym {
                    start: i as u32,
                    len: 1,
                    id: self.byte_token[b as usize],
                    prev: NONE,
                    next: NONE,
                });
            }
        }
        let n = s.syms.len() as u32;
        for i in 0..n {
            let sym = &mut s.syms[i as usize];
            sym.prev = if i == 0 { NONE } else { i - 1 };
            sym.next = if i + 1 == n { NONE } else { i + 1 };
        }
        for i in 1..n {
            self.push_pair(s, i - 1, i);
        }
        while let Some(Reverse((_, left, right, left_id, right_id))) = s.heap.pop() {
            let (l, r) = (s.syms[left as usize], s.syms[right as usize]);
            // Skip pairs made stale by an earlier merge of either side.
            if l.len == 0 || r.len == 0 || l.id != left_id || r.id != right_id {
                continue;
            }
            let merged = self.merges[&pair_key(l.id, r.id)].result;
            let ls = &mut s.syms[left as usize];
            ls.len += r.len;
            ls.id = merged;
            ls.next = r.next;
            s.syms[right as usize].len = 0;
            if r.next != NONE {
                s.syms[r.next as usize].prev = left;
            }
            if l.prev != NONE {
                self.push_pair(s, l.prev, left);
            }
            if r.next != NONE {
                self.push_pair(s, left, r.next);
            }
        }
        let mut i = 0;
        while i != NONE {
            let sym = s.syms[i as usize];
            if sym.id != NONE {
                out.push(sym.id);
            } else {
                self.fallback(
                    vocab,
                    &word[sym.start as usize..(sym.start + sym.len) as usize],
                    out,
                );
            }
            i = sym.next;
        }
    }

    fn push_pair(&self, s: &mut Scratch, left: u32, right: u32) {
        let (a, b) = (s.syms[left as usize].id, s.syms[right as usize].id);
        if a == NONE || b == NONE {
            return;
        }
        if let Some(m) = self.merges.get(&pair_key(a, b)) {
            s.heap.push(Reverse((m.rank, left, right, a, b)));
        }
    }

    /// A symbol that is not a token: llama.cpp looks up each byte of its GPT-2 spelling
    /// as a one-byte token and drops the bytes that are not tokens.
    fn fallback(&self, vocab: &Vocab, bytes: &[u8], out: &mut Vec<u32>) {
        if self.raw {
            // Raw mode: the `<0xXX>` token of each byte, those missing dropped.
            out.extend(
                bytes
                    .iter()
                    .map(|&b| self.hex_token[b as usize])
                    .filter(|&t| t != NONE),
            );
            return;
        }
        let mut buf = [0u8; 4];
        for &b in bytes {
            for &x in self.byte_char[b as usize].encode_utf8(&mut buf).as_bytes() {
                if let Some(id) = vocab.get(&[x]) {
                    out.push(id);
                }
            }
        }
    }
}

/// Bytes of the UTF-8 sequence that starts with `b`, by its high bits as llama.cpp counts them
/// (1 for a continuation byte).
fn utf8_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}
