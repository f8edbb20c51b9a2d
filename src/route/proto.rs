//! The route protocol between servers, as nats-server speaks it: INFO, CONNECT,
//! RS+/RS- (interest, with queue group and weight), RMSG/HMSG (messages, with the
//! queue groups the receiver serves), PING/PONG, +OK/-ERR; and one operation spoken
//! only between natrix servers that advertised `natrix_raft` in their INFO:
//! `RAFT <size>\r\n<frame>\r\n`, one Raft frame (`raft::frame`, crc32c-checked by
//! its receiver) as raw bytes. Parsing is I/O-free: `parse` returns one operation and
//! its length, or `Incomplete`.

use crate::proto::lex::{self, control_line, payload, sizes, split_op, ParseError};

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
    /// One Raft frame, as `raft::frame::encode` made it (not yet checked).
    Raft(&'a [u8]),
    /// A RAFT operation larger than any frame: only its control line was consumed;
    /// the reader skips the `size` bytes and CR LF that follow (`raft_skip_bytes`).
    RaftTooLarge {
        size: usize,
    },
    /// Leaf-node interest and other operations a route may carry that we ignore.
    Ignored,
}

/// Arguments of one operation at most (RMSG with many queue groups).
const ARGS_MAX: usize = 64;

/// Largest RAFT operation: the largest frame `raft::frame::check` accepts.
pub const RAFT_FRAME_MAX_BYTES: usize =
    crate::raft::frame::HEADER_BYTES + crate::raft::frame::MAX_PAYLOAD_BYTES;

pub fn parse<'a>(
    buf: &'a [u8],
    control_line_max: usize,
    payload_max: usize,
) -> Result<(RouteOp<'a>, usize), ParseError> {
    let (line, line_len) = control_line(buf, control_line_max)?;
    let (name, rest) = split_op(line);
    let upper = |s: &[u8]| s.to_ascii_uppercase();
    let op = match upper(name).as_slice() {
        b"INFO" => RouteOp::Info(rest),
        b"CONNECT" => RouteOp::Connect(rest),
        b"RS+" => parse_sub(rest)?,
        b"RS-" => parse_unsub(rest)?,
        b"RMSG" => return parse_msg(buf, rest, line_len, payload_max, false),
        // nats-server names a routed message with headers HMSG; HRMSG is what
        // natrix sent before it matched (still read, from older natrix servers).
        b"HMSG" | b"HRMSG" => return parse_msg(buf, rest, line_len, payload_max, true),
        b"PING" => RouteOp::Ping,
        b"PONG" => RouteOp::Pong,
        b"+OK" => RouteOp::Ok,
        b"-ERR" => RouteOp::Err(rest),
        b"RAFT" => return parse_raft(buf, rest, line_len),
        b"LS+" | b"LS-" => RouteOp::Ignored,
        _ => return Err(ParseError::UnknownOp),
    };
    Ok((op, line_len))
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
    lex::size(arg).ok_or(ParseError::BadArgs("bad number"))
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
    let size_args = if with_headers { 2 } else { 1 };
    if a.len() < 2 + size_args {
        return Err(ParseError::BadArgs("RMSG needs account, subject and size"));
    }
    let (header_len, total) = sizes(&a, with_headers)?;
    if total > payload_max {
        return Err(ParseError::PayloadTooLarge { size: total });
    }
    let middle = &a[2..a.len() - size_args];
    let (reply, queues) = match middle {
        [] => (None, Vec::new()),
        [reply] => (Some(*reply), Vec::new()),
        [b"+", reply, queues @ ..] => (Some(*reply), queues.to_vec()),
        [b"|", queues @ ..] => (None, queues.to_vec()),
        _ => return Err(ParseError::BadArgs("bad RMSG arguments")),
    };
    let (payload, end) = payload(buf, line_len, total)?;
    let op = RouteOp::Msg {
        account: a[0],
        subject: a[1],
        reply,
        queues,
        header_len,
        payload,
    };
    Ok((op, end))
}

fn parse_raft<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    line_len: usize,
) -> Result<(RouteOp<'a>, usize), ParseError> {
    let (a, n) = lex::split_args::<1>(rest).ok_or(ParseError::BadArgs("RAFT takes a size"))?;
    if n != 1 {
        return Err(ParseError::BadArgs("RAFT takes a size"));
    }
    let size = number(a[0])?;
    if size > RAFT_FRAME_MAX_BYTES {
        return Ok((RouteOp::RaftTooLarge { size }, line_len));
    }
    let (frame, end) = payload(buf, line_len, size)?;
    Ok((RouteOp::Raft(frame), end))
}

