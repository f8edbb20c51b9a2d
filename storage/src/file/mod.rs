//! The file store: a directory of append-only segments written with O_DIRECT
//! through io_uring (glommio DMA files), group commit, recovery.
//!
//! All methods take `&self` and never hold the inner borrow across an await, so
//! the owning shard can share one `Rc<FileStore>` between its publish tasks
//! (which `append`) and a flusher task (which `commit`s once per loop turn).
//!
//! Module map:
//! - `mod`          `FileStore`, its state (`Inner`, segments) and the small public calls
//! - `tail`         appends: records encoded into the tail's DMA buffers, chunks and their writes
//! - `commit`       group commit: the pipeline of write phase, fdatasync and in-order completion
//! - `open`         opening a directory: listing, loading indexes or scanning, `RecoveryReport`
//! - `index_writes` the indexes of sealed segments, written in the background
//! - `read`         `get` and its sources: tail memory, the read-ahead block, the file
//! - `retention`    delete, purge, limits, Raft compaction; removing front segments
//! - `truncate`     cutting files: Raft suffix truncation, recovery after a failed commit

mod commit;
mod index_writes;
mod open;
mod read;
mod retention;
mod tail;
#[cfg(test)]
mod tests;
mod truncate;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use glommio::io::DmaBuffer;

use crate::config::LogConfig;
use crate::core::Core;
use crate::disk::{Disk, SegFile};
use crate::index::{SegmentIndex, INDEX_VERSION};
use crate::watch::{DurableWatch, Ticket};
use crate::{Result, StoreError};

use commit::{Done, SyncWanted};
use index_writes::IndexWrites;
pub use open::RecoveryReport;
use read::ReadBlock;
use tail::{Chunk, Pending};

/// Write granularity and alignment of the tail block.
const BLOCK_BYTES: u64 = 4096;

/// Where a record lives: segment, offset and stored length (0 for a missing one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loc {
    seg: u32,
    offset: u32,
    len: u32,
}

struct Seg {
    id: u32,
    file: Option<Rc<SegFile>>,
    data_len: u64,
    last_msg_seq: u64,
    /// Index being built while the segment is written; `None` once sealed.
    building: Option<Building>,
}

struct Building {
    index: SegmentIndex,
    local_subjects: HashMap<u32, u32>,
    /// (subject id, local id) of the last message, checked before the map.
    hot_subject: (u32, u32),
}

struct Inner {
    disk: Disk,
    dir: PathBuf,
    cfg: LogConfig,
    core: Core<Loc>,
    segs: Vec<Seg>,
    pending: Pending,
    /// Size of the next tail buffer: doubles while batches fill buffers.
    piece_bytes: usize,
    /// Full-size buffers whose write completed, for reuse.
    free: Vec<DmaBuffer>,
    /// Chunks for the next commit (their writes may have started already).
    finished: Vec<Chunk>,
    /// Chunks of commits not finished yet (still readable from memory), by commit.
    inflight: Vec<(u64, Vec<Chunk>)>,
    commits_begun: u64,
    /// Files were created since the directory was last synced.
    dir_dirty: bool,
    /// (floor, term) of the last compact marker encoded.
    marker: (u64, u64),
    marker_durable_floor: u64,
    /// Segment holding the last encoded / last durable compact marker.
    marker_seg: u32,
    marker_durable_seg: u32,
    /// Files written by commits that did not sync (interval mode, `commit_unsynced`):
    /// the next syncing commit syncs them too.
    unsynced_files: Vec<Rc<SegFile>>,
    /// Commits begun without a sync and not finished.
    unsynced_in_flight: u32,
    /// Segments complete but not yet synced: sealed by the next sync.
    seal_after_sync: Vec<u32>,
    report: RecoveryReport,
    spare: Option<(u32, Rc<SegFile>)>,
    needs_recovery: bool,
    /// Tail segment and its length at the last successful commit.
    durable_point: (u32, u64),
    durable_seq: u64,
    last_sync: Instant,
    last_ts_ns: u64,
    /// Index writes of sealed segments still in flight.
    idx_writes: Rc<IndexWrites>,
}

/// Test hook run before a commit's fdatasync, with the commit's number.
#[cfg(test)]
type SyncHook =
    Box<dyn Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>>>>>;

