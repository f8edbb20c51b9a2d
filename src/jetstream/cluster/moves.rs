//! Moving a stream's replicas: `STREAM.PEER.REMOVE` (a replacement placed where a
//! peer was) and a change of `num_replicas`. The meta leader proposes the stream's
//! new servers; every server acts on it (a server that left removes its replica, a
//! new one creates an empty replica that its group's leader adds), and the leader of
//! each of the stream's groups (stream and consumers) changes the group's members one
//! step at a time: a new server joins as a learner, votes once its log has caught
//! up, and only then does a server that left stop being a voter.

use super::assign::{MetaOp, StreamAssignment};
use super::{Cluster, GENERATION};
use crate::jetstream::api::errors;
use crate::jetstream::api::types::{ApiError, StreamConfig};
use crate::jetstream::meta::META_GROUP;
use crate::raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use crate::raft::{node_of, replica_id, FileLogStore, GroupId, MultiRaft, NodeId, StateRole};
use crate::server::shard::Shard;
use serde::{Deserialize, Serialize};
use std::rc::Rc;
use tracing::{info, warn};

/// A learner is promoted once its log is within this many entries of the leader's.
const LEARNER_CAUGHT_UP_ENTRIES: u64 = 256;

/// `$JS.API.SERVER.REMOVE`'s body: a server's name, or its peer id.
#[derive(Debug, Deserialize)]
pub struct ServerRemoveRequest {
    #[serde(default)]
    pub peer: String,
    #[serde(default)]
    pub peer_id: String,
}

/// The meta group's member that `SERVER.REMOVE`'s body names.
pub fn server_named(cl: &Cluster, body: &[u8]) -> Result<NodeId, ApiError> {
    let req: ServerRemoveRequest = serde_json::from_slice(body).map_err(errors::invalid_json)?;
    if req.peer.is_empty() && req.peer_id.is_empty() {
        return Err(errors::bad_request());
    }
    let members = cl.meta_peers.borrow().clone();
    members
        .into_iter()
        .find(|n| {
            if req.peer_id.is_empty() {
                cl.name_of(*n) == req.peer
            } else {
                crate::jetstream::node_id::peer_label(*n) == req.peer_id
            }
        })
        .ok_or_else(errors::server_not_member)
}

/// The stream's servers without `node`: a spare in its place, or none (one replica
/// less) where no server is free.
pub fn without_server(
    cl: &Cluster,
    sa: &StreamAssignment,
    node: NodeId,
) -> Result<Vec<NodeId>, ApiError> {
    check_not_moving(sa)?;
    let spare = spares(cl, sa).into_iter().next();
    let peers: Vec<NodeId> = sa
        .peers
        .iter()
        .filter_map(|n| if *n == node { spare } else { Some(*n) })
        .collect();
    if peers.is_empty() {
        return Err(errors::peer_remap_failed());
    }
    Ok(peers)
}

/// `$JS.API.STREAM.PEER.REMOVE.<stream>`'s body.
#[derive(Debug, Deserialize)]
pub struct PeerRemoveRequest {
    #[serde(default)]
    pub peer: String,
}

/// The stream's servers with `peer` (a server name) replaced by the least loaded
/// JetStream server that holds no replica.
/// A stream moves once at a time.
pub fn check_not_moving(sa: &StreamAssignment) -> Result<(), ApiError> {
    match sa.moving {
        Some(_) => Err(errors::stream_update(
            "the stream's replicas are moving; try again once they are in place",
        )),
        None => Ok(()),
    }
}

pub fn without_peer(
    cl: &Cluster,
    sa: &StreamAssignment,
    body: &[u8],
) -> Result<Vec<NodeId>, ApiError> {
    check_not_moving(sa)?;
    let req: PeerRemoveRequest = serde_json::from_slice(body).map_err(errors::invalid_json)?;
    if req.peer.is_empty() {
        return Err(errors::bad_request());
    }
    let Some(at) = sa.peers.iter().position(|n| cl.name_of(*n) == req.peer) else {
        return Err(errors::peer_not_member());
    };
    let mut peers = sa.peers.clone();
    let spare = spares(cl, sa).into_iter().next();
    let Some(spare) = spare else {
        return Err(errors::peer_remap_failed());
    };
    peers[at] = spare;
    Ok(peers)
}

/// The stream's servers for `replicas` replicas: the current ones (its leader
/// first, kept), then the least loaded others.
pub fn for_replicas(
    cl: &Cluster,
    sa: &StreamAssignment,
    replicas: usize,
) -> Result<Vec<NodeId>, ApiError> {
    check_not_moving(sa)?;
    let leader = cl.view(sa.group).leader;
    let mut peers = sa.peers.clone();
    peers.sort_by_key(|n| *n != leader);
    peers.truncate(replicas);
    peers.extend(spares(cl, sa).into_iter().take(replicas - peers.len()));
    if peers.len() < replicas {
        return Err(errors::insufficient_resources());
    }
    Ok(peers)
}

