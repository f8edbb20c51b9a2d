//! The per-shard multi-raft driver: one timer for all groups, one frame per peer node
//! per turn, quiet groups, group-committed persistence. It does no I/O itself.
//!
//! A turn, as the shard runs it:
//! ```text
//! driver.tick()                       every tick interval
//! driver.step(from_node, &frame)      for each frame received
//! driver.propose(group, data)         for each client request
//! let rd = driver.ready();            frames to send, entries to apply, maybe a sync ticket
//! send rd.frames; apply rd.applied;
//! if let Some(t) = rd.sync { store.sync(); driver.on_persisted(t) }   (may complete later)
//! ```
//! Entries are written to the [`LogStore`] inside `ready()` (buffered writes); the
//! caller's `sync` makes them durable for all groups at once. A follower's
//! acknowledgements and votes are held back until `on_persisted` covers them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message,
    MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::frame::{self, Frame, FrameError, Item};
use super::group::{conf_members, Group, GroupStorage};
use super::inbound::{self, LogView};
use super::log_store::{FetchRequest, GroupId, LogStore};
use super::{node_of, NodeId, INIT_INDEX, INIT_TERM};

/// Timings and limits of a driver. Times are in ticks of the shard timer.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_id: NodeId,
    /// Changes on every start of the node, so that peers notice a restart.
    pub incarnation: u64,
    /// Election timeout; the effective one is randomized in `[election, 2 * election)`.
    pub election_ticks: usize,
    /// Leader heartbeat interval, and node-level heartbeat interval.
    pub heartbeat_ticks: usize,
    /// A peer node is suspected dead after this many ticks without a frame from it.
    pub node_dead_ticks: u64,
    /// A leader goes quiet after being idle (everything replicated, committed and
    /// known committed by every live follower) for this many consecutive ticks.
    pub quiet_after_ticks: u32,
    pub max_size_per_msg_bytes: u64,
    pub max_inflight_msgs: usize,
    pub max_uncommitted_bytes: u64,
    pub max_entry_bytes: usize,
    /// Frames are split above this size.
    pub max_frame_bytes: usize,
    pub max_groups: usize,
    /// Seeds the election timeout randomization (deterministic in simulation).
    pub seed: u64,
}

/// Default tick interval of the shard timer.
pub const DEFAULT_TICK_INTERVAL_MS: u64 = 50;

impl Config {
    /// Default timings: tick 50 ms, heartbeat 2 ticks (100 ms), election 8 ticks
    /// (400–800 ms randomized), node suspected dead after 6 ticks (300 ms).
    pub fn new(node_id: NodeId, incarnation: u64) -> Self {
        Self {
            node_id,
            incarnation,
            election_ticks: 8,
            heartbeat_ticks: 2,
            node_dead_ticks: 6,
            quiet_after_ticks: 5,
            max_size_per_msg_bytes: 1024 * 1024,
            max_inflight_msgs: 256,
            max_uncommitted_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 8 * 1024 * 1024,
            max_frame_bytes: 4 * 1024 * 1024,
            max_groups: 1 << 20,
            seed: incarnation ^ node_id.rotate_left(32),
        }
    }
}

/// Something the application must apply, in order, per group.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// A committed normal entry (empty `data`: a new leader's no-op).
    Entry {
        group: GroupId,
        index: u64,
        term: u64,
        data: Bytes,
    },
    /// A committed configuration change, already applied to the group.
    ConfChange {
        group: GroupId,
        index: u64,
        conf_state: ConfState,
    },
    /// Replace the state machine by this snapshot (caught up from a leader, or
    /// recovered at start-up); entries after `index` follow.
    Snapshot {
        group: GroupId,
        index: u64,
        term: u64,
        data: Bytes,
        /// This node's own snapshot, reported at start-up (not one a leader sent).
        at_start: bool,
    },
    /// This replica was removed from the group and its log deleted.
    Removed { group: GroupId },
}

/// Output of one turn.
#[derive(Debug, Default)]
pub struct Ready {
    /// One frame (rarely more, when large) per peer node.
    pub frames: Vec<(NodeId, Vec<u8>)>,
    /// Make the store durable, then call [`MultiRaft::on_persisted`] with this ticket.
    pub sync: Option<u64>,
    pub applied: Vec<Applied>,
    /// Groups whose leader must send a snapshot newer than the stored one: call
    /// [`MultiRaft::compact`] with the state machine's current state.
    pub snapshot_wanted: Vec<GroupId>,
    /// Entries the store must read from disk (a store keeping only part of the log in
    /// memory): read them, hand them to the store, then call
    /// [`MultiRaft::on_entries_fetched`] for the group.
    pub fetches: Vec<FetchRequest>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
            && self.sync.is_none()
            && self.applied.is_empty()
            && self.snapshot_wanted.is_empty()
            && self.fetches.is_empty()
    }
}

/// Where a proposal landed: acknowledge the client once `(index, term)` is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub index: u64,
    pub term: u64,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NoGroup,
    /// Not the leader; `leader` is the replica believed to lead, if any.
    NotLeader {
        leader: Option<u64>,
    },
    /// A leader transfer or a configuration change is in progress.
    Busy,
    TooLarge,
    /// Raft refused it (uncommitted limit reached).
    Dropped,
    /// The group already exists, or there are too many groups.
    Exists,
    TooManyGroups,
}

/// A group's state, for status pages and tests.
#[derive(Clone, Debug)]
pub struct GroupStatus {
    pub replica: u64,
    pub role: StateRole,
    pub term: u64,
    pub leader: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub conf_state: ConfState,
    pub quiet: bool,
}

/// Counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub frames_sent: u64,
    pub items_sent: u64,
    pub frames_received: u64,
    pub dropped_unknown_group: u64,
    pub group_ticks: u64,
    pub quiet_transitions: u64,
    pub wakes: u64,
    pub sync_tickets: u64,
    /// Peer nodes suspected dead (silent for `node_dead_ticks`).
    pub peers_lost: u64,
    /// Reads of entries from disk asked of the caller (`Ready::fetches`).
    pub fetches: u64,
    /// Messages from peers that failed `inbound::admit`.
    pub refused: u64,
}

