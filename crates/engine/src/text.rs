//! Turning generated token bytes into text that is safe to print as it arrives.
//!
//! [`TextStream`] collects the bytes of each generated token and hands out text in whole UTF-8
//! characters (a token may end in the middle of one). It also watches for stop strings: text
//! that could still be the beginning of a stop string is held back until it is clear either
//! way, and the stop string itself is never emitted.

/// Incremental UTF-8 decoding with stop-string detection.
#[derive(Debug, Default)]
pub struct TextStream {
    /// Bytes of an incomplete UTF-8 character at the end of the input so far.
    pending: Vec<u8>,
    /// Decoded text not emitted yet (it may be the start of a stop string).
    held: String,
    stops: Vec<String>,
    /// Length of the longest stop string, in bytes.
    max_stop: usize,
}

impl TextStream {
    /// A stream that stops at any of `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> TextStream {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let max_stop = stops.iter().map(|s| s.len()).max().unwrap_or(0);
        TextStream {
            pending: Vec::with_capacity(16),
            held: String::with_capacity(64),
            stops,
            max_stop,
        }
    }

    /// Forgets any buffered text (the stop strings stay).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.held.clear();
    }

    /// Adds the bytes of one token; appends the text that can be emitted now to `out`.
    /// Returns true when a stop string was completed: `out` then ends just before it.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) -> bool {
        self.pending.extend_from_slice(bytes);
        self.decode_pending(false);
        if let Some(at) = self.find_stop() {
            out.push_str(&self.held[..at]);
            self.held.clear();
            self.pending.clear();
            return true;
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let keep = self.partial_stop_len();
        let emit = self.held.len() - keep;
        out.push_str(&self.held[..emit]);
        self.held.drain(..emit);
        false
    }

    /// Whether bytes of an unfinished UTF-8 character are held back (text held back because
    /// it may start a stop string does not count).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Flushes everything still buffered (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self, out: &mut String) {
        self.decode_pending(true);
        out.push_str(&self.held);
        self.held.clear();
    }

    /// Moves the decodable part of `pending` into `held`.
    fn decode_pending(&mut self, flush: bool) {
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    self.held.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let good = start + e.valid_up_to();
                    // These bytes were just validated by from_utf8.
                    self.held
                        .push_str(std::str::from_utf8(&self.pending[start..good]).unwrap_or(""));
                    match e.error_len() {
                        Some(bad) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            start = good + bad;
                        }
                        None if flush => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            start = self.pending.len();
                            break;
                        }
                        None => {
                            start = good;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
    }

    /// Byte offset in `held` of the earliest stop string.
    fn find_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// Length of the longest suffix of `held` that some stop string starts with.
    fn partial_stop_len(&self) -> usize {
        let n = self.held.len();
        for k in (1..=self.max_stop.min(n)).rev() {
            let start = n - k;
            if !self.held.is_char_boundary(start) {
                continue;
            }
            let tail = &self.held[start..];
            if self.stops.iter().any(|s| s.starts_with(tail)) {
                return k;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut ts = TextStream::new(&stops);
        let mut outs = Vec::new();
        for p in pieces {
            let mut o = String::new();
            if ts.push(p, &mut o) {
                outs.push(o);
                return (outs, true);
            }
            outs.push(o);
        }
        let mut o = String::new();
        ts.finish(&mut o);
        outs.push(o);
        (outs, false)
    }

    #[test]
    fn split_utf8_waits_for_the_whole_character() {
        let e = "é".as_bytes();
        let (outs, stopped) = run(&[], &[b"caf", &e[..1], &e[1..], b"!"]);
        assert!(!stopped);
        assert_eq!(outs, vec!["caf", "", "é", "!", ""]);
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let (outs, _) = run(&[], &[b"a\xffb", &[0xe2, 0x82]]);
        assert_eq!(outs, vec!["a\u{fffd}b", "", "\u{fffd}"]);
    }

    #[test]
    fn stop_string_across_tokens_is_not_emitted() {
        let (outs, stopped) = run(&["\n\n"], &[b"Paris.", b"\n", b"\nNext"]);
        assert!(stopped);
        assert_eq!(outs.concat(), "Paris.");
        assert_eq!(outs[1], "", "a lone newline is held back");
    }

    #[test]
    fn false_alarm_is_released() {
        let (outs, stopped) = run(&["END"], &[b"the E", b"N", b"d of it"]);
        assert!(!stopped);
        assert_eq!(outs, vec!["the ", "", "ENd of it", ""]);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (outs, stopped) = run(&["world", "lo"], &[b"hello world"]);
        assert!(stopped);
        assert_eq!(outs.concat(), "hel");
    }
}
