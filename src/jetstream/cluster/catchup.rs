//! Catching a stream replica up from a peer's store, for messages its group's log
//! no longer holds (a damaged record older than the log's start).
//!
//! The replica asks the group's leader for the messages after its store's last, in
//! batches (another peer when the leader does not answer; only a ready leader
//! serves). It answers from its store with the last sequence it holds and the
//! group index its store reflects, both read at once. While
//! it catches up, the replica keeps the entries its group applies (bounded) instead
//! of applying them; once its store holds what the peer holds at index `A`, it
//! applies those it kept after `A` and ignores any entry up to `A` still to come.
//! A replica catching up never leads: it hands leadership on.
//!
//! Subjects, in the system account: `$NRX.SC.<node>.Q.<group>` asks server `node`;
//! the answer comes to `$NRX.SC.<asker>.A.<group>`; `$NRX.SC.<node>.D.<group>`
//! (with the same reply subject) tells the peer last asked that the asker has
//! caught up. `$NRX.SC.<meta leader>.S.<group>` reports a moving stream's group
//! settled (handled in `moves`); `G` and `H` are a removal's question and answer
//! (handled in `gone`).

use super::entry::{self, MsgEntry};
use super::Cluster;
use crate::jetstream::stream::Stream;
use crate::jetstream::{publish, registry};
use crate::raft::{GroupId, NodeId};
use crate::server::shard::{Msg, Shard};
use bytes::{Buf, BufMut, Bytes};
use futures_channel::oneshot;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;
use tracing::{info, warn};

/// Entries a catching-up replica keeps at most (bytes); past it they are dropped and
/// the catch-up goes on until a peer's state covers them.
const HELD_BYTES_MAX: usize = 64 << 20;
/// How long a peer has to answer one batch request.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Pause after a round in which no peer answered.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Messages in one batch at most.
const BATCH_MSGS_MAX: usize = 1024;
const FIXED_BYTES: usize = 1 + 8 * 5 + 4 + 4;
/// Runs of deleted sequences one batch or snapshot names at most (256 KiB); a
/// catch-up asks for the rest in later batches.
pub const RUNS_MAX: usize = 16_384;
/// Batch requests this server serves at once; more are answered "refused" (the
/// asker tries again after a pause).
const SERVING_MAX: usize = 16;

pub fn subscription(node: NodeId) -> String {
    format!("$NRX.SC.{node}.>")
}

fn request_subject(peer: NodeId, group: GroupId) -> String {
    format!("$NRX.SC.{peer}.Q.{group}")
}

fn answer_subject(me: NodeId, group: GroupId) -> String {
    format!("$NRX.SC.{me}.A.{group}")
}

fn done_subject(peer: NodeId, group: GroupId) -> String {
    format!("$NRX.SC.{peer}.D.{group}")
}

/// The asking server, from the reply subject of its request.
fn asker_of(reply: &[u8]) -> Option<NodeId> {
    std::str::from_utf8(reply)
        .ok()?
        .split('.')
        .nth(2)?
        .parse()
        .ok()
}

/// What a catching-up replica asks a peer for: messages from `from_seq`, and the
/// peer's deletions below it from `deleted_from` on (the earlier ones came in
/// earlier batches).
#[derive(Debug, Serialize, Deserialize)]
struct BatchRequest {
    from_seq: u64,
    #[serde(default = "first_seq")]
    deleted_from: u64,
}

fn first_seq() -> u64 {
    1
}

/// A peer's answer: messages from the asked sequence through `through_seq` (the
/// gaps are deleted messages), and the peer's store state when it began to answer:
/// with what it removed before the asked sequence (purged below `first_seq`, and
/// the runs of `deleted` from the asked `deleted_from` through `deleted_through`),
/// which the asker may still hold (the entries that removed them are no longer in
/// the group's log, or the asker skips them).
#[derive(Debug, Default, PartialEq)]
struct Batch {
    /// The peer cannot serve (it is catching up itself, or has no such replica).
    refused: bool,
    through_seq: u64,
    /// The last sequence of the peer's store, and the group index it reflects.
    last_seq: u64,
    applied_index: u64,
    first_seq: u64,
    deleted: Vec<(u64, u64)>,
    deleted_through: u64,
    msgs: Vec<MsgEntry>,
}

fn put_runs(out: &mut Vec<u8>, runs: &[(u64, u64)]) {
    debug_assert!(runs.len() <= RUNS_MAX);
    out.put_u32_le(runs.len() as u32);
    for (first, last) in runs {
        out.put_u64_le(*first);
        out.put_u64_le(*last);
    }
}

