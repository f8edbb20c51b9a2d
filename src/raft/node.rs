//! A node's Raft shard on its own glommio executor: the driver, its store, the TCP
//! transport, a timer, and a small state machine (the applied entries of each group).
//! Used by the integration tests and benchmarks with the TCP transport; the server
//! runs the same loop ([`drive`]) on its shard 0 with frames carried by its routes.
//!
//! One task runs the loop: wait for an event (tick, frame, persisted, command), take
//! whatever else is queued (bounded), run the driver's turn, start a group commit if
//! one is needed and none is in flight, then leave the task queue so that glommio
//! submits the I/O (storage writes, socket writes) right away.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::mpsc;
use futures_lite::StreamExt;
use raft::eraftpb::Entry;

use super::log_store::{FetchRequest, GroupId, LogStore, MemStore};
use super::multi::{Applied, Config, GroupStatus, MultiRaft, Proposal, ProposeError};
use super::storage_log::FileLogStore;
use super::transport::{spawn_acceptor, Transport, TransportConfig};
use super::NodeId;

type Fetched = Pin<Box<dyn Future<Output = io::Result<Vec<Entry>>>>>;

/// A store a shard can persist, and read back from, asynchronously.
pub trait ShardStore: LogStore + Sized + 'static {
    fn has_pending(&self) -> bool;
    fn persist(store: Rc<RefCell<Self>>) -> Pin<Box<dyn Future<Output = io::Result<()>>>>;
    /// Reads the entries of a fetch the driver asked for (`Ready::fetches`).
    fn fetch(store: Rc<RefCell<Self>>, req: FetchRequest) -> Fetched;
    /// Hands the entries read to the store (then the driver resumes raft's reads).
    fn install_fetched(&mut self, req: FetchRequest, entries: Vec<Entry>);
    /// Bytes of log entries held in memory.
    fn entry_cache_bytes(&self) -> u64;
}

impl ShardStore for FileLogStore {
    fn has_pending(&self) -> bool {
        FileLogStore::has_pending(self)
    }
    fn persist(store: Rc<RefCell<Self>>) -> Pin<Box<dyn Future<Output = io::Result<()>>>> {
        Box::pin(async move { FileLogStore::persist(&store).await })
    }
    fn fetch(store: Rc<RefCell<Self>>, req: FetchRequest) -> Fetched {
        Box::pin(async move { FileLogStore::read_fetch(&store, req).await })
    }
    fn install_fetched(&mut self, req: FetchRequest, entries: Vec<Entry>) {
        FileLogStore::install_fetched(self, req, entries);
    }
    fn entry_cache_bytes(&self) -> u64 {
        self.cache_bytes()
    }
}

impl ShardStore for MemStore {
    fn has_pending(&self) -> bool {
        false
    }
    fn persist(_: Rc<RefCell<Self>>) -> Pin<Box<dyn Future<Output = io::Result<()>>>> {
        Box::pin(async { Ok(()) })
    }
    fn fetch(_: Rc<RefCell<Self>>, _: FetchRequest) -> Fetched {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn install_fetched(&mut self, _: FetchRequest, _: Vec<Entry>) {}
    fn entry_cache_bytes(&self) -> u64 {
        0
    }
}

/// What the application gives when raft needs a snapshot of a group.
pub enum SnapshotState {
    /// The state at the applied index: the log is compacted there now.
    Data(Vec<u8>),
    /// The node's own counts of applied entries (no application state).
    Counts,
    /// Not now: the application compacts the log itself once its state is durable
    /// (raft asks again meanwhile).
    Later,
}

/// The application behind a node's groups: it applies what they commit, gives their
/// snapshots, and hands the driver work between turns. The node loop keeps only
/// counts of applied entries for itself (and their data for the tests that ask).
pub trait Machine<S: ShardStore> {
    /// One committed entry or change, in log order per group.
    fn apply(&mut self, _driver: &mut MultiRaft<S>, _applied: &Applied) {}
    /// The state of `group` at its applied index `applied`, for a snapshot.
    fn snapshot(&mut self, _group: GroupId, _applied: u64) -> SnapshotState {
        SnapshotState::Counts
    }
    /// After every turn: work the application queued (proposals, new groups, leader
    /// transfers), and a look at the groups for status pages.
    fn after_turn(&mut self, _driver: &mut MultiRaft<S>) {}
}

/// No application: the node's counts are the state machine (tests, benchmarks).
impl<S: ShardStore> Machine<S> for () {}

/// Where a node's outgoing frames go: the TCP transport, or the server's routes.
pub trait FrameSink: 'static {
    /// Queues `frame` for `node`; false if it was dropped (Raft retransmits).
    fn send(&mut self, node: NodeId, frame: Vec<u8>) -> bool;
    /// Frames dropped so far.
    fn dropped(&self) -> u64;
    /// Where peer `node` listens, for sinks that dial (`Command::SetPeers`).
    fn set_peer(&mut self, _node: NodeId, _addr: SocketAddr) {}
}