struct Peer {
    /// In liveness ticks (see `MultiRaft::live_ticks`).
    last_heard_tick: u64,
    /// 0 until the first frame.
    incarnation: u64,
    alive: bool,
    ticks_since_sent: u64,
}

struct Ticket {
    id: u64,
    needs_sync: bool,
    /// (group, group instance, ready number)
    readies: Vec<(GroupId, u64, u64)>,
    held: Vec<(NodeId, Item)>,
}

const MAX_READY_PASSES: usize = 8;

/// All Raft groups of one shard.
pub struct MultiRaft<S: LogStore> {
    cfg: Config,
    store: Rc<RefCell<S>>,
    logger: slog::Logger,
    groups: BTreeMap<GroupId, Group<S>>,
    awake: BTreeSet<GroupId>,
    dirty: BTreeSet<GroupId>,
    /// Groups `ready` went through since `take_readied`: only these may have
    /// changed role, leader or term.
    readied: BTreeSet<GroupId>,
    peers: BTreeMap<NodeId, Peer>,
    outbox: BTreeMap<NodeId, Vec<Item>>,
    tickets: VecDeque<Ticket>,
    next_ticket: u64,
    next_instance: u64,
    applied_out: Vec<Applied>,
    snapshot_wanted: Vec<GroupId>,
    rng: ChaCha8Rng,
    now_ticks: u64,
    /// Ticks that count against a silent peer: at most one per turn (`ready()`). A
    /// node starved of CPU gets its timer's missed ticks in a burst, ahead of the frames
    /// that queued meanwhile; the gap is its own delay, not its peers' silence.
    live_ticks: u64,
    /// A turn ran since the last tick.
    turned: bool,
    stats: Stats,
}

fn conf_change_of(e: &Entry) -> Option<ConfChangeV2> {
    match e.get_entry_type() {
        EntryType::EntryNormal => None,
        EntryType::EntryConfChange => {
            let cc = ConfChange::parse_from_bytes(&e.data).ok()?;
            let mut single = ConfChangeSingle::default();
            single.set_change_type(cc.get_change_type());
            single.node_id = cc.node_id;
            let mut v2 = ConfChangeV2::default();
            v2.mut_changes().push(single);
            Some(v2)
        }
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data).ok(),
    }
}

impl<S: LogStore> MultiRaft<S> {
    /// A driver over `store`, recovering every group the store holds.
    pub fn new(cfg: Config, store: Rc<RefCell<S>>) -> Self {
        assert!(cfg.election_ticks > cfg.heartbeat_ticks && cfg.heartbeat_ticks > 0);
        assert!(cfg.node_id > 0 && cfg.node_id < (1 << 40));
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut d = Self {
            cfg,
            store,
            logger: slog::Logger::root(slog::Discard, slog::o!()),
            groups: BTreeMap::new(),
            awake: BTreeSet::new(),
            dirty: BTreeSet::new(),
            readied: BTreeSet::new(),
            peers: BTreeMap::new(),
            outbox: BTreeMap::new(),
            tickets: VecDeque::new(),
            next_ticket: 1,
            next_instance: 1,
            applied_out: Vec::new(),
            snapshot_wanted: Vec::new(),
            rng,
            now_ticks: 0,
            live_ticks: 0,
            turned: true,
            stats: Stats::default(),
        };
        let ids = d.store.borrow().group_ids();
        for g in ids {
            let (replica, snap) = {
                let s = d.store.borrow();
                (s.replica_id(g), s.snapshot(g))
            };
            d.open_group(g, replica, snap.get_metadata().index);
            if snap.get_metadata().index > 0 {
                d.applied_out.push(Applied::Snapshot {
                    group: g,
                    index: snap.get_metadata().index,
                    term: snap.get_metadata().term,
                    data: snap.data.clone(),
                    at_start: true,
                });
            }
        }
        d
    }

    fn raft_config(&self, id: u64, applied: u64) -> raft::Config {
        raft::Config {
            id,
            election_tick: self.cfg.election_ticks,
            heartbeat_tick: self.cfg.heartbeat_ticks,
            applied,
            max_size_per_msg: self.cfg.max_size_per_msg_bytes,
            max_inflight_msgs: self.cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            // raft randomizes in this range with a thread RNG; the driver overrides the
            // draw from its seeded RNG (see `fix_timeout`), so runs replay exactly.
            min_election_tick: self.cfg.election_ticks,
            max_election_tick: 2 * self.cfg.election_ticks,
            max_uncommitted_size: self.cfg.max_uncommitted_bytes,
            ..Default::default()
        }
    }

    fn open_group(&mut self, g: GroupId, replica: u64, applied: u64) {
        let wanted = Rc::new(std::cell::Cell::new(false));
        let storage = GroupStorage::new(g, self.store.clone(), wanted.clone());
        let rc = self.raft_config(replica, applied);
        let node = RawNode::new(&rc, storage, &self.logger).expect("valid raft config");
        let conf_state = self
            .store
            .borrow()
            .snapshot(g)
            .get_metadata()
            .get_conf_state()
            .clone();
        for m in conf_members(&conf_state) {
            self.add_peer(node_of(m));
        }
        let instance = self.next_instance;
        self.next_instance += 1;
        let mut grp = Group {
            node,
            quiet: false,
            idle_ticks: 0,
            applied,
            conf_state,
            snapshot_wanted: wanted,
            instance,
            suspicion_wake: None,
        };
        fix_timeout(&mut grp, &mut self.rng, self.cfg.election_ticks);
        self.groups.insert(g, grp);
        self.awake.insert(g);
        self.dirty.insert(g);
    }