/// None when the count is past `RUNS_MAX`, the data is short, or a run is not one.
fn get_runs(data: &mut &[u8]) -> Option<Vec<(u64, u64)>> {
    if data.len() < 4 {
        return None;
    }
    let count = data.get_u32_le() as usize;
    if count > RUNS_MAX || data.len() < count * 16 {
        return None;
    }
    let runs: Vec<(u64, u64)> = (0..count)
        .map(|_| (data.get_u64_le(), data.get_u64_le()))
        .collect();
    runs.iter().all(|(a, b)| a <= b).then_some(runs)
}

impl Batch {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_BYTES);
        out.put_u8(u8::from(self.refused));
        out.put_u64_le(self.through_seq);
        out.put_u64_le(self.last_seq);
        out.put_u64_le(self.applied_index);
        out.put_u64_le(self.first_seq);
        out.put_u64_le(self.deleted_through);
        put_runs(&mut out, &self.deleted);
        out.put_u32_le(self.msgs.len() as u32);
        for m in &self.msgs {
            let e = m.encode();
            out.put_u32_le(e.len() as u32);
            out.extend_from_slice(&e);
        }
        out
    }

    fn decode(mut data: Bytes) -> Option<Batch> {
        if data.len() < FIXED_BYTES {
            return None;
        }
        let mut b = Batch {
            refused: data.get_u8() != 0,
            through_seq: data.get_u64_le(),
            last_seq: data.get_u64_le(),
            applied_index: data.get_u64_le(),
            first_seq: data.get_u64_le(),
            deleted_through: data.get_u64_le(),
            deleted: Vec::new(),
            msgs: Vec::new(),
        };
        let mut rest: &[u8] = &data;
        b.deleted = get_runs(&mut rest)?;
        data.advance(data.len() - rest.len());
        if data.len() < 4 {
            return None;
        }
        let count = data.get_u32_le() as usize;
        for _ in 0..count {
            if data.len() < 4 {
                return None;
            }
            let len = data.get_u32_le() as usize;
            if len > data.len() {
                return None;
            }
            let e = data.split_to(len);
            match entry::decode(&e)? {
                entry::StreamEntry::Msg(m) => b.msgs.push(m),
                _ => return None,
            }
        }
        data.is_empty().then_some(b)
    }

    fn is_final(&self) -> bool {
        self.through_seq >= self.last_seq
    }
}

/// A catching-up replica's entries kept meanwhile.
#[derive(Debug, Default)]
pub struct Held {
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// The highest index dropped for want of room (0: none).
    dropped_through: u64,
    /// The catch-up takes batches only from a peer state of this group index or
    /// later: what the replica had applied when a damaged record cut its store at
    /// run time (its removals since are not in the group's entries to come).
    reach_index: u64,
}

impl Held {
    pub fn hold(&mut self, index: u64, data: &Bytes) {
        if self.bytes + data.len() > HELD_BYTES_MAX {
            self.entries.clear();
            self.bytes = 0;
            self.dropped_through = index;
            return;
        }
        debug_assert!(self.entries.back().is_none_or(|(i, _)| *i < index));
        self.bytes += data.len();
        self.entries.push_back((index, data.clone()));
    }
}

/// A group's entry was applied here: apply it to the replica, or keep it while the
/// replica catches up, or skip it (its effect came with a peer's messages).
pub fn apply(cl: &Cluster, stream: &Rc<Stream>, index: u64, data: &Bytes) -> Option<super::Answer> {
    let r = stream.cluster.get().expect("a clustered stream");
    if index <= r.skip_through.get() {
        return applies_again(data)
            .then(|| super::stream::apply(cl, stream, data))
            .flatten();
    }
    if let Some(held) = r.catching_up.borrow_mut().as_mut() {
        held.hold(index, data);
        return None;
    }
    r.applied_index.set(index);
    super::stream::apply(cl, stream, data)
}

/// Whether an entry up to a catch-up's peer index is applied all the same: a
/// removal. The peer named its deletions in batches, and one it made after the
/// batch that covered the sequence reaches the replica only so; applied to a store
/// that reflects it already, a removal removes nothing.
pub fn applies_again(data: &Bytes) -> bool {
    matches!(
        entry::decode(data),
        Some(entry::StreamEntry::Purge(_) | entry::StreamEntry::Delete(_))
    )
}

