//! The JetStream meta group's host, on shard 0 (where the routes live): its store
//! under `<store_dir>/jetstream/_meta_/`, the Raft node loop (`raft::node::drive`,
//! ticked there) with frames carried by the routes, the bootstrap of a new group,
//! and a status snapshot for `/jsz`.
//!
//! Bootstrap rule: a server with no stored meta group waits until every configured
//! route has been reached (or found to be itself). If a server behind them already
//! has a group (its route INFO says `natrix_meta`), this one joins it: it creates an
//! empty replica, and the group's leader adds it as a learner, catches it up and
//! makes it a voter (`cluster::grow_meta`). Otherwise the voters are this server and
//! every natrix JetStream server behind those routes: servers that all list every
//! member's route compute the same voters, and a seed that lists none forms the
//! group alone for the others to join (seed 004's gossip layout). A server that
//! finds a stored group reopens it and bootstraps nothing.

use crate::jetstream::cluster::{Cluster, ClusterMachine};
use crate::jetstream::route_sink::RouteSink;
use crate::raft::multi::Config;
use crate::raft::node::{drive, events, Command, Event, EventSender, Inflow, NodeConfig};
use crate::raft::{frame, node_of, replica_id, FileLogStore, GroupId, LogStore, MultiRaft};
use crate::raft::{NodeId, StateRole};
use crate::server::shard::Shard;
use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{error, info, warn};

