//! Clustered JetStream: the meta group's assignments, stream and consumer groups,
//! and the API as a cluster answers it. Everything here runs on shard 0, where the
//! routes and the Raft node loop (`raft::node::drive`) live; a clustered stream's
//! replica lives on shard 0 too.
//!
//! - `assign`: the meta state machine (streams, consumers, their groups and peers).
//! - `entry`: a stream group's entries (messages, purges, deletes).
//! - `stream`: a stream replica: creating it, applying entries, proposing publishes.
//! - `consumer`: a consumer replica: its state replicated by its leader.
//! - `api`: which server answers which `$JS.API` request, and how.
//! - `moves`: a stream's replicas moving to other servers (peer removal, replicas).
//! - `catchup`: a replica fetching from a peer what its group's log no longer holds.
//! - `askers`: the replicas catching up from this server, for the leader's reports.
//! - `shared_usage`: what each server holds per account, told to the others.
//! - `gone`: a removal answered once the servers that held the group let it go.
//! - `gather`: stream infos asked of the servers that lead the streams.
//!
//! Who answers (as nats-server): every JetStream server subscribes `$JS.API.>`, so
//! each request reaches all of them; the meta leader answers the account-wide
//! requests and the creates and deletes (proposed to the meta group), a stream's
//! leader the requests about the stream, a consumer's leader those about it. The
//! others stay silent. A stream's leader alone subscribes its subjects, so a
//! publish reaches it wherever it was sent; it proposes the message, and the
//! PubAck goes out once the entry is committed (durable on a quorum) and applied.

pub mod api;
pub mod askers;
pub mod assign;
pub mod catchup;
pub mod consumer;
pub mod entry;
pub mod gather;
pub mod gone;
pub mod moves;
pub mod shared_usage;
pub mod stream;

use crate::jetstream::api::errors;
use crate::jetstream::api::types::ApiError;
use crate::jetstream::consumer::Consumer;
use crate::jetstream::meta::{MetaHost, META_GROUP};
use crate::jetstream::stream::Stream;
use crate::raft::multi::Applied;
use crate::raft::node::{Event, EventSender, Machine, SnapshotState};
use crate::raft::{
    node_of, replica_id, FileLogStore, GroupId, LogStore, MultiRaft, NodeId, StateRole,
};
use crate::server::shard::Shard;
use ahash::AHashMap;
use assign::{Change, MetaState};

use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::{Rc, Weak};
use tracing::{error, warn};

/// Replica generation of every replica of a stream or consumer group.
pub const GENERATION: u64 = 1;
/// Operations queued for the node loop at most; past it requests are refused.
pub const OPS_QUEUED_MAX: usize = 64 * 1024;
/// How often the meta group's voters and status are read again (at once when its
/// leader changes).
const FULL_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Applied meta entries between two snapshots of the meta state.
const META_SNAPSHOT_EVERY: u64 = 1024;

/// What an applied proposal gave the request waiting for it.
#[derive(Debug)]
pub enum Answer {
    Meta(Box<Change>),
    Count(Result<u64, ApiError>),
    /// The entry at the proposal's index is another one (a leader change).
    Lost,
}

type AnswerTx = oneshot::Sender<Answer>;

/// A peer's answer to a question this server sent it, if it comes within `wait`.
pub async fn answer_within<T>(rx: oneshot::Receiver<T>, wait: std::time::Duration) -> Option<T> {
    futures_lite::future::or(async { rx.await.ok() }, async {
        glommio::timer::sleep(wait).await;
        None
    })
    .await
}

/// A group's replicas as its leader sees them.
#[derive(Clone, Debug, Default)]
pub struct Detail {
    pub leader: NodeId,
    pub commit: u64,
    pub last_index: u64,
    /// Every voter other than the leader, and every learner.
    pub followers: Vec<Follower>,
}

#[derive(Clone, Debug, Default)]
pub struct Follower {
    pub node: NodeId,
    /// The index its log matches (the leader's view; 0 elsewhere).
    pub matched: u64,
    /// Since a frame last came from its server; None if none ever did.
    pub silent_ns: Option<u64>,
    /// Its server is heard (not suspected dead).
    pub alive: bool,
}