/// A stream group's snapshot: what every replica's store holds at its index, the
/// messages through `held_seq`, and the removals among them (purged below
/// `first_seq`, and the runs of `deleted` ones, all of them when `complete`). A
/// replica restoring it removes those too (the entries that removed them are no
/// longer in the log), and catches up when it lacks messages or deletions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotHeld {
    pub held_seq: u64,
    pub first_seq: u64,
    pub deleted: Vec<(u64, u64)>,
    pub complete: bool,
}

const SNAPSHOT_FIXED_BYTES: usize = 8 + 8 + 1 + 4;

impl SnapshotHeld {
    /// A store's messages through `held_seq`: its state, and its deletions
    /// through `held_seq` (`deleted_runs(1, held_seq, RUNS_MAX)`).
    pub fn of(
        state: &natrix_storage::StreamState,
        deleted: natrix_storage::DeletedRuns,
        held_seq: u64,
    ) -> Self {
        SnapshotHeld {
            held_seq,
            first_seq: state.first_seq.min(held_seq + 1),
            deleted: deleted.runs,
            complete: deleted.complete,
        }
    }

    pub fn of_store(store: &natrix_storage::Store, held_seq: u64) -> Self {
        Self::of(
            &store.state(),
            store.deleted_runs(1, held_seq, RUNS_MAX),
            held_seq,
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SNAPSHOT_FIXED_BYTES + 16 * self.deleted.len());
        out.put_u64_le(self.held_seq);
        out.put_u64_le(self.first_seq);
        out.put_u8(u8::from(self.complete));
        put_runs(&mut out, &self.deleted);
        out
    }

    /// None for data that is not a stream snapshot (a new replica's empty one).
    pub fn decode(mut data: &[u8]) -> Option<Self> {
        if data.len() < SNAPSHOT_FIXED_BYTES {
            return None;
        }
        let held_seq = data.get_u64_le();
        let first_seq = data.get_u64_le();
        let complete = data.get_u8() != 0;
        let deleted = get_runs(&mut data)?;
        data.is_empty().then_some(SnapshotHeld {
            held_seq,
            first_seq,
            deleted,
            complete,
        })
    }
}

/// A snapshot of the stream's group was applied here. At start-up (`at_start`) it
/// is this server's own: its store made durable all that the snapshot covers
/// before the log was compacted. One a leader sent is restored: what it removed
/// is removed here, and a replica that lacks messages (a new one, or one far
/// behind), or was not told of every deletion, catches up.
pub fn on_snapshot(cl: &Cluster, stream: &Rc<Stream>, index: u64, data: &[u8], at_start: bool) {
    let r = stream.cluster.get().expect("a clustered stream");
    // A new replica's snapshot is empty: it holds nothing, and nothing was removed.
    let held = SnapshotHeld::decode(data).unwrap_or(SnapshotHeld {
        complete: true,
        ..SnapshotHeld::default()
    });
    if let Err(e) = remove_as_peer(stream, held.first_seq, &held.deleted) {
        warn!(
            "JetStream cluster: stream {} restoring a snapshot: {}",
            stream.name, e.description
        );
    }
    let told_all = held.complete || at_start;
    if told_all && stream.store.state().last_seq >= held.held_seq {
        r.applied_index.set(r.applied_index.get().max(index));
        return;
    }
    if r.catching_up.borrow().is_some() {
        return;
    }
    if let Some(shard) = cl.shard() {
        start(&shard, stream);
    }
}

