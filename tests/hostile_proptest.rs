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

#[path = "common/mod.rs"]
mod common;

/// API subjects whose every request gets an answer (pull requests and direct
/// gets may rightly wait or answer with a status instead).
const ANSWERED: &[&str] = &[
    "STREAM.CREATE.S",
    "STREAM.CREATE.T",
    "STREAM.UPDATE.S",
    "STREAM.INFO.S",
    "STREAM.MSG.GET.S",
    "STREAM.MSG.DELETE.S",
    "STREAM.PURGE.S",
    "STREAM.NAMES",
    "STREAM.LIST",
    "CONSUMER.CREATE.S",
    "CONSUMER.CREATE.S.C",
    "CONSUMER.CREATE.S.C.s.x",
    "CONSUMER.DURABLE.CREATE.S.D",
    "CONSUMER.INFO.S.C",
    "CONSUMER.NAMES.S",
    "CONSUMER.LIST.S",
    "CONSUMER.PAUSE.S.C",
];

/// JSON-ish bodies: valid documents with wrong types and odd values, broken
/// JSON, and arbitrary bytes.
fn api_body() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just("null".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e308".to_string()),
        Just("\"\"".to_string()),
        Just("\"s.>\"".to_string()),
        Just("\"*\"".to_string()),
        Just("[]".to_string()),
        Just("[\"a\",\"a.>\"]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        "-?[0-9]{1,20}",
        "\"[a-zA-Z0-9 .*>]{0,12}\"",
    ];
    let key = prop::sample::select(vec![
        "name",
        "subjects",
        "retention",
        "max_msgs",
        "max_bytes",
        "max_age",
        "storage",
        "num_replicas",
        "discard",
        "duplicate_window",
        "max_msgs_per_subject",
        "first_seq",
        "subject_transform",
        "republish",
        "placement",
        "config",
        "stream_name",
        "durable_name",
        "deliver_subject",
        "deliver_policy",
        "opt_start_seq",
        "opt_start_time",
        "ack_policy",
        "ack_wait",
        "max_deliver",
        "backoff",
        "filter_subject",
        "filter_subjects",
        "max_ack_pending",
        "idle_heartbeat",
        "flow_control",
        "action",
        "offset",
        "subject",
        "seq",
        "last_by_subj",
        "next_by_subj",
        "keep",
        "filter",
        "pause_until",
        "batch",
        "expires",
        "no_wait",
        "max_bytes",
    ]);
    prop_oneof![
        prop::collection::vec((key.clone(), value.clone()), 0..6).prop_map(|fields| {
            let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", inner.join(",")).into_bytes()
        }),
        prop::collection::vec((key.clone(), value.clone()), 1..4).prop_map(|fields| {
            let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!(
                "{{\"stream_name\":\"S\",\"config\":{{{}}}}}",
                inner.join(",")
            )
            .into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..64),
        "[{}\\[\\]\":,a-z0-9 ]{0,40}".prop_map(String::into_bytes),
    ]
}

/// Hostile API bodies each get an answer (an error, or what they asked for), and
/// the server goes on answering.
#[test]
fn hostile_api_bodies_are_answered_and_harm_nobody() {
    let store = tempfile::tempdir().unwrap();
    let server = common::TestServer::with_shards(2)
        .arg("-js")
        .arg("-sd")
        .arg(store.path().to_str().unwrap())
        .start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nc = rt.block_on(async {
        let nc = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(nc.clone());
        let s = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "S".into(),
                subjects: vec!["s.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        s.create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("C".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("s.x", "hello".into())
            .await
            .unwrap()
            .await
            .unwrap();
        nc
    });
    let config = ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    };
    let subjects = prop::sample::select(ANSWERED.to_vec());
    proptest!(config, |(subject in subjects, body in api_body())| {
        let answer = rt.block_on(async {
            let request = nc.request(format!("$JS.API.{subject}"), body.clone().into());
            tokio::time::timeout(std::time::Duration::from_secs(5), request).await
        });
        let answer = answer.map_err(|_| TestCaseError::fail("no answer in time"))?;
        let answer = answer.map_err(|e| TestCaseError::fail(format!("request failed: {e}")))?;
        let json: Result<serde_json::Value, _> = serde_json::from_slice(&answer.payload);
        prop_assert!(json.is_ok(), "not JSON: {:?}", answer.payload);
    });
    let info = rt.block_on(nc.request("$JS.API.INFO", "".into())).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert!(info.get("error").is_none(), "{info}");
}