/// Work for the driver, done between two turns of the node loop.
enum Op {
    Propose {
        group: GroupId,
        data: Vec<u8>,
        answer: Option<AnswerTx>,
        /// Told when the driver refuses the proposal (publishes).
        refused: Option<Box<dyn FnOnce(ApiError)>>,
    },
    CreateGroup {
        group: GroupId,
        peers: Vec<NodeId>,
        /// An empty replica that the group's leader adds, not a founding one.
        join: bool,
    },
    RemoveGroup(GroupId),
    StepDown {
        group: GroupId,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    Detail {
        group: GroupId,
        reply: oneshot::Sender<Option<Detail>>,
    },
    /// Lame duck mode: every group this server leads gets another leader.
    StepDownAll,
    /// This server joins a formed meta group: an empty replica, caught up once the
    /// leader adds it.
    JoinMeta,
    /// The meta leader promotes a caught-up learner, or adds one of these servers.
    GrowMeta(Vec<NodeId>),
    /// A leader proposes to compact a stream group's log up to what every
    /// replica's log holds.
    ProposeCompaction(GroupId),
    /// A replica's store has made its log durable up to `index`.
    Compact {
        group: GroupId,
        index: u64,
        data: Vec<u8>,
    },
}

/// A group as this server last saw it.
#[derive(Clone, Copy, Debug, Default)]
pub struct View {
    pub leader: NodeId,
    pub term: u64,
    /// This server leads and has applied everything committed before its term.
    pub ready: bool,
}

pub struct Cluster {
    pub node: NodeId,
    pub host: Rc<MetaHost>,
    shard: Weak<Shard>,
    pub meta: RefCell<MetaState>,
    meta_applied_since_snapshot: Cell<u64>,
    ops: RefCell<VecDeque<Op>>,
    events: EventSender,
    /// This server's stream and consumer replicas, by group.
    pub streams: RefCell<AHashMap<GroupId, Rc<Stream>>>,
    pub consumers: RefCell<AHashMap<GroupId, Rc<Consumer>>>,
    views: RefCell<AHashMap<GroupId, View>>,
    waiting: RefCell<BTreeMap<(GroupId, u64), (u64, AnswerTx)>>,
    /// The meta group's voters.
    pub meta_peers: RefCell<Vec<NodeId>>,
    /// When every group was last looked at.
    last_sweep: Cell<Option<std::time::Instant>>,
    /// A catching-up replica's batch request waiting for its answer, by group.
    pub catchup_answers: RefCell<AHashMap<GroupId, oneshot::Sender<bytes::Bytes>>>,
    /// Catch-up batches being read for peers now (bounded: `catchup::SERVING_MAX`).
    pub catchup_serving: Cell<usize>,
    /// The replicas catching up from this server.
    pub askers: askers::Askers,
    /// What the other servers hold per account.
    pub others_usage: shared_usage::Others,
    /// Removals waiting for the other servers to let their groups go.
    pub gone_waits: RefCell<AHashMap<GroupId, gone::Waiting>>,
    /// Other servers' removals waiting for this one to let their groups go.
    pub gone_watchers: gone::Watchers,
    /// Stream infos asked of other servers and not yet answered.
    pub gather: gather::Pending,
}

impl Cluster {
    pub fn new(shard: &Rc<Shard>, host: Rc<MetaHost>, events: EventSender) -> Rc<Cluster> {
        Rc::new(Cluster {
            node: host.node,
            host,
            shard: Rc::downgrade(shard),
            meta: RefCell::new(MetaState::new()),
            meta_applied_since_snapshot: Cell::new(0),
            ops: RefCell::default(),
            events,
            streams: RefCell::default(),
            consumers: RefCell::default(),
            views: RefCell::default(),
            waiting: RefCell::default(),
            meta_peers: RefCell::default(),
            last_sweep: Cell::new(None),
            catchup_answers: RefCell::default(),
            catchup_serving: Cell::new(0),
            askers: askers::Askers::default(),
            others_usage: shared_usage::Others::default(),
            gone_waits: RefCell::default(),
            gone_watchers: gone::Watchers::default(),
            gather: gather::Pending::default(),
        })
    }