/// A peer asked (`Q`) or answered (`A`) on this server's catch-up subject, or a
/// group's leader reported its group settled (`S`, to the meta leader).
pub fn on_message(shard: &Shard, msg: &Msg) {
    let Some(cl) = shard.cluster.get().cloned() else {
        return;
    };
    let subject = String::from_utf8_lossy(msg.subject);
    let mut tokens = subject.split('.').skip(3);
    let (Some(kind), Some(group)) = (tokens.next(), tokens.next()) else {
        return;
    };
    let Ok(group) = group.parse::<GroupId>() else {
        return;
    };
    match kind {
        "Q" => {
            let Some(reply) = msg.reply.map(Bytes::copy_from_slice) else {
                return;
            };
            let Ok(req) = serde_json::from_slice::<BatchRequest>(msg.payload) else {
                return;
            };
            if let Some(asker) = asker_of(&reply) {
                let now = std::time::Instant::now();
                cl.askers.asked(group, asker, req.from_seq, now);
            }
            let Some(shard) = cl.shard() else { return };
            let system = shard.server.accounts.system();
            if cl.catchup_serving.get() >= SERVING_MAX {
                let busy = Batch {
                    refused: true,
                    ..Batch::default()
                };
                crate::jetstream::send(&shard, system, &reply, None, b"", &busy.encode());
                return;
            }
            cl.catchup_serving.set(cl.catchup_serving.get() + 1);
            glommio::spawn_local(async move {
                let batch = serve(&shard, &cl, group, &req).await;
                cl.catchup_serving.set(cl.catchup_serving.get() - 1);
                crate::jetstream::send(&shard, system, &reply, None, b"", &batch.encode());
            })
            .detach();
        }
        "A" => {
            if let Some(tx) = cl.catchup_answers.borrow_mut().remove(&group) {
                let _ = tx.send(Bytes::copy_from_slice(msg.payload));
            }
        }
        "D" => {
            if let Some(asker) = msg.reply.and_then(asker_of) {
                cl.askers.done(group, asker);
            }
        }
        "S" if cl.is_meta_leader() => super::moves::on_settled(cl, group, msg.payload),
        "G" => {
            if let Some(reply) = msg.reply {
                super::gone::on_question(&cl, group, Bytes::copy_from_slice(reply));
            }
        }
        "H" => super::gone::on_answer(&cl, group),
        _ => {}
    }
}

/// Reads a batch from this server's replica of `group`.
async fn serve(shard: &Shard, cl: &Cluster, group: GroupId, req: &BatchRequest) -> Batch {
    let from_seq = req.from_seq.max(1);
    let refused = Batch {
        refused: true,
        ..Batch::default()
    };
    let Some(stream) = cl.streams.borrow().get(&group).cloned() else {
        return refused;
    };
    let r = stream.cluster.get().expect("a clustered stream");
    // Only the ready leader answers: it has applied everything committed before its
    // term, so its store is exactly the group's state at its applied index (a
    // follower replaying its log after a restart holds more than that index says).
    let ready = cl.view(group).ready;
    if !ready || r.catching_up.borrow().is_some() || stream.store.lost_from(from_seq) {
        return refused;
    }
    let state = stream.store.state();
    let below = from_seq - 1;
    let deleted = stream
        .store
        .deleted_runs(req.deleted_from.max(1), below, RUNS_MAX);
    let mut batch = Batch {
        through_seq: state.last_seq,
        last_seq: state.last_seq,
        applied_index: r.applied_index.get(),
        first_seq: state.first_seq,
        deleted_through: if deleted.complete {
            below
        } else {
            deleted.through
        },
        deleted: deleted.runs,
        ..Batch::default()
    };
    let last_seq = state.last_seq;
    if from_seq > last_seq {
        return batch;
    }
    let Ok(found) = stream.store.range(from_seq, last_seq, BATCH_MSGS_MAX).await else {
        return refused;
    };
    let (whole_range, found_msgs) = (found.len() < BATCH_MSGS_MAX, found.len());
    let bytes_max = (shard.server.opts.max_payload / 2).max(1);
    let mut bytes = 0;
    for m in found {
        let size = m.subject.len() + m.headers.len() + m.payload.len() + 64;
        if !batch.msgs.is_empty() && bytes + size > bytes_max {
            break;
        }
        bytes += size;
        batch.msgs.push(MsgEntry {
            seq: m.seq,
            ts_ns: m.timestamp_ns,
            proposer: 0,
            reply: Bytes::new(),
            subject: Bytes::from(m.subject.into_bytes()),
            headers: m.headers,
            payload: m.payload,
        });
    }
    if !whole_range || batch.msgs.len() < found_msgs {
        batch.through_seq = batch.msgs.last().map_or(from_seq, |m| m.seq);
    }
    batch
}

/// Starts catching `stream` up (its store lost messages its group's log no longer holds).
pub fn start(shard: &Rc<Shard>, stream: &Rc<Stream>) {
    let r = stream.cluster.get().expect("a clustered stream");
    *r.catching_up.borrow_mut() = Some(Held::default());
    let (shard, stream) = (shard.clone(), stream.clone());
    glommio::spawn_local(async move { run(&shard, &stream).await }).detach();
}

