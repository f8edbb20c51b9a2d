//! Parser for operations sent by clients (CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG).
//!
//! `parse` looks at the start of a buffer and returns one complete operation and the
//! number of bytes it took, or `Incomplete` (with the size needed, when known) so that
//! the caller reads more. It does no I/O and never allocates.

/// Limits the parser enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub control_line_max: usize,
    pub payload_max: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ClientOp<'a> {
    Connect(&'a [u8]),
    Pub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        /// Bytes of `payload` that are headers (0 for PUB).
        header_len: usize,
        /// Headers followed by the body.
        payload: &'a [u8],
    },
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    Unsub {
        sid: &'a [u8],
        max: Option<u64>,
    },
    Ping,
    Pong,
    Info,
    Ok,
    Err,
}

pub use crate::proto::lex::ParseError;
use crate::proto::lex::{control_line, payload, sizes, split_args, split_op};

const ARGS_MAX: usize = 5;

pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<(ClientOp<'a>, usize), ParseError> {
    let (line, line_len) = control_line(buf, limits.control_line_max)?;
    let (name, rest) = split_op(line);
    let op = match name.len() {
        2 if name.eq_ignore_ascii_case(b"+OK") => ClientOp::Ok,
        3 if name.eq_ignore_ascii_case(b"PUB") => {
            return parse_pub(buf, rest, line_len, limits, false)
        }
        3 if name.eq_ignore_ascii_case(b"SUB") => parse_sub(rest)?,
        4 if name.eq_ignore_ascii_case(b"HPUB") => {
            return parse_pub(buf, rest, line_len, limits, true)
        }
        4 if name.eq_ignore_ascii_case(b"PING") => ClientOp::Ping,
        4 if name.eq_ignore_ascii_case(b"PONG") => ClientOp::Pong,
        4 if name.eq_ignore_ascii_case(b"INFO") => ClientOp::Info,
        4 if name.eq_ignore_ascii_case(b"-ERR") => ClientOp::Err,
        5 if name.eq_ignore_ascii_case(b"UNSUB") => parse_unsub(rest)?,
        7 if name.eq_ignore_ascii_case(b"CONNECT") => ClientOp::Connect(rest),
        _ => return Err(ParseError::UnknownOp),
    };
    Ok((op, line_len))
}

fn parse_pub<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    line_len: usize,
    limits: &Limits,
    with_headers: bool,
) -> Result<(ClientOp<'a>, usize), ParseError> {
    let (args, count) =
        split_args::<ARGS_MAX>(rest).ok_or(ParseError::BadArgs("too many arguments"))?;
    let size_args = if with_headers { 2 } else { 1 };
    if count != size_args + 1 && count != size_args + 2 {
        return Err(ParseError::BadArgs("wrong number of arguments"));
    }
    let subject = args[0];
    let reply = (count == size_args + 2).then(|| args[1]);
    let (header_len, total) = sizes(&args[..count], with_headers)?;
    if total > limits.payload_max {
        return Err(ParseError::PayloadTooLarge { size: total });
    }
    let (payload, end) = payload(buf, line_len, total)?;
    let op = ClientOp::Pub {
        subject,
        reply,
        header_len,
        payload,
    };
    Ok((op, end))
}

fn parse_sub(rest: &[u8]) -> Result<ClientOp<'_>, ParseError> {
    let (args, count) =
        split_args::<ARGS_MAX>(rest).ok_or(ParseError::BadArgs("too many arguments"))?;
    match count {
        2 => Ok(ClientOp::Sub {
            subject: args[0],
            queue: None,
            sid: args[1],
        }),
        3 => Ok(ClientOp::Sub {
            subject: args[0],
            queue: Some(args[1]),
            sid: args[2],
        }),
        _ => Err(ParseError::BadArgs("wrong number of arguments")),
    }
}