/// Bytes to skip after a `RaftTooLarge` control line: its payload and CR LF.
pub fn raft_skip_bytes(size: usize) -> usize {
    size + 2
}

/// `RAFT size\r\nframe\r\n`
pub fn encode_raft(out: &mut Vec<u8>, frame: &[u8]) {
    out.reserve(frame.len() + 24);
    out.extend_from_slice(b"RAFT ");
    out.extend_from_slice(itoa::Buffer::new().format(frame.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(frame);
    out.extend_from_slice(b"\r\n");
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

/// A JetStream delivery's reply on a route, as nats-server carries it: the message
/// goes to the delivery subject, and the subject its client is shown (the stored
/// message's) follows the `$JS.ACK` reply after an `@` (`encode_msg` writes it).
/// None for another reply: only an ack reply can carry it.
pub fn shown_on_route<'a>(reply: &[u8], shown: Option<&'a [u8]>) -> Option<&'a [u8]> {
    shown.filter(|_| reply.starts_with(JS_ACK_PREFIX))
}

/// A routed message's reply subject and, for a JetStream delivery, the subject
/// to show its subscribers (`shown_on_route`).
pub type RouteReply<'a> = (&'a [u8], Option<&'a [u8]>);

const JS_ACK_PREFIX: &[u8] = b"$JS.ACK.";
/// Dots an ack reply has before its `@` at least (stream, consumer, delivered,
/// stream and consumer sequences, time, pending: nats-server's rule, as a stream
/// or consumer name may hold an `@` itself).
const JS_ACK_DOTS_MIN: usize = 8;

/// A routed message's reply split as `encode_msg` joined it: the reply,
/// and the subject to show its subscribers, if any.
pub fn split_shown(reply: &[u8]) -> (&[u8], Option<&[u8]>) {
    if !reply.starts_with(JS_ACK_PREFIX) {
        return (reply, None);
    }
    let mut dots = 0;
    for (i, b) in reply.iter().enumerate() {
        match b {
            b'.' => dots += 1,
            b'@' if dots >= JS_ACK_DOTS_MIN && i + 1 < reply.len() => {
                return (&reply[..i], Some(&reply[i + 1..]));
            }
            _ => {}
        }
    }
    (reply, None)
}

/// `RMSG account subject [+ reply queues.. | queues.. | reply] size\r\npayload\r\n`
/// (HMSG with the header size when `header_len > 0`, as nats-server sends it).
pub fn encode_msg(
    out: &mut Vec<u8>,
    account: &str,
    subject: &[u8],
    reply: Option<RouteReply>,
    queues: &[&[u8]],
    header_len: usize,
    payload: &[u8],
) {
    let put_reply = |out: &mut Vec<u8>, (r, shown): RouteReply| {
        out.extend_from_slice(r);
        if let Some(shown) = shown {
            out.push(b'@');
            out.extend_from_slice(shown);
        }
        out.push(b' ');
    };
    out.reserve(subject.len() + payload.len() + 64);
    out.extend_from_slice(if header_len > 0 { b"HMSG " } else { b"RMSG " });
    out.extend_from_slice(account.as_bytes());
    out.push(b' ');
    out.extend_from_slice(subject);
    out.push(b' ');
    match (reply, queues.is_empty()) {
        (Some(r), false) => {
            out.extend_from_slice(b"+ ");
            put_reply(out, r);
        }
        (None, false) => out.extend_from_slice(b"| "),
        (Some(r), true) => put_reply(out, r),
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

    #[test]
    fn a_delivery_s_shown_subject_rides_on_its_ack_reply() {
        let ack = b"$JS.ACK.ORDERS.c@1.1.7.7.1700000000000000000.0";
        let shown = shown_on_route(ack, Some(b"orders.new"));
        let mut out = Vec::new();
        encode_msg(
            &mut out,
            "$G",
            b"_INBOX.d",
            Some((ack, shown)),
            &[],
            0,
            b"x",
        );
        let RouteOp::Msg { reply, .. } = parse(&out, 4096, 1 << 20).unwrap().0 else {
            panic!("not a message: {out:?}");
        };
        let joined = reply.unwrap();
        assert_eq!(
            joined,
            &b"$JS.ACK.ORDERS.c@1.1.7.7.1700000000000000000.0@orders.new"[..]
        );
        assert_eq!(split_shown(joined), (&ack[..], Some(&b"orders.new"[..])));
        assert_eq!(shown_on_route(b"_INBOX.x", Some(b"orders.new")), None);
        assert_eq!(split_shown(b"_INBOX.a@b"), (&b"_INBOX.a@b"[..], None));
        // Too few dots before it: part of a name; and nothing after it.
        assert_eq!(split_shown(b"$JS.ACK.a@b.c"), (&b"$JS.ACK.a@b.c"[..], None));
        let bare = b"$JS.ACK.S.C.1.1.1.1.0@";
        assert_eq!(split_shown(bare), (&bare[..], None));
    }

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
            let route_reply = reply.map(|r| (r, None));
            encode_msg(
                &mut out,
                "$G",
                b"a.b",
                route_reply,
                &queues,
                header_len,
                payload,
            );
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
    fn a_message_with_headers_is_hmsg_as_nats_server_names_it() {
        let mut out = Vec::new();
        encode_msg(&mut out, "APP", b"a", None, &[], 12, b"NATS/1.0\r\n\r\nhi");
        assert!(
            out.starts_with(b"HMSG APP a 12 14\r\n"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        // what nats-server 2.9 sends on a route
        let go = b"HMSG APP orders.new _INBOX.x 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let (op, n) = parse(go, 4096, 1 << 20).unwrap();
        assert_eq!(n, go.len());
        assert!(matches!(
            op,
            RouteOp::Msg {
                header_len: 12,
                reply: Some(b"_INBOX.x"),
                ..
            }
        ));
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

    #[test]
    fn raft_frames_round_trip() {
        let frame = crate::raft::frame::encode(&crate::raft::frame::Frame {
            from_node: 7,
            to_node: 9,
            incarnation: 3,
            items: vec![],
        });
        let mut out = Vec::new();
        encode_raft(&mut out, &frame);
        encode_raft(&mut out, b"\r\nRAFT 1\r\n");
        let (op, n) = parse(&out, 4096, 1024).unwrap();
        assert_eq!(op, RouteOp::Raft(&frame));
        // binary-safe: a payload that looks like protocol is just bytes
        let (op, m) = parse(&out[n..], 4096, 1024).unwrap();
        assert_eq!(op, RouteOp::Raft(b"\r\nRAFT 1\r\n"));
        assert_eq!(n + m, out.len());
        assert_eq!(
            crate::raft::frame::from_node(match parse(&out, 4096, 1024).unwrap().0 {
                RouteOp::Raft(f) => f,
                _ => unreachable!(),
            }),
            Ok(7)
        );
    }

    #[test]
    fn raft_incomplete_bad_and_too_large() {
        let mut out = Vec::new();
        encode_raft(&mut out, &[1, 2, 3, 4, 5]);
        for cut in 0..out.len() {
            assert!(
                matches!(
                    parse(&out[..cut], 4096, 1024),
                    Err(ParseError::Incomplete { .. })
                ),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse(b"RAFT 5\r\nab", 4096, 1024),
            Err(ParseError::Incomplete { need: Some(15) })
        );
        assert!(matches!(
            parse(b"RAFT\r\n", 4096, 1024),
            Err(ParseError::BadArgs(_))
        ));
        assert!(matches!(
            parse(b"RAFT x\r\n", 4096, 1024),
            Err(ParseError::BadArgs(_))
        ));
        assert!(matches!(
            parse(b"RAFT 1 2\r\n", 4096, 1024),
            Err(ParseError::BadArgs(_))
        ));
        assert!(matches!(
            parse(b"RAFT 3\r\nabcXY", 4096, 1024),
            Err(ParseError::BadArgs(_))
        ));
        let huge = format!("RAFT {}\r\nxx", RAFT_FRAME_MAX_BYTES + 1);
        assert_eq!(
            parse(huge.as_bytes(), 4096, 1024),
            Ok((
                RouteOp::RaftTooLarge {
                    size: RAFT_FRAME_MAX_BYTES + 1
                },
                huge.len() - 2
            ))
        );
        // RAFT ignores max_payload (a client limit): frames have their own.
        let mut big = Vec::new();
        encode_raft(&mut big, &vec![0u8; 4096]);
        assert!(matches!(
            parse(&big, 4096, 1024).unwrap().0,
            RouteOp::Raft(_)
        ));
    }
}