    pub fn shard(&self) -> Option<Rc<Shard>> {
        self.shard.upgrade()
    }

    pub fn view(&self, group: GroupId) -> View {
        self.views.borrow().get(&group).copied().unwrap_or_default()
    }

    pub fn is_meta_leader(&self) -> bool {
        self.view(META_GROUP).ready
    }

    /// The meta leader's node, if one is known.
    pub fn meta_leader(&self) -> Option<NodeId> {
        let v = self.view(META_GROUP);
        (v.leader != 0).then_some(v.leader)
    }

    pub fn name_of(&self, node: NodeId) -> String {
        self.host.name_of(node)
    }

    fn queue(&self, op: Op) -> Result<(), ApiError> {
        let mut ops = self.ops.borrow_mut();
        if ops.len() >= OPS_QUEUED_MAX {
            return Err(errors::general("JetStream cluster is busy"));
        }
        let wake = ops.is_empty();
        ops.push_back(op);
        drop(ops);
        if wake {
            let _ = self.events.unbounded_send(Event::Wake);
        }
        Ok(())
    }

    /// Proposes `data` to `group` and waits until it is applied here.
    pub async fn propose(&self, group: GroupId, data: Vec<u8>) -> Result<Answer, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.queue(Op::Propose {
            group,
            data,
            answer: Some(tx),
            refused: None,
        })?;
        rx.await
            .map_err(|_| errors::general("JetStream cluster proposal was not applied"))
    }

    /// Proposes a publish; `refused` runs if the driver refuses it at once.
    pub fn propose_publish(
        &self,
        group: GroupId,
        data: Vec<u8>,
        refused: Box<dyn FnOnce(ApiError)>,
    ) -> Result<(), ApiError> {
        self.queue(Op::Propose {
            group,
            data,
            answer: None,
            refused: Some(refused),
        })
    }

    /// Creates this server's replica of `group`: a founding one (the first
    /// configuration is `peers`), or an empty one that the leader adds (`join`).
    pub fn create_group(&self, group: GroupId, peers: Vec<NodeId>, join: bool) {
        let _ = self.queue(Op::CreateGroup { group, peers, join });
    }

    pub fn join_meta(&self) {
        let _ = self.queue(Op::JoinMeta);
    }

    pub fn grow_meta(&self, joining: Vec<NodeId>) {
        let _ = self.queue(Op::GrowMeta(joining));
    }

    /// Hands every leadership this server holds to another replica (lame duck).
    pub fn step_down_everywhere(&self) {
        let _ = self.queue(Op::StepDownAll);
    }

    /// Whether this server leads `group` (as of the last turn).
    pub fn leads(&self, group: GroupId) -> bool {
        self.views
            .borrow()
            .get(&group)
            .is_some_and(|v| v.leader == self.node)
    }

    /// Whether this server leads no group (as of the last turn).
    pub fn leads_nothing(&self) -> bool {
        self.views.borrow().values().all(|v| v.leader != self.node)
    }

    pub fn propose_compaction(&self, group: GroupId) {
        let _ = self.queue(Op::ProposeCompaction(group));
    }

    /// Compacts the log of `group` up to `index` behind a snapshot of `data`.
    pub fn compact_log(&self, group: GroupId, index: u64, data: Vec<u8>) {
        let _ = self.queue(Op::Compact { group, index, data });
    }

    /// Removes this server's replica of `group` (its stream or consumer is gone
    /// from `streams` or `consumers` already).
    pub fn remove_group(&self, group: GroupId) {
        let _ = self.queue(Op::RemoveGroup(group));
        if !gone::holds(self, group) {
            self.gone_watchers.let_go(group);
        }
    }

    /// Hands leadership of `group` to another voter (this server must lead it).
    pub async fn step_down(&self, group: GroupId) -> Result<(), ApiError> {
        let (tx, rx) = oneshot::channel();
        self.queue(Op::StepDown { group, reply: tx })?;
        rx.await
            .unwrap_or_else(|_| Err(errors::general("step-down was not done")))
    }

