//! Consensus: multi-Raft on the shards, over tikv's `raft` crate.
//!
//! See `src/raft/README.md` for the design (quiet groups, frame batching, persistence,
//! default timings).
//!
//! - [`log_store`]: the storage trait the groups persist through, and an in-memory store.
//! - [`group`]: one group (a `raft::RawNode` over the shard's store).
//! - [`multi`]: the per-shard driver: one timer, one frame per peer per turn, quiet groups.
//! - [`storage_log`]: the store on natrix-storage (one segment log per group).
//! - [`persist_format`]: the entry payload, state file and snapshot file encodings.
//! - [`frame`]: the wire format between nodes (crc32c-checked frames).
//! - [`inbound`]: checks of a peer's Raft message before the `raft` crate sees it.
//! - [`transport`]: TCP between nodes (one writer per peer, reconnect with backoff).
//! - [`node`]: a node's shard on its own executor: driver, store, transport, timer.
//! - [`local`]: an in-process cluster with instant delivery, for tests and benchmarks.

pub mod frame;
pub mod group;
pub mod inbound;
pub mod local;
pub mod log_store;
#[cfg(test)]
mod log_store_suite;
pub mod multi;
pub mod node;
pub mod persist_format;
pub mod storage_log;
#[cfg(test)]
mod storage_log_tests;
pub mod transport;

pub use log_store::{GroupId, LogStore, MemStore};
pub use multi::{Applied, Config, MultiRaft, Proposal, ProposeError, Ready};
pub use raft::eraftpb;
pub use raft::StateRole;
pub use storage_log::{CacheConfig, FileLogStore};

/// A node of the cluster (one server).
pub type NodeId = u64;

/// Index and term of the snapshot every bootstrapped group starts from. A replica added
/// later starts empty and so always receives a snapshot carrying the configuration.
pub const INIT_INDEX: u64 = 1;
pub const INIT_TERM: u64 = 1;

const GENERATION_BITS: u32 = 24;

/// The Raft id of a replica: the node it lives on and a generation, so that a node
/// removed from a group and added again gets a fresh identity (no stale votes).
pub fn replica_id(node: NodeId, generation: u64) -> u64 {
    assert!(node > 0 && node < (1 << (64 - GENERATION_BITS)));
    assert!(generation > 0 && generation < (1 << GENERATION_BITS));
    (node << GENERATION_BITS) | generation
}

/// The node a replica lives on.
pub fn node_of(replica: u64) -> NodeId {
    replica >> GENERATION_BITS
}