    fn add_peer(&mut self, node: NodeId) {
        if node == self.cfg.node_id {
            return;
        }
        let now = self.live_ticks;
        self.peers.entry(node).or_insert(Peer {
            last_heard_tick: now,
            incarnation: 0,
            alive: true,
            ticks_since_sent: 0,
        });
    }

    /// Bootstraps a new group whose initial voters are `voters` (replica ids, this node's
    /// `replica` among them).
    pub fn create_group(
        &mut self,
        g: GroupId,
        replica: u64,
        voters: &[u64],
    ) -> Result<(), ProposeError> {
        assert!(voters.contains(&replica) && node_of(replica) == self.cfg.node_id);
        self.check_new_group(g)?;
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = INIT_INDEX;
        snap.mut_metadata().term = INIT_TERM;
        snap.mut_metadata().mut_conf_state().voters = voters.to_vec();
        let hs = HardState {
            term: INIT_TERM,
            commit: INIT_INDEX,
            ..Default::default()
        };
        self.store.borrow_mut().create_group(g, replica, &snap, &hs);
        self.open_group(g, replica, INIT_INDEX);
        Ok(())
    }

    /// Creates an empty replica that will be caught up by the leader (from a snapshot)
    /// once the group adds `replica` as a learner.
    pub fn create_replica(&mut self, g: GroupId, replica: u64) -> Result<(), ProposeError> {
        assert_eq!(node_of(replica), self.cfg.node_id);
        self.check_new_group(g)?;
        self.store.borrow_mut().create_group(
            g,
            replica,
            &Snapshot::default(),
            &HardState::default(),
        );
        self.open_group(g, replica, 0);
        Ok(())
    }

    fn check_new_group(&self, g: GroupId) -> Result<(), ProposeError> {
        if self.groups.contains_key(&g) {
            return Err(ProposeError::Exists);
        }
        if self.groups.len() >= self.cfg.max_groups {
            return Err(ProposeError::TooManyGroups);
        }
        Ok(())
    }

    /// Deletes this node's replica of `g` (its log included).
    pub fn remove_replica(&mut self, g: GroupId) {
        if self.groups.remove(&g).is_some() {
            self.awake.remove(&g);
            self.dirty.remove(&g);
            self.store.borrow_mut().remove_group(g);
        }
    }

