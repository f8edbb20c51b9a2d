//! Go-style durations, as nats-server reads them: `"10s"`, `"2m"`, `"1h30m"`, `"500ms"`,
//! `"1.5h"`, `"0"`. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`.

use std::time::Duration;

const NANOS_PER_UNIT: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The largest duration Go can express (i64 nanoseconds, about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string. Negative durations are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}");
    let mut rest = text.trim();
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    } else if rest.starts_with('-') {
        return Err(format!("invalid duration {text:?}: must not be negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, tail) = parse_component(rest).ok_or_else(invalid)?;
        total = total.checked_add(nanos).ok_or_else(invalid)?;
        if total > MAX_NANOS {
            return Err(format!("invalid duration {text:?}: too large"));
        }
        rest = tail;
    }
    Ok(Duration::from_nanos(total as u64))
}

/// A duration in whole seconds, as nats-server reads bare integers for duration options.
pub fn duration_from_secs(secs: i64) -> Result<Duration, String> {
    u64::try_from(secs)
        .map(Duration::from_secs)
        .map_err(|_| format!("invalid duration of {secs} seconds: must not be negative"))
}

/// One `<number><unit>` component: its length in nanoseconds and the remaining text.
fn parse_component(text: &str) -> Option<(u128, &str)> {
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, rest) = text.split_at(number_len);
    let unit_len = rest
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(rest.len());
    let (unit, tail) = rest.split_at(unit_len);
    let unit_nanos = unit_nanos(unit)?;
    Some((scale(number, unit_nanos)?, tail))
}

fn unit_nanos(unit: &str) -> Option<u128> {
    NANOS_PER_UNIT
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, nanos)| *nanos)
}

/// `number` (digits with an optional fraction) times `unit_nanos`, truncated to whole nanoseconds.
fn scale(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if fraction.contains('.') {
        return None;
    }
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole_value.checked_mul(unit_nanos)?;
    // Only the first 30 fraction digits can matter for a nanosecond result.
    let fraction = &fraction[..fraction.len().min(30)];
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().ok()?;
        let denominator = 10_u128.checked_pow(fraction.len() as u32)?;
        nanos = nanos.checked_add(numerator.checked_mul(unit_nanos)? / denominator)?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u128 {
        parse_duration(text).unwrap().as_millis()
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(ms("10s"), 10_000);
        assert_eq!(ms("2m"), 120_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("1.5h"), 5_400_000);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("0"), 0);
        assert_eq!(ms("+3s"), 3_000);
        assert_eq!(parse_duration("1us").unwrap(), Duration::from_micros(1));
        assert_eq!(parse_duration("1µs").unwrap(), Duration::from_micros(1));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(ms("1h2m3s4ms"), 3_723_004);
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "10",
            "s",
            "1x",
            "1d",
            "-1s",
            "1.2.3s",
            ".s",
            "1s2",
            "99999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn seconds_from_integers() {
        assert_eq!(duration_from_secs(5).unwrap(), Duration::from_secs(5));
        assert!(duration_from_secs(-1).is_err());
    }
}
