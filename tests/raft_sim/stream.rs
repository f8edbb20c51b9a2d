//! Stream mode: every group is a JetStream stream's group, as on a server. Its
//! entries are the server's stream entries (`jetstream::cluster::entry`), applied by
//! the server's rules (`entry::verdict`, `stream::bounded_purge` and `check_delete`,
//! `catchup::SnapshotHeld`, `peer_removals` and `skip_to_plan`, `held_by_all`, the
//! compaction after a durable commit) to the stream log itself: a natrix-storage
//! `FileStore` on the node's faulty disk, which a crash cuts back to what it synced.
//! The stream is the state machine: a restart reopens it and replays the group's
//! log over it, and a replica whose store lacks what a snapshot says copies it from
//! a peer's store (the server's catch-up), keeping the entries applied meanwhile.
//! A read may find a record damaged while the node runs (fault `ReadDamage`, on one
//! replica of a group at a time): that replica cuts its store there and catches up
//! from a peer whose store reflects what it had applied (`catchup::repair_damaged`).
//!
//! Checked (`StreamCanon`): a message or removal entry refused on one replica is
//! refused on all; two replicas never hold different messages at one sequence; no
//! message is stored twice; at the end every member's stream, read back from its
//! disk, holds exactly the messages stored and not removed, in order, every
//! acknowledged publish not since removed among them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use natrix::jetstream::api::types::{MsgDeleteRequest, PurgeRequest};
use natrix::jetstream::cluster::catchup::{self, Skip, SnapshotHeld};
use natrix::jetstream::cluster::entry::{self, MsgEntry, MsgVerdict, Removal, StreamEntry};
use natrix::jetstream::cluster::{held_by_all, step_down_target, stream};
use natrix::jetstream::registry::storage_purge;
use natrix::raft::{Applied, GroupId, StateRole};
use natrix_storage::{FileStore, LogConfig};
use rand::Rng;

use super::file_disk::InFlight;
use super::node_disk::NodeDisk;
use super::world::{Ev, World};

/// Messages a catch-up copies per read.
const CATCH_UP_BATCH_MSGS: usize = 32;
/// Runs of deletions a snapshot or catch-up batch names here (the server's
/// `catchup::RUNS_MAX`, small so that the sim's streams pass it often).
const RUNS_MAX: usize = 1;

/// A node's replica of a stream: its store and what the server keeps beside it.
pub struct StreamReplica {
    pub store: Rc<FileStore>,
    /// The term of the new leader's entry this replica applied while leading: it
    /// proposes only in that term (the server's ready leader).
    pub ready_term: u64,
    /// As a ready leader: the term and the sequence its next proposal expects.
    pub next_seq: Option<(u64, u64)>,
    /// The group index the store reflects.
    pub applied_index: u64,
    /// Entries up to this index came with a peer's messages.
    pub skip_through: u64,
    /// While it catches up: the entries applied meanwhile.
    pub held: Option<Vec<(u64, u64, Bytes)>>,
    /// While it catches up: how far its peer named its deletions.
    pub deletions: catchup::Deletions,
    /// While it catches up after a damage found on read: the group index its store
    /// reflected then; a peer's batches count only from a state that covers it.
    pub reach_index: u64,
    /// The store's group commit under way (the server commits what it applied).
    pub commit: Option<InFlight<natrix_storage::Result<u64>>>,
}

/// What every replica's stream must agree on, per group, as the checker learns it.
#[derive(Default)]
pub struct StreamCanon {
    /// The message stored at each sequence, and the sequence of each message.
    ids: BTreeMap<GroupId, BTreeMap<u64, u64>>,
    seqs: BTreeMap<(GroupId, u64), u64>,
    /// Every sequence below this one was purged; and those deleted.
    purged_below: BTreeMap<GroupId, u64>,
    deleted: BTreeMap<GroupId, BTreeSet<u64>>,
    /// Per (group, index) of a message or removal entry: whether replicas refuse it.
    refused: BTreeMap<(GroupId, u64), bool>,
}

