//! Reads. A record is served from memory until its batch's write completed
//! (`locate`), else from a read-ahead block kept from the last file read, else
//! from its file; every record read from a file is verified (crc32c) and a bad
//! one is reported missing and never served.

use std::rc::Rc;

use bytes::Bytes;

use super::{FileStore, Inner, Loc, Seg};
use crate::config::StoredMsg;
use crate::disk::SegFile;
use crate::frame::{self, Kind};
use crate::{Result, StoreError};

/// Bytes read ahead past a record that is not in memory.
const READ_AHEAD_BYTES: u64 = 256 << 10;

/// Ends a cut: cached blocks from before it stay void.
pub(super) struct CutGuard<'a>(&'a FileStore);

impl Drop for CutGuard<'_> {
    fn drop(&mut self) {
        let s = self.0;
        s.read_epoch.set(s.read_epoch.get() + 1);
        s.cutting.set(s.cutting.get() - 1);
    }
}

/// A block of a segment as read from its file, `[start, start + bytes.len())`.
pub(super) struct ReadBlock {
    seg: u32,
    start: u64,
    bytes: Bytes,
    epoch: u64,
}

enum Source {
    Mem(Vec<u8>),
    File(Rc<SegFile>),
    Gone,
}

impl Inner {
    /// Where the bytes of a record are now: in memory (possibly across tail
    /// buffers) until the write of its batch completed, else in its file.
    fn locate(&self, loc: Loc) -> Source {
        let (lo, hi) = (loc.offset as u64, loc.offset as u64 + loc.len as u64);
        let p = &self.pending;
        let tail_bytes = p.buf.as_ref().map_or(&[][..], |b| &b.as_bytes()[..p.fill]);
        let inflight = self.inflight.iter().flat_map(|(_, c)| c.iter());
        let sources = self
            .finished
            .iter()
            .chain(inflight)
            .map(|c| (c.seg, c.start, c.bytes()))
            .chain(std::iter::once((p.seg, p.start, tail_bytes)));
        let mut out = vec![0u8; loc.len as usize];
        let mut parts = Vec::new();
        for (seg, start, bytes) in sources {
            let a = lo.max(start);
            let b = hi.min(start + bytes.len() as u64);
            if seg == loc.seg && a < b {
                out[(a - lo) as usize..(b - lo) as usize]
                    .copy_from_slice(&bytes[(a - start) as usize..(b - start) as usize]);
                parts.push((a, b));
            }
        }
        parts.sort_unstable();
        let mut covered = lo;
        for (a, b) in parts {
            if a > covered {
                break;
            }
            covered = covered.max(b);
        }
        if covered >= hi {
            return Source::Mem(out);
        }
        // Not wholly in memory: its batch's writes completed.
        match self.seg(loc.seg) {
            Some(Seg {
                file: Some(f),
                data_len,
                ..
            }) => {
                debug_assert!(hi <= *data_len, "record within its segment's data");
                Source::File(f.clone())
            }
            _ => Source::Gone,
        }
    }

    /// Where the bytes of segment `seg` that are on disk end: before the first
    /// chunk still in memory (unbounded for a sealed segment).
    fn disk_end(&self, seg: u32) -> u64 {
        let p = &self.pending;
        let mut end = if p.seg == seg { p.start } else { u64::MAX };
        let inflight = self.inflight.iter().flat_map(|(_, c)| c.iter());
        for c in self.finished.iter().chain(inflight) {
            if c.seg == seg {
                end = end.min(c.start);
            }
        }
        end
    }

    pub(super) fn mark_corrupt(&mut self, seq: u64) {
        if self.core.remove(seq) {
            self.report.add_missing(seq);
            self.report.missing.sort_unstable();
        }
    }
}

