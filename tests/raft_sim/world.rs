//! The simulated cluster: nodes running the real multi-raft driver over their disks
//! (`NodeDisk`: the simulated one, or the file store on a faulty disk), a seeded
//! scheduler with simulated time, a faulty network, a workload, and the invariant
//! checker run after every event.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use natrix::raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use natrix::raft::log_store::FetchRequest;
use natrix::raft::multi::GroupStatus;
use natrix::raft::{node_of, replica_id, Applied, Config, GroupId, MultiRaft, NodeId, StateRole};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::node_disk::NodeDisk;
use super::stream::{Compaction, StreamCanon, StreamReplica};

/// The shard timer period, simulated.
pub const TICK_US: u64 = 50_000;
const MAX_DOWN_NODES: usize = 2;
const MAX_EVENTS: u64 = 5_000_000;
/// Idle groups must all be quiet this long after the last probe was applied.
const QUIET_WITHIN_US: u64 = 2_000_000;
/// How soon a disk task not done at its poll is polled again, at least.
const REPOLL_MIN_US: u64 = 10;
/// One poll of a group commit in this many stalls it, for `STALL_US`.
const STALL_ONE_IN: u32 = 100;
const STALL_US: std::ops::Range<u64> = 400_000..2_000_000;
/// Stream mode: one client request in this many is a purge or a message delete.
const REMOVAL_ONE_IN: u32 = 20;

#[derive(Clone, Debug)]
pub struct Faults {
    pub drop_per_mille: u32,
    pub dup_per_mille: u32,
    pub corrupt_per_mille: u32,
    pub delay_max_us: u64,
    pub fsync_max_us: u64,
    pub crashes: bool,
    pub partitions: bool,
    pub membership: bool,
    pub transfers: bool,
    pub compaction: bool,
    /// A broken disk whose fsync does nothing: the checker must catch the damage.
    pub lying_fsync: bool,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub seed: u64,
    pub nodes: usize,
    pub groups: usize,
    pub chaos_us: u64,
    pub stable_us: u64,
    pub faults: Faults,
    /// Every group is a stream's group over its stream log (`stream.rs`).
    pub stream: bool,
}

