//! NATS message headers (`NATS/1.0\r\nKey: Value\r\n...\r\n\r\n`): reading the
//! JetStream ones a publish carries, and writing status and metadata headers.

pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
pub const EXPECTED_LAST_SEQ: &str = "Nats-Expected-Last-Sequence";
pub const EXPECTED_LAST_SUBJ_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
pub const ROLLUP: &str = "Nats-Rollup";

/// The value of header `name` (first occurrence, name compared without case).
/// Called several times for every publish, so it scans bytes and builds nothing.
pub fn get<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    block.split(|b| *b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = memchr::memchr(b':', line)?;
        let (key, value) = (&line[..colon], &line[colon + 1..]);
        if !key.trim_ascii().eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        std::str::from_utf8(value.trim_ascii()).ok()
    })
}

/// A header block with a status line and headers.
pub fn status(code: u16, description: &str, headers: &[(&str, String)]) -> Vec<u8> {
    let mut out = format!("NATS/1.0 {code} {description}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// `block` (a stored header block, maybe empty) with `extra` headers added.
pub fn with_added(block: &[u8], extra: &[(&str, String)]) -> Vec<u8> {
    let mut out = if block.len() >= 4 && block.ends_with(b"\r\n\r\n") {
        block[..block.len() - 2].to_vec()
    } else {
        b"NATS/1.0\r\n".to_vec()
    };
    for (k, v) in extra {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_headers() {
        let block = b"NATS/1.0\r\nNats-Msg-Id: abc\r\nX: 1\r\n\r\n";
        assert_eq!(get(block, MSG_ID), Some("abc"));
        assert_eq!(get(block, "nats-msg-id"), Some("abc"));
        assert_eq!(get(block, "Y"), None);
        assert_eq!(get(b"", MSG_ID), None);
        assert_eq!(
            get(b"NATS/1.0\r\nNats-Msg-Id:  spaced \r\n\r\n", MSG_ID),
            Some("spaced")
        );
        let more = with_added(block, &[("Nats-Stream", "S".into())]);
        assert_eq!(get(&more, "Nats-Stream"), Some("S"));
        assert_eq!(get(&more, "X"), Some("1"));
        let fresh = with_added(b"", &[("A", "b".into())]);
        assert_eq!(fresh, b"NATS/1.0\r\nA: b\r\n\r\n");
        assert_eq!(
            status(404, "No Messages", &[]),
            b"NATS/1.0 404 No Messages\r\n\r\n"
        );
    }
}
