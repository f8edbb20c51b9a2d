//! Removal: deletes (tombstones), purge, limits and Raft compaction move the
//! log's first sequence or mark records removed; segments holding only removed
//! records are unlinked from the front once a durable marker explains them.

use super::{idx_path, now_ns, seg_path, FileStore, Inner};
use crate::config::PurgeRequest;
use crate::Result;

impl Inner {
    pub(super) fn drop_front_segments(&mut self) {
        while self.segs.len() > 1 {
            let s = &self.segs[0];
            let removable = s.building.is_none()
                && s.last_msg_seq < self.core.base_seq()
                && s.last_msg_seq < self.marker_durable_floor;
            if !removable {
                break;
            }
            if s.id >= self.marker_durable_seg {
                // The marker that explains the missing prefix must outlive this
                // segment: write a fresh one into the tail first.
                self.marker = (0, 0);
                break;
            }
            let s = self.segs.remove(0);
            // Its index write, if still in flight, must not land after this.
            self.idx_writes.cancel(s.id);
            let _ = self.disk.remove(&idx_path(&self.dir, s.id));
            if let Err(e) = self.disk.remove(&seg_path(&self.dir, s.id)) {
                tracing::warn!(segment = s.id, error = %e, "cannot remove segment");
            }
        }
    }
}

impl FileStore {
    /// Deletes one message (a tombstone; space comes back when its segment goes).
    pub fn delete(&self, seq: u64) -> Result<bool> {
        let mut inner = self.inner.borrow_mut();
        inner.check_usable()?;
        if !inner.core.remove(seq) {
            return Ok(false);
        }
        inner.tombstones(&[seq]);
        Ok(true)
    }

    /// JetStream purge; returns the number of messages removed.
    pub fn purge(&self, req: &PurgeRequest) -> Result<u64> {
        let mut inner = self.inner.borrow_mut();
        inner.check_usable()?;
        let victims = inner.core.purge_victims(req);
        let n = victims.len() as u64;
        if req.subject.is_none() {
            let floor = match (req.keep, req.up_to_seq) {
                (None, None) => inner.core.last_seq() + 1,
                _ => victims.last().map_or(0, |v| v + 1),
            };
            let term = inner.core.floor_term();
            inner.core.compact(floor, term);
        } else {
            for &v in &victims {
                inner.core.remove(v);
            }
            inner.tombstones(&victims);
        }
        Ok(n)
    }

    /// Applies max_age (and the other limits) now; call it from a timer.
    pub fn expire(&self, now_ns: u64) -> Result<u64> {
        let mut inner = self.inner.borrow_mut();
        inner.check_usable()?;
        let limits = inner.cfg.limits.clone();
        let removed = inner.core.enforce(&limits, now_ns, None);
        inner.tombstones(&removed);
        Ok(removed.len() as u64)
    }

    /// Changes the limits (stream update) and applies them.
    pub fn set_limits(&self, limits: crate::config::Limits) -> Result<u64> {
        self.inner.borrow_mut().cfg.limits = limits;
        self.expire(now_ns())
    }

    /// Raft: drops everything below `index` (a snapshot covers it; `term` is the
    /// term of `index - 1`). `index` may be past the end (snapshot install).
    pub fn compact(&self, index: u64, term: u64) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        inner.check_usable()?;
        inner.core.compact(index, term);
        Ok(())
    }
}