impl StreamCanon {
    /// Replica stores agree: one message per sequence, one sequence per message.
    fn stored(&mut self, g: GroupId, seq: u64, id: u64, n: usize) {
        let prev = *self.ids.entry(g).or_default().entry(seq).or_insert(id);
        assert_eq!(
            prev,
            id,
            "node {} stored message {id} at sequence {seq} of group {g}, where another replica holds {prev}",
            n + 1
        );
        let prev = *self.seqs.entry((g, id)).or_insert(seq);
        assert_eq!(
            prev,
            seq,
            "message {id} of group {g} stored twice, at {prev} and {seq} (node {})",
            n + 1
        );
    }

    /// Refused on one replica, refused on all: else the stores part ways.
    fn same_outcome(&mut self, g: GroupId, index: u64, refused: bool, what: impl Fn() -> String) {
        let first = *self.refused.entry((g, index)).or_insert(refused);
        assert_eq!(first, refused, "{}", what());
    }

    fn purged(&mut self, g: GroupId, below: u64) {
        let floor = self.purged_below.entry(g).or_insert(1);
        *floor = (*floor).max(below);
    }

    fn deleted(&mut self, g: GroupId, seq: u64) {
        self.deleted.entry(g).or_default().insert(seq);
    }

    fn removed(&self, g: GroupId, seq: u64) -> bool {
        seq < self.purged_below.get(&g).copied().unwrap_or(1)
            || self.deleted.get(&g).is_some_and(|d| d.contains(&seq))
    }

    fn seq_of(&self, g: GroupId, id: u64) -> Option<u64> {
        self.seqs.get(&(g, id)).copied()
    }

    /// The messages a stream whose last sequence is `last` must hold, by sequence.
    fn expected(&self, g: GroupId, last: u64) -> BTreeMap<u64, u64> {
        self.ids
            .get(&g)
            .into_iter()
            .flat_map(|ids| ids.range(..=last))
            .filter(|(s, _)| !self.removed(g, **s))
            .map(|(&s, &id)| (s, id))
            .collect()
    }
}

/// A compaction waiting for its store's commit.
pub struct Compaction {
    pub group: GroupId,
    pub up_to: u64,
    /// What the snapshot says the store holds, as of the compaction's start.
    pub held: SnapshotHeld,
    pub commit: InFlight<natrix_storage::Result<u64>>,
}

fn stream_config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 64 << 10,
        record_max_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

fn stream_dir(g: GroupId, replica: u64) -> PathBuf {
    PathBuf::from(format!("/streams/{g}/{replica}"))
}

/// A step of a stream's repair on node `n`, which must succeed on the sim's disk.
fn repaired<T, E: std::fmt::Display>(n: usize, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("node {}: repairing a stream: {e}", n + 1))
}

fn id_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[..8].try_into().expect("an id"))
}

impl<D: NodeDisk> World<D> {
    /// Opens (creating or recovering) node `n`'s stream of replica `replica` of `g`.
    pub(super) async fn open_stream(&mut self, n: usize, g: GroupId, replica: u64) {
        let disk = self.nodes[n].disk.stream_disk().expect("a disk with files");
        let dir = stream_dir(g, replica);
        let open = |disk: natrix_storage::Disk| {
            let dir = dir.clone();
            async move {
                FileStore::open_on(disk, dir, stream_config())
                    .await
                    .unwrap_or_else(|e| {
                        panic!("node {}: stream of group {g} does not open: {e}", n + 1)
                    })
            }
        };
        let mut store = open(disk.clone()).await;
        // The server's `registry::repair_damage`: a replica drops its store from the
        // first damaged record on (a crash tore a write its commits did not sync),
        // and gets the rest back from its group's log, or from a peer when its
        // snapshot says the store held more.
        if let Some(&(first_missing, _)) = store.recovery_report().missing.first() {
            self.sum.stream_repairs += 1;
            if first_missing >= store.first_index() {
                repaired(n, store.truncate_from(first_missing).await);
            } else {
                // The damage reaches the first record: the store starts again, empty.
                repaired(n, store.close().await);
                repaired(n, disk.remove_dir_all(&dir));
                store = open(disk).await;
                if first_missing > 1 {
                    repaired(n, store.compact(first_missing, 0));
                }
                repaired(n, store.sync().await);
            }
        }
        let sr = StreamReplica {
            store: Rc::new(store),
            ready_term: 0,
            next_seq: None,
            applied_index: 0,
            skip_through: 0,
            held: None,
            deletions: catchup::Deletions::default(),
            reach_index: 0,
            commit: None,
        };
        self.nodes[n].streams.insert(g, sr);
    }