    /// Advances every awake group by one tick and runs node-level liveness.
    pub fn tick(&mut self) {
        self.now_ticks += 1;
        if std::mem::take(&mut self.turned) {
            self.live_ticks += 1;
        }
        let now = self.live_ticks;
        let dead: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.alive && now - p.last_heard_tick > self.cfg.node_dead_ticks)
            .map(|(id, _)| *id)
            .collect();
        for p in dead {
            self.stats.peers_lost += 1;
            self.peers.get_mut(&p).unwrap().alive = false;
            self.on_peer_lost(p);
        }
        for (id, p) in self.peers.iter_mut() {
            p.ticks_since_sent += 1;
            if p.ticks_since_sent >= self.cfg.heartbeat_ticks as u64 {
                // An empty frame is the node-level heartbeat.
                self.outbox.entry(*id).or_default();
            }
        }
        let awake: Vec<GroupId> = self.awake.iter().copied().collect();
        for g in awake {
            let in_memory = self.unapplied_in_memory(g);
            let grp = self.groups.get_mut(&g).expect("awake group exists");
            if !in_memory && grp.node.raft.state != StateRole::Leader {
                // An election reads every unapplied entry synchronously: not before
                // they are all read back from disk (and applied, which frees them).
                self.dirty.insert(g);
                continue;
            }
            grp.node.tick();
            self.stats.group_ticks += 1;
            fix_timeout(grp, &mut self.rng, self.cfg.election_ticks);
            self.dirty.insert(g);
            if grp.node.raft.state == StateRole::Leader {
                if leader_idle(grp, &self.peers) {
                    grp.idle_ticks += 1;
                    if grp.idle_ticks >= self.cfg.quiet_after_ticks {
                        self.go_quiet(g);
                    }
                } else {
                    grp.idle_ticks = 0;
                }
            }
        }
    }

    fn go_quiet(&mut self, g: GroupId) {
        let grp = self.groups.get_mut(&g).unwrap();
        grp.quiet = true;
        grp.idle_ticks = 0;
        self.awake.remove(&g);
        self.stats.quiet_transitions += 1;
        let (me, term) = (grp.replica(), grp.node.raft.term);
        for m in conf_members(&grp.conf_state) {
            if m != me {
                self.outbox
                    .entry(node_of(m))
                    .or_default()
                    .push(Item::Quiet {
                        group: g,
                        from: me,
                        to: m,
                        term,
                    });
            }
        }
    }

    fn wake(&mut self, g: GroupId) {
        let grp = self.groups.get_mut(&g).unwrap();
        grp.suspicion_wake = None;
        if grp.quiet {
            grp.quiet = false;
            self.stats.wakes += 1;
            if grp.node.raft.state == StateRole::Leader {
                // A fresh check-quorum window: followers were silent by agreement.
                grp.node.raft.election_elapsed = 0;
            }
        }
        grp.idle_ticks = 0;
        self.awake.insert(g);
        self.dirty.insert(g);
    }

    /// A peer node went silent or restarted: every group it led here must be able to
    /// elect a new leader now, quiet or not.
    fn on_peer_lost(&mut self, peer: NodeId) {
        let et = self.cfg.election_ticks;
        let led: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, grp)| {
                let r = &grp.node.raft;
                r.state != StateRole::Leader && r.leader_id != 0 && node_of(r.leader_id) == peer
            })
            .map(|(g, _)| *g)
            .collect();
        self.wake_leaders_without_quorum();
        for g in led {
            let was_quiet = self.groups[&g].quiet;
            self.wake(g);
            let grp = self.groups.get_mut(&g).unwrap();
            let r = &grp.node.raft;
            grp.suspicion_wake = Some((r.term, r.leader_id, was_quiet));
            let rank = campaign_rank(g, grp.replica(), &grp.conf_state, peer);
            let r = &mut grp.node.raft;
            // Out of the leader lease: grant pre-votes at once. Campaign after a wait
            // staggered by rank, so that survivors that noticed the death in the same
            // tick do not campaign in the same tick and split the vote (both would win
            // the pre-vote, then vote for themselves).
            r.election_elapsed = r.election_elapsed.max(et);
            let wait = stagger_ticks(rank, et, &mut self.rng);
            let timeout = (r.election_elapsed + wait).min(2 * et - 1);
            r.set_randomized_election_timeout(timeout);
        }
    }

    /// Quiet leaders that no longer hear from a quorum of their voters wake up, so that
    /// check-quorum steps them down within an election timeout: a leader cut off from
    /// its followers must not keep answering as leader (the others elect a new one).
    fn wake_leaders_without_quorum(&mut self) {
        let cut_off: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, grp)| {
                grp.quiet
                    && grp.node.raft.state == StateRole::Leader
                    && !hears_quorum(grp, &self.peers)
            })
            .map(|(g, _)| *g)
            .collect();
        for g in cut_off {
            self.wake(g);
        }
    }

    /// A peer node suspected dead is heard from again, same incarnation: it was only
    /// slow (a stalled process, a starved CPU). Groups it leads that were woken by the
    /// suspicion and have not moved on since (same term; a follower of the same leader,
    /// or a pre-candidate whose pre-vote did not win) take the leader back as if they
    /// had heard its heartbeat, and those that were quiet go quiet again: a transient
    /// stall costs no election and leaves idle groups idle.
    fn on_peer_returned(&mut self, peer: NodeId) {
        let back: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, grp)| {
                grp.suspicion_wake
                    .is_some_and(|(_, leader, _)| node_of(leader) == peer)
            })
            .map(|(g, _)| *g)
            .collect();
        for g in back {
            let grp = self.groups.get_mut(&g).unwrap();
            let (term, leader, was_quiet) = grp.suspicion_wake.take().unwrap();
            let r = &mut grp.node.raft;
            let same = r.term == term
                && match r.state {
                    StateRole::Follower => r.leader_id == leader,
                    StateRole::PreCandidate => true,
                    _ => false,
                };
            if !same {
                continue;
            }
            r.become_follower(term, leader);
            fix_timeout(grp, &mut self.rng, self.cfg.election_ticks);
            self.dirty.insert(g);
            if was_quiet {
                grp.quiet = true;
                grp.idle_ticks = 0;
                self.awake.remove(&g);
                self.stats.quiet_transitions += 1;
            }
        }
    }

    /// A peer node is back (or restarted): quiet leaders with a replica there wake up to
    /// catch it up and to tell it who leads.
    fn on_peer_back(&mut self, peer: NodeId) {
        let led: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, grp)| {
                grp.quiet
                    && grp.node.raft.state == StateRole::Leader
                    && conf_members(&grp.conf_state).any(|m| node_of(m) == peer)
            })
            .map(|(g, _)| *g)
            .collect();
        for g in led {
            self.wake(g);
        }
    }

    fn heard_from(&mut self, peer: NodeId, incarnation: u64) {
        self.add_peer(peer);
        let now = self.live_ticks;
        let p = self.peers.get_mut(&peer).unwrap();
        let restarted = p.incarnation != 0 && p.incarnation != incarnation;
        let was_alive = p.alive;
        p.last_heard_tick = now;
        p.incarnation = incarnation;
        p.alive = true;
        if restarted {
            self.on_peer_lost(peer);
        }
        if !restarted && !was_alive {
            self.on_peer_returned(peer);
        }
        if restarted || !was_alive {
            self.on_peer_back(peer);
        }
    }

    /// Handles one frame received from `from`.
    pub fn step(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), FrameError> {
        let (f, _) = frame::parse(bytes)?;
        if f.to_node != self.cfg.node_id || f.from_node != from {
            return Err(FrameError::Malformed("frame addressed elsewhere"));
        }
        self.stats.frames_received += 1;
        self.heard_from(from, f.incarnation);
        for item in f.items {
            match item {
                Item::Raft { group, msg } => self.step_msg(from, group, msg),
                Item::Quiet {
                    group,
                    from,
                    to,
                    term,
                } => self.on_quiet(group, from, to, term),
            }
        }
        Ok(())
    }

    fn step_msg(&mut self, from_node: NodeId, g: GroupId, mut msg: Message) {
        let ty = msg.get_msg_type();
        if self.groups.contains_key(&g) {
            // Raft reads unapplied entries synchronously when an election starts
            // (TimeoutNow) and when a vote message moves a candidate's commit index:
            // keep both off entries that are on disk only.
            if ty == MessageType::MsgTimeoutNow && !self.unapplied_in_memory(g) {
                self.dirty.insert(g);
                return;
            }
            if matches!(
                ty,
                MessageType::MsgRequestVote
                    | MessageType::MsgRequestPreVote
                    | MessageType::MsgRequestVoteResponse
                    | MessageType::MsgRequestPreVoteResponse
            ) && msg.commit > 0
                && msg.commit > self.in_memory_through(g)
            {
                msg.commit = 0;
                msg.commit_term = 0;
            }
        }
        let Some(grp) = self.groups.get_mut(&g) else {
            self.stats.dropped_unknown_group += 1;
            return;
        };
        if msg.to != grp.replica() {
            self.stats.dropped_unknown_group += 1;
            return;
        }
        let r = &grp.node.raft;
        let log = LogView {
            last_index: r.raft_log.last_index(),
            from_sender_node: node_of(msg.from) == from_node && msg.from != msg.to,
        };
        if let Err(why) = inbound::admit(&mut msg, log) {
            self.stats.refused += 1;
            tracing::debug!(
                "Raft group {g}: refused {:?} from node {from_node}: {why:?}",
                msg.get_msg_type()
            );
            return;
        }
        let before = (r.term, r.state, r.leader_id);
        let carries_entries = !msg.entries.is_empty();
        let from_own_leader = matches!(
            ty,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && r.state == StateRole::Follower
            && r.leader_id == msg.from;
        if from_own_leader {
            // The leader this replica follows campaigns: it stepped down (check-quorum
            // while cut off). Its lease is over; a quiet follower, which does not
            // tick, would otherwise refuse every vote and the group stays leaderless.
            let timeout = grp.node.raft.election_timeout();
            grp.node.raft.election_elapsed = grp.node.raft.election_elapsed.max(timeout);
        }
        let _ = grp.node.step(msg);
        fix_timeout(grp, &mut self.rng, self.cfg.election_ticks);
        self.dirty.insert(g);
        if grp.quiet {
            let r = &grp.node.raft;
            let changed = before != (r.term, r.state, r.leader_id);
            let wake = changed
                || match r.state {
                    StateRole::Leader => {
                        matches!(
                            ty,
                            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                        ) || grp.node.has_ready()
                    }
                    _ => {
                        (ty == MessageType::MsgAppend && carries_entries)
                            || ty == MessageType::MsgSnapshot
                            || ty == MessageType::MsgTimeoutNow
                            || from_own_leader
                    }
                };
            if wake {
                self.wake(g);
            }
        }
    }

    fn on_quiet(&mut self, g: GroupId, from: u64, to: u64, term: u64) {
        let Some(grp) = self.groups.get_mut(&g) else {
            return;
        };
        let r = &grp.node.raft;
        if grp.replica() == to
            && r.state == StateRole::Follower
            && r.leader_id == from
            && r.term == term
            && !grp.quiet
        {
            grp.quiet = true;
            self.awake.remove(&g);
            self.stats.quiet_transitions += 1;
        }
    }

    fn leader_group(&mut self, g: GroupId) -> Result<&mut Group<S>, ProposeError> {
        let grp = self.groups.get_mut(&g).ok_or(ProposeError::NoGroup)?;
        let r = &grp.node.raft;
        if r.state != StateRole::Leader {
            let leader = (r.leader_id != 0).then_some(r.leader_id);
            return Err(ProposeError::NotLeader { leader });
        }
        if r.lead_transferee.is_some() {
            return Err(ProposeError::Busy);
        }
        Ok(grp)
    }

    /// Proposes `data` to group `g`; only the leader accepts proposals.
    pub fn propose(&mut self, g: GroupId, data: Vec<u8>) -> Result<Proposal, ProposeError> {
        if data.len() > self.cfg.max_entry_bytes {
            return Err(ProposeError::TooLarge);
        }
        let grp = self.leader_group(g)?;
        let before = grp.node.raft.raft_log.last_index();
        grp.node
            .propose(vec![], data)
            .map_err(|_| ProposeError::Dropped)?;
        let r = &grp.node.raft;
        let index = r.raft_log.last_index();
        assert_eq!(index, before + 1);
        let p = Proposal {
            index,
            term: r.term,
        };
        self.wake(g);
        Ok(p)
    }

    /// Proposes a membership change (joint consensus when it has several changes).
    pub fn propose_conf_change(
        &mut self,
        g: GroupId,
        cc: ConfChangeV2,
    ) -> Result<Proposal, ProposeError> {
        let grp = self.leader_group(g)?;
        let r = &grp.node.raft;
        let in_joint = !grp.conf_state.voters_outgoing.is_empty();
        if r.pending_conf_index > grp.applied || (in_joint && !cc.changes.is_empty()) {
            return Err(ProposeError::Busy);
        }
        let before = r.raft_log.last_index();
        let targets: Vec<u64> = cc.changes.iter().map(|c| c.node_id).collect();
        grp.node
            .propose_conf_change(vec![], cc)
            .map_err(|_| ProposeError::Dropped)?;
        let r = &grp.node.raft;
        let index = r.raft_log.last_index();
        assert_eq!(index, before + 1);
        let last = r.raft_log.term(index).unwrap_or(0);
        let p = Proposal { index, term: last };
        for t in targets {
            self.add_peer(node_of(t));
        }
        self.wake(g);
        Ok(p)
    }

    /// Steps the leader down in favour of `to` (stream/consumer/meta step-down).
    pub fn transfer_leader(&mut self, g: GroupId, to: u64) -> Result<(), ProposeError> {
        let grp = self.leader_group(g)?;
        grp.node.transfer_leader(to);
        self.wake(g);
        Ok(())
    }

    /// Starts an election now (tests, or forcing a replica to lead).
    pub fn campaign(&mut self, g: GroupId) -> Result<(), ProposeError> {
        if self.groups.contains_key(&g) && !self.unapplied_in_memory(g) {
            return Err(ProposeError::Busy);
        }
        let grp = self.groups.get_mut(&g).ok_or(ProposeError::NoGroup)?;
        let _ = grp.node.campaign();
        self.wake(g);
        Ok(())
    }

    /// Compacts the log of `g` behind a snapshot of the state machine at the applied
    /// index; `data` is the application's state after everything handed out so far.
    /// Returns the snapshot index.
    pub fn compact(&mut self, g: GroupId, data: Vec<u8>) -> Result<u64, ProposeError> {
        let applied = self.groups.get(&g).ok_or(ProposeError::NoGroup)?.applied;
        self.compact_to(g, applied, data)
    }

    /// Compacts the log of `g` up to `index` (at most the applied index), behind a
    /// snapshot whose state is `data`: for a state machine whose state is durable
    /// elsewhere up to `index` (a stream's store).
    pub fn compact_to(
        &mut self,
        g: GroupId,
        index: u64,
        data: Vec<u8>,
    ) -> Result<u64, ProposeError> {
        let grp = self.groups.get(&g).ok_or(ProposeError::NoGroup)?;
        assert!(index <= grp.applied, "compacting past the applied index");
        let mut store = self.store.borrow_mut();
        let snap_index = store.snapshot(g).get_metadata().index;
        if index <= snap_index {
            return Ok(snap_index);
        }
        let term = store.term(g, index).expect("applied entry is in the log");
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(grp.conf_state.clone());
        snap.data = data.into();
        store.compact_prefix(g, &snap);
        Ok(index)
    }

    /// Collects this turn's output.
    pub fn ready(&mut self) -> Ready {
        self.turned = true;
        let mut sync = None;
        for _ in 0..MAX_READY_PASSES {
            let dirty = std::mem::take(&mut self.dirty);
            let mut ticket = Ticket {
                id: 0,
                needs_sync: false,
                readies: Vec::new(),
                held: Vec::new(),
            };
            for g in dirty {
                self.readied.insert(g);
                self.group_ready(g, &mut ticket);
            }
            if !ticket.readies.is_empty() {
                ticket.id = self.next_ticket;
                self.next_ticket += 1;
                if ticket.needs_sync {
                    sync = Some(ticket.id);
                    self.stats.sync_tickets += 1;
                }
                self.tickets.push_back(ticket);
            }
            self.complete_unsynced();
            if self.dirty.iter().all(|g| {
                self.groups
                    .get(g)
                    .is_none_or(|grp| !grp.node.has_ready() || self.waits_for_fetch(*g, grp))
            }) {
                break;
            }
        }
        let fetches = {
            let mut store = self.store.borrow_mut();
            store.trim_cache();
            store.take_fetches()
        };
        self.stats.fetches += fetches.len() as u64;
        Ready {
            frames: self.build_frames(),
            sync,
            applied: std::mem::take(&mut self.applied_out),
            snapshot_wanted: std::mem::take(&mut self.snapshot_wanted),
            fetches,
        }
    }

    fn group_ready(&mut self, g: GroupId, ticket: &mut Ticket) {
        let Some(grp) = self.groups.get_mut(&g) else {
            return;
        };
        if grp.snapshot_wanted.replace(false) {
            self.snapshot_wanted.push(g);
        }
        if !grp.node.has_ready() {
            return;
        }
        let mut rd = grp.node.ready();
        let mut snapshot_sent_to = Vec::new();
        for m in rd.take_messages() {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snapshot_sent_to.push(m.to);
            }
            self.outbox
                .entry(node_of(m.to))
                .or_default()
                .push(Item::Raft { group: g, msg: m });
        }
        {
            let mut store = self.store.borrow_mut();
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                store.install_snapshot(g, &snap);
                let meta = snap.get_metadata();
                grp.applied = meta.index;
                grp.conf_state = meta.get_conf_state().clone();
                self.applied_out.push(Applied::Snapshot {
                    group: g,
                    index: meta.index,
                    term: meta.term,
                    data: snap.data.clone(),
                    at_start: false,
                });
            }
            if let Some(first) = rd.entries().first() {
                if first.index <= store.last_index(g) {
                    store.truncate_suffix(g, first.index);
                }
                store.append(g, rd.entries());
            }
            if let Some(hs) = rd.hs() {
                store.set_hard_state(g, hs);
            }
        }
        ticket.needs_sync |= rd.must_sync();
        for m in rd.take_persisted_messages() {
            ticket
                .held
                .push((node_of(m.to), Item::Raft { group: g, msg: m }));
        }
        let committed = rd.take_committed_entries();
        ticket.readies.push((g, grp.instance, rd.number()));
        grp.node.advance_append_async(rd);
        for to in snapshot_sent_to {
            // The transport does not confirm delivery; a lost snapshot shows up as a
            // rejected append later and is sent again.
            grp.node.report_snapshot(to, SnapshotStatus::Finish);
        }
        for m in conf_members(&grp.conf_state).collect::<Vec<_>>() {
            self.add_peer(node_of(m));
        }
        self.apply_committed(g, committed);
    }

    fn apply_committed(&mut self, g: GroupId, entries: Vec<Entry>) {
        let grp = self.groups.get_mut(&g).unwrap();
        let mut removed = false;
        let last_entry = entries.last().map(|e| e.index);
        for e in entries {
            if e.index <= grp.applied {
                continue; // covered by a snapshot applied in the same ready
            }
            assert_eq!(
                e.index,
                grp.applied + 1,
                "applied entries must be contiguous"
            );
            grp.applied = e.index;
            if e.get_entry_type() == EntryType::EntryNormal {
                // Empty ones are a new leader's no-op: reported too, so that a client
                // whose proposal had this index learns it failed.
                self.applied_out.push(Applied::Entry {
                    group: g,
                    index: e.index,
                    term: e.term,
                    data: e.data.clone(),
                });
                continue;
            }
            let Some(cc) = conf_change_of(&e) else {
                continue;
            };
            if let Ok(cs) = grp.node.apply_conf_change(&cc) {
                let me = grp.replica();
                removed = !conf_members(&cs).any(|m| m == me);
                grp.conf_state = cs.clone();
                self.applied_out.push(Applied::ConfChange {
                    group: g,
                    index: e.index,
                    conf_state: cs,
                });
                if removed {
                    break;
                }
            }
        }
        if let Some(last) = last_entry {
            let _ = last;
            // Not after a snapshot alone: raft counts it applied once it is persisted.
            debug_assert!(grp.applied <= last);
            grp.node.advance_apply_to(grp.applied);
            self.store.borrow_mut().set_applied(g, grp.applied);
        }
        if removed {
            self.remove_replica(g);
            self.applied_out.push(Applied::Removed { group: g });
            return;
        }
        // raft-rs leaves a joint configuration automatically only if the leader that
        // entered it applies it; a later leader must propose the leave itself.
        let grp = self.groups.get_mut(&g).unwrap();
        let r = &grp.node.raft;
        if r.state == StateRole::Leader
            && grp.conf_state.auto_leave
            && !grp.conf_state.voters_outgoing.is_empty()
            && r.pending_conf_index <= grp.applied
            && r.lead_transferee.is_none()
        {
            let _ = grp
                .node
                .propose_conf_change(vec![], ConfChangeV2::default());
        }
        if grp.node.has_ready() {
            self.dirty.insert(g);
        }
    }

    fn complete_unsynced(&mut self) {
        while self.tickets.front().is_some_and(|t| !t.needs_sync) {
            let t = self.tickets.pop_front().unwrap();
            self.complete(t);
        }
    }

    fn complete(&mut self, t: Ticket) {
        for (g, instance, number) in t.readies {
            if let Some(grp) = self.groups.get_mut(&g) {
                if grp.instance == instance {
                    grp.node.on_persist_ready(number);
                    // A snapshot counts as applied for raft once it is persisted.
                    let log = &grp.node.raft.raft_log;
                    let target = grp.applied.min(log.committed).min(log.persisted);
                    if target > log.applied {
                        grp.node.advance_apply_to(target);
                    }
                    self.dirty.insert(g);
                }
            }
        }
        for (node, item) in t.held {
            self.outbox.entry(node).or_default().push(item);
        }
    }

    /// The store holds the entries of `group`'s fetch (see [`Ready::fetches`]): resume
    /// the raft reads that waited for them.
    pub fn on_entries_fetched(&mut self, g: GroupId) {
        let contexts = self.store.borrow_mut().take_fetch_contexts(g);
        if let Some(grp) = self.groups.get_mut(&g) {
            for c in contexts {
                grp.node.on_entries_fetched(c);
            }
            self.dirty.insert(g);
        }
    }

    /// The highest index up to which the unapplied entries of `g` can be read without
    /// I/O: from the store's cache, then raft's own unstable entries. None while a
    /// snapshot is installed in the store but not yet persisted: raft still reads from
    /// its old applied index, which the store has compacted away.
    fn in_memory_through(&self, g: GroupId) -> u64 {
        let log = &self.groups[&g].node.raft.raft_log;
        let store = self.store.borrow();
        if log.applied + 1 < store.first_index(g) {
            return log.applied;
        }
        let from = log.applied + 1;
        let stable_last = store
            .last_index(g)
            .min(log.unstable.offset.saturating_sub(1));
        let through = store.cached_through(g, from);
        if through >= stable_last {
            through.max(log.last_index())
        } else {
            through
        }
    }

    /// Whether every committed, unapplied entry of `g` can be read without I/O: raft
    /// reads them synchronously (elections, commit-by-vote).
    fn unapplied_in_memory(&self, g: GroupId) -> bool {
        let log = &self.groups[&g].node.raft.raft_log;
        log.committed <= log.applied || self.in_memory_through(g) >= log.committed
    }

    /// The group's next committed entry is on disk only: its ready can apply nothing
    /// before the fetch lands.
    fn waits_for_fetch(&self, g: GroupId, grp: &Group<S>) -> bool {
        let next = grp.applied + 1;
        let log = &grp.node.raft.raft_log;
        let store = self.store.borrow();
        next <= log.committed.min(log.persisted)
            && next < log.unstable.offset
            && next <= store.last_index(g)
            && next >= store.first_index(g)
            && store.cached_through(g, next) < next
    }

    /// Everything written up to sync ticket `ticket` is durable.
    pub fn on_persisted(&mut self, ticket: u64) {
        while self.tickets.front().is_some_and(|t| t.id <= ticket) {
            let t = self.tickets.pop_front().unwrap();
            self.complete(t);
        }
        self.complete_unsynced();
    }

    fn build_frames(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        let mut frames = Vec::new();
        let outbox = std::mem::take(&mut self.outbox);
        for (node, items) in outbox {
            if let Some(p) = self.peers.get_mut(&node) {
                p.ticks_since_sent = 0;
            }
            let mut batch = Vec::new();
            let mut batch_bytes = 0usize;
            let n_items = items.len();
            for item in items {
                let size_bytes = match &item {
                    Item::Raft { msg, .. } => msg.compute_size() as usize + 13,
                    Item::Quiet { .. } => 33,
                };
                if !batch.is_empty() && batch_bytes + size_bytes > self.cfg.max_frame_bytes {
                    frames.push((node, self.encode(node, std::mem::take(&mut batch))));
                    batch_bytes = 0;
                }
                batch_bytes += size_bytes;
                batch.push(item);
            }
            if !batch.is_empty() || n_items == 0 {
                frames.push((node, self.encode(node, batch)));
            }
            self.stats.items_sent += n_items as u64;
        }
        self.stats.frames_sent += frames.len() as u64;
        frames
    }

    fn encode(&self, to: NodeId, items: Vec<Item>) -> Vec<u8> {
        frame::encode(&Frame {
            from_node: self.cfg.node_id,
            to_node: to,
            incarnation: self.cfg.incarnation,
            items,
        })
    }

    /// Status of group `g`, if this node has a replica.
    pub fn status(&self, g: GroupId) -> Option<GroupStatus> {
        let grp = self.groups.get(&g)?;
        let r = &grp.node.raft;
        Some(GroupStatus {
            replica: r.id,
            role: r.state,
            term: r.term,
            leader: r.leader_id,
            commit: r.raft_log.committed,
            applied: grp.applied,
            first_index: r.raft_log.first_index(),
            last_index: r.raft_log.last_index(),
            conf_state: grp.conf_state.clone(),
            quiet: grp.quiet,
        })
    }

    /// Role, leader replica (0: none) and term of `g`: cheap, for a look at every
    /// group per turn.
    pub fn role(&self, g: GroupId) -> Option<(StateRole, u64, u64)> {
        let r = &self.groups.get(&g)?.node.raft;
        Some((r.state, r.leader_id, r.term))
    }

    /// Term of entry `index` in this replica's log (stable or not).
    pub fn log_term(&self, g: GroupId, index: u64) -> Option<u64> {
        self.groups.get(&g)?.node.raft.raft_log.term(index).ok()
    }

    /// Progress of a peer as this (leader) replica sees it: matched index.
    pub fn matched(&self, g: GroupId, replica: u64) -> Option<u64> {
        let r = &self.groups.get(&g)?.node.raft;
        (r.state == StateRole::Leader)
            .then(|| r.prs().get(replica).map(|p| p.matched))
            .flatten()
    }

    /// The groups `ready` went through since the last call: a caller that follows
    /// each group's role, leader and term looks at these, not at every group.
    pub fn take_readied(&mut self) -> BTreeSet<GroupId> {
        std::mem::take(&mut self.readied)
    }

    pub fn group_ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    pub fn has_group(&self, g: GroupId) -> bool {
        self.groups.contains_key(&g)
    }

    pub fn awake_groups(&self) -> usize {
        self.awake.len()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn store(&self) -> &Rc<RefCell<S>> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn peer_alive(&self, node: NodeId) -> bool {
        self.peers.get(&node).is_some_and(|p| p.alive)
    }

    /// Liveness ticks (those the node loop turned in, as its suspicion counts
    /// them) since a frame last came from `node`; None for a node never heard.
    pub fn ticks_since_heard(&self, node: NodeId) -> Option<u64> {
        let p = self.peers.get(&node)?;
        Some(self.live_ticks.saturating_sub(p.last_heard_tick))
    }

    /// Whether this node hears a quorum of `group`'s voters (itself included).
    pub fn hears_quorum(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|grp| hears_quorum(grp, &self.peers))
    }
}

