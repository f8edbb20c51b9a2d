//! The route protocol between servers, as nats-server speaks it: INFO, CONNECT,
//! RS+/RS- (interest, with queue group and weight), RMSG/HRMSG (messages, with the
//! queue groups the receiver serves), PING/PONG, +OK/-ERR. Parsing is I/O-free:
//! `parse` returns one operation and its length, or `Incomplete`.

use crate::proto::client_parser::ParseError;
use memchr::memchr;

#[derive(Debug, PartialEq, Eq)]
pub enum RouteOp<'a> {
    Info(&'a [u8]),
    Connect(&'a [u8]),
    Sub {
        account: &'a [u8],
        subject: &'a [u8],
        queue: Option<(&'a [u8], u32)>,
    },
    Unsub {
        account: &'a [u8],
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
    },
    Msg {
        account: &'a [u8],
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        queues: Vec<&'a [u8]>,
        header_len: usize,
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Ok,
    Err(&'a [u8]),
    /// Leaf-node interest and other operations a route may carry that we ignore.
    Ignored,
}

/// Arguments of one operation at most (RMSG with many queue groups).
const ARGS_MAX: usize = 64;

pub fn parse<'a>(
    buf: &'a [u8],
    control_line_max: usize,
    payload_max: usize,
) -> Result<(RouteOp<'a>, usize), ParseError> {
    let window = &buf[..buf.len().min(control_line_max + 2)];
    let Some(nl) = memchr(b'\n', window) else {
        if buf.len() > control_line_max {
            return Err(ParseError::ControlLineTooLong);
        }
        return Err(ParseError::Incomplete { need: None });
    };
    let line_len = nl + 1;
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let (name, rest) = match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(at) => (&line[..at], trim(&line[at..])),
        None => (line, &line[line.len()..]),
    };
    let upper = |s: &[u8]| s.to_ascii_uppercase();
    let op = match upper(name).as_slice() {
        b"INFO" => RouteOp::Info(rest),
        b"CONNECT" => RouteOp::Connect(rest),
        b"RS+" => parse_sub(rest)?,
        b"RS-" => parse_unsub(rest)?,
        b"RMSG" => return parse_msg(buf, rest, line_len, payload_max, false),
        b"HRMSG" => return parse_msg(buf, rest, line_len, payload_max, true),
        b"PING" => RouteOp::Ping,
        b"PONG" => RouteOp::Pong,
        b"+OK" => RouteOp::Ok,
        b"-ERR" => RouteOp::Err(rest),
        b"LS+" | b"LS-" => RouteOp::Ignored,
        _ => return Err(ParseError::UnknownOp),
    };
    Ok((op, line_len))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[start..]
}

fn args(rest: &[u8]) -> Result<Vec<&[u8]>, ParseError> {
    let out: Vec<&[u8]> = rest
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|a| !a.is_empty())
        .collect();
    if out.len() > ARGS_MAX {
        return Err(ParseError::BadArgs("too many arguments"));
    }
    Ok(out)
}

fn number(arg: &[u8]) -> Result<usize, ParseError> {
    if arg.is_empty() || arg.len() > 12 || !arg.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadArgs("bad number"));
    }
    Ok(arg.iter().fold(0, |n, d| n * 10 + (d - b'0') as usize))
}

fn parse_sub(rest: &[u8]) -> Result<RouteOp<'_>, ParseError> {
    let a = args(rest)?;
    match a.len() {
        2 => Ok(RouteOp::Sub {
            account: a[0],
            subject: a[1],
            queue: None,
        }),
        3 | 4 => {
            let weight = if a.len() == 4 {
                number(a[3])? as u32
            } else {
                1
            };
            Ok(RouteOp::Sub {
                account: a[0],
                subject: a[1],
                queue: Some((a[2], weight.max(1))),
            })
        }
        _ => Err(ParseError::BadArgs("RS+ needs account and subject")),
    }
}

fn parse_unsub(rest: &[u8]) -> Result<RouteOp<'_>, ParseError> {
    let a = args(rest)?;
    match a.len() {
        2 | 3 => Ok(RouteOp::Unsub {
            account: a[0],
            subject: a[1],
            queue: a.get(2).copied(),
        }),
        _ => Err(ParseError::BadArgs("RS- needs account and subject")),
    }
}

fn parse_msg<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    line_len: usize,
    payload_max: usize,
    with_headers: bool,
) -> Result<(RouteOp<'a>, usize), ParseError> {
    let a = args(rest)?;
    let sizes = if with_headers { 2 } else { 1 };
    if a.len() < 2 + sizes {
        return Err(ParseError::BadArgs("RMSG needs account, subject and size"));
    }
    let total = number(a[a.len() - 1])?;
    let header_len = if with_headers {
        number(a[a.len() - 2])?
    } else {
        0
    };
    if header_len > total {
        return Err(ParseError::BadArgs("header size exceeds total size"));
    }
    if total > payload_max {
        return Err(ParseError::PayloadTooLarge { size: total });
    }
    let middle = &a[2..a.len() - sizes];
    let (reply, queues) = match middle {
        [] => (None, Vec::new()),
        [reply] => (Some(*reply), Vec::new()),
        [b"+", reply, queues @ ..] => (Some(*reply), queues.to_vec()),
        [b"|", queues @ ..] => (None, queues.to_vec()),
        _ => return Err(ParseError::BadArgs("bad RMSG arguments")),
    };
    let end = line_len + total + 2;
    if buf.len() < end {
        return Err(ParseError::Incomplete { need: Some(end) });
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(ParseError::BadArgs("payload not followed by CRLF"));
    }
    let op = RouteOp::Msg {
        account: a[0],
        subject: a[1],
        reply,
        queues,
        header_len,
        payload: &buf[line_len..line_len + total],
    };
    Ok((op, end))
}