pub struct FileStore {
    inner: RefCell<Inner>,
    watch: Rc<DurableWatch>,
    /// Held by a commit while it starts its writes and creates the files they
    /// need (and by truncation and recovery). A write that rewrites the
    /// previous one's partial last block waits for that write itself
    /// (`Chunk::after`); every other write is independent.
    commit_lock: glommio::sync::Semaphore,
    /// The last commit begun; each one completes after its predecessor.
    last_done: RefCell<Option<Rc<Done>>>,
    /// The last block read from a segment: a consumer reading forward is served
    /// from it instead of one read per record.
    read_cache: RefCell<Option<ReadBlock>>,
    /// Bumped whenever files are cut or reloaded: older cached blocks are void.
    read_epoch: Cell<u64>,
    /// Cuts or reloads in progress: no block is cached or served meanwhile.
    cutting: Cell<u32>,
    #[cfg(test)]
    sync_hook: RefCell<Option<SyncHook>>,
}

fn seg_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.seg"))
}

fn idx_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.idx"))
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn align_down(v: u64) -> u64 {
    v & !(BLOCK_BYTES - 1)
}

impl Building {
    fn new(id: u32) -> Self {
        Building {
            index: SegmentIndex {
                version: INDEX_VERSION,
                segment_id: id,
                ..SegmentIndex::default()
            },
            local_subjects: HashMap::new(),
            hot_subject: (u32::MAX, 0),
        }
    }
}

impl Inner {
    fn tail(&self) -> &Seg {
        self.segs.last().expect("a log always has a tail segment")
    }

    fn tail_mut(&mut self) -> &mut Seg {
        self.segs
            .last_mut()
            .expect("a log always has a tail segment")
    }

    fn seg(&self, id: u32) -> Option<&Seg> {
        let first = self.segs.first()?.id;
        self.segs.get(id.checked_sub(first)? as usize)
    }

    /// The tail buffer ends where the tail segment's data does (cheap: every append).
    fn check_tail(&self) {
        let (p, tail) = (&self.pending, self.tail());
        debug_assert_eq!(
            p.seg, tail.id,
            "the tail buffer belongs to the tail segment"
        );
        debug_assert_eq!(
            p.start % BLOCK_BYTES,
            0,
            "the tail buffer starts on a block"
        );
        debug_assert_eq!(p.start + p.fill as u64, tail.data_len);
        debug_assert!(p.written <= p.fill);
    }

    /// The file store's invariants (the sequence table checks its own). Debug
    /// builds only, after open and each commit: it walks every segment.
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let (first, last) = (self.core.base_seq(), self.core.last_seq());
        assert!(first <= last + 1, "first {first} > last {last} + 1");
        assert!(
            self.durable_seq <= last,
            "durable {} beyond last {last}",
            self.durable_seq
        );
        for w in self.segs.windows(2) {
            assert_eq!(w[1].id, w[0].id + 1, "segments are contiguous");
            assert!(
                w[0].last_msg_seq <= w[1].last_msg_seq || w[1].last_msg_seq == 0,
                "segments hold ascending sequences"
            );
        }
        for s in &self.segs {
            assert!(
                s.data_len <= self.cfg.segment_size_bytes,
                "segment {} overfull",
                s.id
            );
        }
        let (seg, len) = self.durable_point;
        let tail = self.tail();
        assert!(
            seg < tail.id || (seg == tail.id && len <= tail.data_len),
            "durable point {seg}:{len} beyond the tail {}:{}",
            tail.id,
            tail.data_len
        );
        self.check_tail();
    }

    fn check_usable(&self) -> Result<()> {
        if self.needs_recovery {
            return Err(StoreError::Io(std::io::Error::other(
                "log is recovering from a failed write",
            )));
        }
        Ok(())
    }
}

impl FileStore {
    /// Opens (or creates) the log in `dir`, recovering it.
    pub async fn open(dir: impl AsRef<Path>, cfg: LogConfig) -> Result<FileStore> {
        FileStore::open_on(Disk::Real, dir, cfg).await
    }