/// The meta group's id in the shard's store.
pub const META_GROUP: GroupId = 1;
/// Replica generation of every bootstrapped voter.
const GENERATION: u64 = 1;
/// How often a server without a meta group checks whether it may bootstrap it.
const BOOTSTRAP_CHECK_INTERVAL_MS: u64 = 100;
/// The Raft logs' segment files (meta, stream and consumer groups share the store):
/// each is preallocated whole, so they are small, yet twice the largest entry (a
/// message of `max_payload`) fits; a store made with bigger ones keeps them.
fn segment_bytes(max_payload: usize, dir: &std::path::Path) -> u64 {
    let existing = std::fs::read_dir(dir.join("groups"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|g| std::fs::read_dir(g.path().join("log")).ok())
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    (2 * max_payload as u64 + (64 << 10))
        .max(1 << 20)
        .max(existing)
        .next_multiple_of(4096)
        .min(natrix_storage::config::SEGMENT_SIZE_MAX_BYTES)
}

/// The meta group as this server last saw it.
#[derive(Clone, Debug, Default)]
pub struct MetaStatus {
    /// The group exists here (bootstrapped or reopened).
    pub exists: bool,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub cluster_size: usize,
    /// The node loop stopped (a storage error).
    pub stopped: bool,
}

pub struct MetaHost {
    pub node: NodeId,
    pub dir: PathBuf,
    events: EventSender,
    inflow: Inflow,
    status: RefCell<MetaStatus>,
    /// Server names by node id: ours, and those of peers that advertised one.
    names: RefCell<AHashMap<NodeId, String>>,
    /// Server tags by node id, as each server advertised them.
    tags: RefCell<AHashMap<NodeId, Vec<String>>>,
    /// Since when no meta leader is known, or this server hears no quorum of the
    /// meta group's voters (from the start until the first leader).
    leaderless_since: Cell<Option<Instant>>,
}

impl MetaHost {
    /// How long no meta leader has been known (zero while one is).
    pub fn leaderless_for(&self) -> Duration {
        self.leaderless_since
            .get()
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// A RAFT operation's frame from `from`: checked (size, crc32c) and queued for
    /// the node loop; a bad one is dropped with a log line, and Raft retransmits.
    pub fn on_frame(&self, from: NodeId, frame: Vec<u8>) {
        match frame::check(&frame) {
            Ok(len) if len == frame.len() => {
                self.inflow.offer(&self.events, from, frame);
            }
            Ok(len) => warn!(
                "Dropping a Raft frame from node {from}: {} bytes after its end",
                frame.len() - len
            ),
            Err(e) => warn!("Dropping a bad Raft frame from node {from}: {e}"),
        }
    }

    pub fn learn_peer(&self, node: NodeId, name: &str) {
        self.names.borrow_mut().insert(node, name.to_string());
    }

    pub fn learn_tags(&self, node: NodeId, tags: &[String]) {
        self.tags.borrow_mut().insert(node, tags.to_vec());
    }

    /// Whether `node` advertised every one of `tags` (any case).
    pub fn has_tags(&self, node: NodeId, tags: &[String]) -> bool {
        let known = self.tags.borrow();
        let have = known.get(&node).map(Vec::as_slice).unwrap_or_default();
        tags.iter()
            .all(|t| have.iter().any(|h| h.eq_ignore_ascii_case(t)))
    }

    pub fn status(&self) -> MetaStatus {
        self.status.borrow().clone()
    }

    /// A node's server name, or its short label when it was never heard of.
    pub fn name_of(&self, node: NodeId) -> String {
        self.names
            .borrow()
            .get(&node)
            .cloned()
            .unwrap_or_else(|| crate::jetstream::node_id::peer_label(node))
    }

    pub fn observe(&self, driver: &MultiRaft<FileLogStore>) {
        let Some(g) = driver.status(META_GROUP) else {
            return;
        };
        let leader = (g.leader != 0).then(|| node_of(g.leader));
        let changed = {
            let mut st = self.status.borrow_mut();
            let changed = st.leader != leader && leader.is_some();
            st.exists = true;
            st.leader = leader;
            st.term = g.term;
            st.cluster_size = g.conf_state.voters.len();
            changed
        };
        // A leader this server cannot reach through a quorum (itself, cut off)
        // commits nothing: no leader, for the clients' answers.
        let usable = leader.is_some() && driver.hears_quorum(META_GROUP);
        match (usable, self.leaderless_since.get()) {
            (true, _) => self.leaderless_since.set(None),
            (false, None) => self.leaderless_since.set(Some(Instant::now())),
            (false, Some(_)) => {}
        }
        if changed {
            if g.role == StateRole::Leader {
                info!("Self is new JetStream cluster metadata leader");
            } else if let Some(node) = leader {
                info!(
                    "JetStream cluster new metadata leader: {}",
                    self.name_of(node)
                );
            }
        }
    }
}

/// Where the meta group's store lives: `<store_dir>/jetstream/_meta_`.
pub fn store_dir(opts: &crate::options::Options) -> PathBuf {
    crate::jetstream::catalog::store_dir_of(opts)
        .join("jetstream")
        .join("_meta_")
}

/// Opens the store and starts the meta group's node loop on this shard (shard 0).
pub async fn start(shard: &Rc<Shard>) -> io::Result<Rc<MetaHost>> {
    let server = &shard.server;
    let node = server.raft_node.expect("a clustered JetStream server");
    let dir = store_dir(&server.opts);
    let segment_size_bytes = segment_bytes(server.opts.max_payload, &dir);
    let log_cfg = natrix_storage::LogConfig {
        segment_size_bytes,
        record_max_bytes: ((segment_size_bytes / 2) as usize)
            .min(natrix_storage::frame::RECORD_MAX_BYTES),
        ..Default::default()
    };
    let store = FileLogStore::open(&dir, log_cfg).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("JetStream meta store {}: {e}", dir.display()),
        )
    })?;
    let exists = store.group_ids().contains(&META_GROUP);
    let store = Rc::new(RefCell::new(store));
    let (tx, rx) = events();
    let host = Rc::new(MetaHost {
        node,
        dir,
        events: tx.clone(),
        inflow: Inflow::default(),
        status: RefCell::default(),
        names: RefCell::default(),
        tags: RefCell::default(),
        leaderless_since: Cell::new(Some(Instant::now())),
    });
    host.learn_peer(node, &server.name);
    host.learn_tags(node, &server.opts.server_tags);
    let incarnation = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        .max(1);
    let mut cfg = NodeConfig::new(Config::new(node, incarnation));
    cfg.keep_applied = false;
    let sink = RouteSink::new(shard.clone());
    let cluster = Cluster::new(shard, host.clone(), tx.clone());
    adopt_local_replicas(shard, &cluster);
    let _ = shard.cluster.set(cluster.clone());
    let watched = cluster.clone();
    let stopped = host.clone();
    glommio::spawn_local(async move {
        let r = drive(cfg, store, sink, rx, tx, ClusterMachine(cluster)).await;
        if let Err(e) = r {
            error!("JetStream meta group stopped: {e}");
        }
        stopped.status.borrow_mut().stopped = true;
    })
    .detach();
    info!(
        "JetStream meta group (preview): node {node}, store {}",
        host.dir.display()
    );
    if exists {
        info!("JetStream meta group: reopened the stored group");
    } else {
        glommio::spawn_local(bootstrap(shard.clone(), host.clone())).detach();
    }
    glommio::spawn_local(watch_membership(shard.clone(), watched)).detach();
    let reporting = crate::jetstream::cluster::shared_usage::report_forever(shard.clone(), node);
    glommio::spawn_local(reporting).detach();
    Ok(host)
}

