//! Durations written as a number and a unit: `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`.
//!
//! The same notation serves scenario files and environment variables (`DB_MAX_IDLE_TIME=10m`), so a
//! value reads the same wherever it is written. Parsing is exact: no floating point, no rounding.

use std::time::Duration;

/// Nanoseconds in one of each unit, longest suffix first so that `ms` is not read as `m`.
const UNITS: [(&str, u128); 4] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// What a duration looks like, for error messages.
const EXPECTED: &str = "a number and a unit (ms, s, m or h), e.g. \"250ms\", \"1.5s\", \"2m\"";

/// Parses `"250ms"`, `"1.5s"`, `"2m"` or `"1h"` into a [`Duration`]; the error says what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("\"{text}\" is not a duration: expected {EXPECTED}");
    let (number, unit_nanos) = UNITS
        .iter()
        .find_map(|(suffix, nanos)| text.strip_suffix(suffix).map(|n| (n, *nanos)))
        .ok_or_else(invalid)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || number.ends_with('.') {
        return Err(invalid());
    }
    // Digits beyond 30 overflow u128 arithmetic; no sensible duration needs them.
    if whole.len() > 30 || fraction.len() > 30 {
        return Err(format!("\"{text}\" has too many digits"));
    }
    let too_large = || format!("\"{text}\" is too large a duration");
    let whole_nanos = whole
        .parse::<u128>()
        .map_err(|_| invalid())?
        .checked_mul(unit_nanos)
        .ok_or_else(too_large)?;
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let scale = 10u128.pow(fraction.len() as u32);
        let scaled = fraction
            .parse::<u128>()
            .map_err(|_| invalid())?
            .checked_mul(unit_nanos)
            .ok_or_else(|| format!("\"{text}\" has too many digits"))?;
        if !scaled.is_multiple_of(scale) {
            return Err(format!(
                "\"{text}\" is finer than a nanosecond, the smallest duration"
            ));
        }
        scaled / scale
    };
    let nanos = u64::try_from(whole_nanos + fraction_nanos).map_err(|_| too_large())?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration in the notation [`parse_duration`] reads, in the largest unit that is exact
/// (`"2m"`, `"1.5s"`, `"250ms"`, `"0.5ms"`); `parse_duration(&format_duration(d)) == Ok(d)` for
/// every `d` up to `u64::MAX` nanoseconds.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    // Whole hours, minutes or seconds; milliseconds are handled below with the fractions.
    let whole_unit = UNITS[1..]
        .iter()
        .rev()
        .find(|(_, unit)| nanos != 0 && nanos.is_multiple_of(*unit));
    if let Some((suffix, unit)) = whole_unit {
        return format!("{}{suffix}", nanos / unit);
    }
    // Seconds with decimals read better than a long millisecond count ("1.5s", not "1500ms").
    let (suffix, unit) = if nanos >= 1_000_000_000 && nanos.is_multiple_of(1_000_000) {
        ("s", 1_000_000_000)
    } else {
        ("ms", 1_000_000)
    };
    let fraction = format!("{:0width$}", nanos % unit, width = digits(unit) - 1);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}{suffix}", nanos / unit)
    } else {
        format!("{}.{fraction}{suffix}", nanos / unit)
    }
}

/// Decimal digits of a power of ten.
fn digits(power_of_ten: u128) -> usize {
    power_of_ten.to_string().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.25ms"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0.000001ms"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "", "ms", "5", "5 s", " 5s", "5s ", "-5s", "+5s", "5.s", ".5s", "5..0s", "5d", "5sec",
            "1e3ms", "5S", "5µs", "30000",
        ] {
            let error = parse_duration(text).expect_err(text);
            assert!(error.contains("is not a duration"), "{text}: {error}");
        }
    }

    #[test]
    fn rejects_sub_nanosecond_and_huge_values() {
        let error = parse_duration("0.0000001ms").expect_err("sub-nanosecond");
        assert!(error.contains("finer than a nanosecond"), "{error}");
        let error = parse_duration("99999999999999h").expect_err("too large");
        assert!(error.contains("too large"), "{error}");
        for text in [
            format!("{}s", "9".repeat(40)),
            format!("0.{}h", "9".repeat(30)),
        ] {
            let error = parse_duration(&text).expect_err("too many digits");
            assert!(error.contains("too many digits"), "{error}");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(1001)), "1.001s");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_micros(500)), "0.5ms");
        assert_eq!(
            format_duration(Duration::from_nanos(1_000_001)),
            "1.000001ms"
        );
    }

    #[test]
    fn format_then_parse_gives_the_same_duration() {
        let mut nanos: u64 = 1;
        // A multiplicative walk reaches every magnitude and many digit patterns.
        while let Some(next) = nanos.checked_mul(7).and_then(|n| n.checked_add(3)) {
            let duration = Duration::from_nanos(nanos);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
            nanos = next;
        }
        let max = Duration::from_nanos(u64::MAX);
        assert_eq!(parse_duration(&format_duration(max)), Ok(max));
    }
}