    pub async fn detail(&self, group: GroupId) -> Option<Detail> {
        let (tx, rx) = oneshot::channel();
        self.queue(Op::Detail { group, reply: tx }).ok()?;
        rx.await.ok().flatten()
    }

    /// Asks the node loop for a turn (work was queued outside `queue`).
    pub fn wake(&self) {
        let _ = self.events.unbounded_send(Event::Wake);
    }

    /// Proposes from inside the node loop; `answer` hears the outcome. False
    /// when the driver refused it (then `answer` has heard so).
    pub fn propose_now(
        &self,
        driver: &mut MultiRaft<FileLogStore>,
        group: GroupId,
        data: Vec<u8>,
        answer: AnswerTx,
    ) -> bool {
        match driver.propose(group, data) {
            Ok(p) => {
                self.waiting
                    .borrow_mut()
                    .insert((group, p.index), (p.term, answer));
                true
            }
            Err(e) => {
                let why = errors::general(format!("JetStream cluster: {e:?}"));
                let _ = answer.send(Answer::Count(Err(why)));
                false
            }
        }
    }

    fn run_ops(self: &Rc<Self>, driver: &mut MultiRaft<FileLogStore>) {
        let ops: Vec<Op> = self.ops.borrow_mut().drain(..).collect();
        for op in ops {
            self.run_op(driver, op);
        }
        consumer::propose_changed(self, driver);
    }

    fn run_op(&self, driver: &mut MultiRaft<FileLogStore>, op: Op) {
        match op {
            Op::Propose {
                group,
                data,
                answer,
                refused,
            } => match answer {
                Some(tx) => {
                    self.propose_now(driver, group, data, tx);
                }
                None => {
                    if let Err(e) = driver.propose(group, data) {
                        if let Some(f) = refused {
                            f(errors::general(format!("JetStream cluster: {e:?}")));
                        }
                    }
                }
            },
            Op::CreateGroup { group, peers, join } => {
                if driver.has_group(group) {
                    return;
                }
                if join {
                    let me = replica_id(self.node, GENERATION);
                    if let Err(e) = driver.create_replica(group, me) {
                        error!("JetStream cluster: could not join group {group}: {e:?}");
                    }
                    return;
                }
                let voters: Vec<u64> = peers.iter().map(|n| replica_id(*n, GENERATION)).collect();
                let me = replica_id(self.node, GENERATION);
                if let Err(e) = driver.create_group(group, me, &voters) {
                    error!("JetStream cluster: could not create group {group}: {e:?}");
                    return;
                }
                // The preferred leader stands at once: a new stream takes
                // publishes without waiting out an election timeout.
                if peers.first() == Some(&self.node) {
                    let _ = driver.campaign(group);
                }
            }
            Op::RemoveGroup(group) => {
                driver.remove_replica(group);
                self.views.borrow_mut().remove(&group);
            }
            Op::StepDown { group, reply } => {
                let _ = reply.send(self.step_down_now(driver, group));
            }
            Op::Detail { group, reply } => {
                let _ = reply.send(detail(driver, group));
            }
            Op::StepDownAll => {
                let leading: Vec<GroupId> = driver
                    .group_ids()
                    .filter(|g| {
                        driver
                            .role(*g)
                            .is_some_and(|(r, ..)| r == StateRole::Leader)
                    })
                    .collect();
                for g in leading {
                    if let Err(e) = self.step_down_now(driver, g) {
                        warn!(
                            "JetStream cluster: group {g} kept its leader here: {}",
                            e.description
                        );
                    }
                }
            }
            Op::JoinMeta => {
                let me = replica_id(self.node, GENERATION);
                if let Err(e) = driver.create_replica(META_GROUP, me) {
                    warn!("JetStream meta group: could not join: {e:?}");
                }
            }
            Op::GrowMeta(mut joining) => {
                let meta = self.meta.borrow();
                joining.retain(|n| !meta.removed.contains(n));
                grow_meta(driver, &joining)
            }
            Op::ProposeCompaction(group) => {
                if let Some(up_to) = held_by_all(driver, group) {
                    let _ = driver.propose(group, entry::encode_compact(up_to));
                }
            }
            Op::Compact { group, index, data } => {
                let applied = driver.status(group).map_or(0, |s| s.applied);
                if let Err(e) = driver.compact_to(group, index.min(applied), data) {
                    warn!("JetStream cluster: group {group} not compacted: {e:?}");
                }
            }
        }
    }