    /// After a restart: every replica the driver holds gets its stream back.
    pub(super) async fn reopen_streams(&mut self, n: usize) {
        let d = self.driver(n);
        let replicas: Vec<(GroupId, u64)> = d
            .group_ids()
            .filter_map(|g| d.status(g).map(|st| (g, st.replica)))
            .collect();
        for (g, r) in replicas {
            self.open_stream(n, g, r).await;
        }
    }

    /// A publish to the group's ready leader on `n`, as the server proposes it.
    pub(super) fn propose_stream(&mut self, n: usize, g: GroupId) -> Option<u64> {
        let st = self.driver(n).status(g)?;
        let sr = self.nodes[n].streams.get(&g)?;
        if st.role != StateRole::Leader || sr.ready_term != st.term || sr.held.is_some() {
            return None;
        }
        let seq = match sr.next_seq {
            Some((term, seq)) if term == st.term => seq,
            _ => sr.store.state().last_seq + 1,
        };
        let (id, payload) = self.new_data();
        let m = MsgEntry {
            seq,
            ts_ns: id,
            proposer: self.nodes[n].id,
            reply: Bytes::new(),
            subject: Bytes::from_static(b"orders"),
            headers: Bytes::new(),
            payload: Bytes::from(payload),
        };
        let p = self.driver_mut(n).propose(g, m.encode()).ok()?;
        self.sum.proposals += 1;
        let node = &mut self.nodes[n];
        node.streams.get_mut(&g)?.next_seq = Some((st.term, seq + 1));
        node.pending.insert((g, p.index), (p.term, id));
        Some(id)
    }

    /// A purge (all, or below a sequence) or a message delete at the group's ready
    /// leader on `n`, bounded by the last sequence its stream will hold when it
    /// applies (the server's `removal`).
    pub(super) fn propose_stream_removal(&mut self, n: usize, g: GroupId) {
        let Some(st) = self.driver(n).status(g) else {
            return;
        };
        let Some(sr) = self.nodes[n].streams.get(&g) else {
            return;
        };
        if st.role != StateRole::Leader || sr.ready_term != st.term || sr.held.is_some() {
            return;
        }
        let state = sr.store.state();
        let through = match sr.next_seq {
            Some((term, next)) if term == st.term => next - 1,
            _ => state.last_seq,
        };
        let first = state.first_seq.max(1);
        let purge = self.rng.gen_bool(0.3);
        let body = match (purge, self.rng.gen_bool(0.2)) {
            (true, true) => String::new(),
            (true, false) => {
                let below = self.rng.gen_range(first..=through.max(first) + 1);
                format!("{{\"seq\":{below}}}")
            }
            (false, _) => {
                let seq = self.rng.gen_range(first..=through.max(first));
                format!("{{\"seq\":{seq}}}")
            }
        };
        let data = entry::encode_removal(purge, through, body.as_bytes());
        if self.driver_mut(n).propose(g, data).is_ok() {
            self.sum.proposals += 1;
        }
    }

    /// The leader asks its group to compact (the server does every so many entries).
    pub(super) fn propose_stream_compaction(&mut self, n: usize, g: GroupId) {
        if let Some(up_to) = held_by_all(self.driver(n), g) {
            let _ = self.driver_mut(n).propose(g, entry::encode_compact(up_to));
        }
    }

    pub(super) fn apply_stream(&mut self, n: usize, a: Applied) {
        match a {
            Applied::Entry {
                group,
                index,
                term,
                data,
            } => {
                let id = match entry::decode(&data) {
                    Some(StreamEntry::Msg(m)) => Some(id_of(&m.payload)),
                    _ => None,
                };
                self.canon(group, index, id);
                self.stream_entry(n, group, index, term, data);
                self.forget_pending(n, group, index);
            }
            Applied::ConfChange { group, index, .. } => self.canon(group, index, None),
            Applied::Snapshot {
                group,
                index,
                data,
                at_start,
                ..
            } => {
                self.stream_snapshot(n, group, index, &data, at_start);
                self.forget_pending(n, group, index);
            }
            Applied::Removed { group } => {
                self.nodes[n].streams.remove(&group);
                self.nodes[n].pending.retain(|&(g, _), _| g != group);
            }
        }
    }

