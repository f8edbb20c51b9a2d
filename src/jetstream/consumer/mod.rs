//! Consumers: a stream's views that deliver its messages and track acks.
//!
//! - `config`: checking a create request's config, nats-server's defaults.
//! - `state`: delivery and ack bookkeeping, free of I/O (survives restarts).
//! - `ack`: decoding ack subjects and bodies.
//! - `deliver`: the delivery task, pull requests, heartbeats, redelivery timers.
//! - `flow`: flow control of push consumers, free of I/O.

pub mod ack;
pub mod config;
pub mod deliver;
pub mod flow;
pub mod state;

use crate::jetstream::api::types::{
    AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, NextRequest, ReplayPolicy, SequencePair,
};
use crate::jetstream::stream::Stream;
use crate::jetstream::{persist, time_string};
use bytes::Bytes;
use natrix_shards::Notify;
use state::{AckRules, ConsumerState};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// A pull request's 408 goes out this long after its `expires`, never before it.
/// Clients set `expires` just under their own timeout (nats-py: 100 µs under) and
/// treat a 408 that beats their timer otherwise than their timeout: nats-py then
/// raises a bare `asyncio.TimeoutError`, not its `nats.errors.TimeoutError`. On
/// loopback natrix's 408 came back within those 100 µs; nats-server's, through its
/// timer and send queue, comes later.
const EXPIRY_GRACE: Duration = Duration::from_millis(1);

/// A waiting pull request.
pub struct PullRequest {
    pub reply: Bytes,
    pub batch_left: u64,
    /// Set when the request has a max_bytes; bytes_left counts down from it.
    pub byte_limited: bool,
    pub bytes_left: u64,
    pub expires_at: Option<Instant>,
    pub no_wait: bool,
    pub heartbeat: Option<Duration>,
    pub last_sent: Instant,
    pub delivered: u64,
}

impl PullRequest {
    pub fn new(reply: Bytes, req: &NextRequest, now: Instant) -> PullRequest {
        let ns = |n: i64| (n > 0).then(|| Duration::from_nanos(n as u64));
        PullRequest {
            reply,
            batch_left: req.batch.max(1) as u64,
            byte_limited: req.max_bytes > 0,
            bytes_left: req.max_bytes.max(0) as u64,
            expires_at: ns(req.expires).map(|d| now + d + EXPIRY_GRACE),
            no_wait: req.no_wait,
            heartbeat: ns(req.idle_heartbeat),
            last_sent: now,
            delivered: 0,
        }
    }
}

pub struct Consumer {
    pub name: String,
    pub stream: std::rc::Weak<Stream>,
    pub config: RefCell<ConsumerConfig>,
    pub created: SystemTime,
    pub state: RefCell<ConsumerState>,
    /// Last-per-subject start: these first, then from `lps_end + 1`.
    pub lps: RefCell<VecDeque<u64>>,
    pub lps_end: Cell<u64>,
    pub waiting: RefCell<VecDeque<PullRequest>>,
    pub wake: Notify,
    pub deleted: Cell<bool>,
    pub dirty: Cell<bool>,
    pub dir: Option<PathBuf>,
    pub last_active: Cell<Instant>,
    pub last_push: Cell<Instant>,
    pub paused_until: Cell<Option<SystemTime>>,
    pub epoch: Instant,
    /// The last count of messages left, to move it forward cheaply.
    pending_count: Cell<Option<PendingCount>>,
    /// The config's filters, kept apart: every delivery reads them.
    filters: RefCell<Rc<Vec<String>>>,
    /// Set for a push consumer with `flow_control`.
    pub flow: RefCell<Option<flow::FlowControl>>,
    /// `replay_policy: original`: when the last new message went out, and its
    /// stream timestamp; the next one waits as long as they were apart.
    pub replayed: Cell<Option<(Instant, u64)>>,
    /// The next new message is due then (original replay).
    pub replay_due: Cell<Option<Instant>>,
    /// Set for a clustered consumer's replica.
    pub cluster: std::cell::OnceCell<crate::jetstream::cluster::consumer::Replica>,
}

/// `count` messages left in `[from, last]` when the stream had seen `removals`
/// removals (one at or above `from` since voids it).
#[derive(Clone, Copy, Debug)]
struct PendingCount {
    from: u64,
    last: u64,
    removals: u64,
    count: u64,
}