impl Params {
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
        let heavy = rng.gen_bool(0.5);
        Params {
            seed,
            nodes: rng.gen_range(3..=5),
            groups: rng.gen_range(1..=4),
            chaos_us: rng.gen_range(1_000_000..3_000_000),
            stable_us: 10_000_000,
            stream: false,
            faults: Faults {
                drop_per_mille: if heavy {
                    rng.gen_range(0..250)
                } else {
                    rng.gen_range(0..30)
                },
                dup_per_mille: rng.gen_range(0..60),
                corrupt_per_mille: rng.gen_range(0..3),
                delay_max_us: rng.gen_range(500..30_000),
                fsync_max_us: if rng.gen_bool(0.2) {
                    rng.gen_range(20_000..200_000)
                } else {
                    rng.gen_range(50..5_000)
                },
                crashes: rng.gen_bool(0.7),
                partitions: rng.gen_bool(0.7),
                membership: rng.gen_bool(0.6),
                transfers: rng.gen_bool(0.6),
                compaction: rng.gen_bool(0.6),
                lying_fsync: false,
            },
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub events: u64,
    pub sim_us: u64,
    pub frames: u64,
    pub proposals: u64,
    pub acked: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub conf_changes: u64,
    pub transfers: u64,
    pub compactions: u64,
    pub leaders: u64,
    pub corrupted_frames: u64,
    pub fetches: u64,
    pub catch_ups: u64,
    /// Catch-up batches that did not finish their catch-up.
    pub catch_up_batches: u64,
    /// Stream stores cut back at a damaged record when reopened.
    pub stream_repairs: u64,
    /// Stream stores cut back at a record a read found damaged, while running.
    pub read_damages: u64,
    pub crash_ops_lost: u64,
    pub crash_writes_torn: u64,
}

impl Summary {
    pub fn add(&mut self, s: &Summary) {
        self.events += s.events;
        self.sim_us += s.sim_us;
        self.frames += s.frames;
        self.proposals += s.proposals;
        self.acked += s.acked;
        self.crashes += s.crashes;
        self.partitions += s.partitions;
        self.conf_changes += s.conf_changes;
        self.transfers += s.transfers;
        self.compactions += s.compactions;
        self.leaders += s.leaders;
        self.corrupted_frames += s.corrupted_frames;
        self.fetches += s.fetches;
        self.catch_ups += s.catch_ups;
        self.catch_up_batches += s.catch_up_batches;
        self.stream_repairs += s.stream_repairs;
        self.read_damages += s.read_damages;
        self.crash_ops_lost += s.crash_ops_lost;
        self.crash_writes_torn += s.crash_writes_torn;
    }
}

#[derive(Debug)]
pub(super) enum Ev {
    Tick(usize, u64),
    Deliver {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
        corrupted: bool,
    },
    SyncDone {
        node: usize,
        epoch: u64,
        /// None: a group commit of writes no ticket asked for yet.
        ticket: Option<u64>,
    },
    FetchPoll {
        node: usize,
        epoch: u64,
    },
    /// Stream mode: look at the stores' commits in flight.
    StreamPoll {
        node: usize,
        epoch: u64,
    },
    /// Stream mode: a replica copies what it lacks from a peer.
    CatchUp {
        node: usize,
        group: GroupId,
        epoch: u64,
    },
    /// Stream mode: a read finds a replica's record damaged.
    ReadDamage,
    Crash,
    Restart(usize),
    Partition,
    Heal,
    Client,
    Transfer,
    Member,
    Compact,
    StableStart,
    Probe,
}

#[derive(Default, Clone)]
struct Sm {
    applied: u64,
    ids: Vec<u64>,
    set: HashSet<u64>,
}

pub(super) struct SimNode<D: NodeDisk> {
    pub(super) id: NodeId,
    pub(super) disk: D,
    driver: Option<MultiRaft<D::Store>>,
    incarnation: u64,
    pub(super) epoch: u64,
    sync_inflight: bool,
    sync_wanted: Option<u64>,
    fetch_poll: bool,
    sms: BTreeMap<GroupId, Sm>,
    /// Client proposals waiting for their entry: (group, index) -> (term, id).
    pub(super) pending: BTreeMap<(GroupId, u64), (u64, u64)>,
    checked_commit: BTreeMap<GroupId, u64>,
    /// Stream mode: the streams of this process, and their compactions under way.
    pub(super) streams: BTreeMap<GroupId, StreamReplica>,
    pub(super) compactions: Vec<Compaction>,
}

pub struct World<D: NodeDisk> {
    pub(super) p: Params,
    pub(super) rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    pub(super) nodes: Vec<SimNode<D>>,
    pub(super) blocked: BTreeSet<(usize, usize)>,
    chaos: bool,
    done: bool,
    // checker state
    leaders: HashMap<(GroupId, u64), u64>,
    leader_checked: HashSet<(GroupId, u64, u64)>,
    committed: BTreeMap<GroupId, BTreeMap<u64, (u64, u64)>>,
    entries_seen: HashMap<(GroupId, u64, u64), (u64, u64)>,
    canonical: BTreeMap<GroupId, BTreeMap<u64, Option<u64>>>,
    pub(super) acked: BTreeMap<GroupId, BTreeSet<u64>>,
    /// Stream mode: what every replica's stream must agree on.
    pub(super) streams_canon: StreamCanon,
    next_id: u64,
    next_gen: BTreeMap<GroupId, u64>,
    /// Per group: the probe proposal of the stable phase and when it was proposed.
    probes: BTreeMap<GroupId, Option<(u64, u64)>>,
    quiet_check_at: Option<u64>,
    pub(super) sum: Summary,
}

fn encode_ids(ids: &[u64]) -> Vec<u8> {
    ids.iter().flat_map(|i| i.to_le_bytes()).collect()
}

fn decode_ids(data: &[u8]) -> Vec<u64> {
    data.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

impl<D: NodeDisk> World<D> {
    pub async fn new(p: Params) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut nodes: Vec<SimNode<D>> = (0..p.nodes)
            .map(|i| SimNode {
                id: i as NodeId + 1,
                disk: D::new(p.seed, i, &p.faults),
                driver: None,
                incarnation: 1,
                epoch: 1,
                sync_inflight: false,
                sync_wanted: None,
                fetch_poll: false,
                sms: BTreeMap::new(),
                pending: BTreeMap::new(),
                checked_commit: BTreeMap::new(),
                streams: BTreeMap::new(),
                compactions: Vec::new(),
            })
            .collect();
        for n in nodes.iter_mut() {
            let store = n.disk.open().await.expect("an empty disk opens");
            n.driver = Some(MultiRaft::new(
                driver_config(p.seed, n.id, n.incarnation),
                store,
            ));
        }
        let mut next_gen = BTreeMap::new();
        let mut probes = BTreeMap::new();
        let mut replicas = Vec::new();
        for g in 1..=p.groups as GroupId {
            let mut hosts: Vec<usize> = (0..p.nodes).collect();
            while hosts.len() > 3 {
                hosts.remove(rng.gen_range(0..hosts.len()));
            }
            let voters: Vec<u64> = hosts.iter().map(|&h| replica_id(h as u64 + 1, 1)).collect();
            for &h in &hosts {
                let n = &mut nodes[h];
                let d = n.driver.as_mut().unwrap();
                d.create_group(g, replica_id(n.id, 1), &voters).unwrap();
                n.disk.sync_now().await.unwrap();
                replicas.push((h, g, replica_id(n.id, 1)));
            }
            next_gen.insert(g, 2);
            probes.insert(g, None);
        }
        let mut w = World {
            p,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes,
            blocked: BTreeSet::new(),
            chaos: true,
            done: false,
            leaders: HashMap::new(),
            leader_checked: HashSet::new(),
            committed: BTreeMap::new(),
            entries_seen: HashMap::new(),
            canonical: BTreeMap::new(),
            acked: BTreeMap::new(),
            streams_canon: StreamCanon::default(),
            next_id: 1,
            next_gen,
            probes,
            quiet_check_at: None,
            sum: Summary::default(),
        };
        if w.p.stream {
            for (h, g, r) in replicas {
                w.open_stream(h, g, r).await;
            }
        }
        for i in 0..w.nodes.len() {
            let phase = w.rng.gen_range(0..TICK_US);
            w.at(phase, Ev::Tick(i, 1));
            w.pump(i);
        }
        let f = w.p.faults.clone();
        w.at(1_000, Ev::Client);
        if f.crashes {
            let t = w.rng.gen_range(100_000..1_000_000);
            w.at(t, Ev::Crash);
        }
        if f.partitions {
            let t = w.rng.gen_range(100_000..1_000_000);
            w.at(t, Ev::Partition);
        }
        if f.transfers {
            w.at(300_000, Ev::Transfer);
        }
        if f.membership {
            w.at(200_000, Ev::Member);
        }
        if f.compaction {
            w.at(150_000, Ev::Compact);
            if w.p.stream {
                w.at(250_000, Ev::ReadDamage);
            }
        }
        let chaos = w.p.chaos_us;
        w.at(chaos, Ev::StableStart);
        w
    }

    pub(super) fn at(&mut self, delay_us: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + delay_us, self.seq)));
        self.events.insert(self.seq, ev);
    }

    pub(super) fn alive(&self, n: usize) -> bool {
        self.nodes[n].driver.is_some()
    }

    pub(super) fn driver(&self, n: usize) -> &MultiRaft<D::Store> {
        self.nodes[n].driver.as_ref().expect("node is up")
    }

    pub(super) fn driver_mut(&mut self, n: usize) -> &mut MultiRaft<D::Store> {
        self.nodes[n].driver.as_mut().expect("node is up")
    }

    pub async fn run(mut self) -> Summary {
        while let Some(Reverse((t, s))) = self.queue.pop() {
            let ev = self.events.remove(&s).unwrap();
            if matches!(
                ev,
                Ev::SyncDone { .. } | Ev::FetchPoll { .. } | Ev::StreamPoll { .. }
            ) {
                // The disk tasks in flight (every node's) run one step.
                futures_lite::future::yield_now().await;
            }
            self.now = t;
            self.sum.events += 1;
            assert!(self.sum.events < MAX_EVENTS, "event limit reached");
            if self.now > self.p.chaos_us + self.p.stable_us {
                panic!(
                    "liveness: groups did not all elect a leader and commit a probe within \
                     {} ms of a stable majority: {}",
                    self.p.stable_us / 1000,
                    self.describe()
                );
            }
            self.handle(ev).await;
            self.check();
            if self.done {
                break;
            }
        }
        self.sum.sim_us = self.now;
        self.sum
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for g in 1..=self.p.groups as GroupId {
            out.push_str(&format!("\n group {g} probe {:?}:", self.probes[&g]));
            for (i, n) in self.nodes.iter().enumerate() {
                let pend: Vec<_> = n.pending.iter().filter(|((pg, _), _)| *pg == g).collect();
                if !pend.is_empty() {
                    out.push_str(&format!("\n  node {} pending {:?}", i + 1, pend));
                }
                if let Some(st) = n.driver.as_ref().and_then(|d| d.status(g)) {
                    out.push_str(&format!(
                        "\n  node {} r{} {:?} term {} leader {} commit {} applied {} last {} quiet {} conf {:?}/{:?}/{:?}",
                        i + 1, st.replica, st.role, st.term, st.leader, st.commit, st.applied, st.last_index,
                        st.quiet, st.conf_state.voters, st.conf_state.voters_outgoing, st.conf_state.learners
                    ));
                }
                if let Some(sr) = n.streams.get(&g) {
                    out.push_str(&format!(
                        "\n    stream last {} durable {} applied {} ready term {} catching up {}",
                        sr.store.state().last_seq,
                        sr.store.watch().durable_seq(),
                        sr.applied_index,
                        sr.ready_term,
                        sr.held.is_some()
                    ));
                }
            }
        }
        out
    }

    async fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick(n, epoch) => {
                if self.alive(n) && self.nodes[n].epoch == epoch {
                    self.driver_mut(n).tick();
                    self.pump(n);
                    self.at(TICK_US, Ev::Tick(n, epoch));
                }
            }
            Ev::Deliver {
                to,
                from,
                bytes,
                corrupted,
            } => {
                if !self.alive(to) || self.blocked.contains(&(from, to)) {
                    return;
                }
                let from_id = self.nodes[from].id;
                match self.driver_mut(to).step(from_id, &bytes) {
                    Ok(()) => assert!(!corrupted, "a corrupted frame was accepted"),
                    Err(e) => assert!(corrupted, "a good frame was refused: {e}"),
                }
                self.pump(to);
            }
            Ev::SyncDone {
                node,
                epoch,
                ticket,
            } => self.sync_done(node, epoch, ticket),
            Ev::FetchPoll { node, epoch } => self.fetch_poll(node, epoch),
            Ev::StreamPoll { node, epoch } => self.stream_poll(node, epoch),
            Ev::CatchUp { node, group, epoch } => self.catch_up(node, group, epoch).await,
            Ev::Crash => self.crash(),
            Ev::Restart(n) => self.restart(n).await,
            Ev::Partition => self.partition(),
            Ev::Heal => {
                self.blocked.clear();
                if self.chaos {
                    let t = self.rng.gen_range(100_000..1_500_000);
                    self.at(t, Ev::Partition);
                }
            }
            Ev::Client => {
                if self.chaos {
                    self.client();
                    let t = self.rng.gen_range(2_000..20_000);
                    self.at(t, Ev::Client);
                }
            }
            Ev::Transfer => {
                if self.chaos {
                    self.transfer();
                    let t = self.rng.gen_range(200_000..800_000);
                    self.at(t, Ev::Transfer);
                }
            }
            Ev::Member => {
                if self.chaos {
                    let g = self.rng.gen_range(1..=self.p.groups as GroupId);
                    self.membership(g, true).await;
                    let t = self.rng.gen_range(100_000..500_000);
                    self.at(t, Ev::Member);
                }
            }
            Ev::Compact => {
                if self.chaos {
                    self.compact();
                    let t = self.rng.gen_range(50_000..400_000);
                    self.at(t, Ev::Compact);
                }
            }
            Ev::ReadDamage => {
                if self.chaos {
                    self.damage_on_read().await;
                    let t = self.rng.gen_range(100_000..800_000);
                    self.at(t, Ev::ReadDamage);
                }
            }
            Ev::StableStart => {
                self.chaos = false;
                self.blocked.clear();
                for n in 0..self.nodes.len() {
                    if !self.alive(n) {
                        self.restart(n).await;
                    }
                }
                self.at(100_000, Ev::Probe);
            }
            Ev::Probe => {
                self.probe().await;
                if !self.done {
                    self.at(100_000, Ev::Probe);
                }
            }
        }
    }

    // ----- nodes, disks, network -----

    pub(super) fn pump(&mut self, n: usize) {
        for _ in 0..64 {
            let Some(d) = self.nodes[n].driver.as_mut() else {
                return;
            };
            let rd = d.ready();
            if rd.is_empty() {
                break;
            }
            for (to, bytes) in rd.frames {
                self.send(n, to as usize - 1, bytes);
            }
            for a in rd.applied {
                self.apply(n, a);
            }
            if let Some(t) = rd.sync {
                self.start_sync(n, Some(t));
            }
            for g in rd.snapshot_wanted {
                self.compact_group(n, g);
            }
            for req in rd.fetches {
                self.start_fetch(n, req);
            }
        }
        // Writes outside a ready (compaction, a replica removed) are persisted
        // too, as the node loop does.
        if self.alive(n) && !self.nodes[n].sync_inflight && self.nodes[n].disk.has_pending() {
            self.start_sync(n, None);
        }
        self.check_written(n);
    }

    fn start_sync(&mut self, n: usize, ticket: Option<u64>) {
        let node = &mut self.nodes[n];
        if node.sync_inflight {
            if let Some(t) = ticket {
                node.sync_wanted = Some(node.sync_wanted.map_or(t, |w| w.max(t)));
            }
            return;
        }
        node.sync_inflight = true;
        node.disk.start_sync();
        let epoch = node.epoch;
        let lat = self.rng.gen_range(20..=self.p.faults.fsync_max_us);
        self.at(
            lat,
            Ev::SyncDone {
                node: n,
                epoch,
                ticket,
            },
        );
    }

    fn sync_done(&mut self, n: usize, epoch: u64, ticket: Option<u64>) {
        if self.nodes[n].epoch != epoch {
            return;
        }
        match self.nodes[n].disk.poll_sync() {
            None => {
                // Crashes in the middle of a group commit, where writes are not
                // synced yet, are the interesting ones: make them common.
                if self.chaos
                    && self.p.faults.crashes
                    && self.rng.gen_ratio(1, 40)
                    && self.crash_node(n)
                {
                    return;
                }
                let again = self.repoll_us_or_stall();
                self.at(
                    again,
                    Ev::SyncDone {
                        node: n,
                        epoch,
                        ticket,
                    },
                );
                return;
            }
            Some(Err(e)) => panic!("node {}: persist failed: {e}", n + 1),
            Some(Ok(())) => {}
        }
        self.nodes[n].sync_inflight = false;
        if let Some(t) = ticket {
            self.driver_mut(n).on_persisted(t);
        }
        if let Some(t) = self.nodes[n].sync_wanted.take() {
            self.start_sync(n, Some(t));
        }
        self.pump(n);
    }

    /// A step of a disk task takes a share of an fsync's latency (so that a crash
    /// often comes between a write and the fdatasync that covers it).
    pub(super) fn repoll_us(&mut self) -> u64 {
        let max = (self.p.faults.fsync_max_us / 4).max(REPOLL_MIN_US);
        self.rng.gen_range(REPOLL_MIN_US..=max)
    }

    /// Now and then a group commit stalls for longer than an election timeout (a
    /// disk busy with something else), during chaos only.
    fn repoll_us_or_stall(&mut self) -> u64 {
        if self.chaos && self.rng.gen_ratio(1, STALL_ONE_IN) {
            return self.rng.gen_range(STALL_US.clone());
        }
        self.repoll_us()
    }

    fn start_fetch(&mut self, n: usize, req: FetchRequest) {
        self.sum.fetches += 1;
        self.nodes[n].disk.start_fetch(req);
        self.schedule_fetch_poll(n);
    }

    fn schedule_fetch_poll(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.fetch_poll {
            return;
        }
        node.fetch_poll = true;
        let epoch = node.epoch;
        let again = self.repoll_us();
        self.at(again, Ev::FetchPoll { node: n, epoch });
    }

    fn fetch_poll(&mut self, n: usize, epoch: u64) {
        if self.nodes[n].epoch != epoch {
            return;
        }
        self.nodes[n].fetch_poll = false;
        let groups = match self.nodes[n].disk.take_fetched() {
            Ok(g) => g,
            Err(e) => panic!("node {}: log read failed: {e}", n + 1),
        };
        for g in groups {
            self.driver_mut(n).on_entries_fetched(g);
        }
        if self.nodes[n].disk.fetches_in_flight() {
            self.schedule_fetch_poll(n);
        }
        self.pump(n);
    }

    fn send(&mut self, from: usize, to: usize, mut bytes: Vec<u8>) {
        self.sum.frames += 1;
        if self.blocked.contains(&(from, to)) {
            return;
        }
        let f = self.p.faults.clone();
        if self.chaos && self.rng.gen_range(0..1000) < f.drop_per_mille {
            return;
        }
        let copies = if self.chaos && self.rng.gen_range(0..1000) < f.dup_per_mille {
            2
        } else {
            1
        };
        let mut corrupted = false;
        if self.chaos && self.rng.gen_range(0..1000) < f.corrupt_per_mille {
            let i = self.rng.gen_range(8..bytes.len());
            bytes[i] ^= 1 << self.rng.gen_range(0..8);
            corrupted = true;
            self.sum.corrupted_frames += 1;
        }
        for _ in 0..copies {
            let delay = self.rng.gen_range(50..=f.delay_max_us);
            self.at(
                delay,
                Ev::Deliver {
                    to,
                    from,
                    bytes: bytes.clone(),
                    corrupted,
                },
            );
        }
    }

    fn crash(&mut self) {
        if !self.chaos {
            return;
        }
        let n = self.rng.gen_range(0..self.nodes.len());
        self.crash_node(n);
        let t = self.rng.gen_range(200_000..1_500_000);
        self.at(t, Ev::Crash);
    }

    /// Node `n` loses power, unless too many nodes are down already.
    fn crash_node(&mut self, n: usize) -> bool {
        let down = (0..self.nodes.len()).filter(|&n| !self.alive(n)).count();
        if !self.alive(n) || down >= MAX_DOWN_NODES {
            return false;
        }
        self.sum.crashes += 1;
        let node = &mut self.nodes[n];
        node.driver = None;
        let loss = node.disk.crash(&mut self.rng);
        self.sum.crash_ops_lost += loss.ops_lost;
        self.sum.crash_writes_torn += loss.writes_torn;
        let node = &mut self.nodes[n];
        node.sms.clear();
        node.streams.clear();
        node.compactions.clear();
        node.pending.clear();
        node.checked_commit.clear();
        node.epoch += 1;
        node.sync_inflight = false;
        node.sync_wanted = None;
        node.fetch_poll = false;
        let t = self.rng.gen_range(50_000..1_500_000);
        self.at(t, Ev::Restart(n));
        true
    }

    async fn restart(&mut self, n: usize) {
        if self.alive(n) {
            return;
        }
        let seed = self.p.seed;
        let node = &mut self.nodes[n];
        node.incarnation += 1;
        node.epoch += 1;
        let store = match node.disk.open().await {
            Ok(s) => s,
            Err(e) => panic!("node {} does not restart: {e}", n + 1),
        };
        node.driver = Some(MultiRaft::new(
            driver_config(seed, node.id, node.incarnation),
            store,
        ));
        let epoch = node.epoch;
        if self.p.stream {
            self.reopen_streams(n).await;
        }
        let phase = self.rng.gen_range(0..TICK_US);
        self.at(phase, Ev::Tick(n, epoch));
        self.pump(n);
    }

    fn partition(&mut self) {
        if !self.chaos {
            return;
        }
        self.sum.partitions += 1;
        let n = self.nodes.len();
        match self.rng.gen_range(0..3) {
            0 => {
                let a = self.rng.gen_range(0..n);
                for b in 0..n {
                    if a != b {
                        self.blocked.insert((a, b));
                        self.blocked.insert((b, a));
                    }
                }
            }
            1 => {
                let side: Vec<bool> = (0..n).map(|_| self.rng.gen_bool(0.5)).collect();
                for a in 0..n {
                    for b in 0..n {
                        if side[a] != side[b] {
                            self.blocked.insert((a, b));
                        }
                    }
                }
            }
            _ => {
                let a = self.rng.gen_range(0..n);
                let b = self.rng.gen_range(0..n);
                if a != b {
                    self.blocked.insert((a, b));
                }
            }
        }
        let t = self.rng.gen_range(100_000..2_000_000);
        self.at(t, Ev::Heal);
    }

    // ----- workload -----

    pub(super) fn find_leader(&self, g: GroupId) -> Option<(usize, GroupStatus)> {
        (0..self.nodes.len())
            .filter(|&n| self.alive(n))
            .filter_map(|n| self.driver(n).status(g).map(|st| (n, st)))
            .filter(|(_, st)| st.role == StateRole::Leader)
            .max_by_key(|(_, st)| st.term)
    }

    pub(super) fn new_data(&mut self) -> (u64, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let mut data = id.to_le_bytes().to_vec();
        let pad = self.rng.gen_range(0..64);
        data.extend((0..pad).map(|i| i as u8));
        (id, data)
    }

    fn propose(&mut self, n: usize, g: GroupId) -> Option<u64> {
        if self.p.stream {
            return self.propose_stream(n, g);
        }
        let (id, data) = self.new_data();
        let p = self.driver_mut(n).propose(g, data).ok()?;
        self.sum.proposals += 1;
        self.nodes[n].pending.insert((g, p.index), (p.term, id));
        Some(id)
    }

    fn client(&mut self) {
        let g = self.rng.gen_range(1..=self.p.groups as GroupId);
        let n = if self.rng.gen_bool(0.9) {
            self.find_leader(g).map(|(n, _)| n)
        } else {
            let n = self.rng.gen_range(0..self.nodes.len());
            self.alive(n).then_some(n)
        };
        if let Some(n) = n {
            if self.p.stream && self.rng.gen_ratio(1, REMOVAL_ONE_IN) {
                self.propose_stream_removal(n, g);
            } else {
                self.propose(n, g);
            }
            self.pump(n);
        }
    }

    fn transfer(&mut self) {
        let g = self.rng.gen_range(1..=self.p.groups as GroupId);
        let Some((n, st)) = self.find_leader(g) else {
            return;
        };
        let others: Vec<u64> = st
            .conf_state
            .voters
            .iter()
            .copied()
            .filter(|&v| v != st.replica)
            .collect();
        if others.is_empty() {
            return;
        }
        let to = others[self.rng.gen_range(0..others.len())];
        if self.driver_mut(n).transfer_leader(g, to).is_ok() {
            self.sum.transfers += 1;
        }
        self.pump(n);
    }

    fn compact(&mut self) {
        let n = self.rng.gen_range(0..self.nodes.len());
        if !self.alive(n) {
            return;
        }
        let groups: Vec<GroupId> = self.driver(n).group_ids().collect();
        if groups.is_empty() {
            return;
        }
        let g = groups[self.rng.gen_range(0..groups.len())];
        if self.p.stream {
            if let Some((l, _)) = self.find_leader(g) {
                self.propose_stream_compaction(l, g);
                self.pump(l);
            }
            return;
        }
        self.compact_group(n, g);
    }

    fn compact_group(&mut self, n: usize, g: GroupId) {
        if self.p.stream {
            return self.stream_snapshot_wanted(n, g);
        }
        let Some(sm) = self.nodes[n].sms.get(&g) else {
            return;
        };
        let applied = self.driver(n).status(g).unwrap().applied;
        assert_eq!(sm.applied.max(applied), applied);
        let data = encode_ids(&sm.ids);
        if self.driver_mut(n).compact(g, data).is_ok() {
            self.sum.compactions += 1;
        }
    }

    /// The meta layer's part of a replica replacement: create learners' replicas, promote
    /// caught-up learners while removing a voter (joint consensus), start replacements.
    async fn membership(&mut self, g: GroupId, start_new: bool) {
        let Some((l, st)) = self.find_leader(g) else {
            return;
        };
        let cs = st.conf_state.clone();
        if !cs.voters_outgoing.is_empty() {
            return;
        }
        let members: BTreeSet<u64> = natrix::raft::group::conf_members(&cs).collect();
        for &lr in &cs.learners {
            let n = node_of(lr) as usize - 1;
            if !self.alive(n) {
                continue;
            }
            // A replica left over from a failed attempt (or resurrected by a crash)
            // holds the slot: delete it.
            let d = self.driver_mut(n);
            if d.status(g).is_some_and(|s| !members.contains(&s.replica)) {
                d.remove_replica(g);
                self.nodes[n].streams.remove(&g);
            }
            if !self.driver(n).has_group(g) {
                self.driver_mut(n).create_replica(g, lr).unwrap();
                if self.p.stream {
                    self.open_stream(n, g, lr).await;
                }
                self.pump(n);
            }
        }
        if !start_new {
            return;
        }
        let mut cc = ConfChangeV2::default();
        if let Some(&lr) = cs.learners.first() {
            let caught_up = self
                .driver(l)
                .matched(g, lr)
                .is_some_and(|m| m >= st.commit);
            if !caught_up || cs.voters.len() < 3 {
                return;
            }
            let victim = cs.voters[self.rng.gen_range(0..cs.voters.len())];
            cc.mut_changes().push(single(ConfChangeType::AddNode, lr));
            cc.mut_changes()
                .push(single(ConfChangeType::RemoveNode, victim));
        } else {
            let free: Vec<usize> = (0..self.nodes.len())
                .filter(|&n| !self.nodes[n].disk.has_group(g))
                .collect();
            if free.is_empty() {
                return;
            }
            let n = free[self.rng.gen_range(0..free.len())];
            let gen = self.next_gen[&g];
            self.next_gen.insert(g, gen + 1);
            let r = replica_id(self.nodes[n].id, gen);
            cc.mut_changes()
                .push(single(ConfChangeType::AddLearnerNode, r));
            // The replica is created only once the group accepted the proposal.
            if self.driver_mut(l).propose_conf_change(g, cc).is_ok() {
                self.sum.conf_changes += 1;
                if self.alive(n) {
                    self.driver_mut(n).create_replica(g, r).unwrap();
                    if self.p.stream {
                        self.open_stream(n, g, r).await;
                    }
                    self.pump(n);
                }
            }
            self.pump(l);
            return;
        }
        if self.driver_mut(l).propose_conf_change(g, cc).is_ok() {
            self.sum.conf_changes += 1;
        }
        self.pump(l);
    }

    async fn probe(&mut self) {
        let mut all_done = true;
        for g in 1..=self.p.groups as GroupId {
            self.membership(g, false).await;
            let id = match self.probes[&g] {
                Some((id, _)) if self.acked.get(&g).is_some_and(|a| a.contains(&id)) => id,
                // A client times out after a second and tries again.
                Some((id, at)) if self.is_pending(id) && self.now - at < 1_000_000 => {
                    all_done = false;
                    continue;
                }
                _ => {
                    all_done = false;
                    if let Some((n, _)) = self.find_leader(g) {
                        let now = self.now;
                        let id = self.propose(n, g).map(|id| (id, now));
                        self.probes.insert(g, id);
                        self.pump(n);
                    }
                    continue;
                }
            };
            let Some((_, st)) = self.find_leader(g) else {
                all_done = false;
                continue;
            };
            let cs = &st.conf_state;
            let members_done = cs.voters_outgoing.is_empty()
                && cs.voters.iter().chain(cs.learners.iter()).all(|&m| {
                    let n = node_of(m) as usize - 1;
                    self.alive(n)
                        && self.driver(n).status(g).is_some_and(|s| s.replica == m)
                        && self.holds(n, g, id)
                });
            all_done &= members_done;
        }
        if !all_done {
            return;
        }
        match self.quiet_check_at {
            None => {
                if self.p.stream {
                    self.final_check_streams().await;
                } else {
                    self.final_check();
                }
                self.collect_zombies();
                self.quiet_check_at = Some(self.now + QUIET_WITHIN_US);
            }
            Some(t) if self.now >= t => {
                self.check_quiet();
                self.done = true;
            }
            Some(_) => {}
        }
    }

    /// The meta layer deletes replicas the group no longer has (left behind by a
    /// removal whose deletion was lost in a crash).
    fn collect_zombies(&mut self) {
        for g in 1..=self.p.groups as GroupId {
            let (_, st) = self.find_leader(g).expect("leader at the end");
            let members: BTreeSet<u64> =
                natrix::raft::group::conf_members(&st.conf_state).collect();
            for n in 0..self.nodes.len() {
                let d = self.driver_mut(n);
                if d.status(g).is_some_and(|s| !members.contains(&s.replica)) {
                    d.remove_replica(g);
                    self.nodes[n].streams.remove(&g);
                }
            }
        }
    }

    /// With nothing to do, every group goes quiet: no ticking, no per-group traffic.
    fn check_quiet(&self) {
        for n in 0..self.nodes.len() {
            let d = self.driver(n);
            assert_eq!(
                d.awake_groups(),
                0,
                "node {} still has awake groups after {} ms idle: {}",
                n + 1,
                QUIET_WITHIN_US / 1000,
                self.describe()
            );
        }
    }

    fn holds(&self, n: usize, g: GroupId, id: u64) -> bool {
        if self.p.stream {
            return self.stream_holds(n, g, id);
        }
        self.nodes[n]
            .sms
            .get(&g)
            .is_some_and(|sm| sm.set.contains(&id))
    }

    fn is_pending(&self, id: u64) -> bool {
        self.nodes
            .iter()
            .any(|n| n.pending.values().any(|&(_, pid)| pid == id))
    }

    /// Every acknowledged proposal is in every member's state machine (exactly once, as
    /// the state machine refuses duplicates).
    fn final_check(&self) {
        for g in 1..=self.p.groups as GroupId {
            let (_, st) = self.find_leader(g).expect("leader at the end");
            let cs = &st.conf_state;
            for &m in cs.voters.iter().chain(cs.learners.iter()) {
                let n = node_of(m) as usize - 1;
                let sm = &self.nodes[n].sms[&g];
                for id in self.acked.get(&g).into_iter().flatten() {
                    assert!(
                        sm.set.contains(id),
                        "acknowledged proposal {id} of group {g} missing on node {}",
                        n + 1
                    );
                }
            }
        }
    }

    // ----- applying and checking -----

    fn apply(&mut self, n: usize, a: Applied) {
        if self.p.stream {
            return self.apply_stream(n, a);
        }
        match a {
            Applied::Entry {
                group, index, data, ..
            } if data.is_empty() => {
                self.canon(group, index, None);
                let sm = self.nodes[n].sms.entry(group).or_default();
                assert!(index > sm.applied, "applied out of order");
                sm.applied = index;
                self.forget_pending(n, group, index);
            }
            Applied::Entry {
                group,
                index,
                term,
                data,
            } => {
                let id = u64::from_le_bytes(data[..8].try_into().unwrap());
                self.canon(group, index, Some(id));
                let sm = self.nodes[n].sms.entry(group).or_default();
                assert!(index > sm.applied, "applied out of order");
                assert!(
                    sm.set.insert(id),
                    "proposal {id} applied twice in group {group} on node {}",
                    n + 1
                );
                sm.ids.push(id);
                sm.applied = index;
                if let Some((t, pid)) = self.nodes[n].pending.remove(&(group, index)) {
                    if t == term {
                        assert_eq!(pid, id, "entry ({index}, {term}) is not the one proposed");
                        self.acked.entry(group).or_default().insert(id);
                        self.sum.acked += 1;
                    }
                }
                self.forget_pending(n, group, index);
            }
            Applied::ConfChange { group, index, .. } => {
                self.canon(group, index, None);
                let sm = self.nodes[n].sms.entry(group).or_default();
                assert!(index > sm.applied, "applied out of order");
                sm.applied = index;
            }
            Applied::Snapshot {
                group, index, data, ..
            } => {
                let ids = decode_ids(&data);
                let expected: Vec<u64> = self
                    .canonical
                    .get(&group)
                    .map(|c| c.range(..=index).filter_map(|(_, v)| *v).collect())
                    .unwrap_or_default();
                assert_eq!(
                    ids, expected,
                    "snapshot of group {group} at {index} disagrees with the applied history"
                );
                let set = ids.iter().copied().collect();
                self.nodes[n].sms.insert(
                    group,
                    Sm {
                        applied: index,
                        ids,
                        set,
                    },
                );
                self.forget_pending(n, group, index);
            }
            Applied::Removed { group } => {
                self.nodes[n].sms.remove(&group);
                self.nodes[n].pending.retain(|&(g, _), _| g != group);
            }
        }
    }

    /// Proposals of `group` at or before `index` are answered (or lost).
    pub(super) fn forget_pending(&mut self, n: usize, group: GroupId, index: u64) {
        self.nodes[n]
            .pending
            .retain(|&(g, i), _| g != group || i > index);
    }

    pub(super) fn canon(&mut self, g: GroupId, index: u64, v: Option<u64>) {
        let c = self.canonical.entry(g).or_default();
        if let Some(prev) = c.insert(index, v) {
            assert_eq!(
                prev, v,
                "state machines disagree at index {index} of group {g}"
            );
        }
    }

    fn check_written(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let Some(driver) = node.driver.as_ref() else {
            return;
        };
        let written = node.disk.take_written(driver);
        for (g, index, term, prev, digest) in written {
            let seen = self
                .entries_seen
                .entry((g, index, term))
                .or_insert((prev, digest));
            assert_eq!(
                *seen,
                (prev, digest),
                "log matching: entry ({index}, {term}) of group {g} differs on node {}",
                n + 1
            );
        }
    }

    /// Invariants over every live replica, after every event.
    fn check(&mut self) {
        for n in 0..self.nodes.len() {
            let mut checked = std::mem::take(&mut self.nodes[n].checked_commit);
            let Some(d) = self.nodes[n].driver.as_ref() else {
                continue;
            };
            for g in d.group_ids().collect::<Vec<_>>() {
                let st = d.status(g).unwrap();
                if st.role == StateRole::Leader {
                    let prev = *self.leaders.entry((g, st.term)).or_insert(st.replica);
                    assert_eq!(
                        prev, st.replica,
                        "two leaders in term {} of group {g}",
                        st.term
                    );
                    if self.leader_checked.insert((g, st.term, st.replica)) {
                        self.sum.leaders += 1;
                        self.check_leader_complete(d, g, &st);
                    }
                }
                let from = checked
                    .get(&g)
                    .copied()
                    .unwrap_or(0)
                    .max(st.first_index - 1);
                for idx in from + 1..=st.commit {
                    let term = d.log_term(g, idx).expect("committed entry in the log");
                    let c = self.committed.entry(g).or_default();
                    let (t0, _) = *c.entry(idx).or_insert((term, st.term));
                    assert_eq!(
                        t0,
                        term,
                        "committed entry {idx} of group {g} changed on node {}",
                        n + 1
                    );
                }
                checked.insert(g, st.commit);
            }
            self.nodes[n].checked_commit = checked;
        }
    }

    /// A new leader holds every entry known committed before its term.
    fn check_leader_complete(&self, d: &MultiRaft<D::Store>, g: GroupId, st: &GroupStatus) {
        let Some(c) = self.committed.get(&g) else {
            return;
        };
        for (&idx, &(term, seen_at_term)) in c {
            if seen_at_term >= st.term {
                continue;
            }
            assert!(
                idx <= st.last_index,
                "leader of term {} of group {g} lacks committed entry {idx}",
                st.term
            );
            if idx >= st.first_index {
                assert_eq!(
                    d.log_term(g, idx),
                    Some(term),
                    "leader of term {} of group {g} has a different entry at committed {idx}",
                    st.term
                );
            }
        }
    }
}

