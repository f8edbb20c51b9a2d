//! Parser for operations sent by servers (INFO, MSG, HMSG, PING, PONG, +OK, -ERR), for
//! clients such as natrix-bench.
//!
//! `parse` looks at the start of a buffer and returns one complete operation and the
//! number of bytes it took, or `Incomplete` (with the size needed, when known) so that
//! the caller reads more; `check` only says whether a complete operation is there. No
//! I/O, no allocation.

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

pub use crate::proto::lex::ParseError;
use crate::proto::lex::{control_line, payload, sizes, split_args, split_op};

/// Longest control line accepted (INFO lines with many `connect_urls` are long).
pub const CONTROL_LINE_MAX: usize = 64 * 1024;

const ARGS_MAX: usize = 5;

/// The length of the complete operation at the start of `buf`, or why there is none.
pub fn check(buf: &[u8]) -> Result<usize, ParseError> {
    parse(buf).map(|(_, n)| n)
}

pub fn parse(buf: &[u8]) -> Result<(ServerOp<'_>, usize), ParseError> {
    let (line, line_len) = control_line(buf, CONTROL_LINE_MAX)?;
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

fn unquote(text: &[u8]) -> &[u8] {
    let text = text.trim_ascii();
    text.strip_prefix(b"'")
        .and_then(|t| t.strip_suffix(b"'"))
        .unwrap_or(text)
}

fn parse_msg<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    line_len: usize,
    with_headers: bool,
) -> Result<(ServerOp<'a>, usize), ParseError> {
    let (args, count) =
        split_args::<ARGS_MAX>(rest).ok_or(ParseError::BadArgs("too many arguments"))?;
    let size_args = if with_headers { 2 } else { 1 };
    if count != size_args + 2 && count != size_args + 3 {
        return Err(ParseError::BadArgs("wrong number of arguments"));
    }
    let (header_len, total) = sizes(&args[..count], with_headers)?;
    let (payload, end) = payload(buf, line_len, total)?;
    let op = ServerOp::Msg {
        subject: args[0],
        sid: args[1],
        reply: (count == size_args + 3).then(|| args[2]),
        header_len,
        payload,
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
