//! Source positions and the error type shared by the config parser and the options layer.

use std::fmt;

/// A place in a configuration file: file name, 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Pos {
    pub file: String,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(file: impl Into<String>, line: u32, col: u32) -> Pos {
        Pos {
            file: file.into(),
            line,
            col,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A configuration error: where it happened and why. Displays as `file:line:col: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    pub pos: Pos,
    pub reason: String,
}

impl ConfError {
    pub fn new(pos: Pos, reason: impl Into<String>) -> ConfError {
        ConfError {
            pos,
            reason: reason.into(),
        }
    }
}

impl ConfError {
    /// Several errors as one, the first giving the position, the others each on a
    /// line of their own after it (`a.conf:2:1: x` newline `a.conf:4:3: y`), as
    /// nats-server lists them.
    pub fn joined(errors: Vec<ConfError>) -> ConfError {
        let mut errors = errors.into_iter();
        let mut first = errors.next().expect("at least one error");
        for e in errors {
            first.reason.push('\n');
            first.reason.push_str(&e.to_string());
        }
        first
    }
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.reason)
    }
}

impl std::error::Error for ConfError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_displays_file_line_col_and_reason() {
        let err = ConfError::new(Pos::new("a.conf", 3, 7), "boom");
        assert_eq!(err.to_string(), "a.conf:3:7: boom");
    }
}
