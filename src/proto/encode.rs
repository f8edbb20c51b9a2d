//! Encoding of what the server sends to clients: MSG and HMSG frames.

/// Appends `MSG subject sid [reply] size\r\npayload\r\n` (or its HMSG form when
/// `header_len > 0`) to `out`.
pub fn message(
    out: &mut Vec<u8>,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    header_len: usize,
    payload: &[u8],
) {
    out.reserve(subject.len() + sid.len() + payload.len() + 48);
    out.extend_from_slice(if header_len > 0 { b"HMSG " } else { b"MSG " });
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.push(b' ');
    if let Some(reply) = reply {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
    sizes_and_payload(out, header_len, payload);
}

/// Appends `[header_len ]size\r\npayload\r\n`, the end of every message frame
/// (MSG, HMSG, RMSG, HRMSG).
pub fn sizes_and_payload(out: &mut Vec<u8>, header_len: usize, payload: &[u8]) {
    let mut ints = itoa::Buffer::new();
    if header_len > 0 {
        out.extend_from_slice(ints.format(header_len).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(ints.format(payload.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// `-ERR 'text'\r\n`
pub fn error(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_and_hmsg() {
        let mut out = Vec::new();
        message(&mut out, b"foo", b"1", None, 0, b"hi");
        assert_eq!(out, b"MSG foo 1 2\r\nhi\r\n");
        out.clear();
        message(
            &mut out,
            b"foo",
            b"9",
            Some(b"_INBOX.x"),
            12,
            b"NATS/1.0\r\n\r\nhi",
        );
        assert_eq!(out, b"HMSG foo 9 _INBOX.x 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    }
}