/// A read found the record at `seq` damaged while the server runs: the replica
/// drops it and every later one, hands on the leaderships it holds (stream and
/// consumers), and gets them again from a peer. Its group's log no longer offers
/// them (they were applied), so they come as in a catch-up, from a peer whose
/// store reflects at least what this replica had applied. A stream of one server
/// has no peer: its damaged record stays lost (reported, never served).
pub fn repair_damaged(shard: &Rc<Shard>, stream: &Rc<Stream>, seq: u64) {
    let Some(r) = stream.cluster.get() else {
        return;
    };
    if r.catching_up.borrow().is_some() || stream.deleted.get() {
        return; // a repair or catch-up is under way; it cut the store already
    }
    *r.catching_up.borrow_mut() = Some(Held {
        reach_index: r.applied_index.get(),
        ..Held::default()
    });
    r.forget_proposed();
    warn!(
        "JetStream cluster: stream {}: damaged record at sequence {seq} found on read; this replica drops sequences {seq} and later, to get them again from a peer",
        stream.name
    );
    hand_on_leaderships(shard, stream);
    let (shard, stream) = (shard.clone(), stream.clone());
    glommio::spawn_local(async move {
        if let Err(e) = stream.store.truncate_from(seq).await {
            // The catch-up asks from the store's last sequence on, cut or not.
            warn!(
                "JetStream cluster: stream {}: could not cut the damaged records: {e}",
                stream.name
            );
        }
        run(&shard, &stream).await
    })
    .detach();
}

/// The stream's leadership and those of its consumers, where this replica holds
/// them, go to other replicas.
fn hand_on_leaderships(shard: &Rc<Shard>, stream: &Stream) {
    let Some(cl) = shard.cluster.get() else {
        return;
    };
    let r = stream.cluster.get().expect("a clustered stream");
    let mut groups = vec![r.group];
    groups.extend(
        stream
            .consumers
            .borrow()
            .values()
            .filter_map(|c| c.cluster.get().map(|cr| cr.group)),
    );
    for group in groups.into_iter().filter(|g| cl.leads(*g)) {
        super::stream::hand_on_leadership(shard, group, &stream.name);
    }
}

async fn run(shard: &Rc<Shard>, stream: &Rc<Stream>) {
    let r = stream.cluster.get().expect("a clustered stream");
    info!(
        "JetStream cluster: stream {} catches up from its peers after sequence {}",
        stream.name,
        stream.store.state().last_seq
    );
    let mut round = 0usize;
    let mut deletions = Deletions::default();
    loop {
        if stream.deleted.get() {
            return;
        }
        let Some(cl) = shard.cluster.get().cloned() else {
            glommio::timer::sleep(RETRY_PAUSE).await;
            continue;
        };
        let peers = ask_order(&cl, r.group, &r.peers.borrow());
        let Some(peer) = peers.get(round % peers.len().max(1)).copied() else {
            glommio::timer::sleep(RETRY_PAUSE).await;
            continue;
        };
        let from_seq = stream.store.state().last_seq + 1;
        let deleted_from = deletions.next_from(peer);
        let req = BatchRequest {
            from_seq,
            deleted_from,
        };
        let Some(batch) = ask(shard, &cl, peer, r.group, &req).await else {
            round += 1;
            if round.is_multiple_of(peers.len()) {
                // Only a ready leader serves: one that leads while it catches up
                // (its hand-on failed) must try again, or none ever serves.
                if cl.leads(r.group) {
                    super::stream::hand_on_leadership(shard, r.group, &stream.name);
                }
                glommio::timer::sleep(RETRY_PAUSE).await;
            }
            continue;
        };
        let reach_index = r.catching_up.borrow().as_ref().map_or(0, |h| h.reach_index);
        if batch.applied_index < reach_index {
            // A peer behind what this replica had applied: its messages and the
            // removals it names may predate removals this replica applied already.
            glommio::timer::sleep(RETRY_PAUSE).await;
            continue;
        }
        if let Err(e) = store_batch(shard, stream, &batch) {
            warn!(
                "JetStream cluster: stream {} catch-up: {}",
                stream.name, e.description
            );
            glommio::timer::sleep(RETRY_PAUSE).await;
            continue;
        }
        deletions.told(
            peer,
            deleted_from,
            batch.applied_index,
            batch.deleted_through,
        );
        // A peer behind this store cannot say which entries to apply again.
        let synced = batch.is_final() && stream.store.state().last_seq == batch.last_seq;
        if !synced && batch.is_final() {
            round += 1;
            glommio::timer::sleep(RETRY_PAUSE).await;
            continue;
        }
        if synced && deletions.all_below(from_seq) && finish(&cl, stream, &batch, &mut deletions) {
            // The store's commits do not sync (its group's log holds what they
            // write), but the log lacks what a catch-up brought: synced now.
            if let Err(e) = stream.store.sync().await {
                warn!(
                    "JetStream cluster: stream {} catch-up: sync failed: {e}",
                    stream.name
                );
            }
            let system = shard.server.accounts.system();
            crate::jetstream::send(
                shard,
                system,
                done_subject(peer, r.group).as_bytes(),
                Some(answer_subject(cl.node, r.group).as_bytes()),
                b"",
                b"",
            );
            info!(
                "JetStream cluster: stream {} caught up through sequence {}",
                stream.name, batch.last_seq
            );
            return;
        }
    }
}

