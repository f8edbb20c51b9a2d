//! Typed reads of config items, with errors that name the key and its position.

use std::time::Duration;

use crate::conf::{duration_from_secs, parse_duration, parse_size, ConfError, Item, Map, Value};

pub(crate) type Result<T> = std::result::Result<T, ConfError>;

/// `expected an integer for "port", got string`, at the key.
pub(crate) fn type_error(key: &str, item: &Item, expected: &str) -> ConfError {
    let got = item.value.type_name();
    ConfError::new(
        item.pos.clone(),
        format!("expected {expected} for {key:?}, got {got}"),
    )
}

/// An error at `item` with a free-form reason.
pub(crate) fn invalid(item: &Item, reason: impl Into<String>) -> ConfError {
    ConfError::new(item.pos.clone(), reason)
}

pub(crate) fn string(key: &str, item: &Item) -> Result<String> {
    match &item.value {
        Value::Str(s) => Ok(s.clone()),
        _ => Err(type_error(key, item, "a string")),
    }
}

pub(crate) fn integer(key: &str, item: &Item) -> Result<i64> {
    match item.value {
        Value::Int(i) => Ok(i),
        _ => Err(type_error(key, item, "an integer")),
    }
}

pub(crate) fn boolean(key: &str, item: &Item) -> Result<bool> {
    match item.value {
        Value::Bool(b) => Ok(b),
        _ => Err(type_error(key, item, "a boolean")),
    }
}

pub(crate) fn map<'a>(key: &str, item: &'a Item) -> Result<&'a Map> {
    match &item.value {
        Value::Map(m) => Ok(m),
        _ => Err(type_error(key, item, "a map")),
    }
}

pub(crate) fn array<'a>(key: &str, item: &'a Item) -> Result<&'a [Item]> {
    match &item.value {
        Value::Array(a) => Ok(a),
        _ => Err(type_error(key, item, "an array")),
    }
}

/// An integer in `0..=max`.
pub(crate) fn bounded(key: &str, item: &Item, max: u64) -> Result<u64> {
    let n = integer(key, item)?;
    u64::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| {
        invalid(
            item,
            format!("{key:?} must be between 0 and {max}, got {n}"),
        )
    })
}

/// A size: an integer (units already applied by the parser, `1MB`) or a string (`"1G"`).
pub(crate) fn size(key: &str, item: &Item) -> Result<i64> {
    match &item.value {
        Value::Int(i) => Ok(*i),
        Value::Str(s) => {
            parse_size(s).map_err(|reason| invalid(item, format!("{key:?}: {reason}")))
        }
        _ => Err(type_error(key, item, "a size")),
    }
}

/// A non-negative size that fits `max`.
pub(crate) fn bounded_size(key: &str, item: &Item, max: u64) -> Result<u64> {
    let n = size(key, item)?;
    u64::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| {
        invalid(
            item,
            format!("{key:?} must be between 0 and {max}, got {n}"),
        )
    })
}

/// A duration: a Go duration string (`"2m"`), or, as nats-server still accepts, an
/// integer number of seconds, which adds a warning.
pub(crate) fn duration(key: &str, item: &Item, warnings: &mut Vec<String>) -> Result<Duration> {
    match &item.value {
        Value::Str(s) => {
            parse_duration(s).map_err(|reason| invalid(item, format!("{key:?}: {reason}")))
        }
        Value::Int(secs) => {
            warnings.push(format!(
                "{}: {key:?} should be a quoted duration such as \"2m\" (unquoted, 2m is the \
                 number 2000000); reading {secs} as seconds",
                item.pos
            ));
            duration_from_secs(*secs).map_err(|reason| invalid(item, format!("{key:?}: {reason}")))
        }
        _ => Err(type_error(key, item, "a duration")),
    }
}

/// A duration in whole milliseconds.
pub(crate) fn duration_ms(key: &str, item: &Item, warnings: &mut Vec<String>) -> Result<u64> {
    let d = duration(key, item, warnings)?;
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A port: `0..=65535`, or `-1` for a random port, stored as 0.
pub(crate) fn port(key: &str, item: &Item) -> Result<u16> {
    match integer(key, item)? {
        -1 => Ok(0),
        n => u16::try_from(n).map_err(|_| {
            invalid(
                item,
                format!("{key:?} must be a port between 0 and 65535 (or -1 for random), got {n}"),
            )
        }),
    }
}

/// A string, or an array of strings.
pub(crate) fn string_list(key: &str, item: &Item) -> Result<Vec<String>> {
    match &item.value {
        Value::Str(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|i| string(key, i)).collect(),
        _ => Err(type_error(key, item, "a string or an array of strings")),
    }
}

/// `enabled`/`enable` or `disabled`/`disable`, any case.
pub(crate) fn enabled_word(key: &str, item: &Item, word: &str) -> Result<bool> {
    match word.to_ascii_lowercase().as_str() {
        "enabled" | "enable" => Ok(true),
        "disabled" | "disable" => Ok(false),
        _ => Err(invalid(
            item,
            format!("expected \"enabled\" or \"disabled\" for {key:?}, got {word:?}"),
        )),
    }
}

/// `unknown field "key"`, as nats-server words it; None for a variable used elsewhere.
pub(crate) fn unknown(key: &str, item: &Item) -> Option<ConfError> {
    (!item.referenced).then(|| invalid(item, format!("unknown field {key:?}")))
}

/// What reading a config collects without stopping at once: errors that refuse the
/// config (unknown keys, features natrix lacks), reported together as nats-server
/// does, and warnings.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub errors: Vec<ConfError>,
    pub warnings: Vec<String>,
}

