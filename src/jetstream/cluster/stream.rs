//! A clustered stream's replica on this server: created when the meta group
//! assigns the stream here, fed by its group's committed entries, and, while it
//! leads, subscribed to the stream's subjects and proposing what is published.

use super::assign::StreamAssignment;
use super::entry::{self, MsgEntry, MsgVerdict, Removal, StreamEntry};
use super::{catchup, Answer, Cluster};
use crate::jetstream::api::errors;
use crate::jetstream::api::types::{ApiError, MsgDeleteRequest, PurgeRequest};
use crate::jetstream::headers::{self, MSG_ID};
use crate::jetstream::persist::{self, Binding};
use crate::jetstream::publish::{self, Accepted, InFlight};
use crate::jetstream::registry;
use crate::jetstream::stream::{Stream, ACKS_WAITING_MAX};
use crate::raft::node::SnapshotState;
use crate::raft::{GroupId, NodeId};
use crate::server::shard::{Msg, Shard};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tracing::{error, info};

/// What a stream replica adds to a stream.
pub struct Replica {
    pub group: GroupId,
    pub peers: RefCell<Vec<NodeId>>,
    /// Leads its group and has applied all that was committed before: it proposes.
    pub leading: Cell<bool>,
    /// The sequence the next proposed message expects (None: after the last stored).
    pub next_seq: Cell<Option<u64>>,
    /// Messages proposed and not yet applied.
    pub in_flight: Cell<usize>,
    /// What they are, for the checks of the next publishes.
    pub proposed: RefCell<InFlight>,
    /// Entries applied since this replica last asked for its log to be compacted.
    pub applied_since_compact: Cell<u64>,
    /// A compaction waits for the store's commit.
    pub compacting: Cell<bool>,
    /// The group's log holds every message after this sequence (see `Binding`).
    pub log_from_seq: Cell<u64>,
    /// The group index of the last entry this replica's store reflects.
    pub applied_index: Cell<u64>,
    /// Entries up to this index are in the store already (from a peer's catch-up).
    pub skip_through: Cell<u64>,
    /// While it catches up from a peer: the entries applied meanwhile.
    pub catching_up: RefCell<Option<super::catchup::Held>>,
}

/// Entries a leader applies between two proposals to compact the group's log.
pub const COMPACT_EVERY_ENTRIES: u64 = 8192;

impl Replica {
    pub fn new(group: GroupId, peers: Vec<NodeId>, log_from_seq: u64) -> Replica {
        Replica {
            log_from_seq: Cell::new(log_from_seq),
            applied_index: Cell::new(0),
            skip_through: Cell::new(0),
            catching_up: RefCell::new(None),
            group,
            peers: RefCell::new(peers),
            leading: Cell::new(false),
            next_seq: Cell::new(None),
            in_flight: Cell::new(0),
            proposed: RefCell::default(),
            applied_since_compact: Cell::new(0),
            compacting: Cell::new(false),
        }
    }

    /// Proposals of this replica may not be applied any more (a refusal, a lost
    /// leadership): the next proposal expects the sequence after the stored one.
    pub fn forget_proposed(&self) {
        self.next_seq.set(None);
        self.proposed.borrow_mut().clear();
    }

    pub fn binding(&self) -> Binding {
        Binding {
            group: self.group,
            peers: self.peers.borrow().clone(),
            log_from_seq: self.log_from_seq.get(),
        }
    }
}