/// The group's leader first, then the other peers.
fn ask_order(cl: &Cluster, group: GroupId, peers: &[NodeId]) -> Vec<NodeId> {
    let leader = cl.view(group).leader;
    let mut order: Vec<NodeId> = peers.iter().copied().filter(|p| *p != cl.node).collect();
    order.sort_by_key(|p| *p != leader);
    order
}

async fn ask(
    shard: &Shard,
    cl: &Cluster,
    peer: NodeId,
    group: GroupId,
    req: &BatchRequest,
) -> Option<Batch> {
    let (tx, rx) = oneshot::channel();
    cl.catchup_answers.borrow_mut().insert(group, tx);
    let body = serde_json::to_vec(req).expect("serializable");
    let system = shard.server.accounts.system();
    crate::jetstream::send(
        shard,
        system,
        request_subject(peer, group).as_bytes(),
        Some(answer_subject(cl.node, group).as_bytes()),
        b"",
        &body,
    );
    let answer = super::answer_within(rx, ANSWER_WAIT).await;
    cl.catchup_answers.borrow_mut().remove(&group);
    Batch::decode(answer?).filter(|b| !b.refused)
}

/// Removes what the peer removed before the asked sequence, then appends the
/// batch's messages, leaving the gaps between them deleted.
fn store_batch(
    shard: &Shard,
    stream: &Stream,
    batch: &Batch,
) -> Result<(), crate::jetstream::api::types::ApiError> {
    remove_as_peer(stream, batch.first_seq, &batch.deleted)?;
    for m in &batch.msgs {
        skip_to(stream, m.seq)?;
        let subject = String::from_utf8_lossy(&m.subject);
        let size = publish::stored_size(&m.subject, &m.payload);
        publish::append(stream, &subject, &m.headers, &m.payload, Some(m.ts_ns))?;
        super::stream::count_stored(shard, stream, size);
    }
    skip_to(stream, batch.through_seq + 1)?;
    stream.commit_needed.notify();
    Ok(())
}

/// What a store in `state` removes to match a peer that purged below `first_seq`
/// and deleted the runs `deleted`: a purge below the sequence returned, if any,
/// and the deleted sequences among those it holds (some may be gone here already).
pub fn peer_removals<'a>(
    state: &natrix_storage::StreamState,
    first_seq: u64,
    deleted: &'a [(u64, u64)],
) -> (Option<u64>, impl Iterator<Item = u64> + 'a) {
    let below = first_seq.min(state.last_seq + 1);
    let (low, last) = (state.first_seq.max(below), state.last_seq);
    let purge = (below > state.first_seq).then_some(below);
    let deletes = deleted
        .iter()
        .flat_map(move |&(first, end)| first.max(low)..=end.min(last));
    (purge, deletes)
}

/// How a store in `state` makes `seq` its next sequence, the ones before it
/// (deleted on the peer) deleted here too.
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    Nothing,
    /// An empty store starts at `seq`.
    StartAt(u64),
    /// Each of these is appended as a placeholder and deleted.
    Gaps(std::ops::Range<u64>),
}

pub fn skip_to_plan(state: &natrix_storage::StreamState, seq: u64) -> Skip {
    if seq <= state.last_seq + 1 {
        Skip::Nothing
    } else if state.msgs == 0 {
        Skip::StartAt(seq)
    } else {
        Skip::Gaps(state.last_seq + 1..seq)
    }
}

/// The subject of a catch-up's placeholders for messages deleted on the peer.
pub const SKIPPED_SUBJECT: &str = "$NRX.SKIPPED";

