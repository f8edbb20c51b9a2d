//! A simulated disk for one node: writes land in a page cache (`current`); a sync makes
//! them durable (`durable`); a crash keeps the durable state plus a random prefix of
//! the unsynced writes (some of them may have reached the platter), and loses the rest.

use std::collections::VecDeque;
use std::io;

use natrix::raft::eraftpb::{Entry, HardState, Snapshot};
use natrix::raft::{GroupId, LogStore, MemStore};

#[derive(Clone)]
enum Op {
    Create(GroupId, u64, Snapshot, HardState),
    Remove(GroupId),
    Append(GroupId, Vec<Entry>),
    Truncate(GroupId, u64),
    Compact(GroupId, Snapshot),
    Install(GroupId, Snapshot),
    HardState(GroupId, HardState),
}

fn apply(store: &mut MemStore, op: &Op) {
    match op {
        Op::Create(g, r, s, h) => store.create_group(*g, *r, s, h),
        Op::Remove(g) => store.remove_group(*g),
        Op::Append(g, e) => store.append(*g, e),
        Op::Truncate(g, i) => store.truncate_suffix(*g, *i),
        Op::Compact(g, s) => store.compact_prefix(*g, s),
        Op::Install(g, s) => store.install_snapshot(*g, s),
        Op::HardState(g, h) => store.set_hard_state(*g, h),
    }
}

/// An entry as written, for the log-matching check: (group, index, term, previous
/// entry's term, digest of type and data).
pub type Written = (GroupId, u64, u64, u64, u64);

pub fn digest(e: &Entry) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ (e.get_entry_type() as u64);
    for b in e.data.iter() {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

#[derive(Default)]
pub struct SimDisk {
    current: MemStore,
    durable: MemStore,
    pending: VecDeque<Op>,
    /// Sequence number of the first pending op.
    durable_seq: u64,
    /// Entries written since the checker last looked.
    pub written: Vec<Written>,
    pub syncs: u64,
}

impl SimDisk {
    /// Sequence number a sync started now would cover up to.
    pub fn written_seq(&self) -> u64 {
        self.durable_seq + self.pending.len() as u64
    }

    /// The fdatasync started at `seq` completed.
    pub fn complete_sync(&mut self, seq: u64) {
        self.syncs += 1;
        while self.durable_seq < seq {
            let op = self.pending.pop_front().expect("sync within writes");
            apply(&mut self.durable, &op);
            self.durable_seq += 1;
        }
    }

    /// Power loss: the first `keep` unsynced writes happened to reach the disk.
    pub fn crash(&mut self, keep: usize) {
        let keep = keep.min(self.pending.len());
        for op in self.pending.drain(..keep) {
            apply(&mut self.durable, &op);
        }
        self.durable_seq += keep as u64;
        self.durable_seq += self.pending.len() as u64;
        self.pending.clear();
        self.current = self.durable.clone();
        self.written.clear();
    }

    pub fn unsynced_ops(&self) -> usize {
        self.pending.len()
    }

    pub fn has_group(&self, g: GroupId) -> bool {
        self.current.has_group(g)
    }

    fn write(&mut self, op: Op) {
        apply(&mut self.current, &op);
        self.pending.push_back(op);
    }
}

impl LogStore for SimDisk {
    fn group_ids(&self) -> Vec<GroupId> {
        self.current.group_ids()
    }

    fn create_group(&mut self, g: GroupId, replica: u64, s: &Snapshot, h: &HardState) {
        self.write(Op::Create(g, replica, s.clone(), h.clone()));
    }

    fn replica_id(&self, g: GroupId) -> u64 {
        self.current.replica_id(g)
    }

    fn remove_group(&mut self, g: GroupId) {
        self.write(Op::Remove(g));
    }

    fn append(&mut self, g: GroupId, entries: &[Entry]) {
        let mut prev = entries
            .first()
            .and_then(|e| self.current.term(g, e.index - 1))
            .expect("append after a known entry");
        for e in entries {
            self.written.push((g, e.index, e.term, prev, digest(e)));
            prev = e.term;
        }
        self.write(Op::Append(g, entries.to_vec()));
    }

    fn truncate_suffix(&mut self, g: GroupId, from_index: u64) {
        self.write(Op::Truncate(g, from_index));
    }

    fn compact_prefix(&mut self, g: GroupId, s: &Snapshot) {
        self.write(Op::Compact(g, s.clone()));
    }

    fn install_snapshot(&mut self, g: GroupId, s: &Snapshot) {
        self.write(Op::Install(g, s.clone()));
    }

    fn set_hard_state(&mut self, g: GroupId, h: &HardState) {
        self.write(Op::HardState(g, h.clone()));
    }

    fn sync(&mut self) -> io::Result<()> {
        let seq = self.written_seq();
        self.complete_sync(seq);
        Ok(())
    }

    fn hard_state(&self, g: GroupId) -> HardState {
        self.current.hard_state(g)
    }

    fn snapshot(&self, g: GroupId) -> Snapshot {
        self.current.snapshot(g)
    }

    fn first_index(&self, g: GroupId) -> u64 {
        self.current.first_index(g)
    }

    fn last_index(&self, g: GroupId) -> u64 {
        self.current.last_index(g)
    }

    fn term(&self, g: GroupId, index: u64) -> Option<u64> {
        self.current.term(g, index)
    }

    fn entries(&self, g: GroupId, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        self.current.entries(g, low, high, max_bytes)
    }
}
