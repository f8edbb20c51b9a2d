//! Group commit. A commit takes the batch appended since the last one, starts
//! its writes under the commit lock (creating the segment files they need),
//! releases the lock so that the next batch's writes overlap, waits for its
//! writes, issues one fdatasync per file, and completes only after the commit
//! before it: a record is reported durable when its own batch's sync and every
//! earlier batch's succeeded.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use super::tail::{
    start_write, Chunk, WriteOp, FREE_PIECES, FREE_PIECES_IDLE, PIECE_MAX_BYTES, PIECE_MIN_BYTES,
};
use super::{seg_path, FileStore, Inner};
use crate::config::Durability;
use crate::disk::{Disk, SegFile};
use crate::watch::DurableWatch;
use crate::{Result, StoreError};

/// The outcome of one commit, for the commits pipelined behind it: a commit
/// reports durability only once its predecessor did.
#[derive(Default)]
pub(super) struct Done {
    ok: Cell<Option<bool>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Done {
    pub(super) fn complete(&self, ok: bool) {
        self.ok.set(Some(ok));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Completes with whether that commit (and hence all before it) succeeded.
    pub(super) async fn wait(&self) -> bool {
        std::future::poll_fn(|cx| match self.ok.get() {
            Some(ok) => Poll::Ready(ok),
            None => {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Whether a commit ends with an fdatasync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SyncWanted {
    /// As the log's durability mode says.
    AsConfigured,
    /// Always (a caller about to rely on the records surviving a power loss).
    Now,
    /// Not now: the records are written (they survive a crash of the process, not
    /// of the machine) and synced by a later commit.
    Later,
}

pub(super) struct CommitJob {
    no: u64,
    chunks: Vec<Chunk>,
    sync: bool,
    /// Began while an unsynced commit was in flight: it syncs once that one has
    /// finished (commits finish in order, so then every earlier commit's files are
    /// among the unsynced ones it syncs).
    after_unsynced: bool,
    make_spare: Option<u32>,
    last_seq: u64,
    tail_point: (u32, u64),
    marker_floor: u64,
    marker_seg: u32,
}

impl CommitJob {
    /// Segments complete once this commit is durable.
    fn sealed(&self) -> Vec<u32> {
        self.chunks
            .iter()
            .filter(|c| c.seal)
            .map(|c| c.seg)
            .collect()
    }
}

/// Adds to `files` those of `more` it lacks.
fn add_files(files: &mut Vec<Rc<SegFile>>, more: &[Rc<SegFile>]) {
    for f in more {
        if !files.iter().any(|g| Rc::ptr_eq(g, f)) {
            files.push(f.clone());
        }
    }
}

async fn new_segment_file(disk: &Disk, dir: &Path, id: u32, size: u64) -> Result<Rc<SegFile>> {
    let f = disk.open(&seg_path(dir, id), true).await?;
    f.pre_allocate(size).await?;
    Ok(Rc::new(f))
}

impl Inner {
    pub(super) fn begin_commit(&mut self, wanted: SyncWanted) -> Option<CommitJob> {
        self.put_marker_if_moved();
        let sync = match (wanted, self.cfg.durability) {
            (SyncWanted::Now, _) => true,
            (SyncWanted::Later, _) => false,
            (SyncWanted::AsConfigured, Durability::Always) => true,
            (SyncWanted::AsConfigured, Durability::Interval(d)) => self.last_sync.elapsed() >= d,
        };
        if self.finished.is_empty() {
            // A small batch: the next tail buffer need not be larger than twice it.
            let want = (2 * (self.pending.fill - self.pending.written)).next_power_of_two();
            self.piece_bytes = want.clamp(PIECE_MIN_BYTES, PIECE_MAX_BYTES);
            self.free.truncate(FREE_PIECES_IDLE);
        }
        let mut chunks: Vec<Chunk> = std::mem::take(&mut self.finished);
        if let Some(c) = self.take_tail(false) {
            chunks.push(c);
        }
        let unsynced = !self.unsynced_files.is_empty() || self.unsynced_in_flight > 0;
        if chunks.is_empty() && !(sync && unsynced) {
            return None;
        }
        let make_spare = (self.spare.is_none()
            && self.tail().data_len > self.cfg.segment_size_bytes / 2)
            .then_some(self.tail().id + 1);
        self.commits_begun += 1;
        let no = self.commits_begun;
        let after_unsynced = sync && self.unsynced_in_flight > 0;
        if !sync {
            self.unsynced_in_flight += 1;
        }
        let tail = self.tail();
        let tail_point = (tail.id, tail.data_len);
        self.inflight.push((no, chunks.clone()));
        Some(CommitJob {
            no,
            chunks,
            sync,
            after_unsynced,
            make_spare,
            last_seq: self.core.last_seq(),
            tail_point,
            marker_floor: self.marker.0,
            marker_seg: self.marker_seg,
        })
    }

    /// A file created by a commit's write phase, visible to later commits at once.
    fn register_file(&mut self, id: u32, f: Rc<SegFile>, spare: bool) {
        self.dir_dirty = true;
        match self.segs.iter_mut().find(|s| s.id == id) {
            Some(seg) if seg.file.is_none() => seg.file = Some(f),
            Some(_) => {}
            None if spare => self.spare = Some((id, f)),
            None => {}
        }
    }

    /// Completes commit `job` in order: `result` is its own writes and sync,
    /// `prev_ok` whether every earlier commit succeeded. Only then does the
    /// durable point move.
    pub(super) fn finish_commit(
        &mut self,
        job: CommitJob,
        result: Result<Vec<Rc<SegFile>>>,
        prev_ok: bool,
        watch: &DurableWatch,
    ) -> Result<u64> {
        let no = job.no;
        if !job.sync {
            self.unsynced_in_flight -= 1;
        }
        let sealed = job.sealed();
        drop(job.chunks);
        if let Some(i) = self.inflight.iter().position(|(n, _)| *n == no) {
            let (_, chunks) = self.inflight.remove(i);
            for c in chunks {
                if let Some(Ok(b)) = c.buf.map(Rc::try_unwrap) {
                    if b.len() == PIECE_MAX_BYTES && self.free.len() < FREE_PIECES {
                        self.free.push(b);
                    }
                }
            }
        }
        let files = match result {
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the log will recover to its last durable point");
                self.batch_failed(watch, e.is_disk_full());
                return Err(e);
            }
            Ok(_) if !prev_ok => {
                // The batch before this one failed: this one cannot count.
                let disk_full = watch.last_failure_disk_full();
                self.batch_failed(watch, disk_full);
                return Err(StoreError::NotDurable { disk_full });
            }
            Ok(files) => files,
        };
        if job.sync {
            // Every write of this commit and the ones before it is synced (commits
            // finish in order; later ones add their files when they finish).
            self.last_sync = Instant::now();
            self.unsynced_files
                .retain(|u| !files.iter().any(|f| Rc::ptr_eq(u, f)));
        } else {
            for f in files {
                if !self.unsynced_files.iter().any(|u| Rc::ptr_eq(u, &f)) {
                    self.unsynced_files.push(f);
                }
            }
        }
        self.marker_durable_seg = job.marker_seg;
        self.durable_point = job.tail_point;
        debug_assert!(
            job.last_seq >= self.durable_seq,
            "durability only moves forward"
        );
        self.durable_seq = job.last_seq;
        self.marker_durable_floor = job.marker_floor;
        // A segment's index vouches for its records on reopen: written only once
        // they are synced.
        self.seal_after_sync.extend(sealed);
        if job.sync {
            for id in std::mem::take(&mut self.seal_after_sync) {
                self.seal(id);
            }
        }
        self.drop_front_segments();
        self.check_invariants();
        watch.advance(job.last_seq);
        Ok(job.last_seq)
    }

    /// A batch failed: nothing above the durable point can become durable
    /// any more (appends stop until the log recovers). Its waiters learn it
    /// now, not once the recovery succeeds, which waits for a working disk.
    fn batch_failed(&mut self, watch: &DurableWatch, disk_full: bool) {
        if !self.needs_recovery {
            watch.fail(self.durable_seq, disk_full);
        }
        self.needs_recovery = true;
    }

    /// The segment is complete and durable: its index is written in the
    /// background (a cache: until it lands, a reopen scans the segment).
    fn seal(&mut self, id: u32) {
        let Some(seg) = self.segs.iter_mut().find(|s| s.id == id) else {
            return;
        };
        if let Some(b) = seg.building.take() {
            let disk = self.disk.clone();
            self.idx_writes.start(disk, self.dir.clone(), b.index);
        }
    }
}

impl FileStore {
    pub(super) async fn commit_with(&self, wanted: SyncWanted) -> Result<u64> {
        let permit = self.lock().await?;
        if self.inner.borrow().needs_recovery {
            self.settle().await;
            if self.inner.borrow().needs_recovery {
                self.recover_locked().await?;
            }
        }
        let job = self.inner.borrow_mut().begin_commit(wanted);
        let Some(job) = job else {
            drop(permit);
            // Everything appended before this call went with an earlier batch: this
            // call covers what was appended then, not what later batches add.
            let through = self.inner.borrow().core.last_seq();
            let prev = self.last_done.borrow().clone();
            if let Some(p) = prev {
                if !p.wait().await {
                    let disk_full = self.watch.last_failure_disk_full();
                    return Err(StoreError::NotDurable { disk_full });
                }
            }
            return Ok(through);
        };
        let r = self.run_commit(job, Some(permit)).await;
        if r.is_err() {
            // Cut back once every commit in flight has finished.
            let _permit = self.lock().await?;
            self.settle().await;
            if self.inner.borrow().needs_recovery {
                if let Err(e2) = self.recover_locked().await {
                    tracing::error!(error = %e2, "recovery after a failed commit failed; will retry");
                }
            }
        }
        r
    }

    pub(super) async fn lock(&self) -> Result<glommio::sync::Permit<'_>> {
        self.commit_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))
    }

    /// Waits until every commit begun has finished and every write started
    /// for the next one completed (call with the lock held, so that no other
    /// commit begins).
    pub(super) async fn settle(&self) {
        let last = self.last_done.borrow().clone();
        if let Some(d) = last {
            d.wait().await;
        }
        let started: Vec<Rc<WriteOp>> = {
            let i = self.inner.borrow();
            let ops = i.finished.iter().map(|c| &c.op);
            ops.filter(|op| op.started.get()).cloned().collect()
        };
        for op in started {
            op.done.wait().await;
        }
    }

    /// Runs a begun commit: starts its writes (under `permit`, released as
    /// soon as they are started, so that the next batch's writes overlap this
    /// batch's), waits for them, syncs, then waits for the commit before it
    /// and finishes. A record is reported durable only when its own batch's
    /// sync (begun after its writes completed) and every earlier batch's
    /// succeeded.
    pub(super) async fn run_commit(
        &self,
        job: CommitJob,
        permit: Option<glommio::sync::Permit<'_>>,
    ) -> Result<u64> {
        let done = Rc::new(Done::default());
        let prev = self.last_done.replace(Some(done.clone()));
        let wrote = self.write_phase(&job, permit).await;
        let result = match wrote {
            Ok((mut files, sync_dir)) if job.sync => {
                if job.after_unsynced {
                    // Their writes may complete after this batch's: sync once they have.
                    if let Some(p) = &prev {
                        p.wait().await;
                    }
                }
                // Every file an earlier commit wrote without syncing: a commit begun
                // after this one finishes after it, so has added none yet.
                add_files(&mut files, &self.inner.borrow().unsynced_files);
                self.sync_phase(job.no, &files, sync_dir)
                    .await
                    .map(|_| files)
            }
            Ok((files, _)) => Ok(files),
            Err(e) => Err(e),
        };
        let prev_ok = match prev {
            Some(p) => p.wait().await,
            None => true,
        };
        let r = self
            .inner
            .borrow_mut()
            .finish_commit(job, result, prev_ok, &self.watch);
        done.complete(r.is_ok());
        r
    }

    /// Starts the batch's writes that have not started yet (each chunk at most
    /// one tail buffer; full buffers usually started while the batch filled),
    /// creating the segment files they need, releases `permit`, and waits for
    /// every write of the batch. Returns the files written and whether the
    /// directory needs a sync.
    async fn write_phase(
        &self,
        job: &CommitJob,
        permit: Option<glommio::sync::Permit<'_>>,
    ) -> Result<(Vec<Rc<SegFile>>, bool)> {
        let (disk, dir, size) = {
            let i = self.inner.borrow();
            (i.disk.clone(), i.dir.clone(), i.cfg.segment_size_bytes)
        };
        let mut touched: Vec<Rc<SegFile>> = Vec::new();
        let mut first_err: Option<StoreError> = None;
        for c in &job.chunks {
            let file = self.inner.borrow().seg(c.seg).and_then(|s| s.file.clone());
            let file = match file {
                Some(f) => f,
                None => match new_segment_file(&disk, &dir, c.seg, size).await {
                    Ok(f) => {
                        self.inner
                            .borrow_mut()
                            .register_file(c.seg, f.clone(), false);
                        f
                    }
                    Err(e) => {
                        first_err = Some(e);
                        break;
                    }
                },
            };
            start_write(c, file.clone());
            if !touched.iter().any(|t| Rc::ptr_eq(t, &file)) {
                touched.push(file);
            }
        }
        if first_err.is_some() {
            // Whatever could not start never will: nothing may wait for it.
            for c in &job.chunks {
                c.op.abandon();
            }
        } else if let Some(id) = job.make_spare {
            // Best effort: a missing spare only costs a slower roll. Created
            // here, under the lock, so that no later commit creates it too.
            match new_segment_file(&disk, &dir, id, size).await {
                Ok(f) => self.inner.borrow_mut().register_file(id, f, true),
                Err(e) => {
                    tracing::warn!(segment = id, error = %e, "cannot preallocate next segment")
                }
            }
        }
        let sync_dir = job.sync && std::mem::take(&mut self.inner.borrow_mut().dir_dirty);
        drop(permit);
        for c in &job.chunks {
            if !c.op.done.wait().await {
                let e = c.op.err.borrow_mut().take();
                let e = e.unwrap_or_else(|| std::io::Error::other("write failed"));
                first_err.get_or_insert(e.into());
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok((touched, sync_dir))
    }

    /// fdatasync of every file the batch wrote (and of the directory if files
    /// were created). It covers this batch and every write completed before.
    async fn sync_phase(
        &self,
        #[cfg_attr(not(test), allow(unused_variables))] no: u64,
        files: &[Rc<SegFile>],
        sync_dir_too: bool,
    ) -> Result<()> {
        #[cfg(test)]
        {
            let hook = self.sync_hook.borrow().as_ref().map(|h| h(no));
            if let Some(h) = hook {
                h.await?;
            }
        }
        for f in files {
            f.fdatasync().await?;
        }
        if sync_dir_too {
            let (disk, dir) = {
                let i = self.inner.borrow();
                (i.disk.clone(), i.dir.clone())
            };
            disk.sync_dir(&dir).await?;
        }
        Ok(())
    }
}