impl Consumer {
    pub fn new(
        stream: &Rc<Stream>,
        name: String,
        config: ConsumerConfig,
        created: SystemTime,
        state: ConsumerState,
        dir: Option<PathBuf>,
    ) -> Rc<Consumer> {
        let now = Instant::now();
        let filters = RefCell::new(Rc::new(config::filters(&config)));
        let flow = RefCell::new(flow_control(&config));
        let c = Rc::new(Consumer {
            filters,
            flow,
            replayed: Cell::new(None),
            replay_due: Cell::new(None),
            cluster: Default::default(),
            name,
            stream: Rc::downgrade(stream),
            config: RefCell::new(config),
            created,
            state: RefCell::new(state),
            lps: RefCell::default(),
            lps_end: Cell::new(0),
            waiting: RefCell::default(),
            wake: Notify::default(),
            deleted: Cell::new(false),
            dirty: Cell::new(false),
            dir,
            last_active: Cell::new(now),
            last_push: Cell::new(now),
            paused_until: Cell::new(None),
            epoch: now,
            pending_count: Cell::new(None),
        });
        let rules = c.rules();
        let now_ms = c.now_ms();
        c.state.borrow_mut().restore_deadlines(now_ms, &rules);
        c
    }

    /// Where a new consumer starts, by its deliver policy.
    pub fn start(stream: &Stream, config: &ConsumerConfig) -> (ConsumerState, Vec<u64>, u64) {
        let st = stream.store.state();
        let filters = config::filters(config);
        let first = st.first_seq.max(1);
        let after_last = st.last_seq + 1;
        let mut lps = Vec::new();
        let start = match config.deliver_policy {
            DeliverPolicy::All => first,
            DeliverPolicy::New => after_last,
            DeliverPolicy::Last => {
                if filters.is_empty() {
                    st.last_seq.max(first)
                } else {
                    let lasts = stream.store.last_per_subject(&filters);
                    lasts.last().copied().unwrap_or(after_last)
                }
            }
            DeliverPolicy::ByStartSequence => config.opt_start_seq.unwrap_or(1).max(1),
            DeliverPolicy::ByStartTime => config
                .opt_start_time
                .as_deref()
                .and_then(crate::timefmt::parse_rfc3339_ns)
                .and_then(|ns| stream.store.seq_for_time(ns))
                .unwrap_or(after_last),
            DeliverPolicy::LastPerSubject => {
                lps = stream.store.last_per_subject(&filters);
                lps.first().copied().unwrap_or(after_last)
            }
        };
        (ConsumerState::new(start), lps, st.last_seq)
    }

