//! `Store`: a stream's storage, on files or in memory, behind one type.

use crate::config::{Limits, PurgeRequest, StoredMsg, StreamState};
use crate::file::FileStore;
use crate::memory::MemStore;
use crate::watch::Ticket;
use crate::Result;

// One per stream or group, owned by its shard: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    File(FileStore),
    Memory(MemStore),
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::File($s) => $e,
            Store::Memory($s) => $e,
        }
    };
}

impl Store {
    pub fn append(&self, subject: &str, headers: &[u8], payload: &[u8]) -> Result<Ticket> {
        both!(self, s => s.append(subject, headers, payload))
    }
    pub fn append_at(
        &self,
        ts_ns: u64,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<Ticket> {
        both!(self, s => s.append_at(ts_ns, subject, headers, payload))
    }
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        both!(self, s => s.wait_durable(ticket).await)
    }
    pub async fn commit(&self) -> Result<u64> {
        both!(self, s => s.commit().await)
    }
    /// A commit that also syncs, whatever the durability mode.
    pub async fn sync(&self) -> Result<u64> {
        both!(self, s => s.sync().await)
    }
    /// A commit without the sync (see `FileStore::commit_unsynced`).
    pub async fn commit_unsynced(&self) -> Result<u64> {
        both!(self, s => s.commit_unsynced().await)
    }

    /// Drops `seq` and every later record (durably, when it returns).
    pub async fn truncate_from(&self, seq: u64) -> Result<()> {
        both!(self, s => s.truncate_from(seq).await)
    }
    pub async fn get(&self, seq: u64) -> Result<Option<StoredMsg>> {
        both!(self, s => s.get(seq).await)
    }
    pub async fn range(&self, from: u64, to: u64, max_msgs: usize) -> Result<Vec<StoredMsg>> {
        both!(self, s => s.range(from, to, max_msgs).await)
    }
    pub async fn last_for_subject(&self, subject: &str) -> Result<Option<StoredMsg>> {
        both!(self, s => s.last_for_subject(subject).await)
    }
    pub fn seq_for_time(&self, ts_ns: u64) -> Option<u64> {
        both!(self, s => s.seq_for_time(ts_ns))
    }
    pub fn subject_counts(&self, filter: &str) -> Vec<(String, u64)> {
        both!(self, s => s.subject_counts(filter))
    }
    pub fn next_matching(&self, from: u64, filters: &[String]) -> Option<u64> {
        both!(self, s => s.next_matching(from, filters))
    }
    pub fn count_matching(&self, from: u64, filters: &[String]) -> u64 {
        both!(self, s => s.count_matching(from, filters))
    }
    pub fn subject_of(&self, seq: u64) -> Option<String> {
        both!(self, s => s.subject_of(seq))
    }
    pub fn count_matching_range(&self, from: u64, to: u64, filters: &[String]) -> u64 {
        both!(self, s => s.count_matching_range(from, to, filters))
    }

    /// How many removals the store has seen: a mark for `removed_since`.
    pub fn removals(&self) -> u64 {
        both!(self, s => s.removals())
    }

    /// Whether a removal after mark `since` took a sequence `>= from` (`None`:
    /// too long ago to tell).
    pub fn removed_since(&self, since: u64, from: u64) -> Option<bool> {
        both!(self, s => s.removed_since(since, from))
    }
    pub fn last_per_subject(&self, filters: &[String]) -> Vec<u64> {
        both!(self, s => s.last_per_subject(filters))
    }
    pub fn last_seq_of_subject(&self, subject: &str) -> Option<u64> {
        both!(self, s => s.last_seq_of_subject(subject))
    }
    pub fn deleted(&self) -> Vec<u64> {
        both!(self, s => s.deleted())
    }
    pub fn deleted_runs(&self, from: u64, to: u64, runs_max: usize) -> crate::DeletedRuns {
        both!(self, s => s.deleted_runs(from, to, runs_max))
    }
    /// The last sequence stored (a cheap `state().last_seq`).
    pub fn last_seq(&self) -> u64 {
        both!(self, s => s.last_index())
    }
    /// Everything up to this sequence is durable.
    pub fn durable_seq(&self) -> u64 {
        both!(self, s => s.watch().durable_seq())
    }
    /// Whether a sequence at or after `seq` was lost to damage (found on open or
    /// by a read): such a store cannot tell a lost message from a deleted one.
    pub fn lost_from(&self, seq: u64) -> bool {
        match self {
            Store::File(s) => s.recovery_report().missing.iter().any(|m| m.1 >= seq),
            Store::Memory(_) => false,
        }
    }
    /// Starts an empty log at `first_seq` (a stream's `first_seq`).
    pub fn start_at(&self, first_seq: u64) -> Result<()> {
        both!(self, s => s.compact(first_seq, 0))
    }
    pub async fn close(self) -> Result<()> {
        match self {
            Store::File(s) => s.close().await,
            Store::Memory(_) => Ok(()),
        }
    }
    pub fn state(&self) -> StreamState {
        both!(self, s => s.state())
    }
    pub fn delete(&self, seq: u64) -> Result<bool> {
        both!(self, s => s.delete(seq))
    }
    pub fn purge(&self, req: &PurgeRequest) -> Result<u64> {
        both!(self, s => s.purge(req))
    }
    pub fn expire(&self, now_ns: u64) -> Result<u64> {
        both!(self, s => s.expire(now_ns))
    }
    pub fn set_limits(&self, limits: Limits) -> Result<u64> {
        both!(self, s => s.set_limits(limits))
    }
}
