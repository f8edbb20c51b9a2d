//! Fuzzing (property tests) of what peers send: route protocol bytes, and Raft
//! messages in checksum-valid frames with hostile content, stepped into a live
//! three-node group. Nothing may panic. `PROPTEST_CASES=100000 cargo test
//! --release --test hostile_proptest` runs a long session.

use natrix::raft::eraftpb::{Entry, Message, MessageType, Snapshot};
use natrix::raft::frame::{encode, Frame, Item};
use natrix::raft::local::LocalCluster;
use natrix::raft::replica_id;
use natrix::route::proto::parse;
use proptest::prelude::*;

const CONTROL_LINE_MAX: usize = 512;
const PAYLOAD_MAX: usize = 4096;

fn route_parse_all(input: &[u8]) -> Result<(), TestCaseError> {
    let mut at = 0;
    while at < input.len() {
        match parse(&input[at..], CONTROL_LINE_MAX, PAYLOAD_MAX) {
            Ok((_, n)) => {
                prop_assert!(n > 0 && at + n <= input.len(), "consumed {n} at {at}");
                at += n;
            }
            Err(_) => break,
        }
    }
    Ok(())
}

fn message_type() -> impl Strategy<Value = MessageType> {
    use MessageType::*;
    prop::sample::select(vec![
        MsgHup,
        MsgBeat,
        MsgPropose,
        MsgAppend,
        MsgAppendResponse,
        MsgRequestVote,
        MsgRequestVoteResponse,
        MsgSnapshot,
        MsgHeartbeat,
        MsgHeartbeatResponse,
        MsgUnreachable,
        MsgSnapStatus,
        MsgCheckQuorum,
        MsgTransferLeader,
        MsgTimeoutNow,
        MsgReadIndex,
        MsgReadIndexResp,
        MsgRequestPreVote,
        MsgRequestPreVoteResponse,
    ])
}

/// Small numbers near the group's real indexes and terms, or anything at all.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..16, any::<u64>()]
}

#[derive(Debug, Clone)]
struct Hostile {
    ty: MessageType,
    from_node: u64,
    to_node: u64,
    /// The replica the message claims to come from (may name another node's).
    claimed_from_node: u64,
    term: u64,
    index: u64,
    log_term: u64,
    commit: u64,
    reject: bool,
    entries: Vec<(u64, u64)>,
    snapshot: Option<(u64, u64, Vec<u64>)>,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (
        message_type(),
        1u64..=3,
        1u64..=3,
        1u64..=4,
        (number(), number(), number(), number()),
        any::<bool>(),
        prop::collection::vec((number(), number()), 0..4),
        prop::option::of((number(), number(), prop::collection::vec(1u64..=4, 0..3))),
    )
        .prop_map(
            |(
                ty,
                from_node,
                to_node,
                claimed,
                (term, index, log_term, commit),
                reject,
                entries,
                snapshot,
            )| {
                Hostile {
                    ty,
                    from_node,
                    to_node,
                    claimed_from_node: claimed,
                    term,
                    index,
                    log_term,
                    commit,
                    reject,
                    entries,
                    snapshot,
                }
            },
        )
}

fn raft_message(h: &Hostile, group: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(h.ty);
    m.from = replica_id(h.claimed_from_node, 1);
    m.to = replica_id(h.to_node, 1);
    m.term = h.term;
    m.index = h.index;
    m.log_term = h.log_term;
    m.commit = h.commit;
    m.reject = h.reject;
    m.entries = h
        .entries
        .iter()
        .map(|&(index, term)| Entry {
            index,
            term,
            ..Default::default()
        })
        .collect::<Vec<_>>()
        .into();
    if let Some((index, term, voters)) = &h.snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = *index;
        s.mut_metadata().term = *term;
        s.mut_metadata().mut_conf_state().voters =
            voters.iter().map(|&n| replica_id(n, 1)).collect();
        m.set_snapshot(s);
    }
    let _ = group;
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn route_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..600)) {
        route_parse_all(&input)?;
    }

    #[test]
    fn route_like_garbage_never_panics(
        parts in prop::collection::vec(prop_oneof![
            Just("RS+ ".to_string()), Just("RS- ".to_string()), Just("RMSG ".to_string()),
            Just("HRMSG ".to_string()), Just("RAFT ".to_string()), Just("INFO ".to_string()),
            Just("CONNECT ".to_string()), Just("LS+ ".to_string()), Just("\r\n".to_string()),
            Just(" ".to_string()), Just("+ ".to_string()), Just("| ".to_string()),
            Just("99999999999999999999".to_string()), "[0-9]{1,4}", "[a-zA-Z$.*>]{1,8}",
        ], 0..24)
    ) {
        route_parse_all(parts.concat().as_bytes())?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Batches of hostile messages, each in a valid frame, into a group that has
    /// elected a leader and committed entries: no replica panics.
    #[test]
    fn hostile_raft_messages_never_panic(batch in prop::collection::vec(hostile(), 1..12)) {
        const G: u64 = 1;
        let mut c = LocalCluster::new(3);
        c.create_group(G);
        for _ in 0..200 {
            c.tick();
            if c.leader(G).is_some() {
                break;
            }
        }
        let leader = c.leader(G).expect("a leader");
        for i in 0..3u8 {
            c.drivers[leader].propose(G, vec![i]).expect("proposal");
        }
        c.settle();
        for h in &batch {
            if h.from_node == h.to_node {
                continue;
            }
            let frame = encode(&Frame {
                from_node: h.from_node,
                to_node: h.to_node,
                incarnation: 1,
                items: vec![Item::Raft { group: G, msg: raft_message(h, G) }],
            });
            let to = h.to_node as usize - 1;
            let _ = c.drivers[to].step(h.from_node, &frame);
            c.settle();
            c.tick();
        }
    }
}
