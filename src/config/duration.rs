//! Durations in the file: `250ms`, `30s`, `5m`, `1h`, `1.5s`, always with a unit and always positive.
//!
//! Rule: DESIGN.md: any positive duration is accepted, so tests can run with millisecond intervals; ELB's own
//! ranges (ELB-SPEC §2.1, §5) are the ELB-compatible API's to enforce, not the file's.
//!
//! Trade-off: a small parser of our own rather than a general-purpose crate. Its errors say what to write
//! instead (`write "30s" or "30ms"` for a bare number, the list of units for a typo), and `elbe check` prints
//! them as the whole explanation; it refuses zero itself, so no caller has to; and it does exact integer
//! arithmetic, so `0.1s` is exactly 100 ms. The cost is some sixty lines, pinned by the table test below.

use std::time::Duration;

/// Parses a duration with a unit: `250ms`, `30s`, `5m`, `1h`, `1.5s`. It must be greater than zero.
///
/// Bare numbers are rejected because a unit-less `30` is ambiguous (seconds in ELB's API, milliseconds in many
/// proxies); the error suggests the fix.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &str = "ms, s, m or h";
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if text.is_empty() {
        return Err(format!(
            "empty duration (write e.g. \"30s\"; units: {UNITS})"
        ));
    }
    if text.starts_with('-') {
        return Err(format!("duration {s:?} must be positive"));
    }
    if unit.is_empty() {
        return Err(format!(
            "duration {s:?} has no unit: write \"{text}s\" or \"{text}ms\" (units: {UNITS})"
        ));
    }
    let Some(nanos_per_unit) = nanos_per(unit) else {
        return Err(format!(
            "duration {s:?} has an unknown unit {unit:?} (units: {UNITS}, e.g. \"1.5s\")"
        ));
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!(
            "duration {s:?} is not a number followed by a unit (e.g. \"30s\", \"1.5s\")"
        ));
    }
    // Integer arithmetic, so "0.1s" is exactly 100ms; digits beyond nanoseconds are dropped.
    let too_long = || format!("duration {s:?} is too long");
    let mut nanos = whole
        .parse::<u128>()
        .map_err(|_| too_long())?
        .checked_mul(nanos_per_unit)
        .ok_or_else(too_long)?;
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes().take(20) {
        scale /= 10;
        nanos += u128::from(digit - b'0') * scale;
    }
    if nanos == 0 {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    // The remainder is below 10^9, so it fits in u32.
    let subsec = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Nanoseconds in one `unit`; `None` for a unit the file may not use. Units are case-sensitive, as in
/// Go and Prometheus, so `5M` is not mistaken for minutes or months.
fn nanos_per(unit: &str) -> Option<u128> {
    match unit {
        "ms" => Some(1_000_000),
        "s" => Some(1_000_000_000),
        "m" => Some(60_000_000_000),
        "h" => Some(3_600_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations() {
        let good = [
            ("250ms", ms(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", ms(1500)),
            ("0.1s", ms(100)),
            ("0.5ms", Duration::from_micros(500)),
            ("1.25m", Duration::from_secs(75)),
            (" 10s ", Duration::from_secs(10)),
            ("0.0000000019s", Duration::from_nanos(1)),
        ];
        for (text, expected) in good {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
        let bad = [
            ("30", "no unit"),
            ("1.5", "no unit"),
            ("", "empty"),
            ("0s", "greater than zero"),
            ("0.0000000001s", "greater than zero"),
            ("-5s", "positive"),
            ("5sec", "unknown unit"),
            ("5 s", "unknown unit"),
            ("1m30s", "unknown unit"),
            ("s", "not a number"),
            (".5s", "not a number"),
            ("5.s", "not a number"),
            ("1.2.3s", "not a number"),
            ("99999999999999999999999999999999999999999h", "too long"),
            ("99999999999999999999h", "too long"),
        ];
        for (text, needle) in bad {
            match parse_duration(text) {
                Ok(d) => panic!("{text:?} parsed as {d:?}"),
                Err(why) => assert!(why.contains(needle), "{text:?}: {why:?} lacks {needle:?}"),
            }
        }
    }
}
