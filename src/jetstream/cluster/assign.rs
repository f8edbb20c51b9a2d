//! The meta group's state machine: which streams and consumers exist, their
//! configs, their Raft groups and the servers that hold them. Every server applies
//! the same operations in the same order, so every server holds the same state;
//! a snapshot is the whole state as JSON (small: configs, not messages).

use crate::jetstream::api::types::{ConsumerConfig, StreamConfig};
use crate::raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The first group id handed to a stream or consumer (the meta group is 1).
pub const FIRST_GROUP: GroupId = 2;
/// Streams the meta state holds at most, all accounts together.
pub const STREAMS_MAX: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamAssignment {
    pub account: String,
    pub config: StreamConfig,
    pub group: GroupId,
    /// The servers holding a replica (node ids), the preferred leader first.
    pub peers: Vec<NodeId>,
    pub created_ns: u64,
    pub consumers: BTreeMap<String, ConsumerAssignment>,
    /// A move of its replicas under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<Move>,
}

/// A move of a stream's replicas to other servers, until each of its groups (the
/// stream's and its consumers') has the new servers as its members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// Servers added: their replicas of the unsettled groups start empty, and the
    /// groups' leaders add them.
    pub joined: Vec<NodeId>,
    /// Servers leaving: they keep their replicas (voters still) until the move ends.
    pub leaving: Vec<NodeId>,
    /// Groups whose leader has not yet reported the new members in place.
    pub unsettled: Vec<GroupId>,
}

impl StreamAssignment {
    /// Whether `node`'s replica of `group` joins a formed group (empty, added by
    /// its leader) instead of founding it.
    pub fn joins(&self, node: NodeId, group: GroupId) -> bool {
        self.moving
            .as_ref()
            .is_some_and(|m| m.joined.contains(&node) && m.unsettled.contains(&group))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsumerAssignment {
    pub name: String,
    pub config: ConsumerConfig,
    pub group: GroupId,
    pub created_ns: u64,
}

/// One meta entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetaOp {
    AddStream {
        account: String,
        config: StreamConfig,
        peers: Vec<NodeId>,
        created_ns: u64,
    },
    UpdateStream {
        account: String,
        config: StreamConfig,
        /// New replica servers (a peer removed, a replica count changed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peers: Option<Vec<NodeId>>,
    },
    RemoveStream {
        account: String,
        name: String,
    },
    AddConsumer {
        account: String,
        stream: String,
        name: String,
        config: ConsumerConfig,
        created_ns: u64,
    },
    RemoveConsumer {
        account: String,
        stream: String,
        name: String,
    },
    /// `$JS.API.SERVER.REMOVE`: the server leaves the meta group for good.
    RemoveServer {
        node: NodeId,
    },
    /// A group of a moving stream has its new members (its leader says).
    GroupSettled {
        account: String,
        stream: String,
        group: GroupId,
    },
}

/// What applying an entry changed, for the server to act on (create or remove
/// local replicas) and for the API request that proposed it.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    StreamAdded(StreamAssignment),
    StreamUpdated(StreamAssignment),
    /// The stream's replicas moved: the assignment, and the servers that held them.
    StreamMoved(StreamAssignment, Vec<NodeId>),
    /// A move ended: these servers' replicas go.
    StreamLeft(StreamAssignment, Vec<NodeId>),
    /// A server was removed from the cluster's JetStream.
    ServerRemoved(NodeId),
    StreamRemoved(StreamAssignment),
    ConsumerAdded(StreamAssignment, ConsumerAssignment),
    ConsumerRemoved(StreamAssignment, ConsumerAssignment),
    /// The operation was refused (the same on every server); its reason.
    Refused(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    StreamExists,
    StreamNotFound,
    ConsumerExists,
    ConsumerNotFound,
    TooManyStreams,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaState {
    /// By (account, stream name).
    pub streams: BTreeMap<(String, String), StreamAssignment>,
    pub next_group: GroupId,
    /// Servers removed (`SERVER.REMOVE`): never members of the meta group again.
    pub removed: BTreeSet<NodeId>,
}

impl MetaState {
    pub fn new() -> MetaState {
        MetaState {
            streams: BTreeMap::new(),
            next_group: FIRST_GROUP,
            removed: BTreeSet::new(),
        }
    }

    pub fn stream(&self, account: &str, name: &str) -> Option<&StreamAssignment> {
        self.streams.get(&(account.to_string(), name.to_string()))
    }

    pub fn of_account<'a>(
        &'a self,
        account: &'a str,
    ) -> impl Iterator<Item = &'a StreamAssignment> {
        self.streams.values().filter(move |s| s.account == account)
    }

