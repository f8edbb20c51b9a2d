//! Subject syntax: validation of publish and subscribe subjects, and matching of a
//! literal subject against a filter with `*` and `>` wildcards.

/// Upper bound on tokens in one subject; longer subjects are refused as invalid.
pub const TOKENS_MAX: usize = 256;

/// A literal subject for publishing: non-empty tokens, no wildcards, no whitespace.
pub fn is_valid_publish(subject: &[u8]) -> bool {
    is_valid(subject, false)
}

/// A subscription filter: like a publish subject, but `*` may stand for a token
/// and `>` may stand as the last token.
pub fn is_valid_filter(subject: &[u8]) -> bool {
    is_valid(subject, true)
}

fn is_valid(subject: &[u8], wildcards: bool) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut count = 0;
    let mut tokens = subject.split(|b| *b == b'.').peekable();
    while let Some(token) = tokens.next() {
        count += 1;
        if count > TOKENS_MAX || token.is_empty() {
            return false;
        }
        if token.iter().any(|b| b.is_ascii_whitespace()) {
            return false;
        }
        let is_last = tokens.peek().is_none();
        match token {
            b"*" if !wildcards => return false,
            b">" if !wildcards || !is_last => return false,
            _ => {}
        }
    }
    true
}

/// True when `subject` has a wildcard token.
pub fn has_wildcard(subject: &[u8]) -> bool {
    subject
        .split(|b| *b == b'.')
        .any(|t| t == b"*" || t == b">")
}

/// Does the literal `subject` match `filter`?
pub fn matches(filter: &[u8], subject: &[u8]) -> bool {
    let mut f = filter.split(|b| *b == b'.');
    let mut s = subject.split(|b| *b == b'.');
    loop {
        match (f.next(), s.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_subjects() {
        assert!(is_valid_publish(b"foo.bar"));
        assert!(!is_valid_publish(b"foo..bar"));
        assert!(!is_valid_publish(b"foo.*"));
        assert!(!is_valid_publish(b".foo"));
        assert!(!is_valid_publish(b""));
        assert!(!is_valid_publish(b"foo.>"));
    }

    #[test]
    fn filters() {
        assert!(is_valid_filter(b"foo.*.bar"));
        assert!(is_valid_filter(b"foo.>"));
        assert!(is_valid_filter(b">"));
        assert!(!is_valid_filter(b"foo.>.bar"));
        assert!(!is_valid_filter(b"foo..bar"));
        assert!(
            is_valid_filter(b"foo*.bar"),
            "a star inside a token is a literal"
        );
    }

    #[test]
    fn matching() {
        assert!(matches(b"foo.*", b"foo.bar"));
        assert!(!matches(b"foo.*", b"foo.bar.baz"));
        assert!(matches(b"foo.>", b"foo.bar.baz"));
        assert!(!matches(b"foo.>", b"foo"));
        assert!(matches(b">", b"a"));
        assert!(matches(b"a.b", b"a.b"));
        assert!(!matches(b"a.b", b"a.c"));
    }
}
