//! What the world needs from a node's disk, whatever the store on it: open the store
//! (at start and after a crash), run its group commits and log reads, crash, and report
//! the entries written for the log-matching check. `MemDisk` is the simulated disk of
//! `disk.rs`; `file_disk::FileDisk` is the real `FileLogStore` on a `FaultyDisk`.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::rc::Rc;

use natrix::raft::log_store::FetchRequest;
use natrix::raft::{GroupId, LogStore, MultiRaft};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::disk::{SimDisk, Written};
use super::world::Faults;

/// A node's disk, across the lives of its process.
pub trait NodeDisk: Sized + 'static {
    type Store: LogStore + 'static;

    /// The disk of node `node` (0-based) in the run of `seed`, empty.
    fn new(seed: u64, node: usize, faults: &Faults) -> Self;

    /// Runs a whole simulation (the world's future) to completion.
    fn block_on<T, F, Fut>(f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static;

    /// Opens the store for a process starting now. An error is the node refusing
    /// to start.
    fn open(&mut self) -> impl Future<Output = io::Result<Rc<RefCell<Self::Store>>>>;

    /// Makes everything written so far durable, now (set-up only).
    fn sync_now(&mut self) -> impl Future<Output = io::Result<()>>;

    /// Whether writes wait for a group commit that no sync ticket asked for.
    fn has_pending(&self) -> bool;

    /// Starts a group commit of everything written so far.
    fn start_sync(&mut self);

    /// The outcome of the group commit started last, once it completed.
    fn poll_sync(&mut self) -> Option<io::Result<()>>;

    /// Starts reading the entries of a fetch from disk.
    fn start_fetch(&mut self, req: FetchRequest);

    /// Whether reads started are not taken yet.
    fn fetches_in_flight(&self) -> bool;

    /// Hands the entries of the fetches completed since last asked to the store;
    /// returns their groups (for the driver's `on_entries_fetched`).
    fn take_fetched(&mut self) -> io::Result<Vec<GroupId>>;

    /// Power loss: the process dies with its store and its I/O in flight; the disk
    /// keeps what it keeps.
    fn crash(&mut self, rng: &mut ChaCha8Rng) -> CrashLoss;

    /// Entries written since last asked (the driver's store of this life).
    fn take_written(&mut self, driver: &MultiRaft<Self::Store>) -> Vec<Written>;

    /// Whether the disk holds a replica of `g`.
    fn has_group(&self, g: GroupId) -> bool;

    /// The disk for streams' stores, beside the Raft log (stream mode), if files
    /// can live on it.
    fn stream_disk(&self) -> Option<natrix_storage::Disk> {
        None
    }
}

/// What a crash lost.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrashLoss {
    /// Writes (and directory operations) not synced that did not land.
    pub ops_lost: u64,
    /// Writes of which only the first sectors landed.
    pub writes_torn: u64,
}

/// The simulated disk of `disk.rs`: a sync completes whenever the world says so.
pub struct MemDisk {
    disk: Rc<RefCell<SimDisk>>,
    lying_fsync: bool,
    /// The write sequence the sync in flight covers.
    sync_seq: Option<u64>,
}

impl NodeDisk for MemDisk {
    type Store = SimDisk;

    fn new(_seed: u64, _node: usize, faults: &Faults) -> Self {
        MemDisk {
            disk: Rc::new(RefCell::new(SimDisk::default())),
            lying_fsync: faults.lying_fsync,
            sync_seq: None,
        }
    }

    fn block_on<T, F, Fut>(f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        futures_lite::future::block_on(f())
    }

    async fn open(&mut self) -> io::Result<Rc<RefCell<SimDisk>>> {
        Ok(self.disk.clone())
    }

    async fn sync_now(&mut self) -> io::Result<()> {
        self.disk.borrow_mut().sync()
    }

    fn has_pending(&self) -> bool {
        false
    }

    fn start_sync(&mut self) {
        self.sync_seq = Some(self.disk.borrow().written_seq());
    }

    fn poll_sync(&mut self) -> Option<io::Result<()>> {
        let seq = self.sync_seq.take().expect("a sync in flight");
        if !self.lying_fsync {
            self.disk.borrow_mut().complete_sync(seq);
        }
        Some(Ok(()))
    }

    fn start_fetch(&mut self, _req: FetchRequest) {
        unreachable!("the simulated disk keeps every entry in memory");
    }

    fn fetches_in_flight(&self) -> bool {
        false
    }

    fn take_fetched(&mut self) -> io::Result<Vec<GroupId>> {
        Ok(Vec::new())
    }

    fn crash(&mut self, rng: &mut ChaCha8Rng) -> CrashLoss {
        let unsynced = self.disk.borrow().unsynced_ops();
        let keep = if self.lying_fsync {
            0
        } else {
            rng.gen_range(0..=unsynced)
        };
        self.disk.borrow_mut().crash(keep);
        self.sync_seq = None;
        CrashLoss {
            ops_lost: (unsynced - keep) as u64,
            writes_torn: 0,
        }
    }

    fn take_written(&mut self, _driver: &MultiRaft<SimDisk>) -> Vec<Written> {
        std::mem::take(&mut self.disk.borrow_mut().written)
    }

    fn has_group(&self, g: GroupId) -> bool {
        self.disk.borrow().has_group(g)
    }
}
