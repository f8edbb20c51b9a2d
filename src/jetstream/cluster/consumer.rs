//! A clustered consumer's replica on this server. Its leader delivers and takes
//! acks; after each turn of the node loop in which its state changed, it proposes
//! the whole state (delivered, ack floor, pending: bounded by `max_ack_pending`)
//! to the consumer's group, one proposal in flight at a time. The others apply it,
//! so a new leader starts from the state the old one had replicated. A client's
//! `ack_sync` is answered once the state holding its ack is committed.

use super::assign::{ConsumerAssignment, StreamAssignment};
use super::{Answer, Cluster};
use crate::jetstream::consumer::state::ConsumerState;
use crate::jetstream::consumer::Consumer;
use crate::jetstream::registry;
use crate::raft::{FileLogStore, GroupId, MultiRaft};
use crate::server::shard::Shard;
use bytes::Bytes;
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tracing::{error, info};

/// How long a consumer assignment waits for its stream's replica to be created here.
const STREAM_WAIT_MS: u64 = 10_000;
const STREAM_POLL_MS: u64 = 20;
/// Ack replies held for one state proposal at most; more are answered at once.
const ACK_REPLIES_MAX: usize = 4096;

pub struct Replica {
    pub group: GroupId,
    /// Leads its group (and applied everything before): delivers, takes acks.
    pub leading: Cell<bool>,
    /// State changed since the last proposal.
    pub changed: Cell<bool>,
    proposing: Cell<bool>,
    /// Ack replies to send once the state holding their acks is committed.
    ack_replies: RefCell<Vec<Bytes>>,
}

impl Replica {
    pub fn new(group: GroupId) -> Replica {
        Replica {
            group,
            leading: Cell::new(false),
            changed: Cell::new(false),
            proposing: Cell::new(false),
            ack_replies: RefCell::default(),
        }
    }

    /// Holds an ack's reply until the state is replicated; false when full (the
    /// caller answers at once).
    pub fn hold_reply(&self, reply: Bytes) -> bool {
        let mut held = self.ack_replies.borrow_mut();
        if held.len() >= ACK_REPLIES_MAX {
            return false;
        }
        held.push(reply);
        self.changed.set(true);
        true
    }
}

pub fn encode_state(c: &Consumer) -> Vec<u8> {
    serde_json::to_vec(&*c.state.borrow()).expect("serializable")
}

/// The meta group assigned a consumer of a stream with a replica here.
pub fn ensure_replica(shard: &Rc<Shard>, sa: &StreamAssignment, ca: &ConsumerAssignment) {
    let Some(account) = shard.server.accounts.lookup(&sa.account) else {
        return;
    };
    let (shard, stream_name, ca) = (shard.clone(), sa.config.name.clone(), ca.clone());
    let (peers, sa_now) = (sa.peers.clone(), sa.clone());
    glommio::spawn_local(async move {
        // The stream's replica may still be being created (its files opened).
        let mut waited_ms = 0;
        let stream = loop {
            if let Some(s) = shard.js.get(account, &stream_name) {
                break s;
            }
            if waited_ms >= STREAM_WAIT_MS {
                error!(
                    "JetStream cluster: consumer {} of missing stream {stream_name}",
                    ca.name
                );
                return;
            }
            glommio::timer::sleep(Duration::from_millis(STREAM_POLL_MS)).await;
            waited_ms += STREAM_POLL_MS;
        };
        let Some(cl) = shard.cluster.get().cloned() else {
            return;
        };
        let existing = stream.consumers.borrow().get(&ca.name).cloned();
        let consumer = match existing {
            Some(c) if c.cluster.get().map(|r| r.group) == Some(ca.group) => {
                if *c.config.borrow() != ca.config {
                    let r = registry::create_consumer(
                        &shard,
                        &stream,
                        Some(ca.name.clone()),
                        ca.config.clone(),
                        "",
                        None,
                    );
                    if let Err(e) = r {
                        error!(
                            "JetStream cluster: consumer {} update: {}",
                            ca.name, e.description
                        );
                    }
                }
                c
            }
            Some(_) => {
                error!(
                    "JetStream cluster: consumer {} exists here outside its group",
                    ca.name
                );
                return;
            }
            None => {
                let replica = Replica::new(ca.group);
                let r = registry::create_consumer(
                    &shard,
                    &stream,
                    Some(ca.name.clone()),
                    ca.config.clone(),
                    "",
                    Some(replica),
                );
                if let Err(e) = r {
                    error!(
                        "JetStream cluster: could not create consumer {}: {}",
                        ca.name, e.description
                    );
                    return;
                }
                let Some(c) = stream.consumers.borrow().get(&ca.name).cloned() else {
                    return;
                };
                info!(
                    "JetStream cluster: created a replica of consumer {} > {}",
                    stream_name, ca.name
                );
                c
            }
        };
        cl.consumers.borrow_mut().insert(ca.group, consumer.clone());
        cl.create_group(ca.group, peers, sa_now.joins(cl.node, ca.group));
        if cl.view(ca.group).ready {
            set_leading(&consumer, true);
        }
    })
    .detach();
}