    fn stream_entry(&mut self, n: usize, g: GroupId, index: u64, term: u64, data: Bytes) {
        let node_id = self.nodes[n].id;
        let sr = self.nodes[n]
            .streams
            .get_mut(&g)
            .unwrap_or_else(|| panic!("node {}: group {g} applies without a stream", n + 1));
        let catching_up = sr.held.is_some();
        if data.is_empty() {
            // The new leader's own entry: all committed before is applied here
            // (the server's `on_leader_entry`). A replica catching up hands on.
            let st = self.driver(n).status(g);
            if st.is_some_and(|st| st.role == StateRole::Leader && st.term == term) {
                if catching_up {
                    self.hand_on_leadership(n, g);
                } else {
                    let sr = self.nodes[n].streams.get_mut(&g).expect("the stream");
                    sr.ready_term = term;
                    sr.next_seq = None;
                }
            }
        }
        let sr = self.nodes[n].streams.get_mut(&g).expect("the stream");
        if index <= sr.skip_through {
            // The server's `catchup::applies_again`.
            if catchup::applies_again(&data) {
                self.stream_removal_entry(n, g, index, &data, true);
            }
            return;
        }
        if let Some(held) = sr.held.as_mut() {
            held.push((index, term, data));
            return;
        }
        assert!(index > sr.applied_index, "applied out of order");
        sr.applied_index = index;
        if data.is_empty() {
            return;
        }
        match entry::decode(&data).expect("a stream entry") {
            StreamEntry::Msg(m) => {
                let mine = m.proposer == node_id;
                self.stream_msg(n, g, index, m, mine)
            }
            StreamEntry::Compact(up_to) => self.start_compaction(n, g, up_to),
            StreamEntry::Purge(_) | StreamEntry::Delete(_) => {
                self.stream_removal_entry(n, g, index, &data, false)
            }
        }
    }

    /// `again`: a removal applied again after a catch-up (not its first outcome).
    fn stream_removal_entry(
        &mut self,
        n: usize,
        g: GroupId,
        index: u64,
        data: &Bytes,
        again: bool,
    ) {
        match entry::decode(data) {
            Some(StreamEntry::Purge(r)) => self.stream_removal(n, g, index, true, r, again),
            Some(StreamEntry::Delete(r)) => self.stream_removal(n, g, index, false, r, again),
            _ => unreachable!("a removal entry"),
        }
    }

    /// The server's `hand_on_leadership`: a leader whose store lacks messages steps
    /// down to a voter that has them.
    /// Where node `n` leads `g`: leadership goes to another voter.
    fn hand_on_leadership(&mut self, n: usize, g: GroupId) {
        let d = self.driver_mut(n);
        if !d.status(g).is_some_and(|st| st.role == StateRole::Leader) {
            return;
        }
        if let Some(to) = step_down_target(d, g, |_| true) {
            if d.transfer_leader(g, to).is_ok() {
                self.sum.transfers += 1;
            }
        }
    }

    /// `mine`: proposed by this node, which sends the PubAck.
    fn stream_msg(&mut self, n: usize, g: GroupId, index: u64, m: MsgEntry, mine: bool) {
        let last = self.nodes[n].streams[&g].store.state().last_seq;
        let verdict = entry::verdict(m.seq, last);
        let refused = verdict == MsgVerdict::Refuse;
        self.streams_canon.same_outcome(g, index, refused, || {
            format!(
                "node {} {} entry {index} of group {g} (sequence {}, its stream's last {last}), which another replica did not",
                n + 1,
                if refused { "refused" } else { "took" },
                m.seq
            )
        });
        let sr = self.nodes[n].streams.get_mut(&g).expect("the stream");
        match verdict {
            MsgVerdict::AlreadyStored => {}
            MsgVerdict::Refuse => {
                if mine {
                    sr.next_seq = None;
                }
            }
            MsgVerdict::Store => {
                let subject = std::str::from_utf8(&m.subject).expect("a subject");
                let t = sr
                    .store
                    .append_at(m.ts_ns, subject, &m.headers, &m.payload)
                    .unwrap_or_else(|e| panic!("node {}: append: {e}", n + 1));
                assert_eq!(t.seq, m.seq, "stored at the sequence the leader chose");
                let id = id_of(&m.payload);
                self.streams_canon.stored(g, m.seq, id, n);
                self.commit_stream(n, g);
                if mine && self.acked.entry(g).or_default().insert(id) {
                    self.sum.acked += 1;
                }
            }
        }
    }