    /// Looks at the groups this turn readied (every group once a sweep): a replica
    /// that lost its leadership stops acting as leader at once. Once per turn,
    /// after its ready.
    fn refresh_views(&self, driver: &mut MultiRaft<FileLogStore>) {
        let sweep = self
            .last_sweep
            .get()
            .is_none_or(|at| at.elapsed() >= FULL_SWEEP_INTERVAL);
        if sweep {
            self.last_sweep.set(Some(std::time::Instant::now()));
        }
        // Only a group this turn readied can have changed; every group once a sweep.
        let readied = driver.take_readied();
        let groups: Vec<GroupId> = if sweep {
            driver.group_ids().collect()
        } else {
            readied.into_iter().collect()
        };
        let mut lost = Vec::new();
        let mut meta_changed = false;
        {
            let mut views = self.views.borrow_mut();
            for g in groups.iter().copied() {
                let Some((role, leader, term)) = driver.role(g) else {
                    continue;
                };
                let v = views.entry(g).or_default();
                let leading = role == StateRole::Leader;
                if v.ready && (!leading || term != v.term) {
                    v.ready = false;
                    lost.push(g);
                }
                let leader = if leader == 0 { 0 } else { node_of(leader) };
                meta_changed |= g == META_GROUP && (v.leader != leader || v.term != term);
                v.leader = leader;
                v.term = term;
            }
        }
        for g in lost {
            self.on_leadership(g, false);
        }
        if sweep {
            self.reconcile_members(driver);
        }
        if sweep || meta_changed {
            let voters = driver
                .status(META_GROUP)
                .map(|s| s.conf_state.voters.iter().map(|r| node_of(*r)).collect())
                .unwrap_or_default();
            *self.meta_peers.borrow_mut() = voters;
            self.host.observe(driver);
        }
    }

    /// Hands leadership of `group` to the most caught-up other voter among those
    /// this server has a route to and hears from.
    fn step_down_now(
        &self,
        driver: &mut MultiRaft<FileLogStore>,
        group: GroupId,
    ) -> Result<(), ApiError> {
        let st = driver
            .status(group)
            .ok_or_else(|| errors::general("no such group here"))?;
        if st.role != StateRole::Leader {
            return Err(errors::general("not the leader"));
        }
        let routed = |node: NodeId| {
            self.shard()
                .and_then(|s| s.routes.as_ref().and_then(|r| r.raft_route(node)))
                .is_some()
        };
        let to = step_down_target(driver, group, routed)
            .ok_or_else(|| errors::general("no other replica to step down to"))?;
        driver
            .transfer_leader(group, to)
            .map_err(|e| errors::general(format!("step-down failed: {e:?}")))
    }

    /// The groups this server leads move one step towards their stream's servers;
    /// one whose members are in place while its stream moves tells the meta leader.
    fn reconcile_members(&self, driver: &mut MultiRaft<FileLogStore>) {
        let Some(shard) = self.shard() else { return };
        let mut wanted: Vec<(GroupId, Rc<Stream>)> = Vec::new();
        {
            let views = self.views.borrow();
            let leads = |g: &GroupId| views.get(g).is_some_and(|v| v.ready);
            for (g, s) in self.streams.borrow().iter().filter(|(g, _)| leads(g)) {
                wanted.push((*g, s.clone()));
            }
            for (g, c) in self.consumers.borrow().iter().filter(|(g, _)| leads(g)) {
                wanted.extend(c.stream.upgrade().map(|s| (*g, s)));
            }
        }
        if self.is_meta_leader() {
            let removed = self.meta.borrow().removed.clone();
            let voters = self.meta_peers.borrow().clone();
            if voters.iter().any(|n| removed.contains(n)) {
                let kept: Vec<NodeId> = voters
                    .into_iter()
                    .filter(|n| !removed.contains(n))
                    .collect();
                moves::reconcile(self, driver, META_GROUP, &kept);
            }
        }
        for (g, stream) in wanted {
            let Some(r) = stream.cluster.get() else {
                continue;
            };
            let peers = r.peers.borrow().clone();
            if !moves::reconcile(self, driver, g, &peers) {
                continue;
            }
            let account = shard.server.accounts.name(stream.account).to_string();
            let moving = self
                .meta
                .borrow()
                .stream(&account, &stream.name)
                .is_some_and(|sa| sa.moving.is_some());
            if moving {
                moves::report_settled(&shard, self, &account, &stream.name, g);
            }
        }
    }