pub fn remove_replica(
    shard: &Rc<Shard>,
    cl: &Cluster,
    sa: &StreamAssignment,
    ca: &ConsumerAssignment,
) {
    cl.consumers.borrow_mut().remove(&ca.group);
    cl.remove_group(ca.group);
    let Some(account) = shard.server.accounts.lookup(&sa.account) else {
        return;
    };
    if let Some(stream) = shard.js.get(account, &sa.config.name) {
        registry::remove_consumer(shard, &stream, &ca.name, true);
    }
}

pub fn set_leading(c: &Consumer, leading: bool) {
    let Some(r) = c.cluster.get() else { return };
    if r.leading.replace(leading) == leading {
        return;
    }
    if leading {
        let rules = c.rules();
        let now_ms = c.now_ms();
        c.state.borrow_mut().restore_deadlines(now_ms, &rules);
        info!("JetStream cluster: this server leads consumer {}", c.name);
    }
    c.wake.notify();
}

/// A committed state (or a snapshot's): a replica that does not lead takes it.
pub fn apply(_cl: &Cluster, c: &Consumer, data: &[u8]) {
    let Some(r) = c.cluster.get() else { return };
    if r.leading.get() || data.is_empty() {
        return;
    }
    match serde_json::from_slice::<ConsumerState>(data) {
        Ok(state) => {
            *c.state.borrow_mut() = state;
            c.dirty.set(true);
        }
        Err(e) => error!(
            "JetStream cluster: consumer {} state entry unreadable: {e}",
            c.name
        ),
    }
}

/// After a turn: proposes the state of each leading consumer that changed.
pub fn propose_changed(cl: &Rc<Cluster>, driver: &mut MultiRaft<FileLogStore>) {
    let consumers: Vec<Rc<Consumer>> = cl
        .consumers
        .borrow()
        .values()
        .filter(|c| {
            c.cluster
                .get()
                .is_some_and(|r| r.leading.get() && r.changed.get() && !r.proposing.get())
        })
        .cloned()
        .collect();
    for c in consumers {
        propose_state(cl, driver, &c);
    }
}

fn propose_state(cl: &Rc<Cluster>, driver: &mut MultiRaft<FileLogStore>, c: &Rc<Consumer>) {
    let r = c.cluster.get().expect("a clustered consumer");
    r.changed.set(false);
    let replies: Vec<Bytes> = r.ack_replies.borrow_mut().drain(..).collect();
    let (tx, rx) = oneshot::channel();
    let proposed = cl.propose_now(driver, r.group, encode_state(c), tx);
    r.proposing.set(proposed);
    let (cl, c) = (cl.clone(), c.clone());
    glommio::spawn_local(async move {
        let answer = rx.await;
        let Some(r) = c.cluster.get() else { return };
        r.proposing.set(false);
        let Some(shard) = cl.shard() else { return };
        let stream = c.stream.upgrade();
        let committed = matches!(answer, Ok(Answer::Count(Ok(_))));
        if let Some(stream) = stream.filter(|_| committed) {
            for reply in replies {
                crate::jetstream::send(&shard, stream.account, &reply, None, b"", b"");
            }
        } else {
            // Not replicated (a leader change): a client's ack_sync times out and
            // it acks again; the state is proposed again if this replica still leads.
            r.changed.set(true);
        }
        if r.changed.get() {
            cl.wake();
        }
    })
    .detach();
}