    /// Streams each node holds a replica of.
    pub fn load_of(&self, node: NodeId) -> usize {
        self.streams
            .values()
            .filter(|s| s.peers.contains(&node))
            .count()
    }

    fn take_group(&mut self) -> GroupId {
        let g = self.next_group.max(FIRST_GROUP);
        self.next_group = g + 1;
        g
    }

    pub fn apply(&mut self, op: MetaOp) -> Change {
        match op {
            MetaOp::AddStream {
                account,
                config,
                peers,
                created_ns,
            } => {
                let key = (account.clone(), config.name.clone());
                if self.streams.contains_key(&key) {
                    return Change::Refused(Refusal::StreamExists);
                }
                if self.streams.len() >= STREAMS_MAX {
                    return Change::Refused(Refusal::TooManyStreams);
                }
                assert!(!peers.is_empty(), "a stream has at least one peer");
                let sa = StreamAssignment {
                    account,
                    config,
                    group: self.take_group(),
                    peers,
                    created_ns,
                    consumers: BTreeMap::new(),
                    moving: None,
                };
                self.streams.insert(key, sa.clone());
                Change::StreamAdded(sa)
            }
            MetaOp::UpdateStream {
                account,
                config,
                peers,
            } => {
                let key = (account, config.name.clone());
                let Some(sa) = self.streams.get_mut(&key) else {
                    return Change::Refused(Refusal::StreamNotFound);
                };
                sa.config = config;
                match peers.filter(|p| *p != sa.peers) {
                    Some(peers) => {
                        assert!(!peers.is_empty(), "a stream has at least one peer");
                        let old = std::mem::replace(&mut sa.peers, peers);
                        let not_in = |a: &[NodeId], b: &[NodeId]| -> Vec<NodeId> {
                            a.iter().copied().filter(|n| !b.contains(n)).collect()
                        };
                        let mut unsettled = vec![sa.group];
                        unsettled.extend(sa.consumers.values().map(|c| c.group));
                        sa.moving = Some(Move {
                            joined: not_in(&sa.peers, &old),
                            leaving: not_in(&old, &sa.peers),
                            unsettled,
                        });
                        Change::StreamMoved(sa.clone(), old)
                    }
                    None => Change::StreamUpdated(sa.clone()),
                }
            }
            MetaOp::RemoveStream { account, name } => match self.streams.remove(&(account, name)) {
                Some(sa) => Change::StreamRemoved(sa),
                None => Change::Refused(Refusal::StreamNotFound),
            },
            MetaOp::AddConsumer {
                account,
                stream,
                name,
                config,
                created_ns,
            } => {
                let group = self.next_group.max(FIRST_GROUP);
                let Some(sa) = self.streams.get_mut(&(account, stream)) else {
                    return Change::Refused(Refusal::StreamNotFound);
                };
                if let Some(existing) = sa.consumers.get_mut(&name) {
                    // An update of a consumer keeps its group.
                    existing.config = config;
                    let ca = existing.clone();
                    return Change::ConsumerAdded(sa.clone(), ca);
                }
                let ca = ConsumerAssignment {
                    name: name.clone(),
                    config,
                    group,
                    created_ns,
                };
                sa.consumers.insert(name, ca.clone());
                let sa = sa.clone();
                self.next_group = group + 1;
                Change::ConsumerAdded(sa, ca)
            }
            MetaOp::RemoveConsumer {
                account,
                stream,
                name,
            } => {
                let Some(sa) = self.streams.get_mut(&(account, stream)) else {
                    return Change::Refused(Refusal::StreamNotFound);
                };
                match sa.consumers.remove(&name) {
                    Some(ca) => {
                        if let Some(m) = &mut sa.moving {
                            m.unsettled.retain(|g| *g != ca.group);
                        }
                        Change::ConsumerRemoved(sa.clone(), ca)
                    }
                    None => Change::Refused(Refusal::ConsumerNotFound),
                }
            }
            MetaOp::RemoveServer { node } => {
                self.removed.insert(node);
                Change::ServerRemoved(node)
            }
            MetaOp::GroupSettled {
                account,
                stream,
                group,
            } => {
                let Some(sa) = self.streams.get_mut(&(account, stream)) else {
                    return Change::Refused(Refusal::StreamNotFound);
                };
                let Some(m) = &mut sa.moving else {
                    return Change::StreamUpdated(sa.clone());
                };
                m.unsettled.retain(|g| *g != group);
                if !m.unsettled.is_empty() {
                    return Change::StreamUpdated(sa.clone());
                }
                let leaving = sa.moving.take().map(|m| m.leaving).unwrap_or_default();
                Change::StreamLeft(sa.clone(), leaving)
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Snapshot::from(self)).expect("serializable")
    }

    pub fn decode(bytes: &[u8]) -> Result<MetaState, serde_json::Error> {
        if bytes.is_empty() {
            return Ok(MetaState::new());
        }
        let snap: Snapshot = serde_json::from_slice(bytes)?;
        let mut state = MetaState::new();
        state.next_group = snap.next_group.max(FIRST_GROUP);
        state.removed = snap.removed;
        for sa in snap.streams {
            state
                .streams
                .insert((sa.account.clone(), sa.config.name.clone()), sa);
        }
        Ok(state)
    }
}

/// The snapshot's JSON (a map keyed by tuples does not serialize as JSON).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    next_group: GroupId,
    streams: Vec<StreamAssignment>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    removed: BTreeSet<NodeId>,
}