/// Replaces raft's thread-RNG election timeout by one from the driver's seeded RNG
/// whenever the election timer restarted.
fn fix_timeout<S: LogStore>(grp: &mut Group<S>, rng: &mut ChaCha8Rng, election_ticks: usize) {
    if grp.node.raft.election_elapsed == 0 {
        let t = election_ticks + rng.gen_range(0..election_ticks);
        grp.node.raft.set_randomized_election_timeout(t);
    }
}

/// This replica's place among the voters that may replace a dead leader of group `g`
/// on node `dead`: 0 campaigns first. The order is a hash of (group, replica), so that
/// the first ones are spread over the nodes, and every survivor computes the same one.
fn campaign_rank(g: GroupId, me: u64, cs: &ConfState, dead: NodeId) -> usize {
    let key = |replica: u64| {
        let mut h = mix64(g ^ replica.rotate_left(17));
        h ^= replica;
        (mix64(h), replica)
    };
    let mine = key(me);
    cs.voters
        .iter()
        .filter(|&&v| v != me && node_of(v) != dead)
        .filter(|&&v| key(v) < mine)
        .count()
}

/// A 64-bit mixer (splitmix64's finalizer): stable across runs and platforms.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Ticks a survivor of rank `rank` waits before campaigning for a dead leader's group:
/// rank 0 after 2 or 3 ticks (time for the other survivors to notice the death too, so
/// that they grant its pre-vote), each next rank half an election timeout later.
fn stagger_ticks(rank: usize, election_ticks: usize, rng: &mut ChaCha8Rng) -> usize {
    let step = (election_ticks / 2).max(2);
    2 + rank.min(8) * step + rng.gen_range(0..2)
}