/// The meta group put a replica of `sa` here: create it (or follow its new config).
pub fn ensure_replica(shard: &Rc<Shard>, cl: &Cluster, sa: &StreamAssignment) {
    let Some(account) = shard.server.accounts.lookup(&sa.account) else {
        error!(
            "JetStream cluster: stream {} of unknown account {}",
            sa.config.name, sa.account
        );
        return;
    };
    if let Some(existing) = shard.js.get(account, &sa.config.name) {
        let same_group = existing.cluster.get().map(|r| r.group) == Some(sa.group);
        if same_group {
            cl.streams.borrow_mut().insert(sa.group, existing.clone());
            cl.create_group(sa.group, sa.peers.clone(), sa.joins(cl.node, sa.group));
            if *existing.config.borrow() != sa.config {
                let (shard, config) = (shard.clone(), sa.config.clone());
                glommio::spawn_local(async move {
                    if let Err(e) = registry::update_stream(&shard, &existing, config).await {
                        error!(
                            "JetStream cluster: stream {} update: {}",
                            existing.name, e.description
                        );
                    }
                })
                .detach();
            }
            return;
        }
        error!(
            "JetStream cluster: stream {} is assigned group {} but a stream of that name is here already",
            sa.config.name, sa.group
        );
        return;
    }
    if crate::jetstream::catalog::owner(shard, account, &sa.config.name).is_some_and(|s| s != 0) {
        // Never two owners of one stream's files.
        error!(
            "JetStream cluster: stream {} is open on another shard, not beside its group",
            sa.config.name
        );
        return;
    }
    let shard = shard.clone();
    let sa = sa.clone();
    glommio::spawn_local(async move {
        let Some(cl) = shard.cluster.get().cloned() else {
            return;
        };
        let replica = Replica::new(sa.group, sa.peers.clone(), 0);
        let created = persist::from_ns(sa.created_ns);
        match registry::create_replica(&shard, account, sa.config.clone(), created, Some(replica))
            .await
        {
            Ok(stream) => {
                shard.catalog.add_clustered(account, &stream);
                cl.streams.borrow_mut().insert(sa.group, stream);
                cl.create_group(sa.group, sa.peers.clone(), sa.joins(cl.node, sa.group));
                info!(
                    "JetStream cluster: created a replica of stream {} (group {})",
                    sa.config.name, sa.group
                );
            }
            Err(e) => error!(
                "JetStream cluster: could not create a replica of stream {}: {}",
                sa.config.name, e.description
            ),
        }
    })
    .detach();
}

/// The stream's replicas moved: this server's replica is created (empty, joining
/// the groups), or follows the new peers (leaving ones go when the move ends).
pub fn move_replica(shard: &Rc<Shard>, cl: &Cluster, sa: &StreamAssignment, old: &[NodeId]) {
    let (was, is) = (old.contains(&cl.node), sa.peers.contains(&cl.node));
    if !was && !is {
        return;
    }
    // A leaving replica stays a voter until the move ends (`StreamLeft`); its
    // group's leader, whichever it is, moves the members towards the new peers.
    if let Some(stream) = cl.streams.borrow().get(&sa.group).cloned() {
        let r = stream.cluster.get().expect("a clustered stream");
        *r.peers.borrow_mut() = sa.peers.clone();
        if let Some(dir) = &stream.dir {
            if let Err(e) = persist::save_binding(dir, &r.binding()) {
                error!("JetStream cluster: stream {}: {e}", stream.name);
            }
        }
    }
    if !is {
        return;
    }
    ensure_replica(shard, cl, sa);
    if !was {
        for ca in sa.consumers.values() {
            super::consumer::ensure_replica(shard, sa, ca);
        }
    }
}

/// The stream was deleted: its replica here goes, with its consumers' groups.
pub fn remove_replica(shard: &Rc<Shard>, cl: &Cluster, sa: &StreamAssignment) {
    for ca in sa.consumers.values() {
        cl.consumers.borrow_mut().remove(&ca.group);
        cl.remove_group(ca.group);
    }
    let stream = cl.streams.borrow_mut().remove(&sa.group);
    cl.remove_group(sa.group);
    let Some(stream) = stream else { return };
    shard.catalog.remove(stream.account, &stream.name);
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let _ = registry::delete_stream(&shard, &stream).await;
    })
    .detach();
}

