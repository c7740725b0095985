//! Character classes the pre-tokenizers need, as llama.cpp sees them: each codepoint gets a
//! small set of flags (letter, number, punctuation, mark, whitespace). Letters, numbers,
//! punctuation and marks are the Unicode general categories L, N, P and M ([`crate::unicode_tables`]);
//! whitespace is the Unicode White_Space property.

use crate::unicode_tables::{LETTER, MARK, NUMBER, PUNCTUATION};

/// General category L.
pub const F_LETTER: u8 = 1;
/// General category N.
pub const F_NUMBER: u8 = 2;
/// General category P.
pub const F_PUNCT: u8 = 4;
/// White_Space property (`\s`).
pub const F_SPACE: u8 = 8;
/// General category M (combining marks: Mn, Mc, Me).
pub const F_MARK: u8 = 16;

/// Whether `cp` lies in one of the sorted inclusive ranges of `table`.
pub(crate) fn in_table(table: &[(u32, u32)], cp: u32) -> bool {
    // Binary search for the last range starting at or before cp.
    let i = table.partition_point(|&(start, _)| start <= cp);
    i > 0 && cp <= table[i - 1].1
}

/// The White_Space codepoints (the same set llama.cpp and Python regex `\s` use).
pub fn is_whitespace(cp: u32) -> bool {
    matches!(
        cp,
        0x09..=0x0D | 0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    )
}

/// The flags of one character.
pub fn flags(c: char) -> u8 {
    let cp = c as u32;
    if cp < 0x80 {
        let b = cp as u8;
        return if b.is_ascii_alphabetic() {
            F_LETTER
        } else if b.is_ascii_digit() {
            F_NUMBER
        } else if is_whitespace(cp) {
            F_SPACE
        } else if b.is_ascii_punctuation()
            && !matches!(
                b,
                b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~'
            )
        {
            // ASCII punctuation minus the characters whose category is S (symbol).
            F_PUNCT
        } else {
            0
        };
    }
    if is_whitespace(cp) {
        return F_SPACE;
    }
    if in_table(LETTER, cp) {
        F_LETTER
    } else if in_table(NUMBER, cp) {
        F_NUMBER
    } else if in_table(PUNCTUATION, cp) {
        F_PUNCT
    } else if in_table(MARK, cp) {
        F_MARK
    } else {
        0
    }
}

/// GPT-2's byte-to-character map (`bytes_to_unicode`): printable Latin-1 bytes stand for
/// themselves, the other 68 bytes are shifted to U+0100.. in byte order. Byte-level BPE
/// vocabularies spell every token with these characters.
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let cp = if printable {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(cp).expect("codepoints below 0x200 are valid");
    }
    table
}

/// The inverse of [`byte_to_char_table`], indexed by codepoint (all mapped codepoints are
/// below 0x200); `None` for characters that stand for no byte.
pub fn char_to_byte_table(table: &[char; 256]) -> [Option<u8>; 512] {
    let mut inv = [None; 512];
    for (b, &c) in table.iter().enumerate() {
        inv[c as usize] = Some(b as u8);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(flags('a'), F_LETTER);
        assert_eq!(flags('Z'), F_LETTER);
        assert_eq!(flags('7'), F_NUMBER);
        assert_eq!(flags(' '), F_SPACE);
        assert_eq!(flags('\n'), F_SPACE);
        assert_eq!(flags('.'), F_PUNCT);
        assert_eq!(flags('$'), 0);
        assert_eq!(flags('`'), 0);
        assert_eq!(flags('é'), F_LETTER);
        assert_eq!(flags('你'), F_LETTER);
        assert_eq!(flags('٣'), F_NUMBER);
        assert_eq!(flags('Ⅻ'), F_NUMBER);
        assert_eq!(flags('\u{A0}'), F_SPACE);
        assert_eq!(flags('\u{200B}'), 0);
        assert_eq!(flags('，'), F_PUNCT);
        assert_eq!(flags('🍕'), 0);
        // Devanagari vowel sign: a mark (M), not a letter, although Alphabetic.
        assert_eq!(flags('\u{093F}'), F_MARK);
        assert_eq!(flags('\u{0301}'), F_MARK);
    }

    #[test]
    fn gpt2_byte_map() {
        let t = byte_to_char_table();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(char_to_byte_table(&t)['Ġ' as usize], Some(b' '));
        let mut seen = std::collections::HashSet::new();
        for c in t {
            assert!(seen.insert(c));
        }
    }
}
