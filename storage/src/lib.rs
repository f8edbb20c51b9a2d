//! Natrix storage: the segment-file log on io_uring, for JetStream streams and Raft logs.
//!
//! Module map (pure logic first, I/O last):
//! - `frame`    record framing: encode, `check`/`parse` (Incomplete / Invalid)
//! - `index`    per-segment index, persisted with rkyv beside sealed segments
//! - `recovery` verifying a segment's bytes: torn tail vs damage in the middle
//! - `core`     dense seq -> entry table, per-subject state, retention decisions
//! - `subject`  NATS subject filters
//! - `config`   log/stream configuration and public value types
//! - `watch`    per-record durability notification
//! - `disk`     the disk seam: the real disk (io_uring) or a fault-injecting one (tests)
//! - `file`     the file store: segments on a `Disk`, group commit, recovery
//! - `memory`   the memory store, same API (`storage: memory`)
//! - `raft`     the Raft log view of a file store
//! - `store`    `Store`: file or memory behind one type
//! - `rt`       runtime helpers (memlock limit, a small executor)

pub mod config;
mod core;
pub mod disk;
mod error;
pub mod file;
pub mod frame;
pub mod index;
pub mod memory;
pub mod raft;
pub mod recovery;
pub mod rt;
pub mod store;
pub mod subject;
pub mod watch;

pub use crate::core::DeletedRuns;
pub use config::{Discard, Durability, Limits, LogConfig, PurgeRequest, StoredMsg, StreamState};
pub use disk::Disk;
pub use error::{Result, StoreError};
pub use file::{FileStore, RecoveryReport};
pub use memory::MemStore;
pub use raft::RaftLog;
pub use store::Store;
pub use watch::{DurableWatch, Ticket};