    /// A purge or delete entry, by the server's rules (`bounded_purge`,
    /// `check_delete`): it succeeds or fails alike on every replica, and takes the
    /// same messages away.
    fn stream_removal(
        &mut self,
        n: usize,
        g: GroupId,
        index: u64,
        purge: bool,
        r: Removal,
        again: bool,
    ) {
        let store = self.nodes[n].streams[&g].store.clone();
        let last = store.state().last_seq;
        let done = if purge {
            let req: PurgeRequest = if r.body.is_empty() {
                PurgeRequest::default()
            } else {
                serde_json::from_slice(&r.body).expect("a purge request")
            };
            stream::bounded_purge(req, r.through_seq, last).map(|req| {
                store
                    .purge(&storage_purge(&req))
                    .unwrap_or_else(|e| panic!("node {}: purge: {e}", n + 1));
                // Only what the store held: a later message is not purged.
                let below = req.seq.unwrap_or(last + 1).min(last + 1);
                self.streams_canon.purged(g, below);
            })
        } else {
            let req: MsgDeleteRequest = serde_json::from_slice(&r.body).expect("a delete");
            stream::check_delete(req.seq, r.through_seq, last).map(|()| {
                store
                    .delete(req.seq)
                    .unwrap_or_else(|e| panic!("node {}: delete: {e}", n + 1));
                self.streams_canon.deleted(g, req.seq);
            })
        };
        let refused = done.is_err();
        if again {
            if !refused {
                self.commit_stream(n, g);
            }
            return;
        }
        self.streams_canon.same_outcome(g, index, refused, || {
            format!(
                "node {} {} the removal at entry {index} of group {g} (through {}, its stream's last {last}), unlike another replica",
                n + 1,
                if refused { "failed" } else { "applied" },
                r.through_seq
            )
        });
        if !refused {
            self.commit_stream(n, g);
        }
    }

    /// Starts the store's group commit (the server's: written, not synced, see
    /// `jetstream::stream::commit`), unless one is under way.
    fn commit_stream(&mut self, n: usize, g: GroupId) {
        let sr = self.nodes[n].streams.get_mut(&g).expect("the stream");
        if sr.commit.is_some() {
            return;
        }
        let store = sr.store.clone();
        sr.commit = Some(InFlight::spawn(
            async move { store.commit_unsynced().await },
        ));
        self.schedule_stream_poll(n);
    }

    /// The server's `compact_when_durable`: the store syncs what it applied, then
    /// the log is compacted behind a snapshot that says what every replica holds.
    fn start_compaction(&mut self, n: usize, g: GroupId, up_to: u64) {
        if self.nodes[n].compactions.iter().any(|c| c.group == g) {
            return; // the server's `compacting`: one at a time
        }
        let sr = &self.nodes[n].streams[&g];
        if sr.held.is_some() {
            // The server's: not while it catches up (what it holds is in the log only).
            return;
        }
        let store = sr.store.clone();
        let state = store.state();
        let runs = store.deleted_runs(1, state.last_seq, RUNS_MAX);
        let held = SnapshotHeld::of(&state, runs, state.last_seq);
        let commit = InFlight::spawn(async move { store.sync().await });
        self.nodes[n].compactions.push(Compaction {
            group: g,
            up_to,
            held,
            commit,
        });
        self.schedule_stream_poll(n);
    }

    fn schedule_stream_poll(&mut self, n: usize) {
        let epoch = self.nodes[n].epoch;
        let again = self.repoll_us();
        self.at(again, Ev::StreamPoll { node: n, epoch });
    }