/// A leader may go quiet when nothing is in flight: everything is persisted, committed,
/// applied, replicated to and known committed by every live member, and no transfer or
/// configuration change is under way.
fn leader_idle<S: LogStore>(grp: &Group<S>, peers: &BTreeMap<NodeId, Peer>) -> bool {
    let r = &grp.node.raft;
    let last = r.raft_log.last_index();
    if r.lead_transferee.is_some()
        || r.raft_log.committed != last
        || r.raft_log.persisted != last
        || grp.applied != last
        || r.pending_conf_index > grp.applied
        || !grp.conf_state.voters_outgoing.is_empty()
    {
        return false;
    }
    hears_quorum(grp, peers)
        && r.prs().iter().all(|(id, pr)| {
            *id == r.id
                || (pr.matched == last && pr.committed_index == last)
                || !peers.get(&node_of(*id)).is_some_and(|p| p.alive)
        })
}

/// Whether a quorum of the group's voters is this replica or on nodes heard from
/// lately (not suspected dead). A leader that fails this stays awake, for
/// check-quorum to step it down.
fn hears_quorum<S: LogStore>(grp: &Group<S>, peers: &BTreeMap<NodeId, Peer>) -> bool {
    let me = grp.replica();
    let voters = &grp.conf_state.voters;
    let live = voters
        .iter()
        .filter(|&&v| v == me || peers.get(&node_of(v)).is_some_and(|p| p.alive))
        .count();
    live > voters.len() / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::replica_id;

    #[test]
    fn survivors_get_distinct_ranks_and_spread_first_place() {
        let mut first_on = [0usize; 4];
        for g in 0..300u64 {
            let cs = ConfState {
                voters: (1..=3).map(|n| replica_id(n, 1)).collect(),
                ..Default::default()
            };
            let dead = 1 + g % 3;
            let mut ranks: Vec<usize> = cs
                .voters
                .iter()
                .filter(|&&v| node_of(v) != dead)
                .map(|&v| campaign_rank(g, v, &cs, dead))
                .collect();
            ranks.sort_unstable();
            assert_eq!(ranks, vec![0, 1], "group {g}");
            let first = cs
                .voters
                .iter()
                .find(|&&v| node_of(v) != dead && campaign_rank(g, v, &cs, dead) == 0)
                .unwrap();
            first_on[node_of(*first) as usize] += 1;
        }
        assert!(first_on[1..].iter().all(|&n| n > 50), "{first_on:?}");
    }

    #[test]
    fn stagger_windows_do_not_overlap() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let r0 = stagger_ticks(0, 8, &mut rng);
            let r1 = stagger_ticks(1, 8, &mut rng);
            assert!((2..=3).contains(&r0) && r1 >= r0 + 3, "{r0} {r1}");
        }
    }
}