impl FileStore {
    /// Marks a cut or reload of the files until the guard is dropped.
    pub(super) fn cutting(&self) -> CutGuard<'_> {
        self.read_epoch.set(self.read_epoch.get() + 1);
        self.cutting.set(self.cutting.get() + 1);
        CutGuard(self)
    }

    /// Record `loc` from the cached block, when the block holds all of it.
    fn cached(&self, loc: Loc) -> Option<Bytes> {
        if self.cutting.get() > 0 {
            return None;
        }
        let cache = self.read_cache.borrow();
        let b = cache.as_ref()?;
        let (lo, hi) = (loc.offset as u64, loc.offset as u64 + loc.len as u64);
        let fits = b.epoch == self.read_epoch.get()
            && b.seg == loc.seg
            && lo >= b.start
            && hi <= b.start + b.bytes.len() as u64;
        // A copy of the record alone: a message held on to (a Raft entry cache)
        // must not pin the whole block.
        fits.then(|| {
            Bytes::copy_from_slice(&b.bytes[(lo - b.start) as usize..(hi - b.start) as usize])
        })
    }

    /// Reads record `loc` with a block after it (up to what is on disk), and
    /// keeps the block for the reads that follow.
    async fn read_through(&self, f: &SegFile, loc: Loc, disk_end: u64) -> Result<Bytes> {
        let (lo, hi) = (loc.offset as u64, loc.offset as u64 + loc.len as u64);
        let start = lo & !4095;
        let end = (start + READ_AHEAD_BYTES).min(disk_end).max(hi);
        let epoch = self.read_epoch.get();
        let r = f.read_at(start, (end - start) as usize).await?;
        let bytes = Bytes::copy_from_slice(&r);
        if (bytes.len() as u64) < hi - start {
            return Ok(Bytes::copy_from_slice(
                &bytes[(lo - start).min(bytes.len() as u64) as usize..],
            ));
        }
        let out = Bytes::copy_from_slice(&bytes[(lo - start) as usize..(hi - start) as usize]);
        if epoch == self.read_epoch.get() && self.cutting.get() == 0 {
            *self.read_cache.borrow_mut() = Some(ReadBlock {
                seg: loc.seg,
                start,
                bytes,
                epoch,
            });
        }
        Ok(out)
    }

    /// The message at `seq`, if stored. A record failing its checksum is never
    /// served: it is reported (`recovery_report().missing`) and `Corrupt` returned.
    pub async fn get(&self, seq: u64) -> Result<Option<StoredMsg>> {
        let (loc, source, disk_end) = {
            let inner = self.inner.borrow();
            let Some(e) = inner.core.live(seq) else {
                return Ok(None);
            };
            (e.loc, inner.locate(e.loc), inner.disk_end(e.loc.seg))
        };
        let bytes: Bytes = match source {
            Source::Mem(b) => Bytes::from(b),
            Source::File(f) => match self.cached(loc) {
                Some(b) => b,
                None => self.read_through(&f, loc, disk_end).await?,
            },
            Source::Gone => return Ok(None),
        };
        let parsed = frame::parse(&bytes);
        match parsed {
            Ok((f, _)) if f.kind == Kind::Msg && f.seq == seq => Ok(Some(StoredMsg {
                seq,
                subject: String::from_utf8_lossy(f.subject).into_owned(),
                headers: bytes.slice_ref(f.headers),
                payload: bytes.slice_ref(f.payload),
                timestamp_ns: f.ts_ns,
                term: f.term,
            })),
            other => {
                let reason = match other {
                    Err(frame::FrameError::Invalid(r)) => r,
                    Err(frame::FrameError::Incomplete) => "short record",
                    Ok(_) => "record is not the expected message",
                };
                tracing::error!(
                    seq,
                    segment = loc.seg,
                    offset = loc.offset,
                    reason,
                    "corrupt record not served"
                );
                self.inner.borrow_mut().mark_corrupt(seq);
                Err(StoreError::Corrupt {
                    segment: loc.seg,
                    offset: loc.offset as u64,
                    reason,
                })
            }
        }
    }

    crate::core::stream_reads!();
}