impl Notes {
    pub fn unknown(&mut self, key: &str, item: &Item) {
        self.errors.extend(unknown(key, item));
    }

    /// `path` (e.g. `leafnodes` or `cluster.tls`) names a feature natrix lacks:
    /// starting without it would serve something other than what the file asks for.
    pub fn unsupported(&mut self, path: impl std::fmt::Display, item: &Item) {
        self.errors.push(invalid(
            item,
            format!("{path} is not supported by natrix yet"),
        ));
    }

    /// `path` names a tuning knob natrix lacks; the server runs as if it were absent.
    pub fn ignored(&mut self, path: impl std::fmt::Display, item: &Item) {
        self.warn(
            item,
            format!("{path} is not supported by natrix yet; ignored"),
        );
    }

    pub fn warn(&mut self, item: &Item, reason: impl std::fmt::Display) {
        self.warnings.push(format!("{}: {reason}", item.pos));
    }

    /// The collected errors as one, or Ok when there are none.
    pub fn check(&mut self) -> Result<()> {
        match std::mem::take(&mut self.errors) {
            errors if errors.is_empty() => Ok(()),
            errors => Err(ConfError::joined(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::Pos;

    fn item(value: Value) -> Item {
        Item::new(value, Pos::new("t.conf", 2, 3))
    }

    #[test]
    fn type_errors_name_key_expected_and_got() {
        let e = integer("port", &item(Value::Str("x".into()))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.conf:2:3: expected an integer for \"port\", got string"
        );
        let e = boolean("debug", &item(Value::Int(1))).unwrap_err();
        assert_eq!(e.reason, "expected a boolean for \"debug\", got integer");
    }

    #[test]
    fn ports_accept_minus_one_as_random() {
        assert_eq!(port("port", &item(Value::Int(-1))).unwrap(), 0);
        assert_eq!(port("port", &item(Value::Int(4222))).unwrap(), 4222);
        assert!(port("port", &item(Value::Int(70000))).is_err());
        assert!(port("port", &item(Value::Int(-2))).is_err());
    }

    #[test]
    fn sizes_take_integers_and_strings() {
        assert_eq!(size("s", &item(Value::Int(5))).unwrap(), 5);
        assert_eq!(size("s", &item(Value::Str("1MB".into()))).unwrap(), 1 << 20);
        assert!(size("s", &item(Value::Str("big".into()))).is_err());
        assert!(bounded_size("s", &item(Value::Int(-1)), 10).is_err());
    }

    #[test]
    fn durations_take_strings_or_seconds_with_a_warning() {
        let mut warnings = Vec::new();
        assert_eq!(
            duration_ms("d", &item(Value::Str("1m30s".into())), &mut warnings).unwrap(),
            90_000
        );
        assert!(warnings.is_empty());
        assert_eq!(
            duration_ms("d", &item(Value::Int(3)), &mut warnings).unwrap(),
            3_000
        );
        assert_eq!(warnings.len(), 1);
        assert!(duration_ms("d", &item(Value::Str("soon".into())), &mut warnings).is_err());
    }

    #[test]
    fn unknown_skips_referenced_variables() {
        let mut var = item(Value::Int(1));
        var.referenced = true;
        assert!(unknown("VAR", &var).is_none());
        let e = unknown("nope", &item(Value::Int(1))).unwrap();
        assert_eq!(e.to_string(), "t.conf:2:3: unknown field \"nope\"");
    }

    #[test]
    fn notes_join_errors_one_per_line() {
        let mut notes = Notes::default();
        assert!(notes.check().is_ok());
        notes.unknown("a", &item(Value::Int(1)));
        notes.unsupported("leafnodes", &item(Value::Int(1)));
        notes.ignored("prof_port", &item(Value::Int(1)));
        let e = notes.check().unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.conf:2:3: unknown field \"a\"\nt.conf:2:3: leafnodes is not supported by natrix yet"
        );
        assert_eq!(
            notes.warnings,
            ["t.conf:2:3: prof_port is not supported by natrix yet; ignored"]
        );
    }
}