    pub(super) fn stream_poll(&mut self, n: usize, epoch: u64) {
        if self.nodes[n].epoch != epoch {
            return;
        }
        let mut waiting = Vec::new();
        for c in std::mem::take(&mut self.nodes[n].compactions) {
            match c.commit.take() {
                None => waiting.push(c),
                Some(Err(e)) => panic!("node {}: stream commit failed: {e}", n + 1),
                Some(Ok(_)) => self.compact_stream_log(n, &c),
            }
        }
        let mut again = !waiting.is_empty();
        self.nodes[n].compactions = waiting;
        let mut more = Vec::new();
        for (&g, sr) in self.nodes[n].streams.iter_mut() {
            let Some(c) = &sr.commit else { continue };
            match c.take() {
                None => again = true,
                Some(Err(e)) => panic!("node {}: stream commit failed: {e}", n + 1),
                Some(Ok(_)) => {
                    sr.commit = None;
                    if sr.store.watch().durable_seq() < sr.store.state().last_seq {
                        more.push(g);
                    }
                }
            }
        }
        for g in more {
            self.commit_stream(n, g);
        }
        if again {
            self.schedule_stream_poll(n);
        }
        self.pump(n);
    }

    fn compact_stream_log(&mut self, n: usize, c: &Compaction) {
        let Some(st) = self.driver(n).status(c.group) else {
            return;
        };
        let data = c.held.encode();
        if self
            .driver_mut(n)
            .compact_to(c.group, c.up_to.min(st.applied), data)
            .is_ok()
        {
            self.sum.compactions += 1;
        }
    }

    /// Raft needs a snapshot to send: the server's `stream::snapshot` (compact
    /// once the store made durable all it applied).
    pub(super) fn stream_snapshot_wanted(&mut self, n: usize, g: GroupId) {
        if self.nodes[n].streams.contains_key(&g) {
            let applied = self.driver(n).status(g).map_or(0, |st| st.applied);
            self.start_compaction(n, g, applied);
        }
    }

    fn stream_snapshot(&mut self, n: usize, g: GroupId, index: u64, data: &[u8], at_start: bool) {
        let held = SnapshotHeld::decode(data).unwrap_or(SnapshotHeld {
            complete: true,
            ..SnapshotHeld::default()
        });
        let epoch = self.nodes[n].epoch;
        let sr = self.nodes[n]
            .streams
            .get_mut(&g)
            .unwrap_or_else(|| panic!("node {}: group {g} restores without a stream", n + 1));
        remove_as_peer(&sr.store, held.first_seq, &held.deleted);
        let told_all = held.complete || at_start;
        if told_all && sr.store.state().last_seq >= held.held_seq {
            sr.applied_index = sr.applied_index.max(index);
            return;
        }
        if sr.held.is_some() {
            return;
        }
        sr.held = Some(Vec::new());
        sr.deletions = catchup::Deletions::default();
        let again = self.repoll_us();
        self.at(again, catch_up_event(n, g, epoch));
    }

