//! The log a shard's Raft groups persist through.
//!
//! [`LogStore`] is shaped after a segment log: per group, entries `(index, term, data)`
//! are appended at `last_index + 1`, a conflicting suffix is truncated, a prefix is
//! compacted behind a snapshot, and one hard state (term, vote, commit) is kept. Writes
//! are buffered; [`LogStore::sync`] is the group-commit point that makes every write of
//! every group durable at once (one fdatasync per shard turn). Reads see buffered
//! writes, as a page cache does.
//!
//! [`MemStore`] keeps everything in memory (tests, benchmarks); the simulator wraps it in
//! a disk that tells written from synced and loses the unsynced part on a crash.

use std::collections::BTreeMap;
use std::io;

use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::GetEntriesContext;

/// Identifies a Raft group on a node (a stream, a consumer, or the meta group).
pub type GroupId = u64;

/// The Raft-log API of the storage layer, for all groups of one shard.
pub trait LogStore {
    /// Groups that have a log here (used to recover after a restart).
    fn group_ids(&self) -> Vec<GroupId>;
    /// Creates a group's log for this node's replica `replica`, starting after
    /// `snapshot` (which may be empty, index 0).
    fn create_group(
        &mut self,
        group: GroupId,
        replica: u64,
        snapshot: &Snapshot,
        hard_state: &HardState,
    );
    /// This node's replica id in `group`.
    fn replica_id(&self, group: GroupId) -> u64;
    /// Deletes a group's log.
    fn remove_group(&mut self, group: GroupId);
    /// Appends contiguous entries; the first must be at `last_index + 1`.
    fn append(&mut self, group: GroupId, entries: &[Entry]);
    /// Removes every entry with an index `>= from_index`.
    fn truncate_suffix(&mut self, group: GroupId, from_index: u64);
    /// Stores `snapshot` and drops every entry up to its index (which must be in the log).
    fn compact_prefix(&mut self, group: GroupId, snapshot: &Snapshot);
    /// Replaces the whole log by `snapshot` (a follower catching up from a leader's snapshot).
    fn install_snapshot(&mut self, group: GroupId, snapshot: &Snapshot);
    /// Stores the group's hard state.
    fn set_hard_state(&mut self, group: GroupId, hard_state: &HardState);
    /// Makes every write so far durable (group commit for all groups of the shard).
    fn sync(&mut self) -> io::Result<()>;

    /// The stored hard state.
    fn hard_state(&self, group: GroupId) -> HardState;
    /// The latest snapshot (index 0 and no data if there was none).
    fn snapshot(&self, group: GroupId) -> Snapshot;
    /// Index of the first entry held (snapshot index + 1).
    fn first_index(&self, group: GroupId) -> u64;
    /// Index of the last entry held (the snapshot index when the log is empty).
    fn last_index(&self, group: GroupId) -> u64;
    /// Term of entry `index`, for `first_index - 1 ..= last_index`; `None` otherwise.
    fn term(&self, group: GroupId, index: u64) -> Option<u64>;
    /// Entries `[low, high)` within the held range, at most `max_bytes` (but at least one).
    /// A store that keeps only part of the log in memory answers the part it can read
    /// without I/O from `low` on: a prefix of the range, possibly empty (see
    /// [`LogStore::cached_through`]).
    fn entries(&self, group: GroupId, low: u64, high: u64, max_bytes: u64) -> Vec<Entry>;

    // Stores that keep only part of the log in memory (`FileLogStore`): the driver asks
    // what is readable now, parks raft's reads that missed, and hands the reads to the
    // caller (`Ready::fetches`). A store holding everything keeps these defaults.

    /// The highest index `h` such that entries `from..=h` can be read without I/O
    /// (`from - 1` if entry `from` cannot).
    fn cached_through(&self, group: GroupId, from: u64) -> u64 {
        let _ = from;
        self.last_index(group)
    }
    /// Entries from `low` (before `high`, about `max_bytes`) are needed but not in
    /// memory: queue a read. `context`, if any, is raft's read to resume once they are
    /// (handed back by [`LogStore::take_fetch_contexts`]).
    fn want_entries(
        &mut self,
        group: GroupId,
        low: u64,
        high: u64,
        max_bytes: u64,
        context: Option<GetEntriesContext>,
    ) {
        let _ = (group, low, high, max_bytes, context);
    }
    /// The reads queued since the last call (each group has at most one in flight).
    fn take_fetches(&mut self) -> Vec<FetchRequest> {
        Vec::new()
    }
    /// Raft's reads parked on `group`'s fetch, once it landed.
    fn take_fetch_contexts(&mut self, group: GroupId) -> Vec<GetEntriesContext> {
        let _ = group;
        Vec::new()
    }
    /// Entries up to `index` were handed to the application: they may leave memory.
    fn set_applied(&mut self, group: GroupId, index: u64) {
        let _ = (group, index);
    }
    /// End of a driver turn: bring the entry cache back within its budget.
    fn trim_cache(&mut self) {}
}

/// A read of a group's entries from disk that a store needs done: entries from `low`
/// (inclusive) to `high` (exclusive), stopping after about `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub group: GroupId,
    pub low: u64,
    pub high: u64,
    pub max_bytes: u64,
}

/// One group's log in memory.
#[derive(Clone, Debug, Default)]
pub struct MemLog {
    replica: u64,
    snapshot: Snapshot,
    entries: Vec<Entry>,
    hard_state: HardState,
}