/// What a peer purged (below `first_seq`) or deleted among the messages this store
/// holds already.
fn remove_as_peer(
    stream: &Stream,
    first_seq: u64,
    deleted: &[(u64, u64)],
) -> Result<(), crate::jetstream::api::types::ApiError> {
    let (purge, deletes) = peer_removals(&stream.store.state(), first_seq, deleted);
    if let Some(below) = purge {
        let purge = crate::jetstream::api::types::PurgeRequest {
            seq: Some(below),
            ..Default::default()
        };
        registry::purge_store(stream, &purge)?;
    }
    for seq in deletes {
        // Gone here already: nothing to do.
        let _ = registry::delete_from_store(stream, seq);
    }
    Ok(())
}

/// Makes `seq` the store's next sequence (`skip_to_plan`).
fn skip_to(stream: &Stream, seq: u64) -> Result<(), crate::jetstream::api::types::ApiError> {
    match skip_to_plan(&stream.store.state(), seq) {
        Skip::Nothing => Ok(()),
        Skip::StartAt(seq) => stream.store.start_at(seq).map_err(publish::store_error),
        Skip::Gaps(gaps) => {
            for gap in gaps {
                let stored = publish::append(stream, SKIPPED_SUBJECT, b"", b"", None)?;
                debug_assert_eq!(stored.seq, gap);
                stream.store.delete(gap).map_err(publish::store_error)?;
            }
            Ok(())
        }
    }
}

/// The store holds what a peer held at group index `batch.applied_index`, less
/// deletions the peer made after it named their sequences: apply what was kept
/// after that index and the removals kept before it (`applies_again`), and skip
/// what is still to come up to it, removals apart. False when kept entries were
/// dropped since the peer began to name its deletions (the catch-up goes on, and
/// names them again).
fn finish(cl: &Cluster, stream: &Rc<Stream>, batch: &Batch, deletions: &mut Deletions) -> bool {
    let r = stream.cluster.get().expect("a clustered stream");
    let Some(held) = r.catching_up.borrow_mut().take() else {
        return true;
    };
    if held.dropped_through > deletions.since_index {
        *r.catching_up.borrow_mut() = Some(Held {
            dropped_through: held.dropped_through,
            reach_index: held.reach_index,
            ..Held::default()
        });
        *deletions = Deletions::default();
        return false;
    }
    let applied_index = batch.applied_index;
    r.skip_through.set(applied_index);
    r.applied_index
        .set(r.applied_index.get().max(applied_index));
    for (index, data) in held.entries {
        if index > applied_index {
            r.applied_index.set(index);
            super::stream::apply(cl, stream, &data);
        } else if applies_again(&data) {
            super::stream::apply(cl, stream, &data);
        }
    }
    true
}

/// How far a catch-up has been told of its peer's deletions below the messages it
/// asked for: one peer's, named from sequence 1 in batches, the first of them
/// answered at group index `since_index`.
#[derive(Debug, Default)]
pub struct Deletions {
    peer: Option<NodeId>,
    /// Named through this sequence.
    through: u64,
    pub since_index: u64,
}

impl Deletions {
    /// Where the next batch from `peer` begins to name them: another peer's
    /// names from the start.
    pub fn next_from(&mut self, peer: NodeId) -> u64 {
        if self.peer != Some(peer) {
            *self = Deletions {
                peer: Some(peer),
                ..Deletions::default()
            };
        }
        self.through + 1
    }

    /// A batch from `peer`, asked from `deleted_from`, answered at group index
    /// `applied_index` and named deletions through `deleted_through`.
    pub fn told(
        &mut self,
        peer: NodeId,
        deleted_from: u64,
        applied_index: u64,
        deleted_through: u64,
    ) {
        debug_assert_eq!(self.peer, Some(peer));
        if deleted_from == 1 {
            self.since_index = applied_index;
        }
        self.through = self.through.max(deleted_through);
    }