    /// The server's catch-up: the messages after the store's last, from a peer's
    /// store, with the group index they reflect; then the entries kept meanwhile.
    pub(super) async fn catch_up(&mut self, n: usize, g: GroupId, epoch: u64) {
        if self.nodes[n].epoch != epoch || !self.nodes[n].streams.contains_key(&g) {
            return;
        }
        // Only a ready leader serves (its store holds all that was committed).
        let peer = self
            .find_leader(g)
            .map(|(p, st)| (p, st.term))
            .filter(|&(p, term)| {
                p != n
                    && !self.blocked.contains(&(p, n))
                    && !self.blocked.contains(&(n, p))
                    && self.nodes[p]
                        .streams
                        .get(&g)
                        .is_some_and(|s| s.held.is_none() && s.ready_term == term)
            });
        let Some((p, _)) = peer else {
            // The server's catch-up loop: a replica leading while it catches up
            // hands on again (none serves it otherwise).
            self.hand_on_leadership(n, g);
            self.pump(n);
            let again = self.repoll_us() + 100_000;
            self.at(again, catch_up_event(n, g, epoch));
            return;
        };
        let (source, peer_index, peer_id) = {
            let s = &self.nodes[p].streams[&g];
            (s.store.clone(), s.applied_index, self.nodes[p].id)
        };
        if peer_index < self.nodes[n].streams[&g].reach_index {
            // The server's: a peer behind what this replica had applied waits.
            let again = self.repoll_us() + 100_000;
            self.at(again, catch_up_event(n, g, epoch));
            return;
        }
        // One batch per event, as the server's: the peer's deletions below the
        // asked sequence from where the last batch stopped, then messages.
        let peer = source.state();
        let peer_last = peer.last_seq;
        let target = self.nodes[n].streams[&g].store.clone();
        let from = target.state().last_seq + 1;
        let sr = self.nodes[n].streams.get_mut(&g).expect("the stream");
        let deleted_from = sr.deletions.next_from(peer_id);
        let runs = source.deleted_runs(deleted_from, from - 1, RUNS_MAX);
        let deleted_through = if runs.complete {
            from - 1
        } else {
            runs.through
        };
        remove_as_peer(&target, peer.first_seq, &runs.runs);
        let mut through = peer_last;
        if from <= peer_last {
            let msgs = source
                .range(from, peer_last, CATCH_UP_BATCH_MSGS)
                .await
                .unwrap_or_else(|e| panic!("node {}: catch-up read: {e}", p + 1));
            if msgs.len() == CATCH_UP_BATCH_MSGS {
                through = msgs.last().map_or(peer_last, |m| m.seq);
            }
            for m in msgs {
                skip_to(&target, m.seq);
                let t = target
                    .append_at(m.timestamp_ns, &m.subject, &m.headers, &m.payload)
                    .unwrap_or_else(|e| panic!("node {}: catch-up append: {e}", n + 1));
                assert_eq!(t.seq, m.seq, "stored at the peer's sequence");
                self.streams_canon.stored(g, m.seq, id_of(&m.payload), n);
            }
        }
        skip_to(&target, through + 1);
        let sr = self.nodes[n].streams.get_mut(&g).expect("the stream");
        sr.deletions
            .told(peer_id, deleted_from, peer_index, deleted_through);
        let synced = through >= peer_last && target.state().last_seq == peer_last;
        if !synced || !sr.deletions.all_below(from) {
            self.sum.catch_up_batches += 1;
            let again = self.repoll_us();
            self.at(again, catch_up_event(n, g, epoch));
            return;
        }
        self.sum.catch_ups += 1;
        sr.reach_index = 0;
        sr.skip_through = sr.skip_through.max(peer_index);
        sr.applied_index = sr.applied_index.max(peer_index);
        let held = sr.held.take().unwrap_or_default();
        for (index, term, data) in held {
            self.stream_entry(n, g, index, term, data);
        }
        // The server's catch-up syncs what it copied (its log lacks it).
        target
            .sync()
            .await
            .unwrap_or_else(|e| panic!("node {}: catch-up sync: {e}", n + 1));
        self.pump(n);
    }

    /// A read finds a random stored record of a replica damaged (the server's
    /// `catchup::repair_damaged`), where no other replica of its group is catching
    /// up: the replica cuts its store there, hands on its
    /// leadership and catches up from a peer, until the peer's state covers the
    /// group index its store reflected.
    pub(super) async fn damage_on_read(&mut self) {
        let n = self.rng.gen_range(0..self.nodes.len());
        if !self.alive(n) {
            return;
        }
        // Damage on a minority only: one replica of a group at a time (damage on
        // every replica loses what none holds any more).
        let repairing = |g: &GroupId| {
            self.nodes
                .iter()
                .any(|node| node.streams.get(g).is_some_and(|sr| sr.held.is_some()))
        };
        let groups: Vec<GroupId> = self.nodes[n]
            .streams
            .keys()
            .filter(|g| !repairing(g))
            .copied()
            .collect();
        if groups.is_empty() {
            return;
        }
        let g = groups[self.rng.gen_range(0..groups.len())];
        let store = self.nodes[n].streams[&g].store.clone();
        let (first, last) = (store.first_index(), store.state().last_seq);
        if last < first {
            return;
        }
        let seq = self.rng.gen_range(first..=last);
        let sr = self.nodes[n].streams.get_mut(&g).expect("the stream");
        sr.held = Some(Vec::new());
        sr.next_seq = None;
        sr.reach_index = sr.applied_index;
        sr.deletions = catchup::Deletions::default();
        self.sum.read_damages += 1;
        self.hand_on_leadership(n, g);
        repaired(n, store.truncate_from(seq).await);
        let (epoch, again) = (self.nodes[n].epoch, self.repoll_us());
        self.at(again, catch_up_event(n, g, epoch));
        self.pump(n);
    }

