//! Subject transforms (`subject_transform`, `republish`): a source filter and a
//! destination where `{{wildcard(n)}}` or `$n` stands for the n-th wildcard token
//! the source matched.

/// The destination subject for `subject`, when it matches `src` (empty: `>`).
pub fn apply(src: &str, dest: &str, subject: &str) -> Option<String> {
    let src = if src.is_empty() { ">" } else { src };
    let wildcards = captures(src, subject)?;
    if dest.is_empty() {
        return Some(subject.to_string());
    }
    let mut out = Vec::new();
    for token in dest.split('.') {
        out.push(substitute(token, &wildcards)?);
    }
    Some(out.join("."))
}

/// The tokens each wildcard of `filter` matched in `subject` (`>`: the rest).
fn captures(filter: &str, subject: &str) -> Option<Vec<String>> {
    let f: Vec<&str> = filter.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    let mut out = Vec::new();
    for (i, token) in f.iter().enumerate() {
        match *token {
            ">" => {
                if i >= s.len() {
                    return None;
                }
                out.push(s[i..].join("."));
                return Some(out);
            }
            "*" => out.push(s.get(i)?.to_string()),
            t => {
                if s.get(i) != Some(&t) {
                    return None;
                }
            }
        }
    }
    (f.len() == s.len()).then_some(out)
}

fn substitute(token: &str, wildcards: &[String]) -> Option<String> {
    let index = |n: &str| -> Option<String> {
        let n: usize = n.trim().parse().ok()?;
        wildcards.get(n.checked_sub(1)?).cloned()
    };
    if let Some(n) = token.strip_prefix('$') {
        return index(n);
    }
    let lower = token.to_ascii_lowercase();
    if let Some(inner) = lower
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .map(str::trim)
    {
        let arg = inner
            .strip_prefix("wildcard(")
            .or_else(|| inner.strip_prefix("wildcard ("))?
            .strip_suffix(')')?;
        return index(arg);
    }
    if token == ">" {
        return wildcards.last().cloned();
    }
    Some(token.to_string())
}

/// Whether `dest` only uses wildcards `src` has.
pub fn is_valid(src: &str, dest: &str) -> bool {
    let src = if src.is_empty() { ">" } else { src };
    let count = src.split('.').filter(|t| *t == "*" || *t == ">").count();
    let probe: Vec<String> = (1..=count).map(|i| format!("w{i}")).collect();
    dest.split('.').all(|t| substitute(t, &probe).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_wildcards() {
        assert_eq!(
            apply("orders.*", "archive.$1", "orders.eu"),
            Some("archive.eu".into())
        );
        assert_eq!(
            apply("a.*.*", "b.{{wildcard(2)}}.{{ wildcard(1) }}", "a.x.y"),
            Some("b.y.x".into())
        );
        assert_eq!(apply("a.>", "z.>", "a.b.c"), Some("z.b.c".into()));
        assert_eq!(apply("", "copy.>", "x.y"), Some("copy.x.y".into()));
        assert_eq!(apply("a.*", "b", "c.d"), None);
        assert!(is_valid("a.*", "b.$1"));
        assert!(!is_valid("a.*", "b.$2"));
    }
}