/// The replica here became its group's ready leader, or stopped leading.
pub fn set_leading(shard: &Rc<Shard>, stream: &Rc<Stream>, leading: bool) {
    let Some(r) = stream.cluster.get() else {
        return;
    };
    r.next_seq.set(None);
    if leading && r.catching_up.borrow().is_some() {
        hand_on_leadership(shard, r.group, &stream.name);
        return;
    }
    if r.leading.replace(leading) == leading {
        return;
    }
    if leading {
        registry::subscribe_subjects(shard, stream);
        info!(
            "JetStream cluster: this server leads stream {}",
            stream.name
        );
    } else {
        registry::unsubscribe_subjects(shard, stream);
    }
}

/// A replica catching up does not lead: its store lacks messages.
pub fn hand_on_leadership(shard: &Rc<Shard>, group: GroupId, name: &str) {
    info!("JetStream cluster: stream {name} is catching up here; leadership is handed on");
    let Some(cl) = shard.cluster.get().cloned() else {
        return;
    };
    glommio::spawn_local(async move {
        if let Err(e) = cl.step_down(group).await {
            error!(
                "JetStream cluster: group {group} kept its leader: {}",
                e.description
            );
        }
    })
    .detach();
}

/// A publish reached the leader: checked, then proposed; its PubAck goes out once
/// the entry is applied here (`apply_msg`).
pub fn on_publish(shard: &Shard, stream: &Rc<Stream>, msg: &Msg) {
    let Some(r) = stream.cluster.get() else {
        return;
    };
    let Some(cl) = shard.cluster.get() else {
        return;
    };
    if !r.leading.get() || r.catching_up.borrow().is_some() {
        // Under way when this replica stopped leading, or it leads while it catches
        // up (handing leadership on): the publisher's retry finds the next leader.
        return;
    }
    let reply = msg.reply.map(Bytes::copy_from_slice);
    let size = publish::stored_size(msg.subject, msg.payload);
    let refused = |e: ApiError| publish::queue_ack(shard, stream, reply.clone(), size, Err(e));
    if let Some(e) = registry::over_storage_limit(shard, stream, size) {
        return refused(e);
    }
    if r.in_flight.get() >= ACKS_WAITING_MAX {
        return refused(errors::store_failed(
            "too many publishes waiting for replication",
        ));
    }
    let subject = match publish::accept(stream, msg, Some(&r.proposed.borrow())) {
        Err(e) => return refused(e),
        Ok(Accepted::Duplicate(seq)) => {
            let dup = publish::Stored {
                ticket: None,
                seq,
                republish: None,
            };
            return publish::queue_ack(shard, stream, reply, size, Ok(dup));
        }
        Ok(Accepted::New { subject }) => subject,
    };
    let seq = r
        .next_seq
        .get()
        .unwrap_or_else(|| stream.store.state().last_seq + 1);
    let (hdrs, payload) = msg.payload.split_at(msg.header_len);
    let entry = MsgEntry {
        seq,
        ts_ns: crate::jetstream::now_ns(),
        proposer: cl.node,
        reply: reply
            .clone()
            .filter(|_| !stream.config.borrow().no_ack)
            .unwrap_or_default(),
        subject: Bytes::from(subject),
        headers: Bytes::copy_from_slice(hdrs),
        payload: Bytes::copy_from_slice(payload),
    };
    let owner = stream.clone();
    // Refused by the driver (no longer the leader, a transfer under way): no answer.
    // During a change of leader the new one may have taken the same publish, so an
    // error here could tell a client "failed" of a message that is stored; the
    // client times out instead, an honest "unknown".
    let on_refused = Box::new(move |_: ApiError| {
        if let Some(r) = owner.cluster.get() {
            r.forget_proposed();
            r.in_flight.set(r.in_flight.get().saturating_sub(1));
        }
    });
    let msg_id = headers::get(hdrs, MSG_ID).filter(|id| !id.is_empty());
    let subject = String::from_utf8_lossy(&entry.subject).into_owned();
    match cl.propose_publish(r.group, entry.encode(), on_refused) {
        Ok(()) => {
            r.next_seq.set(Some(seq + 1));
            r.in_flight.set(r.in_flight.get() + 1);
            r.proposed.borrow_mut().add(seq, &subject, msg_id);
        }
        Err(e) => refused(e),
    }
}

