//! One stream on its owning shard: its config, its store, its de-duplication
//! window, its consumers, and the tasks that commit appends and send PubAcks once
//! they are durable. Nothing outside this shard touches it.

use crate::jetstream::api::errors;
use crate::jetstream::api::types::{
    ApiError, DiscardPolicy, Retention, StorageType, StreamConfig, StreamInfo, StreamState,
};
use crate::jetstream::consumer::Consumer;
use crate::jetstream::{dedupe::Dedupe, now_ns, persist, time_string};
use crate::server::accounts::AccountId;
use crate::server::interest::Interest;
use bytes::Bytes;
use natrix_shards::Notify;
use natrix_storage::{Discard, Limits, Store, Ticket};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// A PubAck (or publish error) waiting for its message to be durable.
pub struct AckWait {
    pub ticket: Option<Ticket>,
    pub reply: Option<Bytes>,
    pub body: Vec<u8>,
    /// A copy to publish once the message is durable (`republish`).
    pub republish: Option<Republished>,
}

/// A stored message republished: its subject, header block and payload.
pub struct Republished {
    pub subject: String,
    pub headers: Vec<u8>,
    pub payload: Bytes,
}

/// PubAcks waiting at most, per stream, before publishers are refused.
pub const ACKS_WAITING_MAX: usize = 256 * 1024;

pub struct Stream {
    pub account: AccountId,
    pub name: String,
    pub config: RefCell<StreamConfig>,
    pub created: SystemTime,
    pub store: Store,
    /// Where its files live (file storage only).
    pub dir: Option<PathBuf>,
    pub dedupe: RefCell<Dedupe>,
    pub consumers: RefCell<BTreeMap<String, Rc<Consumer>>>,
    /// Its internal subscriptions to ack and flow-control subjects, to remove when it goes.
    pub interests: RefCell<Vec<(Bytes, Interest)>>,
    /// Its subscriptions to its subjects (a clustered stream's only while it leads).
    pub subject_interests: RefCell<Vec<(Bytes, Interest)>>,
    /// Set for a clustered stream's replica.
    pub cluster: std::cell::OnceCell<crate::jetstream::cluster::stream::Replica>,
    pub acks: RefCell<VecDeque<AckWait>>,
    pub acks_ready: Notify,
    pub commit_needed: Notify,
    /// Wakes the expiry task of a stream with nothing to expire (a Msg-Id recorded,
    /// a config change, the stream deleted).
    pub expiry_needed: Notify,
    /// Consumers wait here for new deliverable messages.
    pub deliverable_advanced: natrix_shards::WaitSet,
    /// The deliverable sequence consumers were last woken for.
    deliverable_woken: Cell<u64>,
    pub deleted: Cell<bool>,
    /// The last commit failed for lack of space (publishers are told 10047).
    pub disk_full: Cell<bool>,
}

impl Stream {
    pub fn new(
        account: AccountId,
        config: StreamConfig,
        created: SystemTime,
        store: Store,
        dir: Option<PathBuf>,
    ) -> Rc<Stream> {
        let window = Duration::from_nanos(config.duplicate_window.max(0) as u64);
        Rc::new(Stream {
            account,
            name: config.name.clone(),
            config: RefCell::new(config),
            created,
            store,
            dir,
            dedupe: RefCell::new(Dedupe::new(window)),
            consumers: RefCell::default(),
            interests: RefCell::default(),
            subject_interests: RefCell::default(),
            cluster: Default::default(),
            acks: RefCell::default(),
            acks_ready: Notify::default(),
            commit_needed: Notify::default(),
            expiry_needed: Notify::default(),
            deliverable_advanced: Default::default(),
            deliverable_woken: Cell::new(0),
            deleted: Cell::new(false),
            disk_full: Cell::new(false),
        })
    }

    pub fn info(&self, subjects_filter: Option<&str>, deleted_details: bool) -> StreamInfo {
        StreamInfo {
            config: self.config.borrow().clone(),
            created: time_string(self.created),
            state: self.state(subjects_filter, deleted_details),
            cluster: None,
            ts: time_string(SystemTime::now()),
        }
    }