    /// A new leader applied its own term's first entry: everything committed before
    /// is applied here, so it may act.
    fn on_leader_entry(&self, driver: &MultiRaft<FileLogStore>, group: GroupId, term: u64) {
        let Some((role, _, current)) = driver.role(group) else {
            return;
        };
        if role != StateRole::Leader || current != term {
            return;
        }
        {
            let mut views = self.views.borrow_mut();
            let v = views.entry(group).or_default();
            v.leader = self.node;
            v.term = term;
            if v.ready {
                return;
            }
            v.ready = true;
        }
        self.on_leadership(group, true);
    }

    fn on_leadership(&self, group: GroupId, leading: bool) {
        let Some(shard) = self.shard() else { return };
        let stream = self.streams.borrow().get(&group).cloned();
        if let Some(s) = stream {
            stream::set_leading(&shard, &s, leading);
            return;
        }
        let consumer = self.consumers.borrow().get(&group).cloned();
        if let Some(c) = consumer {
            let catching_up = c.stream.upgrade().filter(|s| s.catching_up());
            if let (true, Some(s)) = (leading, catching_up) {
                // Its replica of the stream lacks messages: another delivers.
                stream::hand_on_leadership(&shard, group, &s.name);
            }
            consumer::set_leading(&c, leading);
        }
    }

    fn answer(&self, group: GroupId, index: u64, term: u64, answer: Option<Answer>) {
        let Some((t, tx)) = self.waiting.borrow_mut().remove(&(group, index)) else {
            return;
        };
        let a = if t == term {
            answer.unwrap_or(Answer::Count(Ok(0)))
        } else {
            Answer::Lost
        };
        let _ = tx.send(a);
    }

