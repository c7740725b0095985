//! `strftime_now(format)`: Python's `datetime.now().strftime(format)` for the codes chat
//! templates use, in UTC, without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A civil date and time (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday.
    weekday: u32,
    /// 1-based day of the year.
    yday: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's civil-from-days algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn civil(t: SystemTime) -> Civil {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[month as usize - 1] + day + u32::from(month > 2 && is_leap(year));
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
        // 1970-01-01 was a Thursday (3).
        weekday: (days + 3).rem_euclid(7) as u32,
        yday,
    }
}

/// `format` with `t` filled in, as Python's `strftime` on Linux (glibc) prints it in UTC; `%-d`
/// style codes drop the padding; codes it does not know are kept as written.
pub fn strftime(t: SystemTime, format: &str) -> String {
    let c = civil(t);
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        let unpadded = chars.peek() == Some(&'-');
        if unpadded {
            chars.next();
        }
        let Some(code) = chars.next() else {
            out.push('%');
            if unpadded {
                out.push('-');
            }
            break;
        };
        let num = |v: i64, width: usize| {
            if unpadded {
                v.to_string()
            } else {
                format!("{v:0width$}")
            }
        };
        let hour12 = if c.hour.is_multiple_of(12) {
            12
        } else {
            c.hour % 12
        };
        let s = match code {
            'Y' => c.year.to_string(),
            'y' => num(c.year.rem_euclid(100), 2),
            'C' => num(c.year.div_euclid(100), 2),
            'm' => num(c.month.into(), 2),
            'd' => num(c.day.into(), 2),
            'e' => {
                if unpadded {
                    c.day.to_string()
                } else {
                    format!("{:2}", c.day)
                }
            }
            'j' => num(c.yday.into(), 3),
            'H' => num(c.hour.into(), 2),
            'I' => num(hour12.into(), 2),
            'M' => num(c.minute.into(), 2),
            'S' => num(c.second.into(), 2),
            'p' => (if c.hour < 12 { "AM" } else { "PM" }).to_string(),
            'B' => MONTHS[c.month as usize - 1].to_string(),
            'b' | 'h' => MONTHS[c.month as usize - 1][..3].to_string(),
            'A' => DAYS[c.weekday as usize].to_string(),
            'a' => DAYS[c.weekday as usize][..3].to_string(),
            'u' => (c.weekday + 1).to_string(),
            'w' => ((c.weekday + 1) % 7).to_string(),
            'F' => format!("{}-{:02}-{:02}", c.year, c.month, c.day),
            'D' => format!("{:02}/{:02}/{:02}", c.month, c.day, c.year.rem_euclid(100)),
            'T' => format!("{:02}:{:02}:{:02}", c.hour, c.minute, c.second),
            'R' => format!("{:02}:{:02}", c.hour, c.minute),
            'Z' => "UTC".to_string(),
            'z' => "+0000".to_string(),
            'n' => "\n".to_string(),
            't' => "\t".to_string(),
            '%' => "%".to_string(),
            other => {
                if unpadded {
                    format!("%-{other}")
                } else {
                    format!("%{other}")
                }
            }
        };
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_like_python() {
        // 2026-01-15T10:30:00Z, a Thursday.
        let t = at(1_768_473_000);
        assert_eq!(strftime(t, "%Y-%m-%d"), "2026-01-15");
        assert_eq!(strftime(t, "%d %b %Y"), "15 Jan 2026");
        assert_eq!(strftime(t, "%B %d, %Y"), "January 15, 2026");
        assert_eq!(
            strftime(t, "%A %a %j %H:%M:%S %I%p"),
            "Thursday Thu 015 10:30:00 10AM"
        );
        assert_eq!(strftime(t, "%-d/%-m %e 100%% %Q"), "15/1 15 100% %Q");
        // Leap day and the year's last day.
        assert_eq!(
            strftime(at(951_782_400), "%F %j %A"),
            "2000-02-29 060 Tuesday"
        );
        assert_eq!(strftime(at(1_735_603_200), "%F %j"), "2024-12-31 366");
        assert_eq!(strftime(at(0), "%F %T"), "1970-01-01 00:00:00");
    }
}
