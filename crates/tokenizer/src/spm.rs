//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`): the text (spaces already
//! written as `▁`) starts as one symbol per character; the adjacent pair whose
//! concatenation is the vocabulary token with the highest score is merged, leftmost first
//! on ties, until no neighbouring pair forms a token. Symbols that are not tokens in the
//! end fall back to byte tokens `<0xXX>`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::{Vocab, NONE};

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

/// A candidate merge: the pair (left, right) whose text of `size` bytes is a token.
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// Append the tokens of `text` to `out`. `scores[id]` is each token's score; `byte_token[b]`
/// is the token of byte `b` (NONE if the vocabulary has none: that byte is dropped).
pub fn encode(
    vocab: &Vocab,
    scores: &[f32],
    byte_token: &[u32; 256],
    text: &str,
    out: &mut Vec<u32>,
) {
    if text.is_empty() {
        return;
    }
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let k = syms.len() as u32;
        syms.push(Sym {
            start: i as u32,
            len: c.len_utf8() as u32,
            prev: k.wrapping_sub(1),
            next: k + 1,
        });
    }
    if let Some(last) = syms.last_mut() {
        last.next = NONE;
    }
    let mut heap = BinaryHeap::with_capacity(syms.len());
    let try_pair = |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, left: u32, right: u32| {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (syms[left as usize], syms[right as usize]);
        let piece = &text.as_bytes()[l.start as usize..(r.start + r.len) as usize];
        if let Some(id) = vocab.get(piece) {
            heap.push(Bigram {
                score: scores[id as usize],
                left,
                right,
                size: l.len + r.len,
            });
        }
    };
    for i in 1..syms.len() as u32 {
        try_pair(&syms, &mut heap, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (syms[b.left as usize], syms[b.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        syms[b.left as usize].len += r.len;
        syms[b.left as usize].next = r.next;
        syms[b.right as usize].len = 0;
        if r.next != NONE {
            syms[r.next as usize].prev = b.left;
        }
        try_pair(&syms, &mut heap, l.prev, b.left);
        try_pair(&syms, &mut heap, b.left, r.next);
    }
    let mut i = 0u32;
    while i != NONE {
        let s = syms[i as usize];
        let piece = &text.as_bytes()[s.start as usize..(s.start + s.len) as usize];
        match vocab.get(piece) {
            Some(id) => out.push(id),
            None => out.extend(
                piece
                    .iter()
                    .map(|&b| byte_token[b as usize])
                    .filter(|&t| t != NONE),
            ),
        }
        i = s.next;
    }
}