/// An entry of the stream's group was committed: every replica applies it alike.
pub fn apply(cl: &Cluster, stream: &Rc<Stream>, data: &Bytes) -> Option<Answer> {
    let shard = cl.shard()?;
    match entry::decode(data)? {
        StreamEntry::Msg(m) => {
            apply_msg(&shard, cl.node, stream, m);
            count_for_compaction(cl, stream);
            None
        }
        StreamEntry::Compact(up_to) => {
            compact_when_durable(cl, stream, up_to);
            None
        }
        StreamEntry::Purge(r) => Some(Answer::Count(purge(stream, &r))),
        StreamEntry::Delete(r) => Some(Answer::Count(delete(stream, &r))),
    }
}

/// A leader asks for the group's log to be compacted every so many entries (the
/// stream's store holds the messages: the log need not keep them).
fn count_for_compaction(cl: &Cluster, stream: &Stream) {
    let r = stream.cluster.get().expect("a clustered stream");
    let n = r.applied_since_compact.get() + 1;
    r.applied_since_compact.set(n);
    if n >= COMPACT_EVERY_ENTRIES && r.leading.get() {
        r.applied_since_compact.set(0);
        cl.propose_compaction(r.group);
    }
}

/// Raft needs a snapshot of the group at its applied index (for a peer that lacks
/// what the log no longer holds): the log is compacted there once the store has
/// made durable all it applied, messages and removals alike, behind a snapshot
/// that says "every message this store holds". A snapshot taken before that could
/// cover a message or a delete this store still loses in a crash, leaving it (and
/// a peer restored from it) without them for good. Raft asks again meanwhile.
pub fn snapshot(cl: &Cluster, stream: &Rc<Stream>, applied: u64) -> SnapshotState {
    compact_when_durable(cl, stream, applied);
    SnapshotState::Later
}

/// Compacts this replica's log up to `up_to` once the store has made durable what
/// was applied (everything up to `up_to` among it).
fn compact_when_durable(cl: &Cluster, stream: &Rc<Stream>, up_to: u64) {
    let (Some(shard), Some(r)) = (cl.shard(), stream.cluster.get()) else {
        return;
    };
    if r.catching_up.borrow().is_some() {
        // The entries it holds meanwhile are in the log only: a snapshot of the
        // store would drop them. Raft asks again.
        return;
    }
    if r.compacting.replace(true) {
        return; // the one under way compacts far enough; Raft asks again if not
    }
    let (stream, group) = (stream.clone(), r.group);
    // Every message after this one was applied after the entry asking for the
    // compaction, so after `up_to`: the log keeps it.
    let log_from_seq = stream.store.state().last_seq;
    let held = catchup::SnapshotHeld::of_store(&stream.store, log_from_seq);
    glommio::spawn_local(async move {
        let durable = stream.store.sync().await.map_err(|e| e.to_string());
        if let Some(r) = stream.cluster.get() {
            r.compacting.set(false);
        }
        let Some(cl) = shard.cluster.get().cloned() else {
            return;
        };
        match durable.and_then(|_| record_log_start(&stream, log_from_seq)) {
            Ok(()) => cl.compact_log(group, up_to, held.encode()),
            Err(e) => error!(
                "JetStream cluster: stream {} not compacted: {e}",
                stream.name
            ),
        }
    })
    .detach();
}