    /// Waiting proposals of `group` at `index` or below that can no longer be
    /// applied (covered by a snapshot, or the group went away).
    fn fail_waiting(&self, group: GroupId, up_to: u64) {
        let keys: Vec<_> = self
            .waiting
            .borrow()
            .range((group, 0)..=(group, up_to))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some((_, tx)) = self.waiting.borrow_mut().remove(&k) {
                let _ = tx.send(Answer::Lost);
            }
        }
    }

    fn apply_meta(&self, driver: &mut MultiRaft<FileLogStore>, data: &[u8]) -> Option<Answer> {
        let Some(op) = assign::decode_op(data) else {
            warn!("JetStream cluster: a meta entry this server cannot read was skipped");
            return None;
        };
        let change = self.meta.borrow_mut().apply(op);
        self.act_on(&change);
        let n = self.meta_applied_since_snapshot.get() + 1;
        self.meta_applied_since_snapshot.set(n);
        if n >= META_SNAPSHOT_EVERY {
            self.meta_applied_since_snapshot.set(0);
            let _ = driver.compact(META_GROUP, self.meta.borrow().encode());
        }
        Some(Answer::Meta(Box::new(change)))
    }

    /// Creates or removes this server's replicas as the meta state changed.
    fn act_on(&self, change: &Change) {
        let Some(shard) = self.shard() else { return };
        match change {
            Change::StreamAdded(sa) | Change::StreamUpdated(sa) => {
                if sa.peers.contains(&self.node) {
                    stream::ensure_replica(&shard, self, sa);
                }
            }
            Change::StreamMoved(sa, old) => stream::move_replica(&shard, self, sa, old),
            Change::StreamLeft(sa, leaving) => {
                if leaving.contains(&self.node) {
                    tracing::info!(
                        "JetStream cluster: the replica of stream {} leaves this server",
                        sa.config.name
                    );
                    stream::remove_replica(&shard, self, sa);
                }
            }
            Change::StreamRemoved(sa) => stream::remove_replica(&shard, self, sa),
            Change::ServerRemoved(node) if *node == self.node => tracing::warn!(
                "JetStream cluster: this server was removed from the cluster's JetStream \
                 (SERVER.REMOVE); it takes no part in it again"
            ),
            Change::ServerRemoved(_) => {}
            Change::ConsumerAdded(sa, ca) => {
                if sa.peers.contains(&self.node) {
                    consumer::ensure_replica(&shard, sa, ca);
                }
            }
            Change::ConsumerRemoved(sa, ca) => consumer::remove_replica(&shard, self, sa, ca),
            Change::Refused(_) => {}
        }
    }

    /// A meta snapshot replaced the state: replicas follow the new state.
    fn restore_meta(&self, data: &[u8]) {
        let state = match MetaState::decode(data) {
            Ok(s) => s,
            Err(e) => {
                error!("JetStream cluster: the meta snapshot cannot be read: {e}");
                return;
            }
        };
        let old = std::mem::replace(&mut *self.meta.borrow_mut(), state.clone());
        for (key, sa) in &old.streams {
            if !state.streams.contains_key(key) {
                self.act_on(&Change::StreamRemoved(sa.clone()));
            }
        }
        for sa in state.streams.values() {
            self.act_on(&Change::StreamAdded(sa.clone()));
            for ca in sa.consumers.values() {
                self.act_on(&Change::ConsumerAdded(sa.clone(), ca.clone()));
            }
        }
    }
}

/// One membership change of the meta group, led here: a caught-up learner becomes
/// a voter, or else the first joining server becomes a learner.
fn grow_meta(driver: &mut MultiRaft<FileLogStore>, joining: &[NodeId]) {
    use crate::raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
    let Some(st) = driver.status(META_GROUP) else {
        return;
    };
    if st.role != StateRole::Leader || !st.conf_state.voters_outgoing.is_empty() {
        return;
    }
    let change = |t: ConfChangeType, replica: u64| {
        let mut one = ConfChangeSingle::default();
        one.set_change_type(t);
        one.node_id = replica;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(one);
        cc
    };
    let caught_up = st.conf_state.learners.iter().find(|l| {
        driver
            .matched(META_GROUP, **l)
            .is_some_and(|m| m >= st.commit)
    });
    let cc = match caught_up {
        Some(&learner) => change(ConfChangeType::AddNode, learner),
        None => {
            let members: Vec<u64> = st
                .conf_state
                .voters
                .iter()
                .chain(&st.conf_state.learners)
                .copied()
                .collect();
            let Some(node) = joining
                .iter()
                .find(|n| !members.contains(&replica_id(**n, GENERATION)))
            else {
                return;
            };
            change(
                ConfChangeType::AddLearnerNode,
                replica_id(*node, GENERATION),
            )
        }
    };
    match driver.propose_conf_change(META_GROUP, cc) {
        Ok(_) => tracing::info!("JetStream meta group: membership change proposed"),
        Err(e) => tracing::debug!("JetStream meta group: membership change waits: {e:?}"),
    }
}

/// The voter a leader of `group` hands its leadership to: a reachable one whose
/// log matches the most.
pub fn step_down_target<S: LogStore>(
    driver: &MultiRaft<S>,
    group: GroupId,
    routed: impl Fn(NodeId) -> bool,
) -> Option<u64> {
    let st = driver.status(group)?;
    st.conf_state
        .voters
        .iter()
        .filter(|r| **r != st.replica)
        .max_by_key(|r| {
            let node = node_of(**r);
            let reachable = routed(node) && driver.peer_alive(node);
            (reachable, driver.matched(group, **r).unwrap_or(0))
        })
        .copied()
}