impl FrameSink for Transport {
    fn send(&mut self, node: NodeId, frame: Vec<u8>) -> bool {
        Transport::send(self, node, frame)
    }
    fn dropped(&self) -> u64 {
        self.stats.frames_dropped.get()
    }
    fn set_peer(&mut self, node: NodeId, addr: SocketAddr) {
        Transport::set_peer(self, node, addr)
    }
}

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub raft: Config,
    pub listen: SocketAddr,
    pub tick_interval: Duration,
    pub transport: TransportConfig,
    /// Events taken in one turn.
    pub max_events_per_turn: usize,
    /// Proposals waiting to be applied; more are refused.
    pub max_pending_proposals: usize,
    /// Keep every applied entry's data (tests); otherwise only counts (benchmarks).
    pub keep_applied: bool,
}

impl NodeConfig {
    pub fn new(raft: Config) -> Self {
        Self {
            raft,
            listen: "127.0.0.1:0".parse().expect("address"),
            tick_interval: Duration::from_millis(super::multi::DEFAULT_TICK_INTERVAL_MS),
            transport: TransportConfig::default(),
            max_events_per_turn: 4096,
            max_pending_proposals: 1 << 20,
            keep_applied: true,
        }
    }
}

/// Why a proposal was not acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeFailed {
    Refused(ProposeError),
    /// Another entry was committed at its index (a leader change).
    Lost,
    /// Covered by a snapshot or the replica was removed: the outcome is not known here.
    Unknown,
    /// The node stopped.
    Stopped,
}

pub type Reply<T> = std_mpsc::Sender<T>;
/// Where a proposal's outcome goes.
pub type ProposeReply = Reply<Result<Proposal, ProposeFailed>>;

/// What the node's state machine holds for one group.
#[derive(Clone, Debug, Default)]
pub struct AppliedLog {
    /// Normal non-empty entries applied.
    pub count: u64,
    pub last_index: u64,
    /// Their data, if the node keeps it.
    pub data: Vec<Bytes>,
}

/// Node-wide figures.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The executor thread (for its CPU time in /proc).
    pub tid: i32,
    pub groups: usize,
    pub awake_groups: usize,
    pub group_ticks: u64,
    pub frames_sent: u64,
    pub frames_dropped: u64,
    pub wakes: u64,
    pub quiet_transitions: u64,
    /// Highest term of any group here (an election storm shows as a climbing term).
    pub max_term: u64,
    /// Bytes of log entries the store holds in memory (0 for a store keeping all).
    pub entry_cache_bytes: u64,
    /// Reads of entries from disk (entries not in memory).
    pub fetches: u64,
}

pub enum Command {
    SetPeers(Vec<(NodeId, SocketAddr)>),
    CreateGroup {
        group: GroupId,
        replica: u64,
        voters: Vec<u64>,
        reply: Reply<Result<(), ProposeError>>,
    },
    Propose {
        group: GroupId,
        data: Vec<u8>,
        reply: Reply<Result<Proposal, ProposeFailed>>,
    },
    Campaign(GroupId),
    Status {
        group: GroupId,
        reply: Reply<Option<GroupStatus>>,
    },
    /// Status of every group, as (group, role is leader, term).
    Leaders {
        reply: Reply<Vec<(GroupId, bool, u64)>>,
    },
    Applied {
        group: GroupId,
        reply: Reply<AppliedLog>,
    },
    Info {
        reply: Reply<NodeInfo>,
    },
    Stop,
}

/// What the node loop takes: ticks, frames from peers, persist completions, commands.
pub enum Event {
    Tick,
    Frame(NodeId, InboundFrame),
    Persisted(Option<u64>, io::Result<()>),
    Fetched(FetchRequest, io::Result<Vec<Entry>>),
    Cmd(Command),
    /// The application queued work for [`Machine::after_turn`].
    Wake,
}

