//! Index writes of sealed segments. Once the commit that completes a segment
//! is durable, its index is serialized and written to a temporary file on
//! glommio's blocking thread (the shard keeps serving), then renamed to `.idx`
//! on the executor unless the write was cancelled. An index is only a cache: a
//! failed write is logged and the segment is scanned on the next open.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::commit::Done;
use super::idx_path;
use crate::disk::Disk;
use crate::index::SegmentIndex;

/// A temporary file name for segment `id`'s index, unique in this process
/// (open removes every `*.tmp`, so one left behind by a crash or a cancelled
/// write is never trusted).
fn idx_tmp_path(dir: &Path, id: u32) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("{id:010}.idx.{n}.tmp"))
}

/// One sealed segment's index write in flight.
#[derive(Default)]
pub(super) struct IdxWrite {
    shared: Arc<IdxWriteShared>,
    done: Done,
}

/// What the blocking thread shares with the executor.
#[derive(Default)]
struct IdxWriteShared {
    /// The segment went away (or the store did): never install the index.
    cancelled: AtomicBool,
    /// Held by the blocking thread while it creates and writes the temporary
    /// file; it checks `cancelled` first. Dropping the store takes it after
    /// cancelling, so no file appears in the directory once the store is gone
    /// (the owner may remove the directory at once).
    writing: Mutex<()>,
}

impl IdxWrite {
    fn cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::Acquire)
    }

    fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Release);
    }
}

/// Index writes in flight, by segment. The index is serialized and written
/// to a temporary file on glommio's blocking thread, so that the executor
/// keeps serving; back on the executor, the temporary file is renamed to
/// `.idx` only if the write was not cancelled in the meantime. The check and
/// the rename run together on the executor, like every removal of a segment,
/// so an index can never land for a segment removed while it was written.
#[derive(Default)]
pub(super) struct IndexWrites {
    /// Every write in flight, cancelled ones included (a segment id may
    /// appear twice only if its first write was cancelled).
    pub(super) pending: RefCell<Vec<(u32, Rc<IdxWrite>)>>,
    /// Test hook: awaited between the temporary file's write and its rename.
    #[cfg(test)]
    pub(super) gate: RefCell<Option<Rc<glommio::sync::Semaphore>>>,
    /// Test hook: run on the blocking thread before (`false`) and after
    /// (`true`) the temporary file's write.
    #[cfg(test)]
    pub(super) on_blocking: RefCell<Option<BlockingHook>>,
}

#[cfg(test)]
type BlockingHook = Arc<dyn Fn(bool) + Send + Sync>;

impl IndexWrites {
    pub(super) fn start(self: &Rc<Self>, disk: Disk, dir: PathBuf, index: SegmentIndex) {
        let id = index.segment_id;
        let w = Rc::new(IdxWrite::default());
        self.cancel(id);
        self.pending.borrow_mut().push((id, w.clone()));
        let this = self.clone();
        let shared = w.shared.clone();
        #[cfg(test)]
        let hook = self.on_blocking.borrow().clone();
        glommio::spawn_local(async move {
            let tmp = idx_tmp_path(&dir, id);
            let t = tmp.clone();
            let d = disk.clone();
            let wrote = disk
                .run_blocking(move || {
                    #[cfg(test)]
                    if let Some(h) = &hook {
                        h(false);
                    }
                    let bytes = index.to_file_bytes();
                    let r = {
                        let _writing = shared.writing.lock().unwrap_or_else(|e| e.into_inner());
                        if shared.cancelled.load(Ordering::Acquire) {
                            Ok(())
                        } else {
                            d.write(&t, &bytes)
                        }
                    };
                    #[cfg(test)]
                    if let Some(h) = &hook {
                        h(true);
                    }
                    r
                })
                .await;
            #[cfg(test)]
            {
                let gate = this.gate.borrow().clone();
                if let Some(g) = gate {
                    let _ = g.acquire(1).await;
                }
            }
            // No await between the check and the rename.
            let installed = match wrote {
                Ok(()) if !w.cancelled() => {
                    disk.rename(&tmp, &idx_path(&dir, id)).map(|_| true)
                }
                Ok(()) => Ok(false),
                Err(e) => Err(e),
            };
            if let Err(e) = &installed {
                tracing::warn!(segment = id, error = %e, "cannot write segment index; a reopen will scan the segment");
            }
            if !matches!(installed, Ok(true)) {
                let _ = disk.remove(&tmp);
            }
            this.pending.borrow_mut().retain(|(_, p)| !Rc::ptr_eq(p, &w));
            w.done.complete(true);
        })
        .detach();
    }

    /// Makes a write in flight for segment `id` leave no `.idx` behind.
    pub(super) fn cancel(&self, id: u32) {
        for (_, w) in self.pending.borrow().iter().filter(|(i, _)| *i == id) {
            w.cancel();
        }
    }

    /// Cancels every write and waits (blocking, for at most the one file
    /// being written) until no temporary file can be created any more; one
    /// already written is removed by its task, or by the next open.
    pub(super) fn cancel_all(&self) {
        for (_, w) in self.pending.borrow().iter() {
            w.cancel();
            drop(w.shared.writing.lock());
        }
    }

    /// Waits until no index write is in flight (cancelled ones included:
    /// their temporary files are gone after it).
    pub(super) async fn wait_all(&self) {
        loop {
            let w = self.pending.borrow().first().map(|(_, w)| w.clone());
            match w {
                Some(w) => {
                    w.done.wait().await;
                }
                None => return,
            }
        }
    }
}