    pub fn state(&self, subjects_filter: Option<&str>, deleted_details: bool) -> StreamState {
        let s = self.store.state();
        let ts = |ns: u64| {
            if ns == 0 {
                crate::jetstream::ZERO_TIME.to_string()
            } else {
                time_string(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
            }
        };
        let subjects = subjects_filter.filter(|f| !f.is_empty()).map(|f| {
            self.store
                .subject_counts(f)
                .into_iter()
                .collect::<BTreeMap<String, u64>>()
        });
        StreamState {
            messages: s.msgs,
            bytes: s.bytes,
            // A stream that never held a message starts at 0, as nats-server's does.
            first_seq: if s.last_seq == 0 { 0 } else { s.first_seq },
            first_ts: ts(s.first_ts_ns),
            last_seq: s.last_seq,
            last_ts: ts(s.last_ts_ns),
            num_subjects: s.num_subjects,
            subjects,
            num_deleted: s.num_deleted,
            deleted: (deleted_details && s.num_deleted > 0).then(|| self.store.deleted()),
            consumer_count: self.consumers.borrow().len() as u64,
        }
    }

    /// Messages a consumer on `filters` has left from `from`.
    pub fn pending_from(&self, from: u64, filters: &[String]) -> u64 {
        self.store.count_matching(from, filters)
    }

    /// A replicated stream's replica fetching messages from a peer: its store lacks some.
    pub fn catching_up(&self) -> bool {
        self.cluster
            .get()
            .is_some_and(|r| r.catching_up.borrow().is_some())
    }

    /// The last sequence consumers may deliver: a durable one. A replicated
    /// stream's store holds only messages its group's log holds durably on a
    /// quorum, written to the store or not.
    pub fn deliverable_seq(&self) -> u64 {
        if self.cluster.get().is_some() {
            self.store.last_seq()
        } else {
            self.store.durable_seq()
        }
    }

    pub fn is_workqueue(&self) -> bool {
        self.config.borrow().retention == Retention::Workqueue
    }

    pub fn is_interest(&self) -> bool {
        self.config.borrow().retention == Retention::Interest
    }

    /// Saves the config (file streams).
    pub fn save_config(&self) -> Result<(), ApiError> {
        match &self.dir {
            Some(dir) => persist::save_stream_meta(dir, &self.config.borrow(), self.created)
                .map_err(|e| errors::general(format!("could not save stream config: {e}"))),
            None => Ok(()),
        }
    }

    /// Under interest or workqueue retention, removes what every consumer has
    /// acknowledged (workqueue: what any consumer acknowledged).
    pub fn retire_acked(&self, stream_seq: u64) {
        let retention = self.config.borrow().retention;
        if retention == Retention::Limits {
            return;
        }
        let consumers = self.consumers.borrow();
        let done = match retention {
            Retention::Workqueue => true,
            _ => consumers.values().all(|c| c.has_acked(stream_seq)),
        };
        if done && !consumers.is_empty() && self.store.delete(stream_seq).unwrap_or(false) {
            self.commit_needed.notify();
        }
    }
}

/// The storage limits of a stream config.
pub fn limits(config: &StreamConfig) -> Limits {
    let pos = |n: i64| n.max(0) as u64;
    Limits {
        max_msgs: pos(config.max_msgs),
        max_bytes: pos(config.max_bytes),
        max_age: Duration::from_nanos(pos(config.max_age)),
        max_msgs_per_subject: pos(config.max_msgs_per_subject),
        discard: match config.discard {
            DiscardPolicy::Old => Discard::Old,
            DiscardPolicy::New => Discard::New,
        },
        discard_new_per_subject: config.discard_new_per_subject,
    }
}

/// Commits appends as they come: one commit in flight while the next batch fills.
pub async fn commit_loop(stream: Rc<Stream>) {
    loop {
        stream.commit_needed.wait().await;
        if stream.deleted.get() {
            return;
        }
        if stream.cluster.get().is_some() {
            // Nothing waits for this commit (see `commit`): one per pause, not
            // one per applied entry.
            glommio::timer::sleep(REPLICATED_COMMIT_PAUSE).await;
        }
        match commit(&stream).await {
            Ok(_) => stream.disk_full.set(false),
            Err(e) => {
                tracing::error!("JetStream stream {} commit failed: {e}", stream.name);
                stream.disk_full.set(e.is_disk_full());
                // What was lost must not answer a retried Msg-Id as a duplicate.
                let durable = stream.store.durable_seq();
                stream.dedupe.borrow_mut().forget_above(durable);
            }
        }
        stream.acks_ready.notify();
    }
}

/// How long a replicated stream's store gathers applied messages before it writes
/// them (a full tail buffer is written at once; reads are served from memory until
/// written).
const REPLICATED_COMMIT_PAUSE: Duration = Duration::from_millis(20);

/// A replicated stream's messages are durable in its group's Raft log on a quorum
/// before they are applied here, and that log is compacted only past what the store
/// synced (`cluster::stream::compact_when_durable`): its store writes without a sync
/// of its own, and nothing waits for the write. A stream of one server syncs as
/// configured, and its PubAcks and consumers wait for that.
async fn commit(stream: &Stream) -> natrix_storage::Result<u64> {
    if stream.cluster.get().is_some() {
        stream.store.commit_unsynced().await
    } else {
        stream.store.commit().await
    }
}

/// Consumers wait for more of the stream to be deliverable: wakes them once per
/// advance, not once per PubAck (a duplicate's ack advances nothing).
pub fn wake_consumers_if_deliverable(stream: &Stream) {
    let deliverable = stream.deliverable_seq();
    if deliverable > stream.deliverable_woken.replace(deliverable) {
        stream.deliverable_advanced.wake_all();
    }
}

/// Sends PubAcks in order, each once its message is durable; wakes consumers.
pub async fn ack_loop(shard: Rc<crate::server::shard::Shard>, stream: Rc<Stream>) {
    loop {
        let next = stream.acks.borrow_mut().pop_front();
        let Some(wait) = next else {
            // A commit with no PubAck waiting on it (a replica's applied entries,
            // or acks sent before the store's sync): consumers still hear of it.
            wake_consumers_if_deliverable(&stream);
            stream.acks_ready.wait().await;
            if stream.deleted.get() {
                return;
            }
            continue;
        };
        let result = match wait.ticket {
            Some(t) => stream.store.wait_durable(t).await,
            None => Ok(()),
        };
        wake_consumers_if_deliverable(&stream);
        if let (Ok(()), Some(r)) = (&result, &wait.republish) {
            crate::jetstream::send(
                &shard,
                stream.account,
                r.subject.as_bytes(),
                None,
                &r.headers,
                &r.payload,
            );
        }
        let Some(reply) = wait.reply else { continue };
        let body = match result {
            Ok(()) => wait.body,
            Err(e) => {
                let err = if e.is_disk_full() || stream.disk_full.get() {
                    errors::insufficient_storage()
                } else {
                    errors::store_failed(e.to_string())
                };
                crate::jetstream::publish::error_body(&stream.name, err)
            }
        };
        crate::jetstream::send(&shard, stream.account, &reply, None, b"", &body);
    }
}

/// Keeps max_age and the duplicate window: runs while the stream lives, every
/// 100 ms while there is something to expire, every second otherwise.
pub async fn expiry_loop(stream: Rc<Stream>) {
    loop {
        let busy = stream.config.borrow().max_age > 0 || !stream.dedupe.borrow().is_empty();
        if busy {
            glommio::timer::sleep(Duration::from_millis(EXPIRY_INTERVAL_MS)).await;
        } else {
            // Nothing can expire: no timer (a thousand idle streams would wake a
            // thousand times a second).
            stream.expiry_needed.wait().await;
        }
        if stream.deleted.get() {
            return;
        }
        if stream.config.borrow().max_age > 0 && stream.store.expire(now_ns()).unwrap_or(0) > 0 {
            stream.commit_needed.notify();
            for c in stream.consumers.borrow().values() {
                c.wake.notify();
            }
        }
        stream.dedupe.borrow_mut().expire(now_ns());
    }
}

/// How often a stream with an age limit or Msg-Ids in its window looks for what
/// expired.
const EXPIRY_INTERVAL_MS: u64 = 100;

/// Whether the storage kind of `config` is memory.
pub fn is_memory(config: &StreamConfig) -> bool {
    config.storage == StorageType::Memory
}
