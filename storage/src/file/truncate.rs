//! Cutting files back: Raft suffix truncation (`truncate_from`) and recovery
//! after a failed commit (`recover_locked`). Both wait for every write in
//! flight, cut the files, and reload the log from disk.

use std::rc::Rc;

use super::open::cut_and_preallocate;
use super::{idx_path, seg_path, FileStore, Inner};
use crate::{Result, StoreError};

impl FileStore {
    /// Cuts the files back to the last durable point and reloads from disk.
    pub(super) async fn recover_locked(&self) -> Result<()> {
        let _cut = self.cutting();
        // No index write may land while files are cut and reloaded.
        self.flush_indexes().await;
        let (disk, dir, cfg, point, durable_seq, file, last_id) = {
            let i = self.inner.borrow();
            let point = i.durable_point;
            let file = i.seg(point.0).and_then(|s| s.file.clone());
            // The highest segment file: the tail, or a spare past it (which a
            // failed batch may have created beyond a segment it rolled into).
            let spare_id = i.spare.as_ref().map_or(0, |(id, _)| *id);
            let last_id = i.tail().id.max(spare_id);
            let (disk, dir, cfg) = (i.disk.clone(), i.dir.clone(), i.cfg.clone());
            (disk, dir, cfg, point, i.durable_seq, file, last_id)
        };
        // Every segment past the durable one goes, durably: a crash must not
        // bring back a segment of the failed batches. Highest first: a crash
        // part way leaves the segments contiguous.
        for id in (point.0 + 1..=last_id + 1).rev() {
            let _ = disk.remove(&seg_path(&dir, id));
            let _ = disk.remove(&idx_path(&dir, id));
        }
        disk.sync_dir(&dir).await?;
        let file = match file {
            Some(f) => f,
            None => Rc::new(disk.open(&seg_path(&dir, point.0), false).await?),
        };
        cut_and_preallocate(&file, point.1, cfg.segment_size_bytes).await?;
        let report = self.inner.borrow().report.clone();
        let mut fresh = Inner::open(disk, &dir, cfg).await?;
        fresh.report.torn_tails.extend(report.torn_tails);
        fresh.report.damage.extend(report.damage);
        for (a, b) in report.missing {
            if !fresh.report.missing.contains(&(a, b)) {
                fresh.report.missing.push((a, b));
            }
        }
        *self.inner.borrow_mut() = fresh;
        // Every commit has finished (the lock is held, the pipeline settled):
        // the failed ones are accounted for by the new epoch.
        *self.last_done.borrow_mut() = None;
        let disk_full = self.watch.last_failure_disk_full();
        self.watch.fail(durable_seq, disk_full);
        Ok(())
    }

    /// Raft: removes `index..=last_index` (a conflicting suffix), durably.
    /// Must not run concurrently with appends on the same log.
    pub async fn truncate_from(&self, index: u64) -> Result<()> {
        let _permit = self.lock().await?;
        let _cut = self.cutting();
        self.settle().await;
        if self.inner.borrow().needs_recovery {
            self.recover_locked().await?;
        }
        {
            let inner = self.inner.borrow();
            if index < inner.core.base_seq() {
                return Err(StoreError::Invalid(format!(
                    "cannot truncate at {index}: first index is {}",
                    inner.core.base_seq()
                )));
            }
            if index > inner.core.last_seq() {
                return Ok(());
            }
        }
        // Make everything before the cut durable first, then cut.
        self.commit_locked().await?;
        // No commit is in flight: once these land, no index write can land
        // for a segment cut below.
        self.flush_indexes().await;
        let (seg, offset) = self.inner.borrow().cut_point(index);
        if let Err(e) = self.cut_files(seg, offset).await {
            self.inner.borrow_mut().needs_recovery = true;
            return Err(e);
        }
        self.reload_after_cut(index).await?;
        self.watch.rewind(index);
        // Make the redone marker and tombstones durable before returning.
        self.commit_locked().await
    }

    /// Commits and syncs what is pending (the lock held, nothing in flight);
    /// on failure the log is cut back to its last durable point.
    async fn commit_locked(&self) -> Result<()> {
        let job = self
            .inner
            .borrow_mut()
            .begin_commit(super::commit::SyncWanted::Now);
        if let Some(job) = job {
            if let Err(e) = self.run_commit(job, None).await {
                let _ = self.recover_locked().await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes every segment after `seg` (a spare included) and `seg`'s index,
    /// then cuts `seg` at `offset`, durably.
    async fn cut_files(&self, seg: u32, offset: u64) -> Result<()> {
        let (disk, dir, size, file, last_id) = {
            let inner = self.inner.borrow();
            let file = inner.seg(seg).and_then(|s| s.file.clone());
            let file = file.expect("durable segment has a file");
            let size = inner.cfg.segment_size_bytes;
            (
                inner.disk.clone(),
                inner.dir.clone(),
                size,
                file,
                inner.tail().id,
            )
        };
        // Highest first: a crash part way leaves the segments contiguous.
        for id in (seg + 1..=last_id + 1).rev() {
            let _ = disk.remove(&idx_path(&dir, id));
            let _ = disk.remove(&seg_path(&dir, id));
        }
        let _ = disk.remove(&idx_path(&dir, seg));
        cut_and_preallocate(&file, offset, size).await?;
        Ok(disk.sync_dir(&dir).await?)
    }

    /// Reloads the log from disk after a cut at `index` (the cut segment is the
    /// tail again) and redoes what the cut took with it: the compact marker
    /// and tombstones written after the cut point.
    async fn reload_after_cut(&self, index: u64) -> Result<()> {
        let (disk, dir, cfg, report, old_base, old_live) = {
            let i = self.inner.borrow();
            let live: Vec<u64> = i.core.range(0, index - 1).map(|(s, _)| s).collect();
            let base = (i.core.base_seq(), i.core.floor_term());
            let disk = i.disk.clone();
            (
                disk,
                i.dir.clone(),
                i.cfg.clone(),
                i.report.clone(),
                base,
                live,
            )
        };
        let mut fresh = Inner::open(disk, &dir, cfg).await?;
        fresh
            .report
            .missing
            .extend(report.missing.into_iter().filter(|m| m.0 < index));
        if fresh.core.base_seq() < old_base.0 {
            fresh.core.compact(old_base.0, old_base.1);
        }
        let resurrected: Vec<u64> = fresh
            .core
            .range(0, index - 1)
            .map(|(s, _)| s)
            .filter(|s| old_live.binary_search(s).is_err())
            .collect();
        for &s in &resurrected {
            fresh.core.remove(s);
        }
        fresh.tombstones(&resurrected);
        if fresh.core.base_seq() > 1 {
            // The cut may have taken the compact marker that explains the
            // removed prefix (whose segments may be gone): write it again.
            fresh.marker = (0, 0);
        }
        *self.inner.borrow_mut() = fresh;
        Ok(())
    }
}

impl Inner {
    /// Where a cut at `index` falls: its segment and offset (a missing entry
    /// has no offset of its own: the cut is at the next record).
    fn cut_point(&self, index: u64) -> (u32, u64) {
        let loc = self.core.entry(index).expect("dense").loc;
        if loc.len > 0 {
            return (loc.seg, loc.offset as u64);
        }
        let seg = self.seg(loc.seg).expect("segment");
        let next = seg.building.as_ref().and_then(|b| {
            let e = b.index.entries.iter().find(|e| e.seq > index);
            e.map(|e| e.offset as u64)
        });
        (loc.seg, next.unwrap_or(seg.data_len))
    }
}