fn single(t: ConfChangeType, id: u64) -> ConfChangeSingle {
    let mut s = ConfChangeSingle::default();
    s.set_change_type(t);
    s.node_id = id;
    s
}

fn driver_config(seed: u64, node: NodeId, incarnation: u64) -> Config {
    let mut c = Config::new(node, incarnation);
    c.seed = seed
        .wrapping_mul(0x9e3779b97f4a7c15)
        .wrapping_add(node << 20)
        .wrapping_add(incarnation);
    c
}

fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Runs one seed on disks `D`; a failure comes back as the panic message.
pub fn run_params<D: NodeDisk>(p: Params) -> Result<Summary, String> {
    run_all::<D>(vec![p]).pop().expect("one result")
}

/// Runs seeds one after the other on one executor (one per seed would cost a file
/// descriptor each: glommio does not give them all back); a failure comes back as the
/// panic message. A panic in a task of a store ends the executor: that seed failed,
/// and the rest run on a new one.
pub fn run_all<D: NodeDisk>(ps: Vec<Params>) -> Vec<Result<Summary, String>> {
    use futures_lite::FutureExt;
    use std::sync::{Arc, Mutex};
    let total = ps.len();
    let results = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let ps = Arc::new(ps);
    loop {
        let done = results.lock().unwrap().len();
        if done == total {
            break;
        }
        let (rs, ps) = (results.clone(), ps.clone());
        let run = move || async move {
            for p in ps[done..].iter().cloned() {
                let r =
                    std::panic::AssertUnwindSafe(async { World::<D>::new(p).await.run().await })
                        .catch_unwind()
                        .await
                        .map_err(panic_message);
                rs.lock().unwrap().push(r);
            }
        };
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| D::block_on(run)))
        {
            results.lock().unwrap().push(Err(panic_message(e)));
        }
    }
    let out = std::mem::take(&mut *results.lock().unwrap());
    out
}