/// Records (durably, before the log is compacted) from which sequence on the
/// group's log holds the stream's messages.
fn record_log_start(stream: &Stream, log_from_seq: u64) -> Result<(), String> {
    let r = stream.cluster.get().expect("a clustered stream");
    if log_from_seq <= r.log_from_seq.get() {
        return Ok(());
    }
    r.log_from_seq.set(log_from_seq);
    match &stream.dir {
        Some(dir) => persist::save_binding(dir, &r.binding()).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

fn apply_msg(shard: &Shard, node: NodeId, stream: &Stream, m: MsgEntry) {
    let mine = m.proposer == node;
    let r = stream.cluster.get().expect("a clustered stream");
    let subject = String::from_utf8_lossy(&m.subject);
    if mine {
        r.in_flight.set(r.in_flight.get().saturating_sub(1));
        let msg_id = headers::get(&m.headers, MSG_ID).filter(|id| !id.is_empty());
        r.proposed.borrow_mut().remove(&subject, msg_id);
    }
    match entry::verdict(m.seq, stream.store.state().last_seq) {
        MsgVerdict::AlreadyStored => return,
        // No answer to the proposer's client (see `on_publish`): another leader
        // may have stored the same publish.
        MsgVerdict::Refuse => {
            if mine {
                r.forget_proposed();
            }
            return;
        }
        MsgVerdict::Store => {}
    }
    let reply = (!m.reply.is_empty()).then(|| m.reply.clone());
    let size = publish::stored_size(&m.subject, &m.payload);
    let outcome = publish::append(stream, &subject, &m.headers, &m.payload, Some(m.ts_ns));
    if let Ok(stored) = &outcome {
        debug_assert_eq!(stored.seq, m.seq);
    }
    if mine {
        // Its ack's turn in `ack_loop` wakes the consumers.
        publish::queue_ack(shard, stream, reply, size, outcome);
    } else if outcome.is_ok() {
        count_stored(shard, stream, size);
    }
}

/// A message a replica stored without a publisher to answer (a follower applying
/// its group's entry, or a catch-up batch): counted in the account's usage, and
/// committed with the store's next batch.
pub fn count_stored(shard: &Shard, stream: &Stream, size: u64) {
    let medium = registry::medium(stream);
    shard
        .server
        .js_usage
        .add(shard.id, stream.account, medium, size);
    stream.commit_needed.notify();
    crate::jetstream::stream::wake_consumers_if_deliverable(stream);
}

/// The stream's last sequence, checked against what the removal's leader saw:
/// ahead of it is a replay after a restart (the store holds what was applied after
/// it); behind it, a message proposed before it was refused (the same on every
/// replica): the request fails.
fn check_through(through_seq: u64, last_seq: u64) -> Result<(), ApiError> {
    if last_seq < through_seq {
        return Err(errors::general(
            "the stream changed under the request, try again",
        ));
    }
    Ok(())
}

/// The purge a replica applies for a purge entry, by its store's last sequence:
/// never past the sequence the leader saw, whatever the request's own bound.
pub fn bounded_purge(
    mut req: PurgeRequest,
    through_seq: u64,
    last_seq: u64,
) -> Result<PurgeRequest, ApiError> {
    check_through(through_seq, last_seq)?;
    if through_seq < last_seq {
        req.seq = Some(req.seq.map_or(through_seq + 1, |s| s.min(through_seq + 1)));
    }
    Ok(req)
}

/// Whether a replica deletes message `seq` for a delete entry, by its store's last
/// sequence: only one the leader could see.
pub fn check_delete(seq: u64, through_seq: u64, last_seq: u64) -> Result<(), ApiError> {
    check_through(through_seq, last_seq)?;
    if seq > through_seq {
        return Err(errors::sequence_not_found(seq));
    }
    Ok(())
}

fn purge(stream: &Stream, removal: &Removal) -> Result<u64, ApiError> {
    let req: PurgeRequest = if removal.body.is_empty() {
        PurgeRequest::default()
    } else {
        serde_json::from_slice(&removal.body).map_err(errors::invalid_json)?
    };
    let last = stream.store.state().last_seq;
    let req = bounded_purge(req, removal.through_seq, last)?;
    registry::purge_now(stream, &req)
}

fn delete(stream: &Stream, removal: &Removal) -> Result<u64, ApiError> {
    let req: MsgDeleteRequest =
        serde_json::from_slice(&removal.body).map_err(errors::invalid_json)?;
    check_delete(req.seq, removal.through_seq, stream.store.state().last_seq)?;
    registry::delete_now(stream, &req).map(|()| 1)
}
