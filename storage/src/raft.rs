//! The Raft log view of a store: entries are records whose sequence is the Raft
//! index and whose term is kept in the frame; the stream's log is the Raft log.

use crate::file::FileStore;
use crate::memory::MemStore;
use crate::watch::Ticket;
use crate::Result;

/// What the consensus layer needs from its log.
// One per stream or group, owned by its shard: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum RaftLog {
    File(FileStore),
    Memory(MemStore),
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            RaftLog::File($s) => $e,
            RaftLog::Memory($s) => $e,
        }
    };
}

impl RaftLog {
    /// Appends entries starting at `index` (must be `last_index + 1`; truncate first
    /// on conflict). Durable after `commit`.
    pub fn append(&self, index: u64, entries: &[(u64, &[u8])]) -> Result<Option<Ticket>> {
        let mut last = None;
        for (i, (term, data)) in entries.iter().enumerate() {
            last = Some(both!(self, s => s.append_entry(index + i as u64, *term, data))?);
        }
        Ok(last)
    }
    pub async fn commit(&self) -> Result<u64> {
        both!(self, s => s.commit().await)
    }
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        both!(self, s => s.wait_durable(ticket).await)
    }
    /// Removes `index..=last_index`, durably.
    pub async fn truncate_suffix(&self, index: u64) -> Result<()> {
        both!(self, s => s.truncate_from(index).await)
    }
    /// Drops entries below `index` (covered by a snapshot whose last entry has `term`).
    pub fn compact_prefix(&self, index: u64, term: u64) -> Result<()> {
        both!(self, s => s.compact(index, term))
    }
    pub fn first_index(&self) -> u64 {
        both!(self, s => s.first_index())
    }
    pub fn last_index(&self) -> u64 {
        both!(self, s => s.last_index())
    }
    pub fn term(&self, index: u64) -> Option<u64> {
        both!(self, s => s.term(index))
    }
    /// Entry data at `index`.
    pub async fn entry(&self, index: u64) -> Result<Option<(u64, bytes::Bytes)>> {
        let m = both!(self, s => s.get(index).await)?;
        Ok(m.map(|m| (m.term, m.payload)))
    }
}