    /// Like `open`, with the files on `disk` (a faulty one, in tests).
    pub async fn open_on(disk: Disk, dir: impl AsRef<Path>, cfg: LogConfig) -> Result<FileStore> {
        let inner = Inner::open(disk, dir.as_ref(), cfg).await?;
        let watch = DurableWatch::new(inner.core.last_seq());
        Ok(FileStore {
            inner: RefCell::new(inner),
            watch,
            commit_lock: glommio::sync::Semaphore::new(1),
            last_done: RefCell::new(None),
            read_cache: RefCell::new(None),
            read_epoch: Cell::new(0),
            cutting: Cell::new(0),
            #[cfg(test)]
            sync_hook: RefCell::new(None),
        })
    }

    /// What recovery found (plus corruption found by reads since).
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.borrow().report.clone()
    }

    pub fn watch(&self) -> Rc<DurableWatch> {
        self.watch.clone()
    }

    /// Appends a message now (sequence assigned); durable after the next commit.
    pub fn append(&self, subject: &str, headers: &[u8], payload: &[u8]) -> Result<Ticket> {
        let mut inner = self.inner.borrow_mut();
        inner.check_usable()?;
        let ts = now_ns().max(inner.last_ts_ns);
        let seq = inner.core.last_seq() + 1;
        inner.put_msg(seq, ts, 0, subject, headers, payload)?;
        Ok(self.watch.ticket(seq))
    }

    /// Appends with an explicit timestamp (replicas apply the leader's).
    pub fn append_at(
        &self,
        ts_ns: u64,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<Ticket> {
        let mut inner = self.inner.borrow_mut();
        inner.check_usable()?;
        let ts = ts_ns.max(inner.last_ts_ns);
        let seq = inner.core.last_seq() + 1;
        inner.put_msg(seq, ts, 0, subject, headers, payload)?;
        Ok(self.watch.ticket(seq))
    }

    /// Raft: appends the entry at `index` (must be `last_index + 1`).
    pub fn append_entry(&self, index: u64, term: u64, data: &[u8]) -> Result<Ticket> {
        let mut inner = self.inner.borrow_mut();
        inner.check_usable()?;
        let last = inner.core.last_seq();
        if index != last + 1 {
            return Err(StoreError::Invalid(format!(
                "append at index {index}, last index is {last}"
            )));
        }
        let ts = now_ns().max(inner.last_ts_ns);
        inner.put_msg(index, ts, term, "", b"", data)?;
        Ok(self.watch.ticket(index))
    }

    /// Completes when the ticket's record is durable (`Always`) or written (`Interval`).
    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        self.watch.wait(ticket).await
    }

    /// Writes everything appended so far in one batch and (in `Always` mode) one
    /// fdatasync; returns the last sequence covered. On failure, the log cuts
    /// itself back to the last durable point and stays usable.
    pub async fn commit(&self) -> Result<u64> {
        self.commit_with(SyncWanted::AsConfigured).await
    }

    /// Like `commit` but always syncs, whatever the durability mode.
    pub async fn sync(&self) -> Result<u64> {
        self.commit_with(SyncWanted::Now).await
    }

    /// Like `commit` but without the fdatasync, whatever the durability mode: for a
    /// log whose records are durable elsewhere until a later `sync` (a replicated
    /// stream's, in its group's Raft log). What it wrote survives a crash of the
    /// process, and counts as durable for `wait_durable` and `durable_seq`.
    pub async fn commit_unsynced(&self) -> Result<u64> {
        self.commit_with(SyncWanted::Later).await
    }

    /// Number of segment files (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.inner.borrow().segs.len()
    }

    /// Commits what is pending and waits for the index writes of sealed
    /// segments; the files stay consistent without it (dropping the store
    /// cancels index writes in flight: those segments are scanned on reopen).
    pub async fn close(self) -> Result<()> {
        self.sync().await?;
        self.flush_indexes().await;
        Ok(())
    }

    /// Waits until the indexes of the segments sealed so far are written (or
    /// their writes failed or were cancelled: an index is only a cache).
    pub async fn flush_indexes(&self) {
        let w = self.inner.borrow().idx_writes.clone();
        w.wait_all().await;
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // Nothing owns the directory any more: no index may land in it later.
        self.inner.get_mut().idx_writes.cancel_all();
    }
}