    /// Every deletion below `from_seq` was named.
    pub fn all_below(&self, from_seq: u64) -> bool {
        self.through + 1 >= from_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_a_cut_one_is_refused() {
        let b = Batch {
            refused: false,
            through_seq: 9,
            last_seq: 12,
            applied_index: 40,
            first_seq: 3,
            deleted: vec![(4, 4), (6, 8)],
            deleted_through: 9,
            msgs: vec![MsgEntry {
                seq: 7,
                ts_ns: 1,
                proposer: 0,
                reply: Bytes::new(),
                subject: Bytes::from_static(b"a.b"),
                headers: Bytes::new(),
                payload: Bytes::from_static(b"hello"),
            }],
        };
        let bytes = Bytes::from(b.encode());
        assert_eq!(Batch::decode(bytes.clone()), Some(b));
        for cut in 0..bytes.len() {
            assert_eq!(Batch::decode(bytes.slice(..cut)), None, "cut {cut}");
        }
    }

    #[test]
    fn a_snapshot_round_trips_and_names_the_removals_through_its_sequence() {
        let state = natrix_storage::StreamState {
            first_seq: 3,
            last_seq: 20,
            ..Default::default()
        };
        let runs = natrix_storage::DeletedRuns {
            runs: vec![(5, 5), (9, 11)],
            through: 12,
            complete: true,
        };
        let held = SnapshotHeld::of(&state, runs, 12);
        assert_eq!(held.deleted, vec![(5, 5), (9, 11)]);
        assert_eq!(held.first_seq, 3);
        assert!(held.complete);
        assert_eq!(SnapshotHeld::decode(&held.encode()), Some(held.clone()));
        let encoded = held.encode();
        for cut in 0..encoded.len() {
            assert_eq!(SnapshotHeld::decode(&encoded[..cut]), None, "cut {cut}");
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert_eq!(SnapshotHeld::decode(&longer), None);
        let backwards = SnapshotHeld {
            deleted: vec![(9, 5)],
            ..held.clone()
        };
        assert_eq!(SnapshotHeld::decode(&backwards.encode()), None);
        let purged = natrix_storage::StreamState {
            first_seq: 21,
            last_seq: 20,
            ..Default::default()
        };
        let none = natrix_storage::DeletedRuns::default();
        assert_eq!(SnapshotHeld::of(&purged, none, 12).first_seq, 13);
    }

    #[test]
    fn a_replica_removes_what_the_peer_removed_among_what_it_holds() {
        let state = natrix_storage::StreamState {
            first_seq: 2,
            last_seq: 10,
            msgs: 9,
            ..Default::default()
        };
        let (purge, deletes) = peer_removals(&state, 5, &[(7, 7), (9, 12)]);
        assert_eq!(
            (purge, deletes.collect::<Vec<_>>()),
            (Some(5), vec![7, 9, 10])
        );
        // Runs below what a purge leaves are not walked.
        let (_, deletes) = peer_removals(&state, 5, &[(1, 6)]);
        assert_eq!(deletes.collect::<Vec<_>>(), vec![5, 6]);
        // Purged past all it holds: everything goes, nothing after it.
        let (purge, _) = peer_removals(&state, 40, &[]);
        assert_eq!(purge, Some(11));
        let (purge, _) = peer_removals(&state, 2, &[]);
        assert_eq!(purge, None);
        assert_eq!(skip_to_plan(&state, 11), Skip::Nothing);
        assert_eq!(skip_to_plan(&state, 14), Skip::Gaps(11..14));
        let empty = natrix_storage::StreamState {
            first_seq: 11,
            last_seq: 10,
            ..Default::default()
        };
        assert_eq!(skip_to_plan(&empty, 14), Skip::StartAt(14));
    }

    #[test]
    fn a_catch_up_is_told_of_deletions_in_batches_from_one_peer() {
        let mut d = Deletions::default();
        assert_eq!(d.next_from(7), 1);
        d.told(7, 1, 40, 500);
        assert_eq!(d.since_index, 40);
        assert!(!d.all_below(1_000));
        assert_eq!(d.next_from(7), 501);
        d.told(7, 501, 45, 999);
        assert_eq!(d.since_index, 40, "named since the first batch's index");
        assert!(d.all_below(1_000));
        assert_eq!(
            d.next_from(9),
            1,
            "another peer names its own from the start"
        );
        d.told(9, 1, 50, 999);
        assert_eq!(d.since_index, 50);
    }

    #[test]
    fn removals_apply_again_and_other_entries_do_not() {
        for purge in [false, true] {
            let removal = entry::encode_removal(purge, 3, br#"{"seq":2}"#);
            assert!(applies_again(&Bytes::from(removal)));
        }
        assert!(!applies_again(&Bytes::from(entry::encode_compact(9))));
        assert!(!applies_again(&Bytes::new()));
    }

    #[test]
    fn held_entries_are_bounded() {
        let mut h = Held::default();
        let big = Bytes::from(vec![0u8; HELD_BYTES_MAX / 2 + 1]);
        h.hold(1, &big);
        h.hold(2, &big);
        assert!(h.entries.is_empty());
        assert_eq!(h.dropped_through, 2);
        h.hold(3, &big);
        assert_eq!(h.entries.len(), 1);
    }
}
