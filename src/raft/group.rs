//! One Raft group: a `raft::RawNode` over the shard's [`LogStore`], plus the state the
//! multi-raft driver keeps beside it (quiet flag, applied index and configuration).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, RawNode, StorageError};

use super::log_store::{GroupId, LogStore};

/// `raft::Storage` for one group, reading the shard's shared store.
///
/// The store is shared by every group of the shard through `Rc<RefCell<_>>`: a shard is
/// one thread, and the driver never holds a borrow across a call into raft.
pub struct GroupStorage<S: LogStore> {
    group: GroupId,
    store: Rc<RefCell<S>>,
    /// Set when raft needed a snapshot the store does not have (too old, or taken
    /// before the peer joined): the application is asked for a fresh one.
    snapshot_wanted: Rc<Cell<bool>>,
}

impl<S: LogStore> GroupStorage<S> {
    pub(crate) fn new(group: GroupId, store: Rc<RefCell<S>>, wanted: Rc<Cell<bool>>) -> Self {
        Self {
            group,
            store,
            snapshot_wanted: wanted,
        }
    }
}

impl<S: LogStore> raft::Storage for GroupStorage<S> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let s = self.store.borrow();
        let snap = s.snapshot(self.group);
        let mut hs: HardState = s.hard_state(self.group);
        // The snapshot is committed by definition, even if the hard state written with
        // it was lost in a crash.
        let snap_index = snap.get_metadata().index;
        hs.commit = hs.commit.max(snap_index);
        hs.term = hs.term.max(snap.get_metadata().term);
        Ok(RaftState::new(
            hs,
            snap.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let mut s = self.store.borrow_mut();
        if low < s.first_index(self.group) {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= s.last_index(self.group) + 1,
            "entries past the last index"
        );
        let max_bytes = max_size.into().unwrap_or(u64::MAX);
        if low >= high || s.cached_through(self.group, low) + 1 >= high {
            return Ok(s.entries(self.group, low, high, max_bytes));
        }
        // Part of the range is on disk only: answer what is in memory (a short
        // answer is fine for raft, it is what a size limit gives) and queue a read.
        let got = s.entries(self.group, low, high, max_bytes);
        if !context.can_async() {
            // Only a ready's committed entries may come back short or empty (they are
            // applied once read): the driver keeps the other synchronous reads,
            // elections and commit-by-vote, off groups whose unapplied entries are not
            // all in memory.
            debug_assert!(
                format!("{context:?}").contains("GenReady"),
                "synchronous read of entries not in memory: {context:?} [{low}, {high})"
            );
            let next = low + got.len() as u64;
            s.want_entries(self.group, next, high, max_bytes, None);
            return Ok(got);
        }
        if got.is_empty() {
            s.want_entries(self.group, low, high, max_bytes, Some(context));
            return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
        }
        Ok(got)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let s = self.store.borrow();
        match s.term(self.group, idx) {
            Some(t) => Ok(t),
            None if idx < s.first_index(self.group) => {
                Err(raft::Error::Store(StorageError::Compacted))
            }
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.store.borrow().first_index(self.group))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.store.borrow().last_index(self.group))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let snap = self.store.borrow().snapshot(self.group);
        let cs = snap.get_metadata().get_conf_state();
        if snap.get_metadata().index < request_index || !conf_members(cs).any(|m| m == to) {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap)
    }
}

/// A group as the driver holds it.
pub(crate) struct Group<S: LogStore> {
    pub node: RawNode<GroupStorage<S>>,
    /// Not ticked while quiet.
    pub quiet: bool,
    /// Consecutive ticks the (leader) group was idle enough to go quiet.
    pub idle_ticks: u32,
    /// Index of the last entry handed to the application.
    pub applied: u64,
    /// Configuration as of `applied`.
    pub conf_state: ConfState,
    /// Raft asked for a snapshot the store could not give.
    pub snapshot_wanted: Rc<Cell<bool>>,
    /// Distinguishes a re-created replica from an earlier one of the same group.
    pub instance: u64,
    /// Woken only because the leader's node was suspected dead: `(term, leader, was
    /// quiet)` then. If that node is heard from again before anything else happened
    /// to the group, the wake is undone.
    pub suspicion_wake: Option<(u64, u64, bool)>,
}

impl<S: LogStore> Group<S> {
    pub fn replica(&self) -> u64 {
        self.node.raft.id
    }
}

/// Every replica id of a configuration, joint and learner parts included.
pub fn conf_members(cs: &ConfState) -> impl Iterator<Item = u64> + '_ {
    cs.voters
        .iter()
        .chain(cs.voters_outgoing.iter())
        .chain(cs.learners.iter())
        .chain(cs.learners_next.iter())
        .copied()
}