    /// Whether node `n`'s stream of `g` holds message `id`.
    pub(super) fn stream_holds(&self, n: usize, g: GroupId, id: u64) -> bool {
        let Some(sr) = self.nodes[n].streams.get(&g) else {
            return false;
        };
        let Some(seq) = self.streams_canon.seq_of(g, id) else {
            return false;
        };
        // A catch-up brings a peer's messages ahead of the group's entries: the
        // store holds what the replica has applied once the group reaches the
        // peer's index (removals after it named arrive with those entries).
        let applied = self.driver(n).status(g).map_or(0, |st| st.applied);
        sr.held.is_none() && applied >= sr.skip_through && sr.store.state().last_seq >= seq
    }

    /// Every member's stream, read back from its disk, holds every acknowledged
    /// publish exactly once, in order.
    pub(super) async fn final_check_streams(&self) {
        for g in 1..=self.p.groups as GroupId {
            let (_, st) = self.find_leader(g).expect("leader at the end");
            let cs = &st.conf_state;
            for &m in cs.voters.iter().chain(cs.learners.iter()) {
                let n = natrix::raft::node_of(m) as usize - 1;
                let sr = &self.nodes[n].streams[&g];
                let last = sr.store.state().last_seq;
                let mut read: BTreeMap<u64, u64> = BTreeMap::new();
                let mut from = 1;
                while from <= last {
                    let msgs = sr
                        .store
                        .range(from, last, CATCH_UP_BATCH_MSGS)
                        .await
                        .unwrap_or_else(|e| panic!("node {}: read: {e}", n + 1));
                    let Some(end) = msgs.last().map(|m| m.seq) else {
                        break;
                    };
                    read.extend(msgs.iter().map(|m| (m.seq, id_of(&m.payload))));
                    from = end + 1;
                }
                assert_eq!(
                    read,
                    self.streams_canon.expected(g, last),
                    "node {}: the stream of group {g} differs from what was stored",
                    n + 1
                );
                for id in self.acked.get(&g).into_iter().flatten() {
                    let seq = self
                        .streams_canon
                        .seq_of(g, *id)
                        .expect("acked when stored");
                    if self.streams_canon.removed(g, seq) {
                        continue;
                    }
                    assert!(
                        seq <= last,
                        "acknowledged message {id} (sequence {seq}) of group {g} missing on node {}",
                        n + 1
                    );
                }
            }
        }
    }
}

/// The server's `remove_as_peer`, on the sim's store (`catchup::peer_removals`).
fn remove_as_peer(store: &FileStore, first_seq: u64, deleted: &[(u64, u64)]) {
    let (purge, deletes) = catchup::peer_removals(&store.state(), first_seq, deleted);
    if let Some(below) = purge {
        let purge = natrix_storage::PurgeRequest {
            up_to_seq: Some(below),
            ..Default::default()
        };
        store.purge(&purge).expect("purge as the peer did");
    }
    for seq in deletes {
        let _ = store.delete(seq);
    }
}

/// The server's catch-up `skip_to`, on the sim's store (`catchup::skip_to_plan`).
fn skip_to(store: &FileStore, seq: u64) {
    match catchup::skip_to_plan(&store.state(), seq) {
        Skip::Nothing => {}
        Skip::StartAt(seq) => store.compact(seq, 0).expect("start the store at seq"),
        Skip::Gaps(gaps) => {
            for gap in gaps {
                let t = store
                    .append(catchup::SKIPPED_SUBJECT, b"", b"")
                    .expect("a placeholder");
                assert_eq!(t.seq, gap);
                store.delete(gap).expect("delete the placeholder");
            }
        }
    }
}

fn catch_up_event(node: usize, group: GroupId, epoch: u64) -> Ev {
    Ev::CatchUp { node, group, epoch }
}