fn parse_unsub(rest: &[u8]) -> Result<ClientOp<'_>, ParseError> {
    let (args, count) =
        split_args::<ARGS_MAX>(rest).ok_or(ParseError::BadArgs("too many arguments"))?;
    match count {
        1 => Ok(ClientOp::Unsub {
            sid: args[0],
            max: None,
        }),
        2 => {
            let max = crate::proto::lex::size(args[1]).ok_or(ParseError::BadArgs("bad max"))?;
            Ok(ClientOp::Unsub {
                sid: args[0],
                max: Some(max as u64),
            })
        }
        _ => Err(ParseError::BadArgs("wrong number of arguments")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        control_line_max: 4096,
        payload_max: 1024,
    };

    fn one(input: &[u8]) -> Result<(ClientOp<'_>, usize), ParseError> {
        parse(input, &LIMITS)
    }

    #[test]
    fn simple_ops_any_case() {
        assert_eq!(one(b"PING\r\n"), Ok((ClientOp::Ping, 6)));
        assert_eq!(one(b"ping\r\n"), Ok((ClientOp::Ping, 6)));
        assert_eq!(one(b"PoNg\n"), Ok((ClientOp::Pong, 5)));
        assert_eq!(
            one(b"CONNECT {\"verbose\":false}\r\n").unwrap().0,
            ClientOp::Connect(b"{\"verbose\":false}")
        );
    }

    #[test]
    fn pub_with_and_without_reply() {
        let (op, n) = one(b"PUB foo 5\r\nhello\r\nPING\r\n").unwrap();
        assert_eq!(n, 18);
        assert_eq!(
            op,
            ClientOp::Pub {
                subject: b"foo",
                reply: None,
                header_len: 0,
                payload: b"hello"
            }
        );
        let (op, _) = one(b"PUB foo  bar\t0\r\n\r\n").unwrap();
        assert_eq!(
            op,
            ClientOp::Pub {
                subject: b"foo",
                reply: Some(b"bar"),
                header_len: 0,
                payload: b""
            }
        );
    }

    #[test]
    fn hpub() {
        let input = b"HPUB foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let (op, n) = one(input).unwrap();
        assert_eq!(n, input.len());
        assert_eq!(
            op,
            ClientOp::Pub {
                subject: b"foo",
                reply: Some(b"r"),
                header_len: 12,
                payload: b"NATS/1.0\r\n\r\nhi"
            }
        );
        assert!(matches!(
            one(b"HPUB foo 20 14\r\n"),
            Err(ParseError::BadArgs(_))
        ));
    }

    #[test]
    fn incomplete_reports_need() {
        assert_eq!(
            one(b"PUB foo 5\r\nhel"),
            Err(ParseError::Incomplete { need: Some(18) })
        );
        assert_eq!(one(b"PUB fo"), Err(ParseError::Incomplete { need: None }));
    }

    #[test]
    fn limits() {
        assert_eq!(
            one(b"PUB foo 2048\r\n"),
            Err(ParseError::PayloadTooLarge { size: 2048 })
        );
        let long = vec![b'a'; 5000];
        assert_eq!(one(&long), Err(ParseError::ControlLineTooLong));
    }

    #[test]
    fn errors() {
        assert_eq!(one(b"THIS IS NOT NATS\r\n"), Err(ParseError::UnknownOp));
        assert!(matches!(one(b"PUB foo x\r\n"), Err(ParseError::BadArgs(_))));
        assert!(matches!(
            one(b"PUB foo 1\r\nab\r\n"),
            Err(ParseError::BadArgs(_))
        ));
        assert!(matches!(one(b"SUB foo\r\n"), Err(ParseError::BadArgs(_))));
        assert_eq!(
            one(b"SUB foo q 1\r\n").unwrap().0,
            ClientOp::Sub {
                subject: b"foo",
                queue: Some(b"q"),
                sid: b"1"
            }
        );
        assert_eq!(
            one(b"UNSUB 1 5\r\n").unwrap().0,
            ClientOp::Unsub {
                sid: b"1",
                max: Some(5)
            }
        );
    }
}
