//! Integers with size suffixes.
//!
//! Unquoted numbers may carry a unit, as in nats-server: a single letter is decimal
//! (`1k` = 1000, `1M` = 1000000, `1G` = 10^9, also `t`, `p`, `e`), the letter followed by
//! `b`, `i` or `ib` is binary (`64KB` = 65536, `1MB` = `1Mi` = `1MiB` = 1048576).
//! Quoted size strings (`"1G"`, `"512MB"`) are read by [`parse_size`], where every unit
//! is binary, as nats-server reads JetStream store sizes.

const UNIT_LETTERS: &str = "kmgtpe";

/// The value of an unquoted integer literal, such as `42`, `-3` or `64KB`.
pub fn integer_from_literal(text: &str) -> Result<i64, String> {
    let (digits, suffix) = split_number(text);
    let number = parse_digits(digits, text)?;
    let suffix = suffix.trim().to_ascii_lowercase();
    let multiplier = literal_multiplier(&suffix)
        .ok_or_else(|| format!("invalid size unit {suffix:?} in {text:?}"))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("integer {text:?} is out of range"))
}

/// The value of a size written as a string: `"1048576"`, `"1K"`, `"64MB"`, `"2 GiB"`.
/// Every unit is binary (K = 1024). An empty string is zero.
pub fn parse_size(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(0);
    }
    let (digits, suffix) = split_number(trimmed);
    let number = parse_digits(digits, text)?;
    let suffix = suffix.trim().to_ascii_lowercase();
    let multiplier = binary_multiplier(&suffix).ok_or_else(|| {
        format!("invalid size {text:?}: expected a number with an optional unit K, M, G, T, P or E")
    })?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is out of range"))
}

fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
        .map_or(text.len(), |(i, _)| i);
    text.split_at(end)
}

fn parse_digits(digits: &str, text: &str) -> Result<i64, String> {
    if digits.is_empty() || digits == "-" {
        return Err(format!("expected an integer, got {text:?}"));
    }
    digits
        .parse::<i64>()
        .map_err(|_| format!("integer {text:?} is out of range"))
}

fn unit_power(letter: char) -> Option<u32> {
    UNIT_LETTERS.find(letter).map(|i| i as u32 + 1)
}

fn literal_multiplier(suffix: &str) -> Option<i64> {
    if suffix.is_empty() {
        return Some(1);
    }
    let mut chars = suffix.chars();
    let power = unit_power(chars.next()?)?;
    match chars.as_str() {
        "" => Some(1000_i64.pow(power)),
        "b" | "i" | "ib" => Some(1024_i64.pow(power)),
        _ => None,
    }
}

fn binary_multiplier(suffix: &str) -> Option<i64> {
    if suffix.is_empty() {
        return Some(1);
    }
    let mut chars = suffix.chars();
    let power = unit_power(chars.next()?)?;
    match chars.as_str() {
        "" | "b" | "i" | "ib" => Some(1024_i64.pow(power)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_units_follow_nats_server() {
        assert_eq!(integer_from_literal("42"), Ok(42));
        assert_eq!(integer_from_literal("-7"), Ok(-7));
        assert_eq!(integer_from_literal("1k"), Ok(1000));
        assert_eq!(integer_from_literal("1K"), Ok(1000));
        assert_eq!(integer_from_literal("64KB"), Ok(65536));
        assert_eq!(integer_from_literal("2ki"), Ok(2048));
        assert_eq!(integer_from_literal("1kib"), Ok(1024));
        assert_eq!(integer_from_literal("1M"), Ok(1_000_000));
        assert_eq!(integer_from_literal("1MB"), Ok(1_048_576));
        assert_eq!(integer_from_literal("1G"), Ok(1_000_000_000));
        assert_eq!(integer_from_literal("1GB"), Ok(1 << 30));
        assert_eq!(integer_from_literal("1T"), Ok(1_000_000_000_000));
        assert_eq!(integer_from_literal("1TB"), Ok(1 << 40));
        assert_eq!(integer_from_literal("1P"), Ok(1_000_000_000_000_000));
        assert_eq!(integer_from_literal("1E"), Ok(1_000_000_000_000_000_000));
        assert_eq!(integer_from_literal("1EB"), Ok(1 << 60));
    }

    #[test]
    fn literal_errors() {
        assert!(integer_from_literal("99999999999999999999").is_err());
        assert!(integer_from_literal("10E").is_err());
        assert!(integer_from_literal("1kbb").is_err());
        assert!(integer_from_literal("-").is_err());
    }

    #[test]
    fn size_strings_are_binary() {
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512MB"), Ok(512 << 20));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size(""), Ok(0));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("lots").is_err());
    }
}
