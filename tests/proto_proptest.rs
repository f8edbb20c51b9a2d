//! Property tests (fuzzing) of the client protocol parser: arbitrary bytes never
//! make it panic or over-consume, and well-formed operations parse back exactly,
//! however the stream is cut. `PROPTEST_CASES=1000000 cargo test --release --test
//! proto_proptest` runs a long fuzzing session.

use natrix::proto::{parse, ClientOp, Limits, ParseError};
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    control_line_max: 256,
    payload_max: 4096,
};

#[derive(Debug, Clone)]
enum Op {
    Pub(String, Option<String>, Vec<u8>),
    HPub(String, Vec<u8>, Vec<u8>),
    Sub(String, Option<String>, u32),
    Unsub(u32, Option<u32>),
    Ping,
    Pong,
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_\\-]{1,12}"
}

fn subject() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            subject(),
            prop::option::of(subject()),
            prop::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(s, r, p)| Op::Pub(s, r, p)),
        (
            subject(),
            "[A-Za-z]{1,8}: [a-z]{0,8}",
            prop::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|(s, h, p)| Op::HPub(
                s,
                format!("NATS/1.0\r\n{h}\r\n\r\n").into_bytes(),
                p
            )),
        (subject(), prop::option::of(token()), any::<u32>())
            .prop_map(|(s, q, sid)| Op::Sub(s, q, sid)),
        (any::<u32>(), prop::option::of(any::<u32>())).prop_map(|(s, m)| Op::Unsub(s, m)),
        Just(Op::Ping),
        Just(Op::Pong),
    ]
}

fn encode(op: &Op) -> Vec<u8> {
    let mut out = Vec::new();
    match op {
        Op::Pub(s, r, p) => {
            let reply = r.as_ref().map(|r| format!(" {r}")).unwrap_or_default();
            out.extend(format!("PUB {s}{reply} {}\r\n", p.len()).bytes());
            out.extend(p);
            out.extend(b"\r\n");
        }
        Op::HPub(s, h, p) => {
            out.extend(format!("hpub {s} {} {}\r\n", h.len(), h.len() + p.len()).bytes());
            out.extend(h);
            out.extend(p);
            out.extend(b"\r\n");
        }
        Op::Sub(s, q, sid) => {
            let queue = q.as_ref().map(|q| format!(" {q}")).unwrap_or_default();
            out.extend(format!("SUB {s}{queue} {sid}\r\n").bytes());
        }
        Op::Unsub(sid, max) => {
            let max = max.map(|m| format!(" {m}")).unwrap_or_default();
            out.extend(format!("UNSUB {sid}{max}\r\n").bytes());
        }
        Op::Ping => out.extend(b"PING\r\n"),
        Op::Pong => out.extend(b"pong\r\n"),
    }
    out
}

fn same(op: &Op, parsed: &ClientOp) -> bool {
    match (op, parsed) {
        (
            Op::Pub(s, r, p),
            ClientOp::Pub {
                subject,
                reply,
                header_len: 0,
                payload,
            },
        ) => s.as_bytes() == *subject && r.as_deref().map(str::as_bytes) == *reply && p == payload,
        (
            Op::HPub(s, h, p),
            ClientOp::Pub {
                subject,
                reply: None,
                header_len,
                payload,
            },
        ) => {
            s.as_bytes() == *subject
                && *header_len == h.len()
                && payload[..h.len()] == h[..]
                && payload[h.len()..] == p[..]
        }
        (
            Op::Sub(s, q, sid),
            ClientOp::Sub {
                subject,
                queue,
                sid: psid,
            },
        ) => {
            s.as_bytes() == *subject
                && q.as_deref().map(str::as_bytes) == *queue
                && sid.to_string().as_bytes() == *psid
        }
        (
            Op::Unsub(sid, max),
            ClientOp::Unsub {
                sid: psid,
                max: pmax,
            },
        ) => sid.to_string().as_bytes() == *psid && max.map(u64::from) == *pmax,
        (Op::Ping, ClientOp::Ping) | (Op::Pong, ClientOp::Pong) => true,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut at = 0;
        while at < input.len() {
            match parse(&input[at..], &LIMITS) {
                Ok((_, n)) => {
                    prop_assert!(n > 0 && at + n <= input.len());
                    at += n;
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn protocol_like_garbage_never_panics(
        parts in prop::collection::vec(prop_oneof![
            Just("PUB ".to_string()), Just("HPUB ".to_string()), Just("SUB ".to_string()),
            Just("UNSUB ".to_string()), Just("\r\n".to_string()), Just(" ".to_string()),
            Just("999999999999999".to_string()), "[0-9]{1,4}", "[a-z.*>]{1,6}",
        ], 0..20)
    ) {
        let input = parts.concat().into_bytes();
        let mut at = 0;
        while at < input.len() {
            match parse(&input[at..], &LIMITS) {
                Ok((_, n)) => at += n,
                Err(_) => break,
            }
        }
    }

    #[test]
    fn well_formed_ops_parse_back_at_any_cut(ops in prop::collection::vec(op(), 1..8), cut in any::<prop::sample::Index>()) {
        let stream: Vec<u8> = ops.iter().flat_map(encode).collect();
        // everything in one buffer
        let mut at = 0;
        for op in &ops {
            let (parsed, n) = parse(&stream[at..], &LIMITS).expect("well-formed op parses");
            prop_assert!(same(op, &parsed), "{op:?} parsed as {parsed:?}");
            at += n;
        }
        prop_assert_eq!(at, stream.len());
        // a prefix never yields a wrong op: either an op that is fully inside it, or Incomplete
        let cut = cut.index(stream.len() + 1);
        let mut at = 0;
        for op in &ops {
            match parse(&stream[at..cut], &LIMITS) {
                Ok((parsed, n)) => {
                    prop_assert!(same(op, &parsed));
                    at += n;
                }
                Err(ParseError::Incomplete { need }) => {
                    if let Some(need) = need {
                        prop_assert!(at + need > cut);
                    }
                    break;
                }
                Err(e) => prop_assert!(false, "prefix gave {e:?}"),
            }
        }
    }
}
