//! The vocabulary strings, stored in one buffer, with an open-addressing hash index from
//! string to id (no per-token allocation; lookups by byte slice never allocate).

/// Marks an empty slot in the index, and "no token" in id arrays.
pub const NONE: u32 = u32::MAX;

pub struct Vocab {
    /// All token strings, back to back.
    text: String,
    /// Start of token `i` in `text` is `offs[i]`, end is `offs[i + 1]`. [n_tokens + 1]
    offs: Vec<u32>,
    /// Hash index: token ids (or NONE), size a power of two at least twice n_tokens.
    slots: Vec<u32>,
}

/// Hash of a byte string (64-bit multiply-rotate over 8-byte words, then a finalizer).
pub fn hash_bytes(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = 0u64;
        for (i, &x) in rest.iter().enumerate() {
            w |= (x as u64) << (8 * i);
        }
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    // splitmix64 finalizer: spread the bits so the low bits index well.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Vocab {
    /// Build from the token strings. `Err((first, second))` names two ids with the same text.
    pub fn new(tokens: &[&str]) -> Result<Vocab, (u32, u32)> {
        let total: usize = tokens.iter().map(|t| t.len()).sum();
        let mut text = String::with_capacity(total);
        let mut offs = Vec::with_capacity(tokens.len() + 1);
        for t in tokens {
            offs.push(text.len() as u32);
            text.push_str(t);
        }
        offs.push(text.len() as u32);
        let cap = (tokens.len() * 2).next_power_of_two().max(16);
        let mut v = Vocab {
            text,
            offs,
            slots: vec![NONE; cap],
        };
        let mask = cap - 1;
        for id in 0..tokens.len() as u32 {
            let bytes = v.bytes(id);
            let mut i = hash_bytes(bytes) as usize & mask;
            loop {
                let s = v.slots[i];
                if s == NONE {
                    v.slots[i] = id;
                    break;
                }
                if v.bytes(s) == bytes {
                    return Err((s, id));
                }
                i = (i + 1) & mask;
            }
        }
        Ok(v)
    }

    pub fn len(&self) -> usize {
        self.offs.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The string of token `id` (caller checks the range).
    pub fn text(&self, id: u32) -> &str {
        let (a, b) = (
            self.offs[id as usize] as usize,
            self.offs[id as usize + 1] as usize,
        );
        &self.text[a..b]
    }

    /// [`Vocab::text`], or `""` for an id outside the vocabulary.
    pub fn text_or_empty(&self, id: u32) -> &str {
        if (id as usize) < self.len() {
            self.text(id)
        } else {
            ""
        }
    }

    fn bytes(&self, id: u32) -> &[u8] {
        self.text(id).as_bytes()
    }

    /// The id of the token spelled `s`.
    pub fn get(&self, s: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = hash_bytes(s) as usize & mask;
        loop {
            let id = self.slots[i];
            if id == NONE {
                return None;
            }
            if self.bytes(id) == s {
                return Some(id);
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_duplicates() {
        let v = Vocab::new(&["a", "b", "ab", "", "hello world, a longer token"]).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v.get(b"ab"), Some(2));
        assert_eq!(v.get(b""), Some(3));
        assert_eq!(v.get(b"hello world, a longer token"), Some(4));
        assert_eq!(v.get(b"abc"), None);
        assert_eq!(v.text(4), "hello world, a longer token");
        assert_eq!(Vocab::new(&["x", "y", "x"]).err(), Some((0, 2)));
    }
}