impl MemLog {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert_eq!(
            first.index,
            self.last_index() + 1,
            "append must be contiguous"
        );
        for pair in entries.windows(2) {
            assert_eq!(
                pair[0].index + 1,
                pair[1].index,
                "entries must be contiguous"
            );
            assert!(pair[0].term <= pair[1].term, "terms must not decrease");
        }
        if let Some(last) = self.entries.last() {
            assert!(last.term <= first.term, "terms must not decrease");
        }
        self.entries.extend_from_slice(entries);
    }

    fn truncate_suffix(&mut self, from_index: u64) {
        assert!(
            from_index > self.snapshot_index(),
            "cannot truncate into the snapshot"
        );
        let keep = (from_index - self.first_index()) as usize;
        self.entries.truncate(keep);
    }

    fn compact_prefix(&mut self, snapshot: &Snapshot) {
        let index = snapshot.get_metadata().index;
        if index <= self.snapshot_index() {
            return;
        }
        assert!(
            index <= self.last_index(),
            "cannot compact past the last entry"
        );
        assert_eq!(Some(snapshot.get_metadata().term), self.term(index));
        let drop = (index - self.snapshot_index()) as usize;
        self.entries.drain(..drop);
        self.snapshot = snapshot.clone();
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) {
        self.entries.clear();
        self.snapshot = snapshot.clone();
        let index = snapshot.get_metadata().index;
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
        if self.hard_state.term < snapshot.get_metadata().term {
            self.hard_state.term = snapshot.get_metadata().term;
        }
    }

    fn term(&self, index: u64) -> Option<u64> {
        let snap_index = self.snapshot_index();
        if index == snap_index {
            return Some(self.snapshot.get_metadata().term);
        }
        if index < snap_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.first_index()) as usize].term)
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        assert!(low >= self.first_index() && high <= self.last_index() + 1 && low <= high);
        let start = (low - self.first_index()) as usize;
        let end = (high - self.first_index()) as usize;
        let mut out = Vec::with_capacity(end - start);
        let mut size_bytes = 0u64;
        for e in &self.entries[start..end] {
            size_bytes += (e.data.len() + e.context.len() + 16) as u64;
            if !out.is_empty() && size_bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        out
    }
}

/// All groups' logs of a shard, in memory. `sync` does nothing.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    logs: BTreeMap<GroupId, MemLog>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn log(&self, group: GroupId) -> &MemLog {
        self.logs.get(&group).expect("unknown group in log store")
    }

    fn log_mut(&mut self, group: GroupId) -> &mut MemLog {
        self.logs
            .get_mut(&group)
            .expect("unknown group in log store")
    }

    /// Whether the store has a log for `group`.
    pub fn has_group(&self, group: GroupId) -> bool {
        self.logs.contains_key(&group)
    }
}

impl LogStore for MemStore {
    fn group_ids(&self) -> Vec<GroupId> {
        self.logs.keys().copied().collect()
    }

    fn create_group(
        &mut self,
        group: GroupId,
        replica: u64,
        snapshot: &Snapshot,
        hard_state: &HardState,
    ) {
        let log = MemLog {
            replica,
            snapshot: snapshot.clone(),
            entries: Vec::new(),
            hard_state: hard_state.clone(),
        };
        let previous = self.logs.insert(group, log);
        assert!(previous.is_none(), "group {group} already exists");
    }

    fn replica_id(&self, group: GroupId) -> u64 {
        self.log(group).replica
    }

    fn remove_group(&mut self, group: GroupId) {
        self.logs.remove(&group);
    }

    fn append(&mut self, group: GroupId, entries: &[Entry]) {
        self.log_mut(group).append(entries);
    }

    fn truncate_suffix(&mut self, group: GroupId, from_index: u64) {
        self.log_mut(group).truncate_suffix(from_index);
    }

    fn compact_prefix(&mut self, group: GroupId, snapshot: &Snapshot) {
        self.log_mut(group).compact_prefix(snapshot);
    }

    fn install_snapshot(&mut self, group: GroupId, snapshot: &Snapshot) {
        self.log_mut(group).install_snapshot(snapshot);
    }

    fn set_hard_state(&mut self, group: GroupId, hard_state: &HardState) {
        self.log_mut(group).hard_state = hard_state.clone();
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn hard_state(&self, group: GroupId) -> HardState {
        self.log(group).hard_state.clone()
    }

    fn snapshot(&self, group: GroupId) -> Snapshot {
        self.log(group).snapshot.clone()
    }

    fn first_index(&self, group: GroupId) -> u64 {
        self.log(group).first_index()
    }

    fn last_index(&self, group: GroupId) -> u64 {
        self.log(group).last_index()
    }

    fn term(&self, group: GroupId, index: u64) -> Option<u64> {
        self.log(group).term(index)
    }

    fn entries(&self, group: GroupId, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        self.log(group).entries(low, high, max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    #[test]
    fn append_truncate_compact() {
        let mut s = MemStore::new();
        s.create_group(7, 1, &Snapshot::default(), &HardState::default());
        s.append(7, &[entry(1, 1), entry(2, 1), entry(3, 2)]);
        assert_eq!((s.first_index(7), s.last_index(7)), (1, 3));
        s.truncate_suffix(7, 3);
        s.append(7, &[entry(3, 3)]);
        assert_eq!(s.term(7, 3), Some(3));
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 2;
        snap.mut_metadata().term = 1;
        s.compact_prefix(7, &snap);
        assert_eq!((s.first_index(7), s.last_index(7)), (3, 3));
        assert_eq!(s.term(7, 2), Some(1));
        assert_eq!(s.term(7, 1), None);
        assert_eq!(s.entries(7, 3, 4, 0).len(), 1);
    }

    #[test]
    #[should_panic(expected = "contiguous")]
    fn append_with_gap_panics() {
        let mut s = MemStore::new();
        s.create_group(1, 1, &Snapshot::default(), &HardState::default());
        s.append(1, &[entry(2, 1)]);
    }
}