impl From<&MetaState> for Snapshot {
    fn from(s: &MetaState) -> Snapshot {
        Snapshot {
            next_group: s.next_group,
            streams: s.streams.values().cloned().collect(),
            removed: s.removed.clone(),
        }
    }
}

pub fn encode_op(op: &MetaOp) -> Vec<u8> {
    serde_json::to_vec(op).expect("serializable")
}

pub fn decode_op(bytes: &[u8]) -> Option<MetaOp> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> StreamConfig {
        serde_json::from_str(&format!(r#"{{"name":"{name}","subjects":["{name}.>"]}}"#))
            .expect("config")
    }

    fn add(name: &str) -> MetaOp {
        MetaOp::AddStream {
            account: "$G".into(),
            config: config(name),
            peers: vec![1, 2, 3],
            created_ns: 7,
        }
    }

    #[test]
    fn groups_are_handed_out_once_and_the_snapshot_restores_the_state() {
        let mut st = MetaState::new();
        let Change::StreamAdded(a) = st.apply(add("A")) else {
            panic!("added")
        };
        assert_eq!(a.group, FIRST_GROUP);
        assert_eq!(st.apply(add("A")), Change::Refused(Refusal::StreamExists));
        let consumer = MetaOp::AddConsumer {
            account: "$G".into(),
            stream: "A".into(),
            name: "c".into(),
            config: serde_json::from_str(r#"{"durable_name":"c"}"#).expect("config"),
            created_ns: 8,
        };
        let Change::ConsumerAdded(_, c) = st.apply(consumer.clone()) else {
            panic!("consumer")
        };
        assert_eq!(c.group, FIRST_GROUP + 1);
        let Change::ConsumerAdded(_, again) = st.apply(consumer) else {
            panic!("update")
        };
        assert_eq!(again.group, c.group, "an update keeps the group");
        let Change::StreamAdded(b) = st.apply(add("B")) else {
            panic!("added")
        };
        assert_eq!(b.group, FIRST_GROUP + 2);
        let restored = MetaState::decode(&st.encode()).expect("decode");
        assert_eq!(restored, st);
        let remove = MetaOp::RemoveStream {
            account: "$G".into(),
            name: "A".into(),
        };
        assert!(matches!(st.apply(remove.clone()), Change::StreamRemoved(_)));
        assert_eq!(st.apply(remove), Change::Refused(Refusal::StreamNotFound));
        assert_eq!(decode_op(&encode_op(&add("C"))), Some(add("C")));
        let moved = MetaOp::UpdateStream {
            account: "$G".into(),
            config: config("B"),
            peers: Some(vec![1, 2, 4]),
        };
        let Change::StreamMoved(sa, old) = st.apply(moved.clone()) else {
            panic!("moved")
        };
        assert_eq!((&sa.peers, old), (&vec![1, 2, 4], vec![1, 2, 3]));
        assert!(sa.joins(4, sa.group) && !sa.joins(1, sa.group));
        let settled = MetaOp::GroupSettled {
            account: "$G".into(),
            stream: "B".into(),
            group: sa.group,
        };
        let Change::StreamLeft(sa, leaving) = st.apply(settled.clone()) else {
            panic!("left")
        };
        assert_eq!((sa.moving, leaving), (None, vec![3]));
        assert!(matches!(st.apply(settled), Change::StreamUpdated(_)));
        assert_eq!(st.stream("$G", "B").unwrap().peers, vec![1, 2, 4]);
        assert!(matches!(st.apply(moved), Change::StreamUpdated(_)));
        st.apply(MetaOp::RemoveServer { node: 3 });
        assert_eq!(MetaState::decode(&st.encode()).unwrap(), st);
    }
}
