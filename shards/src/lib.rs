//! The thread-per-core runtime: one pinned glommio executor per shard, a full mesh of
//! bounded queues between shards, and the small single-threaded primitives that a
//! shard's tasks use to wake each other.
//!
//! Module map:
//! - `runtime`: starting the executors and handing each its end of the mesh.
//! - `notify`: a one-waiter wake-up flag for tasks on the same shard.
//! - `memlock`: raising RLIMIT_MEMLOCK so io_uring buffer registration works.
//! - `park_guard`: a watchdog that wakes an executor glommio put to sleep with work queued.

pub mod memlock;
pub mod notify;
pub mod park_guard;
pub mod runtime;

pub use notify::{Notify, WaitSet};
pub use runtime::{run, ShardContext, ShardSettings};
