//! Parser for operations sent by servers (INFO, MSG, HMSG, PING, PONG, +OK, -ERR), for
//! clients such as natrix-bench.
//!
//! `parse` looks at the start of a buffer and returns one complete operation and the
//! number of bytes it took, or `Incomplete` (with the size needed, when known) so that
//! the caller reads more; `check` only says whether a complete operation is there. No
//! I/O, no allocation.

use memchr::memchr;

#[derive(Debug, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// The JSON object that follows `INFO`.
    Info(&'a [u8]),
    Msg {
        subject: &'a [u8],
        sid: &'a [u8],
        reply: Option<&'a [u8]>,
        /// Bytes of `payload` that are headers (0 for MSG).
        header_len: usize,
        /// Headers followed by the body.
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Ok,
    /// The text of `-ERR`, without its quotes.
    Err(&'a [u8]),
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed; `need` is the total length of the operation when known.
    Incomplete {
        need: Option<usize>,
    },
    ControlLineTooLong,
    UnknownOp,
    /// The operation is known but its arguments are malformed.
    BadArgs(&'static str),
}

/// Longest control line accepted (INFO lines with many `connect_urls` are long).
pub const CONTROL_LINE_MAX: usize = 64 * 1024;

const ARGS_MAX: usize = 5;

/// The length of the complete operation at the start of `buf`, or why there is none.
pub fn check(buf: &[u8]) -> Result<usize, ParseError> {
    parse(buf).map(|(_, n)| n)
}

pub fn parse(buf: &[u8]) -> Result<(ServerOp<'_>, usize), ParseError> {
    let window = &buf[..buf.len().min(CONTROL_LINE_MAX + 2)];
    let Some(nl) = memchr(b'\n', window) else {
        if buf.len() > CONTROL_LINE_MAX {
            return Err(ParseError::ControlLineTooLong);
        }
        return Err(ParseError::Incomplete { need: None });
    };
    let line_len = nl + 1;
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let (name, rest) = split_op(line);
    let op = match name.len() {
        3 if name.eq_ignore_ascii_case(b"MSG") => return parse_msg(buf, rest, line_len, false),
        4 if name.eq_ignore_ascii_case(b"HMSG") => return parse_msg(buf, rest, line_len, true),
        4 if name.eq_ignore_ascii_case(b"PING") => ServerOp::Ping,
        4 if name.eq_ignore_ascii_case(b"PONG") => ServerOp::Pong,
        4 if name.eq_ignore_ascii_case(b"INFO") => ServerOp::Info(rest),
        4 if name.eq_ignore_ascii_case(b"-ERR") => ServerOp::Err(unquote(rest)),
        3 if name.eq_ignore_ascii_case(b"+OK") => ServerOp::Ok,
        _ => return Err(ParseError::UnknownOp),
    };
    Ok((op, line_len))
}

fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim_start(line);
    match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(at) => (&line[..at], trim_start(&line[at..])),
        None => (line, &[]),
    }
}

fn trim_start(s: &[u8]) -> &[u8] {
    let skip = s.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    &s[skip..]
}

fn unquote(text: &[u8]) -> &[u8] {
    let text = text.trim_ascii();
    text.strip_prefix(b"'")
        .and_then(|t| t.strip_suffix(b"'"))
        .unwrap_or(text)
}

fn parse_size(arg: &[u8]) -> Option<usize> {
    if arg.is_empty() || arg.len() > 12 || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(arg.iter().fold(0usize, |n, d| n * 10 + (d - b'0') as usize))
}

fn parse_msg<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    line_len: usize,
    with_headers: bool,
) -> Result<(ServerOp<'a>, usize), ParseError> {
    let mut args: [&[u8]; ARGS_MAX] = [&[]; ARGS_MAX];
    let mut count = 0;
    for arg in rest
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|a| !a.is_empty())
    {
        if count == ARGS_MAX {
            return Err(ParseError::BadArgs("too many arguments"));
        }
        args[count] = arg;
        count += 1;
    }
    let sizes = if with_headers { 2 } else { 1 };
    if count != sizes + 2 && count != sizes + 3 {
        return Err(ParseError::BadArgs("wrong number of arguments"));
    }
    let total = parse_size(args[count - 1]).ok_or(ParseError::BadArgs("bad size"))?;
    let header_len = if with_headers {
        let h = parse_size(args[count - 2]).ok_or(ParseError::BadArgs("bad header size"))?;
        if h > total {
            return Err(ParseError::BadArgs("header size exceeds total size"));
        }
        h
    } else {
        0
    };
    let end = line_len + total + 2;
    if buf.len() < end {
        return Err(ParseError::Incomplete { need: Some(end) });
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(ParseError::BadArgs("payload not followed by CRLF"));
    }
    let op = ServerOp::Msg {
        subject: args[0],
        sid: args[1],
        reply: (count == sizes + 3).then(|| args[2]),
        header_len,
        payload: &buf[line_len..line_len + total],
    };
    Ok((op, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ops() {
        assert_eq!(parse(b"PING\r\n"), Ok((ServerOp::Ping, 6)));
        assert_eq!(parse(b"pong\r\nPING\r\n"), Ok((ServerOp::Pong, 6)));
        assert_eq!(parse(b"+OK\r\n"), Ok((ServerOp::Ok, 5)));
        assert_eq!(
            parse(b"-ERR 'Authorization Violation'\r\n"),
            Ok((ServerOp::Err(b"Authorization Violation"), 32))
        );
        assert_eq!(
            parse(b"INFO {\"server_id\":\"x\",\"jetstream\":true}\r\n")
                .unwrap()
                .0,
            ServerOp::Info(b"{\"server_id\":\"x\",\"jetstream\":true}")
        );
    }

    #[test]
    fn msg_with_and_without_reply() {
        let input = b"MSG foo.bar 9 5\r\nhello\r\nPING\r\n";
        let (op, n) = parse(input).unwrap();
        assert_eq!(n, 24);
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: b"foo.bar",
                sid: b"9",
                reply: None,
                header_len: 0,
                payload: b"hello"
            }
        );
        assert_eq!(parse(&input[n..]), Ok((ServerOp::Ping, 6)));
        let (op, _) = parse(b"MSG foo 1 _INBOX.a.1 0\r\n\r\n").unwrap();
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: b"foo",
                sid: b"1",
                reply: Some(b"_INBOX.a.1"),
                header_len: 0,
                payload: b""
            }
        );
    }

    #[test]
    fn hmsg() {
        let input = b"HMSG foo 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let (op, n) = parse(input).unwrap();
        assert_eq!(n, input.len());
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: b"foo",
                sid: b"2",
                reply: Some(b"r"),
                header_len: 12,
                payload: b"NATS/1.0\r\n\r\nhi"
            }
        );
        assert!(matches!(
            parse(b"HMSG foo 2 20 14\r\n"),
            Err(ParseError::BadArgs(_))
        ));
    }

    #[test]
    fn incomplete() {
        assert_eq!(
            parse(b"MSG foo 1 5\r\nhel"),
            Err(ParseError::Incomplete { need: Some(20) })
        );
        assert_eq!(
            check(b"MSG foo 1 5\r\nhello\r"),
            Err(ParseError::Incomplete { need: Some(20) })
        );
        assert_eq!(check(b"MSG foo 1 5\r\nhello\r\n"), Ok(20));
        assert_eq!(parse(b"PIN"), Err(ParseError::Incomplete { need: None }));
        assert_eq!(parse(b""), Err(ParseError::Incomplete { need: None }));
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"PUB foo 1\r\n"), Err(ParseError::UnknownOp));
        assert!(matches!(
            parse(b"MSG foo 5\r\n"),
            Err(ParseError::BadArgs(_))
        ));
        assert!(matches!(
            parse(b"MSG foo 1 x\r\n"),
            Err(ParseError::BadArgs(_))
        ));
        assert!(matches!(
            parse(b"MSG foo 1 1\r\nab\r\n"),
            Err(ParseError::BadArgs(_))
        ));
        let long = vec![b'a'; CONTROL_LINE_MAX + 10];
        assert_eq!(parse(&long), Err(ParseError::ControlLineTooLong));
    }
}
