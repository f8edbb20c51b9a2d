//! Encoding of what the server sends to clients (MSG and HMSG frames, -ERR) and of
//! what clients send (PUB, SUB), the latter for natrix-bench.

/// Appends `MSG subject sid [reply] size\r\npayload\r\n` (or its HMSG form when
/// `header_len > 0`) to `out`.
/// Room enough for one message frame: its names (subject, sid or account, reply,
/// queues) together, its payload, and the verb, separators and sizes around them.
pub fn message_len_max(names_bytes: usize, payload_bytes: usize) -> usize {
    names_bytes + payload_bytes + 64
}

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
/// (MSG, HMSG, RMSG, HMSG (routes)).
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

/// Appends `PUB subject [reply] size\r\npayload\r\n` to `out`.
pub fn publish(out: &mut Vec<u8>, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    publish_head(out, subject, reply, payload.len());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Appends only the control line of a PUB (`PUB subject [reply] size\r\n`); the caller
/// appends `size` bytes of payload and `\r\n`.
pub fn publish_head(out: &mut Vec<u8>, subject: &[u8], reply: Option<&[u8]>, size: usize) {
    let mut ints = itoa::Buffer::new();
    out.reserve(subject.len() + size + 40);
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject);
    out.push(b' ');
    if let Some(reply) = reply {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
    out.extend_from_slice(ints.format(size).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `SUB subject [queue] sid\r\n` to `out`.
pub fn subscribe(out: &mut Vec<u8>, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject);
    out.push(b' ');
    if let Some(queue) = queue {
        out.extend_from_slice(queue);
        out.push(b' ');
    }
    out.extend_from_slice(sid);
    out.extend_from_slice(b"\r\n");
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

    #[test]
    fn pub_and_sub_round_trip_through_the_client_parser() {
        use crate::proto::{parse, ClientOp, Limits};
        let limits = Limits {
            control_line_max: 4096,
            payload_max: 1024,
        };
        let mut out = Vec::new();
        publish(&mut out, b"foo", Some(b"_INBOX.1"), b"hello");
        assert_eq!(out, b"PUB foo _INBOX.1 5\r\nhello\r\n");
        let (op, n) = parse(&out, &limits).unwrap();
        assert_eq!(n, out.len());
        assert!(matches!(
            op,
            ClientOp::Pub {
                reply: Some(b"_INBOX.1"),
                ..
            }
        ));
        out.clear();
        subscribe(&mut out, b"foo.>", Some(b"q"), b"7");
        assert_eq!(out, b"SUB foo.> q 7\r\n");
        out.clear();
        subscribe(&mut out, b"foo", None, b"1");
        assert_eq!(
            parse(&out, &limits).unwrap().0,
            ClientOp::Sub {
                subject: b"foo",
                queue: None,
                sid: b"1"
            }
        );
    }
}