/// The JetStream servers a stream with `config` may be placed on: members of the
/// meta group, not removed, with every tag of its `placement` (whose cluster, if
/// named, must be this one).
pub fn eligible(
    shard: &Shard,
    cl: &Cluster,
    config: &StreamConfig,
) -> Result<Vec<NodeId>, ApiError> {
    let placement = config.placement.clone().unwrap_or_default();
    let cluster = shard.server.opts.cluster_name();
    if placement.cluster.is_some() && placement.cluster != cluster {
        return Err(errors::no_suitable_peers());
    }
    let tags = placement.tags.unwrap_or_default();
    let meta = cl.meta.borrow();
    Ok(cl
        .meta_peers
        .borrow()
        .iter()
        .copied()
        .filter(|n| !meta.removed.contains(n) && cl.host.has_tags(*n, &tags))
        .collect())
}

/// Servers the stream may be placed on that hold no replica of it, least loaded
/// first.
fn spares(cl: &Cluster, sa: &StreamAssignment) -> Vec<NodeId> {
    let Some(shard) = cl.shard() else {
        return Vec::new();
    };
    let Ok(mut spares) = eligible(&shard, cl, &sa.config) else {
        return Vec::new();
    };
    spares.retain(|n| !sa.peers.contains(n));
    let meta = cl.meta.borrow();
    spares.sort_by_key(|n| (meta.load_of(*n), *n));
    spares
}

/// The stream, unchanged but for its servers.
pub fn moved_op(sa: &StreamAssignment, peers: Vec<NodeId>) -> MetaOp {
    MetaOp::UpdateStream {
        account: sa.account.clone(),
        config: sa.config.clone(),
        peers: Some(peers),
    }
}

/// One step towards `wanted` as the members of `group`, which this server leads;
/// true when they are its members already.
pub fn reconcile(
    cl: &Cluster,
    driver: &mut MultiRaft<FileLogStore>,
    group: GroupId,
    wanted: &[NodeId],
) -> bool {
    let Some(st) = driver.status(group) else {
        return false;
    };
    if st.role != StateRole::Leader || !st.conf_state.voters_outgoing.is_empty() {
        return false;
    }
    let voters: Vec<NodeId> = st.conf_state.voters.iter().map(|r| node_of(*r)).collect();
    let learners: Vec<NodeId> = st.conf_state.learners.iter().map(|r| node_of(*r)).collect();
    let step = if let Some(n) = wanted
        .iter()
        .find(|n| !voters.contains(n) && !learners.contains(n))
    {
        Some((ConfChangeType::AddLearnerNode, *n))
    } else if let Some(n) = learners.iter().find(|n| {
        let matched = driver
            .matched(group, replica_id(**n, GENERATION))
            .unwrap_or(0);
        wanted.contains(n) && matched + LEARNER_CAUGHT_UP_ENTRIES >= st.last_index
    }) {
        Some((ConfChangeType::AddNode, *n))
    } else if wanted.iter().all(|n| voters.contains(n)) {
        voters
            .iter()
            .chain(learners.iter())
            .find(|n| !wanted.contains(n))
            .map(|n| (ConfChangeType::RemoveNode, *n))
    } else {
        None
    };
    let Some((kind, node)) = step else {
        return learners.is_empty() && voters.len() == wanted.len();
    };
    if kind == ConfChangeType::RemoveNode && node_of(st.replica) == node {
        // The leader itself leaves: another takes over, and finishes the move.
        if let Err(e) = cl.step_down_now(driver, group) {
            warn!(
                "JetStream cluster: group {group} keeps its leader while it moves: {}",
                e.description
            );
        }
        return false;
    }
    let mut one = ConfChangeSingle::default();
    one.set_change_type(kind);
    one.node_id = replica_id(node, GENERATION);
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(one);
    match driver.propose_conf_change(group, cc) {
        Ok(_) => info!("JetStream cluster: group {group}: {kind:?} for node {node} proposed"),
        Err(e) => {
            tracing::debug!("JetStream cluster: group {group} membership change waits: {e:?}")
        }
    }
    false
}

/// What a group's leader tells the meta leader when a moving stream's group has its
/// new members.
#[derive(Debug, Serialize, Deserialize)]
struct Settled {
    account: String,
    stream: String,
}

/// Tells the meta leader that `group` of a moving stream has its new members.
pub fn report_settled(shard: &Shard, cl: &Cluster, account: &str, stream: &str, group: GroupId) {
    let Some(meta_leader) = cl.meta_leader() else {
        return;
    };
    let body = serde_json::to_vec(&Settled {
        account: account.to_string(),
        stream: stream.to_string(),
    })
    .expect("serializable");
    let subject = format!("$NRX.SC.{meta_leader}.S.{group}");
    let system = shard.server.accounts.system();
    crate::jetstream::send(shard, system, subject.as_bytes(), None, b"", &body);
}

/// The meta leader heard that `group` of a moving stream has its new members.
pub fn on_settled(cl: Rc<Cluster>, group: GroupId, body: &[u8]) {
    let Ok(s) = serde_json::from_slice::<Settled>(body) else {
        return;
    };
    let op = MetaOp::GroupSettled {
        account: s.account,
        stream: s.stream,
        group,
    };
    glommio::spawn_local(async move {
        let _ = cl.propose(META_GROUP, super::assign::encode_op(&op)).await;
    })
    .detach();
}