    pub fn rules(&self) -> AckRules {
        let c = self.config.borrow();
        let ms = |ns: i64| (ns.max(0) / 1_000_000) as u64;
        AckRules {
            ack_wait_ms: ms(c.ack_wait),
            backoff_ms: c.backoff.iter().flatten().map(|&b| ms(b)).collect(),
            max_deliver: c.max_deliver.max(0) as u64,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn is_push(&self) -> bool {
        self.config.borrow().deliver_subject.is_some()
    }

    pub fn is_durable(&self) -> bool {
        self.config.borrow().durable_name.is_some()
    }

    pub fn filters(&self) -> Rc<Vec<String>> {
        self.filters.borrow().clone()
    }

    /// Replaces the config (an update).
    pub fn set_config(&self, new: ConsumerConfig) {
        *self.filters.borrow_mut() = Rc::new(config::filters(&new));
        if new.flow_control != self.config.borrow().flow_control {
            *self.flow.borrow_mut() = flow_control(&new);
        }
        *self.config.borrow_mut() = new;
        self.pending_count.set(None);
    }

    /// Whether this consumer no longer needs `stream_seq` (interest retention).
    pub fn has_acked(&self, stream_seq: u64) -> bool {
        let st = self.state.borrow();
        let filters = self.filters();
        if !filters.is_empty() {
            // A message outside the filter is of no interest to this consumer.
            if let Some(stream) = self.stream.upgrade() {
                let next = stream.store.next_matching(stream_seq, &filters);
                if next != Some(stream_seq) {
                    return true;
                }
            }
        }
        stream_seq < st.next_seq && !st.pending.contains_key(&stream_seq)
    }

    /// Messages left to deliver for the first time.
    pub fn num_pending(&self, stream: &Stream) -> u64 {
        let lps = self.lps.borrow();
        if lps.is_empty() {
            let from = self.state.borrow().next_seq;
            return self.pending_from(stream, from);
        }
        lps.len() as u64 + self.pending_from(stream, self.lps_end.get() + 1)
    }

    /// Messages on this consumer's filters from `from` on. A filtered count scans
    /// the stream, so the last one is moved forward over what changed since,
    /// unless a message it counted was removed meanwhile (acks of delivered
    /// messages, below it, do not void it).
    fn pending_from(&self, stream: &Stream, from: u64) -> u64 {
        let filters = self.filters();
        let st = stream.store.state();
        if filters.is_empty() && st.num_deleted == 0 {
            return stream.pending_from(from, &filters);
        }
        let removals = stream.store.removals();
        let count = match self.pending_count.get() {
            Some(c)
                if c.from <= from
                    && c.last <= st.last_seq
                    && stream.store.removed_since(c.removals, c.from) == Some(false) =>
            {
                let store = &stream.store;
                if from <= c.last + 1 {
                    let passed =
                        store.count_matching_range(c.from, from.saturating_sub(1), &filters);
                    let added = store.count_matching_range(c.last + 1, st.last_seq, &filters);
                    debug_assert!(passed <= c.count, "passed messages were counted");
                    c.count.saturating_sub(passed) + added
                } else {
                    store.count_matching_range(from, st.last_seq, &filters)
                }
            }
            _ => stream.pending_from(from, &filters),
        };
        self.pending_count.set(Some(PendingCount {
            from,
            last: st.last_seq,
            removals,
            count,
        }));
        count
    }

    pub fn info(&self, stream: &Stream) -> ConsumerInfo {
        let st = self.state.borrow().clone();
        let pair = |s: state::Seqs| SequencePair {
            consumer_seq: s.consumer_seq,
            stream_seq: s.stream_seq,
            last_active: None,
        };
        let paused = self
            .paused_until
            .get()
            .is_some_and(|t| t > SystemTime::now());
        ConsumerInfo {
            stream_name: stream.name.clone(),
            name: self.name.clone(),
            created: time_string(self.created),
            config: self.config.borrow().clone(),
            delivered: pair(st.delivered),
            ack_floor: pair(st.ack_floor),
            num_ack_pending: st.pending.len() as u64,
            num_redelivered: st.num_redelivered(),
            num_waiting: self.waiting.borrow().len() as u64,
            num_pending: self.num_pending(stream),
            cluster: None,
            push_bound: false,
            paused,
            pause_remaining: self.paused_until.get().and_then(|t| {
                t.duration_since(SystemTime::now())
                    .ok()
                    .map(|d| d.as_nanos() as i64)
            }),
            ts: time_string(SystemTime::now()),
        }
    }

    /// Starts flow control afresh (the client's subscription went away).
    pub fn reset_flow(&self) {
        if let Some(fc) = self.flow.borrow_mut().as_mut() {
            *fc = flow::FlowControl::default();
        }
    }

    /// Under original replay, when a new message stamped `ts_ns` may go out
    /// (`None`: now).
    pub fn replay_wait(&self, ts_ns: u64, now: Instant) -> Option<Instant> {
        if self.config.borrow().replay_policy != ReplayPolicy::Original {
            return None;
        }
        let (at, last_ns) = self.replayed.get()?;
        let due = at + Duration::from_nanos(ts_ns.saturating_sub(last_ns));
        (due > now).then_some(due)
    }

    pub fn tracks_acks(&self) -> bool {
        self.config.borrow().ack_policy != AckPolicy::None
    }

    /// Its state changed: saved soon, and (a clustered consumer's leader) proposed
    /// to its group after the node loop's turn.
    pub fn mark_dirty(&self) {
        self.dirty.set(true);
        if let Some(r) = self.cluster.get() {
            r.changed.set(true);
        }
    }

    /// Whether it delivers and takes acks here: always, unless it is a clustered
    /// consumer's replica that does not lead.
    pub fn acts_here(&self) -> bool {
        self.cluster.get().is_none_or(|r| r.leading.get())
    }

    /// Saves config and state now (durable consumers of file streams).
    pub fn save(&self) {
        let Some(dir) = &self.dir else { return };
        self.dirty.set(false);
        let saved = persist::save_consumer(
            dir,
            &self.config.borrow(),
            self.created,
            &self.state.borrow(),
            self.cluster.get().map(|r| r.group),
        );
        if let Err(e) = saved {
            tracing::error!(
                "JetStream consumer {}: could not save its state: {e}",
                self.name
            );
        }
    }
}

fn flow_control(config: &ConsumerConfig) -> Option<flow::FlowControl> {
    (config.flow_control && config.deliver_subject.is_some()).then(flow::FlowControl::default)
}