/// `RS+ account subject [queue weight]\r\n`
pub fn encode_sub(out: &mut Vec<u8>, account: &str, subject: &[u8], queue: Option<(&[u8], u32)>) {
    out.extend_from_slice(b"RS+ ");
    out.extend_from_slice(account.as_bytes());
    out.push(b' ');
    out.extend_from_slice(subject);
    if let Some((q, weight)) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(weight).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `RS- account subject [queue]\r\n`
pub fn encode_unsub(out: &mut Vec<u8>, account: &str, subject: &[u8], queue: Option<&[u8]>) {
    out.extend_from_slice(b"RS- ");
    out.extend_from_slice(account.as_bytes());
    out.push(b' ');
    out.extend_from_slice(subject);
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q);
    }
    out.extend_from_slice(b"\r\n");
}

/// `RMSG account subject [+ reply queues.. | queues.. | reply] size\r\npayload\r\n`
/// (HRMSG with the header size when `header_len > 0`).
pub fn encode_msg(
    out: &mut Vec<u8>,
    account: &str,
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    header_len: usize,
    payload: &[u8],
) {
    out.reserve(subject.len() + payload.len() + 64);
    out.extend_from_slice(if header_len > 0 { b"HRMSG " } else { b"RMSG " });
    out.extend_from_slice(account.as_bytes());
    out.push(b' ');
    out.extend_from_slice(subject);
    out.push(b' ');
    match (reply, queues.is_empty()) {
        (Some(r), false) => {
            out.extend_from_slice(b"+ ");
            out.extend_from_slice(r);
            out.push(b' ');
        }
        (None, false) => out.extend_from_slice(b"| "),
        (Some(r), true) => {
            out.extend_from_slice(r);
            out.push(b' ');
        }
        (None, true) => {}
    }
    for q in queues {
        out.extend_from_slice(q);
        out.push(b' ');
    }
    crate::proto::encode::sizes_and_payload(out, header_len, payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> RouteOp<'_> {
        parse(input, 4096, 1 << 20).unwrap().0
    }

    #[test]
    fn interest() {
        assert_eq!(
            one(b"RS+ $G foo.>\r\n"),
            RouteOp::Sub {
                account: b"$G",
                subject: b"foo.>",
                queue: None
            }
        );
        assert_eq!(
            one(b"RS+ $G foo q 3\r\n"),
            RouteOp::Sub {
                account: b"$G",
                subject: b"foo",
                queue: Some((b"q", 3))
            }
        );
        assert_eq!(
            one(b"RS- $G foo q\r\n"),
            RouteOp::Unsub {
                account: b"$G",
                subject: b"foo",
                queue: Some(b"q")
            }
        );
    }

    #[test]
    fn messages_round_trip() {
        type Case<'a> = (Option<&'a [u8]>, Vec<&'a [u8]>, usize);
        let cases: [Case; 4] = [
            (None, vec![], 0),
            (Some(b"_INBOX.1"), vec![], 0),
            (Some(b"_INBOX.1"), vec![b"q1", b"q2"], 0),
            (None, vec![b"q1"], 12),
        ];
        for (reply, queues, header_len) in cases {
            let payload: &[u8] = if header_len > 0 {
                b"NATS/1.0\r\n\r\nhi"
            } else {
                b"hello"
            };
            let mut out = Vec::new();
            encode_msg(&mut out, "$G", b"a.b", reply, &queues, header_len, payload);
            let (op, n) = parse(&out, 4096, 1 << 20).unwrap();
            assert_eq!(n, out.len());
            assert_eq!(
                op,
                RouteOp::Msg {
                    account: b"$G",
                    subject: b"a.b",
                    reply,
                    queues: queues.clone(),
                    header_len,
                    payload
                }
            );
        }
    }

    #[test]
    fn sub_encoding_parses_back() {
        let mut out = Vec::new();
        encode_sub(&mut out, "APP", b"x.*", Some((b"g", 7)));
        encode_unsub(&mut out, "APP", b"x.*", Some(b"g"));
        let (op, n) = parse(&out, 4096, 1024).unwrap();
        assert_eq!(
            op,
            RouteOp::Sub {
                account: b"APP",
                subject: b"x.*",
                queue: Some((b"g", 7))
            }
        );
        assert!(matches!(
            parse(&out[n..], 4096, 1024).unwrap().0,
            RouteOp::Unsub { .. }
        ));
    }

    #[test]
    fn errors_and_incomplete() {
        assert_eq!(
            parse(b"GARBAGE\r\n", 4096, 1024),
            Err(ParseError::UnknownOp)
        );
        assert_eq!(
            parse(b"RMSG $G foo 5\r\nhe", 4096, 1024),
            Err(ParseError::Incomplete { need: Some(22) })
        );
        assert!(matches!(
            parse(b"RMSG $G\r\n", 4096, 1024),
            Err(ParseError::BadArgs(_))
        ));
        assert_eq!(one(b"PING\r\n"), RouteOp::Ping);
    }
}
