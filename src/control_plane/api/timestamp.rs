//! Wall-clock times as the API writes and reads them: `CreatedTime` as `2013-05-24T21:15:31.280Z` (ELB-SPEC
//! §13.2) and SigV4's `X-Amz-Date` as `20150830T123600Z` (basic ISO 8601, UTC).
//!
//! Rule: UTC only, from `std::time::SystemTime`: a signature's date is compared with the wall clock, which
//! tokio's monotonic clock cannot give.
//!
//! Trade-off: the civil-date arithmetic (Howard Hinnant's days-from-civil algorithm) is twenty lines here rather
//! than a date crate: the API needs two fixed formats and nothing else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2013-05-24T21:15:31.280Z`.
pub(crate) fn iso8601(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// `20150830T123600Z`, as SigV4 signs it.
pub(crate) fn amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Reads `20150830T123600Z`; `None` for anything else (another format, a date that does not exist).
pub(crate) fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    let secs = days as u64 * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_both_formats() {
        // 2013-05-24T21:15:31.280Z, ELB-SPEC §13.2's example.
        let time = UNIX_EPOCH + Duration::from_millis(1_369_430_131_280);
        assert_eq!(iso8601(time), "2013-05-24T21:15:31.280Z");
        assert_eq!(amz_date(time), "20130524T211531Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn amz_dates_read_back_and_bad_ones_are_refused() {
        let time = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(amz_date(time), "20150830T123600Z");
        assert_eq!(
            amz_date(parse_amz_date("20240229T235959Z").unwrap()),
            "20240229T235959Z"
        );
        for bad in [
            "20230229T000000Z",
            "20151330T000000Z",
            "20150830T246000Z",
            "20150830 123600Z",
            "2015-08-30T12:36:00Z",
            "20150830T123600",
            "+0150830T123600Z",
            "",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }
}