/// How often a server looks at the JetStream servers behind its routes.
const MEMBERSHIP_CHECK_INTERVAL_MS: u64 = 1_000;

/// Looks at the JetStream servers behind the routes every second. The meta leader
/// adds those without a meta group of their own (joining it) as learners and
/// promotes caught-up learners to voters, one change at a time. A connected server
/// with a group of its own that is not a voter here formed a separate group (each
/// bootstrapped without the other): warned about, once per server.
async fn watch_membership(shard: Rc<Shard>, cluster: Rc<Cluster>) {
    let mut warned: Vec<NodeId> = Vec::new();
    loop {
        glommio::timer::sleep(Duration::from_millis(MEMBERSHIP_CHECK_INTERVAL_MS)).await;
        let Some(routes) = shard.routes.as_ref() else {
            return;
        };
        let voters = cluster.meta_peers.borrow().clone();
        if voters.is_empty() {
            continue;
        }
        let mut joining = Vec::new();
        for (node, name, member) in routes.connected_raft_peers() {
            cluster.host.learn_peer(node, &name);
            if voters.contains(&node) {
                continue;
            }
            if !member {
                joining.push(node);
                continue;
            }
            if !warned.contains(&node) {
                warned.push(node);
                warn!(
                    "JetStream meta group: server {name:?} runs JetStream but is not in this \
                     server's meta group; both formed a group without the other (list every \
                     JetStream server's route on each, then start the newer one with an empty store)"
                );
            }
        }
        if cluster.is_meta_leader() {
            cluster.grow_meta(joining);
        }
    }
}

/// The stream and consumer replicas reopened from the store directory join the
/// cluster's map before the node loop applies anything to them.
fn adopt_local_replicas(shard: &Shard, cluster: &Cluster) {
    for stream in shard.js.all() {
        let Some(r) = stream.cluster.get() else {
            continue;
        };
        cluster.streams.borrow_mut().insert(r.group, stream.clone());
        for c in stream.consumers.borrow().values() {
            if let Some(cr) = c.cluster.get() {
                cluster.consumers.borrow_mut().insert(cr.group, c.clone());
            }
        }
    }
}

/// Waits for the configured routes' servers, then creates the group (see the rule
/// at the top).
async fn bootstrap(shard: Rc<Shard>, host: Rc<MetaHost>) {
    let Some(routes) = shard.routes.as_ref() else {
        return;
    };
    info!("JetStream meta group: waiting for the configured routes to bootstrap it");
    let peers = loop {
        if let Some(peers) = routes.configured_raft_peers() {
            break peers;
        }
        glommio::timer::sleep(Duration::from_millis(BOOTSTRAP_CHECK_INTERVAL_MS)).await;
    };
    if let Some((_, name, _)) = peers.iter().find(|(_, _, member)| *member) {
        // A formed group is behind the routes (a seed's): join it; its leader adds
        // this server as a learner, catches it up and makes it a voter.
        info!("JetStream meta group: joining the group of {name:?} and the others");
        if let Some(cluster) = shard.cluster.get() {
            cluster.join_meta();
        }
        return;
    }
    if peers.is_empty() {
        info!(
            "JetStream meta group: no JetStream server behind the configured routes; \
             this server forms the group alone and others join it"
        );
    }
    let replica = replica_id(host.node, GENERATION);
    let mut voters = vec![replica];
    let mut names = vec![shard.server.name.clone()];
    for (node, name, _) in peers {
        host.learn_peer(node, &name);
        let r = replica_id(node, GENERATION);
        if voters.contains(&r) {
            warn!("JetStream meta group: server {name:?} has the node id of another; ignored");
            continue;
        }
        voters.push(r);
        names.push(name);
    }
    voters.sort_unstable();
    let (reply, _) = std::sync::mpsc::channel();
    let _ = host.events.unbounded_send(Event::Cmd(Command::CreateGroup {
        group: META_GROUP,
        replica,
        voters,
        reply,
    }));
    names.sort();
    info!(
        "JetStream meta group bootstrapped with {} voters: {}",
        names.len(),
        names.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_under_store_dir_and_absolute() {
        let opts = crate::options::Options {
            jetstream: Some(crate::options::JetStreamConfig {
                store_dir: Some("data/n1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let dir = store_dir(&opts);
        assert!(dir.is_absolute());
        assert!(dir.ends_with("data/n1/jetstream/_meta_"));
    }
}