/// Bytes of peers' frames a node loop may have queued; past it a new frame is
/// dropped and counted (Raft sends again what matters), so a flood from a peer
/// costs memory up to this and no more.
pub const INBOUND_FRAME_BYTES_MAX: usize = 64 << 20;

/// The frames from peers queued for one node loop.
#[derive(Clone, Default)]
pub struct Inflow {
    queued_bytes: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl Inflow {
    /// Queues `bytes` from `from` for the loop, or drops it when the queue is full.
    pub fn offer(&self, tx: &EventSender, from: NodeId, bytes: Vec<u8>) -> bool {
        let len = bytes.len();
        if self.queued_bytes.load(Ordering::Relaxed) + len > INBOUND_FRAME_BYTES_MAX {
            if self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1000)
            {
                tracing::warn!("Raft: frames from peers queue up faster than they are handled; dropping some (node {from})");
            }
            return false;
        }
        self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        let frame = InboundFrame {
            bytes,
            queued_bytes: self.queued_bytes.clone(),
        };
        tx.unbounded_send(Event::Frame(from, frame)).is_ok()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A peer's frame on its way to the node loop, counted in its `Inflow` until
/// the loop is done with it.
pub struct InboundFrame {
    bytes: Vec<u8>,
    queued_bytes: Arc<AtomicUsize>,
}

impl std::ops::Deref for InboundFrame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for InboundFrame {
    fn drop(&mut self) {
        self.queued_bytes
            .fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

/// The sending side of a node loop's events.
pub type EventSender = mpsc::UnboundedSender<Event>;
pub type EventReceiver = mpsc::UnboundedReceiver<Event>;

/// A new channel of events for [`drive`].
pub fn events() -> (EventSender, EventReceiver) {
    mpsc::unbounded()
}

/// The controlling side of a node running on its own thread.
pub struct NodeHandle {
    pub node: NodeId,
    pub addr: SocketAddr,
    pub tid: i32,
    tx: mpsc::UnboundedSender<Event>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl NodeHandle {
    /// Starts a node on a new thread with its own executor; `open` opens its store there.
    pub fn start<S, F, Fut>(cfg: NodeConfig, open: F) -> io::Result<NodeHandle>
    where
        S: ShardStore,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<S>> + 'static,
    {
        let (tx, rx) = mpsc::unbounded();
        let (started_tx, started_rx) = std_mpsc::channel();
        let node = cfg.raft.node_id;
        let loop_tx = tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("raft-node-{node}"))
            .spawn(move || {
                natrix_storage::rt::raise_memlock_limit();
                let ex = glommio::LocalExecutorBuilder::default()
                    .io_memory(natrix_storage::rt::IO_MEMORY_BYTES)
                    .make()
                    .map_err(|e| io::Error::other(e.to_string()))?;
                ex.run(natrix_shards::park_guard::guarded(run_node(
                    cfg, open, rx, loop_tx, started_tx,
                )))
            })?;
        let (addr, tid) = match started_rx.recv() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let r = thread.join();
                return Err(io::Error::other(format!("node thread ended: {r:?}")));
            }
        };
        Ok(NodeHandle {
            node,
            addr,
            tid,
            tx,
            thread: Some(thread),
        })
    }

    fn send(&self, c: Command) {
        let _ = self.tx.unbounded_send(Event::Cmd(c));
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Option<T> {
        let (tx, rx) = std_mpsc::channel();
        self.send(make(tx));
        rx.recv_timeout(CALL_TIMEOUT).ok()
    }

    pub fn set_peers(&self, peers: Vec<(NodeId, SocketAddr)>) {
        self.send(Command::SetPeers(peers));
    }

    pub fn create_group(&self, group: GroupId, replica: u64, voters: Vec<u64>) {
        let r = self.call(|reply| Command::CreateGroup {
            group,
            replica,
            voters,
            reply,
        });
        assert_eq!(r, Some(Ok(())), "create group {group}");
    }

    /// Proposes and waits until applied here (or failed).
    pub fn propose(&self, group: GroupId, data: Vec<u8>) -> Result<Proposal, ProposeFailed> {
        self.call(|reply| Command::Propose { group, data, reply })
            .unwrap_or(Err(ProposeFailed::Stopped))
    }

    /// Proposes; the outcome arrives on `reply` once applied here.
    pub fn propose_to(
        &self,
        group: GroupId,
        data: Vec<u8>,
        reply: Reply<Result<Proposal, ProposeFailed>>,
    ) {
        self.send(Command::Propose { group, data, reply });
    }

    pub fn campaign(&self, group: GroupId) {
        self.send(Command::Campaign(group));
    }

    pub fn status(&self, group: GroupId) -> Option<GroupStatus> {
        self.call(|reply| Command::Status { group, reply })
            .flatten()
    }

    pub fn leaders(&self) -> Vec<(GroupId, bool, u64)> {
        self.call(|reply| Command::Leaders { reply })
            .unwrap_or_default()
    }

    pub fn applied(&self, group: GroupId) -> AppliedLog {
        self.call(|reply| Command::Applied { group, reply })
            .unwrap_or_default()
    }

    pub fn info(&self) -> Option<NodeInfo> {
        self.call(|reply| Command::Info { reply })
    }

    /// Stops the node (abruptly: what is not durable is lost, as in a crash) and
    /// waits for its thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.tx.unbounded_send(Event::Cmd(Command::Stop));
        t.join()
            .map_err(|_| io::Error::other("node thread panicked"))?
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

async fn run_node<S, F, Fut>(
    cfg: NodeConfig,
    open: F,
    rx: EventReceiver,
    tx: EventSender,
    started: std_mpsc::Sender<io::Result<(SocketAddr, i32)>>,
) -> io::Result<()>
where
    S: ShardStore,
    F: FnOnce() -> Fut,
    Fut: Future<Output = io::Result<S>>,
{
    let opened = async {
        let store = Rc::new(RefCell::new(open().await?));
        let listener = glommio::net::TcpListener::bind(cfg.listen)?;
        let addr = listener.local_addr()?;
        io::Result::Ok((store, listener, addr))
    }
    .await;
    let (store, listener, addr) = match opened {
        Ok(v) => v,
        Err(e) => {
            let _ = started.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    let transport = Transport::new(cfg.transport.clone());
    let ftx = tx.clone();
    let inflow = Inflow::default();
    let _acceptor = spawn_acceptor(
        listener,
        cfg.transport.clone(),
        transport.stats.clone(),
        Rc::new(move |from, f| {
            inflow.offer(&ftx, from, f);
        }),
    );
    let _ = started.send(Ok((addr, gettid())));
    let r = drive(cfg, store, transport, rx, tx, ()).await;
    _acceptor.cancel();
    r
}

/// Runs a node's loop until a `Stop` command or a persist error: ticks every
/// `cfg.tick_interval`, takes events from `rx` (frames, commands), runs the driver's
/// turns, sends frames to `sink`, group-commits `store`, and has `machine` apply
/// what commits and work the driver after every turn.
pub async fn drive<S: ShardStore, T: FrameSink, M: Machine<S>>(
    cfg: NodeConfig,
    store: Rc<RefCell<S>>,
    sink: T,
    mut rx: EventReceiver,
    tx: EventSender,
    machine: M,
) -> io::Result<()> {
    let ttx = tx.clone();
    let interval = cfg.tick_interval;
    let ticker = glommio::spawn_local(async move {
        let mut next = Instant::now();
        loop {
            next += interval;
            glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
            if ttx.unbounded_send(Event::Tick).is_err() {
                return;
            }
        }
    })
    .detach();
    let mut shard = Shard {
        driver: MultiRaft::new(cfg.raft.clone(), store.clone()),
        store,
        transport: sink,
        applied: BTreeMap::new(),
        pending: BTreeMap::new(),
        persisting: false,
        sync_waiting: None,
        failed: None,
        stop: false,
        tx,
        cfg: cfg.clone(),
        machine,
    };
    shard.turn();
    let mut result = Ok(());
    while let Some(ev) = rx.next().await {
        shard.handle(ev);
        for _ in 1..cfg.max_events_per_turn {
            match rx.try_recv() {
                Ok(ev) => shard.handle(ev),
                Err(_) => break,
            }
        }
        if shard.stop {
            break;
        }
        shard.turn();
        shard.maybe_persist();
        if let Some(e) = shard.failed.take() {
            result = Err(e);
            break;
        }
        glommio::executor().yield_task_queue_now().await;
    }
    ticker.cancel();
    result
}

struct Shard<S: ShardStore, T: FrameSink, M: Machine<S>> {
    driver: MultiRaft<S>,
    store: Rc<RefCell<S>>,
    transport: T,
    applied: BTreeMap<GroupId, AppliedLog>,
    /// Proposals by (group, index): their term and who waits.
    pending: BTreeMap<(GroupId, u64), (u64, ProposeReply)>,
    persisting: bool,
    /// The newest sync ticket not yet handed to a persist.
    sync_waiting: Option<u64>,
    failed: Option<io::Error>,
    stop: bool,
    tx: mpsc::UnboundedSender<Event>,
    cfg: NodeConfig,
    machine: M,
}

impl<S: ShardStore, T: FrameSink, M: Machine<S>> Shard<S, T, M> {
    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Tick => {
                self.driver.tick();
                self.expire_pending();
            }
            Event::Frame(from, f) => {
                // A bad frame from a peer is its problem; the checksum was checked.
                let _ = self.driver.step(from, &f);
            }
            Event::Persisted(ticket, r) => {
                self.persisting = false;
                match r {
                    Ok(()) => {
                        if let Some(t) = ticket {
                            self.driver.on_persisted(t);
                        }
                    }
                    Err(e) => self.failed = Some(e),
                }
            }
            Event::Fetched(req, r) => match r {
                Ok(entries) => {
                    self.store.borrow_mut().install_fetched(req, entries);
                    self.driver.on_entries_fetched(req.group);
                }
                Err(e) => self.failed = Some(e),
            },
            Event::Cmd(c) => self.command(c),
            Event::Wake => {}
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::SetPeers(peers) => {
                for (node, addr) in peers {
                    if node != self.cfg.raft.node_id {
                        self.transport.set_peer(node, addr);
                    }
                }
            }
            Command::CreateGroup {
                group,
                replica,
                voters,
                reply,
            } => {
                let _ = reply.send(self.driver.create_group(group, replica, &voters));
            }
            Command::Propose { group, data, reply } => {
                if self.pending.len() >= self.cfg.max_pending_proposals {
                    let _ = reply.send(Err(ProposeFailed::Refused(ProposeError::Dropped)));
                    return;
                }
                match self.driver.propose(group, data) {
                    Ok(p) => {
                        self.pending.insert((group, p.index), (p.term, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ProposeFailed::Refused(e)));
                    }
                }
            }
            Command::Campaign(group) => {
                let _ = self.driver.campaign(group);
            }
            Command::Status { group, reply } => {
                let _ = reply.send(self.driver.status(group));
            }
            Command::Leaders { reply } => {
                let v = self
                    .driver
                    .group_ids()
                    .filter_map(|g| self.driver.status(g).map(|s| (g, s)))
                    .map(|(g, s)| (g, s.role == super::StateRole::Leader, s.term))
                    .collect();
                let _ = reply.send(v);
            }
            Command::Applied { group, reply } => {
                let _ = reply.send(self.applied.get(&group).cloned().unwrap_or_default());
            }
            Command::Info { reply } => {
                let st = self.driver.stats();
                let _ = reply.send(NodeInfo {
                    tid: gettid(),
                    groups: self.driver.group_ids().count(),
                    awake_groups: self.driver.awake_groups(),
                    group_ticks: st.group_ticks,
                    frames_sent: st.frames_sent,
                    frames_dropped: self.transport.dropped(),
                    wakes: st.wakes,
                    quiet_transitions: st.quiet_transitions,
                    max_term: self
                        .driver
                        .group_ids()
                        .filter_map(|g| self.driver.status(g))
                        .map(|s| s.term)
                        .max()
                        .unwrap_or(0),
                    entry_cache_bytes: self.store.borrow().entry_cache_bytes(),
                    fetches: st.fetches,
                });
            }
            Command::Stop => self.stop = true,
        }
    }

    fn turn(&mut self) {
        self.machine.after_turn(&mut self.driver);
        self.ready_rounds();
        self.machine.after_turn(&mut self.driver);
    }

    fn ready_rounds(&mut self) {
        for _ in 0..4 {
            let rd = self.driver.ready();
            if rd.is_empty() {
                return;
            }
            for (to, f) in rd.frames {
                self.transport.send(to, f);
            }
            for a in rd.applied {
                self.machine.apply(&mut self.driver, &a);
                self.apply(a);
            }
            for g in rd.snapshot_wanted {
                let applied = self.driver.status(g).map_or(0, |s| s.applied);
                let data = match self.machine.snapshot(g, applied) {
                    SnapshotState::Data(data) => data,
                    SnapshotState::Counts => encode_applied(self.applied.get(&g)),
                    SnapshotState::Later => continue,
                };
                let _ = self.driver.compact(g, data);
            }
            if let Some(t) = rd.sync {
                assert!(self.sync_waiting.is_none_or(|w| w < t));
                self.sync_waiting = Some(t);
            }
            for req in rd.fetches {
                let store = self.store.clone();
                let tx = self.tx.clone();
                glommio::spawn_local(async move {
                    let r = S::fetch(store, req).await;
                    let _ = tx.unbounded_send(Event::Fetched(req, r));
                })
                .detach();
            }
        }
    }

    fn apply(&mut self, a: Applied) {
        match a {
            Applied::Entry {
                group,
                index,
                term,
                data,
            } => {
                let log = self.applied.entry(group).or_default();
                log.last_index = index;
                if !data.is_empty() {
                    log.count += 1;
                    if self.cfg.keep_applied {
                        log.data.push(data);
                    }
                }
                if let Some((t, reply)) = self.pending.remove(&(group, index)) {
                    let r = if t == term {
                        Ok(Proposal { index, term })
                    } else {
                        Err(ProposeFailed::Lost)
                    };
                    let _ = reply.send(r);
                }
            }
            Applied::ConfChange { group, index, .. } => {
                self.applied.entry(group).or_default().last_index = index;
                self.fail_pending(group, index, ProposeFailed::Lost);
            }
            Applied::Snapshot {
                group, index, data, ..
            } => {
                let mut log = decode_applied(&data);
                log.last_index = index;
                if !self.cfg.keep_applied {
                    log.data.clear();
                }
                self.applied.insert(group, log);
                self.fail_pending(group, index, ProposeFailed::Unknown);
            }
            Applied::Removed { group } => {
                self.applied.remove(&group);
                self.fail_pending(group, u64::MAX, ProposeFailed::Unknown);
            }
        }
    }

    /// A proposal whose entry left the log (a newer leader overwrote or truncated it
    /// before any entry reached its index) would otherwise wait forever.
    fn expire_pending(&mut self) {
        let lost: Vec<(GroupId, u64)> = self
            .pending
            .iter()
            .filter(|((g, index), (term, _))| match self.driver.status(*g) {
                None => true,
                Some(st) => st.term > *term && self.driver.log_term(*g, *index) != Some(*term),
            })
            .map(|(k, _)| *k)
            .collect();
        for k in lost {
            let (_, reply) = self.pending.remove(&k).expect("pending");
            let _ = reply.send(Err(ProposeFailed::Lost));
        }
    }

    fn fail_pending(&mut self, group: GroupId, up_to: u64, why: ProposeFailed) {
        let keys: Vec<_> = self
            .pending
            .range((group, 0)..=(group, up_to))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let (_, reply) = self.pending.remove(&k).expect("pending");
            let _ = reply.send(Err(why));
        }
    }

    fn maybe_persist(&mut self) {
        if self.persisting || (self.sync_waiting.is_none() && !self.store.borrow().has_pending()) {
            return;
        }
        self.persisting = true;
        let ticket = self.sync_waiting.take();
        let store = self.store.clone();
        let tx = self.tx.clone();
        glommio::spawn_local(async move {
            let r = S::persist(store).await;
            let _ = tx.unbounded_send(Event::Persisted(ticket, r));
        })
        .detach();
    }
}

/// The state machine as snapshot data: count, then every kept entry (u32 length, bytes).
fn encode_applied(log: Option<&AppliedLog>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(log) = log else {
        out.extend_from_slice(&0u64.to_le_bytes());
        return out;
    };
    out.extend_from_slice(&log.count.to_le_bytes());
    for d in &log.data {
        out.extend_from_slice(&(d.len() as u32).to_le_bytes());
        out.extend_from_slice(d);
    }
    out
}

fn decode_applied(buf: &[u8]) -> AppliedLog {
    let mut log = AppliedLog::default();
    if buf.len() < 8 {
        return log;
    }
    log.count = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    let mut at = 8;
    while at + 4 <= buf.len() {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 4;
        let Some(d) = buf.get(at..at + len) else {
            break;
        };
        log.data.push(Bytes::copy_from_slice(d));
        at += len;
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_frames_is_dropped_past_the_bound_and_room_comes_back() {
        let (tx, mut rx) = events();
        let inflow = Inflow::default();
        let frame_bytes = INBOUND_FRAME_BYTES_MAX / 4;
        for _ in 0..4 {
            assert!(inflow.offer(&tx, 2, vec![0; frame_bytes]));
        }
        assert!(!inflow.offer(&tx, 2, vec![0; 1]), "full");
        assert_eq!(inflow.dropped(), 1);
        let taken = rx.try_recv().unwrap();
        drop(taken);
        assert!(inflow.offer(&tx, 2, vec![0; frame_bytes]), "room again");
    }
}