/// The highest index every voter's log holds (the leader's view), if any worth a
/// compaction: no replica then needs what is compacted (stream groups cannot send a
/// snapshot of their messages).
pub fn held_by_all<S: LogStore>(driver: &MultiRaft<S>, group: GroupId) -> Option<u64> {
    let st = driver.status(group)?;
    if st.role != StateRole::Leader {
        return None;
    }
    let up_to = st
        .conf_state
        .voters
        .iter()
        .filter(|r| **r != st.replica)
        .map(|r| driver.matched(group, *r).unwrap_or(0))
        .fold(st.applied, u64::min);
    (up_to > st.first_index).then_some(up_to)
}

fn detail(driver: &MultiRaft<FileLogStore>, group: GroupId) -> Option<Detail> {
    let st = driver.status(group)?;
    let leading = st.role == StateRole::Leader;
    let followers = st
        .conf_state
        .voters
        .iter()
        .chain(&st.conf_state.learners)
        .filter(|r| **r != st.replica)
        .map(|r| {
            let matched = if leading {
                driver.matched(group, *r).unwrap_or(0)
            } else {
                0
            };
            let tick_ns = crate::raft::multi::DEFAULT_TICK_INTERVAL_MS * 1_000_000;
            Follower {
                node: node_of(*r),
                matched,
                silent_ns: driver.ticks_since_heard(node_of(*r)).map(|t| t * tick_ns),
                alive: driver.peer_alive(node_of(*r)),
            }
        })
        .collect();
    Some(Detail {
        leader: if st.leader == 0 {
            0
        } else {
            node_of(st.leader)
        },
        commit: st.commit,
        last_index: st.last_index,
        followers,
    })
}

/// The node loop's application: meta, stream and consumer groups.
pub struct ClusterMachine(pub Rc<Cluster>);

impl Machine<FileLogStore> for ClusterMachine {
    fn apply(&mut self, driver: &mut MultiRaft<FileLogStore>, applied: &Applied) {
        let cl = &self.0;
        match applied {
            Applied::Entry {
                group,
                index,
                term,
                data,
            } => {
                if data.is_empty() {
                    cl.on_leader_entry(driver, *group, *term);
                    cl.answer(*group, *index, *term, None);
                    return;
                }
                let answer = if *group == META_GROUP {
                    cl.apply_meta(driver, data)
                } else if let Some(s) = cl.streams.borrow().get(group).cloned() {
                    catchup::apply(cl, &s, *index, data)
                } else if let Some(c) = cl.consumers.borrow().get(group).cloned() {
                    consumer::apply(cl, &c, data);
                    None
                } else {
                    None
                };
                cl.answer(*group, *index, *term, answer);
            }
            Applied::Snapshot {
                group,
                index,
                data,
                at_start,
                ..
            } => {
                if *group == META_GROUP {
                    cl.restore_meta(data);
                } else if let Some(s) = cl.streams.borrow().get(group).cloned() {
                    catchup::on_snapshot(cl, &s, *index, data, *at_start);
                } else if let Some(c) = cl.consumers.borrow().get(group).cloned() {
                    consumer::apply(cl, &c, data);
                }
                cl.fail_waiting(*group, *index);
            }
            Applied::ConfChange { .. } => {}
            Applied::Removed { group } => cl.fail_waiting(*group, u64::MAX),
        }
    }

    fn snapshot(&mut self, group: GroupId, applied: u64) -> SnapshotState {
        let cl = &self.0;
        if group == META_GROUP {
            return SnapshotState::Data(cl.meta.borrow().encode());
        }
        if let Some(c) = cl.consumers.borrow().get(&group) {
            return SnapshotState::Data(consumer::encode_state(c));
        }
        // A stream's state is its store: the snapshot says which messages a replica
        // must hold, and one that lacks them gets them from a peer (`catchup`).
        if let Some(s) = cl.streams.borrow().get(&group).cloned() {
            return stream::snapshot(cl, &s, applied);
        }
        SnapshotState::Data(Vec::new())
    }

    fn after_turn(&mut self, driver: &mut MultiRaft<FileLogStore>) {
        self.0.run_ops(driver);
        self.0.refresh_views(driver);
    }
}
