//! How long a model stays loaded (ollama's `keep_alive`) and the duration and size strings the
//! flags and requests take (`5m`, `1h30m`, `8G`).

use std::time::{Duration, Instant};

/// How long a model stays loaded after a request (ollama's `keep_alive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// Until the server stops (a negative `keep_alive`).
    Forever,
    /// This long after the request ends (zero: unload at once).
    For(Duration),
}

impl Default for KeepAlive {
    /// Five minutes, as ollama.
    fn default() -> Self {
        KeepAlive::For(Duration::from_secs(300))
    }
}

impl KeepAlive {
    /// ollama's convention: negative seconds are forever, zero unloads at once.
    pub fn from_secs(s: f64) -> KeepAlive {
        if s < 0.0 || !s.is_finite() {
            return KeepAlive::Forever;
        }
        Duration::try_from_secs_f64(s).map_or(KeepAlive::Forever, KeepAlive::For)
    }

    /// A number of seconds or a Go-style duration (`30s`, `5m`, `1h30m`, `-1`), as ollama's
    /// `keep_alive` and `OLLAMA_KEEP_ALIVE` take it.
    pub fn parse(text: &str) -> Option<KeepAlive> {
        duration_secs(text).map(KeepAlive::from_secs)
    }

    /// Zero: unload as soon as no request holds the model.
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }

    pub(crate) fn deadline(self, from: Instant) -> Option<Instant> {
        match self {
            KeepAlive::Forever => None,
            KeepAlive::For(d) => Some(from.checked_add(d).unwrap_or(far_future(from))),
        }
    }
}

/// About ten years on: "never" where a time is needed.
pub(crate) fn far_future(from: Instant) -> Instant {
    let ten_years = Duration::from_secs(10 * 365 * 86_400);
    from.checked_add(ten_years).unwrap_or(from)
}

/// A Go-style duration (`300ms`, `5m`, `1h30m`, `-1s`) or a bare number of seconds, in seconds.
pub fn duration_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(x) = s.parse::<f64>() {
        return x.is_finite().then_some(x);
    }
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let x: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += x * unit;
    }
    Some(sign * total)
}

/// A size in bytes: a number, optionally with `K`, `M`, `G` or `T` (powers of 1024; `KB`,
/// `KiB`, `GB`... are read the same way).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let x: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let mul: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = x * mul;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then(|| v.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_text() {
        assert_eq!(
            KeepAlive::parse("5m"),
            Some(KeepAlive::For(Duration::from_secs(300)))
        );
        assert_eq!(
            KeepAlive::parse("3s"),
            Some(KeepAlive::For(Duration::from_secs(3)))
        );
        assert_eq!(
            KeepAlive::parse("90"),
            Some(KeepAlive::For(Duration::from_secs(90)))
        );
        assert_eq!(KeepAlive::parse("-1"), Some(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse("-5m"), Some(KeepAlive::Forever));
        assert!(KeepAlive::parse("0").unwrap().is_zero());
        assert_eq!(KeepAlive::parse("soon"), None);
        assert_eq!(KeepAlive::from_secs(f64::INFINITY), KeepAlive::Forever);
        assert_eq!(KeepAlive::from_secs(1e300), KeepAlive::Forever);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("4G"), Some(4 << 30));
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("2 GB"), Some(2 << 30));
        assert_eq!(parse_bytes("-1G"), None);
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("99999999999T"), None);
    }
}
