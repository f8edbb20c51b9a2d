//! Appends: records are encoded in place into the tail's DMA buffers. A buffer
//! that fills becomes a chunk whose write starts at once (if its segment file
//! exists); a commit takes the rest of the tail as the last chunk of its batch.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use glommio::io::DmaBuffer;

use super::commit::Done;
use super::{align_down, Building, Inner, Loc, Seg, BLOCK_BYTES};
use crate::core::Entry;
use crate::disk::SegFile;
use crate::frame::{self, Frame, Kind};
use crate::index::IdxEntry;
use crate::{Result, StoreError};

/// Largest tail buffer, hence largest single write (several are in flight).
pub(super) const PIECE_MAX_BYTES: usize = 1 << 20;
/// Smallest tail buffer (an idle log keeps one).
pub(super) const PIECE_MIN_BYTES: usize = 16 << 10;
/// Full-size tail buffers kept for reuse once their commit finished (enough
/// for a few large commits in flight; trimmed when batches are small).
pub(super) const FREE_PIECES: usize = 16;
/// Full-size buffers kept while batches are small.
pub(super) const FREE_PIECES_IDLE: usize = 2;

/// The tail's current buffer: bytes `[start, start + fill)` of segment `seg`
/// (`start` block aligned), encoded in place in a DMA buffer that a commit
/// hands to the write as it is. `None` until the first byte.
pub(super) struct Pending {
    pub(super) seg: u32,
    pub(super) start: u64,
    pub(super) buf: Option<DmaBuffer>,
    pub(super) fill: usize,
    /// Leading bytes already on disk (the partial block a commit rewrites).
    pub(super) written: usize,
    /// The write of those leading bytes, when it may not have completed yet:
    /// the write that rewrites their block must start only after it.
    pub(super) after: Option<Rc<WriteOp>>,
}

impl Pending {
    /// The tail as found on open: its last partial block, already on disk,
    /// is kept in memory for the next write to rewrite.
    pub(super) fn resume(seg: u32, data_len: u64, tail_bytes: &[u8]) -> Pending {
        let buf = (!tail_bytes.is_empty()).then(|| {
            let mut b = glommio::allocate_dma_buffer(PIECE_MIN_BYTES);
            b.as_bytes_mut()[..tail_bytes.len()].copy_from_slice(tail_bytes);
            b
        });
        Pending {
            seg,
            start: align_down(data_len),
            buf,
            fill: tail_bytes.len(),
            written: tail_bytes.len(),
            after: None,
        }
    }
}

/// Bytes waiting for, or under, a write: `[start, start + len)` of `seg`. The
/// buffer is `len` rounded up to a block, zero padded.
#[derive(Clone)]
pub(super) struct Chunk {
    pub(super) seg: u32,
    pub(super) start: u64,
    pub(super) buf: Option<Rc<DmaBuffer>>,
    pub(super) len: usize,
    /// The segment is complete after this chunk: seal it once durable.
    pub(super) seal: bool,
    /// Its write: started as soon as the chunk is complete if its segment
    /// file exists (a full tail buffer is written while the batch still
    /// fills), else by its commit, which waits for it before its fdatasync.
    pub(super) op: Rc<WriteOp>,
    /// The write of the chunk before, whose last partial block this chunk
    /// rewrites: this one's write starts only once that one completed.
    pub(super) after: Option<Rc<WriteOp>>,
}

/// One chunk's write: started once, completed once (also when it could not
/// start, so that nothing waits for it forever).
#[derive(Default)]
pub(super) struct WriteOp {
    pub(super) started: Cell<bool>,
    pub(super) done: Done,
    pub(super) err: RefCell<Option<std::io::Error>>,
}

impl WriteOp {
    pub(super) fn fail(&self, e: std::io::Error) {
        *self.err.borrow_mut() = Some(e);
        self.done.complete(false);
    }

    /// Marks a write that will never start as failed.
    pub(super) fn abandon(&self) {
        if !self.started.replace(true) {
            self.fail(std::io::Error::other("write not started"));
        }
    }
}

/// Starts the chunk's write into `file` (once), after the write it depends on.
pub(super) fn start_write(c: &Chunk, file: Rc<SegFile>) {
    if c.op.started.replace(true) {
        return;
    }
    let Some(buf) = c.buf.clone() else {
        c.op.done.complete(true);
        return;
    };
    debug_assert!(
        c.start.is_multiple_of(BLOCK_BYTES) && (buf.len() as u64).is_multiple_of(BLOCK_BYTES),
        "O_DIRECT writes are block aligned"
    );
    debug_assert!(c.len <= buf.len());
    let (op, after, pos) = (c.op.clone(), c.after.clone(), c.start);
    glommio::spawn_local(async move {
        if let Some(a) = after {
            if !a.done.wait().await {
                op.fail(std::io::Error::other("an earlier write failed"));
                return;
            }
        }
        let want = buf.len();
        let r = file.write_at(buf, pos).await;
        drop(file);
        match r {
            Ok(w) if w == want => op.done.complete(true),
            Ok(w) => op.fail(std::io::Error::other(format!(
                "short write: {w} of {want} bytes"
            ))),
            Err(e) => op.fail(e),
        }
    })
    .detach();
}

impl Chunk {
    pub(super) fn bytes(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| &b.as_bytes()[..self.len])
    }
}

impl Inner {
    /// Encodes one record into the tail, rolling to a new segment when full.
    fn put(&mut self, f: &Frame<'_>) -> Loc {
        let len = frame::record_len(f.subject.len(), f.headers.len(), f.payload.len());
        let stored = frame::align_up(len) as u64;
        if self.tail().data_len + stored > self.cfg.segment_size_bytes {
            self.roll();
        }
        let offset = self.tail().data_len;
        debug_assert_eq!(self.pending.start + self.pending.fill as u64, offset);
        let header = frame::encode_header(f);
        self.emit(&header);
        self.emit(f.subject);
        self.emit(f.headers);
        self.emit(f.payload);
        self.emit(&[0u8; frame::ALIGN_BYTES][..stored as usize - len]);
        let seg_id = self.tail().id;
        let tail = self.tail_mut();
        tail.data_len += stored;
        let b = tail.building.as_mut().expect("tail is being built");
        b.index.data_len_bytes = tail.data_len;
        debug_assert!(
            tail.data_len <= self.cfg.segment_size_bytes,
            "record within its segment"
        );
        self.check_tail();
        Loc {
            seg: seg_id,
            offset: offset as u32,
            len: stored as u32,
        }
    }

    /// A tail buffer of `size` bytes (a reused one when full size).
    fn alloc_piece(&mut self, size: usize) -> DmaBuffer {
        if size == PIECE_MAX_BYTES {
            if let Some(b) = self.free.pop() {
                return b;
            }
        }
        glommio::allocate_dma_buffer(size)
    }

    /// Copies bytes to the end of the tail, moving full buffers to `finished`.
    fn emit(&mut self, mut bytes: &[u8]) {
        let p = &mut self.pending;
        if let Some(buf) = p.buf.as_mut() {
            if let Some(dst) = buf.as_bytes_mut().get_mut(p.fill..p.fill + bytes.len()) {
                dst.copy_from_slice(bytes);
                p.fill += bytes.len();
                return;
            }
        }
        while !bytes.is_empty() {
            if self.pending.buf.is_none() {
                let size = self.piece_bytes;
                self.pending.buf = Some(self.alloc_piece(size));
            }
            let p = &mut self.pending;
            let buf = p.buf.as_mut().expect("allocated");
            let room = buf.len() - p.fill;
            if room == 0 {
                self.piece_full();
                continue;
            }
            let n = room.min(bytes.len());
            buf.as_bytes_mut()[p.fill..p.fill + n].copy_from_slice(&bytes[..n]);
            p.fill += n;
            bytes = &bytes[n..];
        }
    }

    /// The tail buffer is full: its write starts now (if its file exists) and
    /// the next commit waits for it.
    fn piece_full(&mut self) {
        let p = &mut self.pending;
        let buf = p.buf.take().expect("a full buffer");
        let len = buf.len();
        let chunk = Chunk {
            seg: p.seg,
            start: p.start,
            buf: Some(Rc::new(buf)),
            len,
            seal: false,
            op: Rc::default(),
            after: p.after.take(),
        };
        p.start += len as u64;
        p.fill = 0;
        p.written = 0;
        self.piece_bytes = (self.piece_bytes * 2).min(PIECE_MAX_BYTES);
        self.queue(chunk);
    }

    /// Queues a chunk for the next commit, starting its write at once if its
    /// segment file exists.
    pub(super) fn queue(&mut self, c: Chunk) {
        if let Some(f) = self.seg(c.seg).and_then(|s| s.file.clone()) {
            start_write(&c, f);
        }
        self.finished.push(c);
    }

    /// Takes the tail buffer's new bytes as a chunk (zero padded to a block); the
    /// buffer that follows starts with the last partial block, already encoded.
    pub(super) fn take_tail(&mut self, seal: bool) -> Option<Chunk> {
        let p = &mut self.pending;
        if p.fill == p.written && !seal {
            return None;
        }
        let end = p.start + p.fill as u64;
        let keep_from = (align_down(end) - p.start) as usize;
        let (fill, keep) = (p.fill, p.fill - keep_from);
        let mut old = p.buf.take();
        let next = if seal || keep == 0 {
            None
        } else {
            let size = self.piece_bytes;
            let mut b = self.alloc_piece(size);
            let src = old.as_ref().expect("bytes to keep");
            b.as_bytes_mut()[..keep].copy_from_slice(&src.as_bytes()[keep_from..fill]);
            Some(b)
        };
        let p = &mut self.pending;
        let len = p.fill;
        let buf = match old.as_mut() {
            Some(b) if p.fill > p.written => {
                let padded = len.next_multiple_of(BLOCK_BYTES as usize);
                b.as_bytes_mut()[len..padded].fill(0);
                b.trim_to_size(padded);
                old.map(Rc::new)
            }
            _ => None,
        };
        let chunk = Chunk {
            seg: p.seg,
            start: p.start,
            buf,
            len,
            seal,
            op: Rc::default(),
            after: p.after.take(),
        };
        p.start = align_down(end);
        p.fill = keep;
        p.written = keep;
        p.buf = next;
        if keep > 0 {
            p.after = Some(chunk.op.clone());
        }
        Some(chunk)
    }

    fn roll(&mut self) {
        let next_id = self.tail().id + 1;
        if let Some(c) = self.take_tail(true) {
            self.queue(c);
        }
        self.pending = Pending {
            seg: next_id,
            start: 0,
            buf: None,
            fill: 0,
            written: 0,
            after: None,
        };
        let file = match self.spare.take() {
            Some((id, f)) if id == next_id => Some(f),
            _ => None,
        };
        self.segs.push(Seg {
            id: next_id,
            file,
            data_len: 0,
            last_msg_seq: 0,
            building: Some(Building::new(next_id)),
        });
    }

    pub(super) fn put_msg(
        &mut self,
        seq: u64,
        ts_ns: u64,
        term: u64,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<()> {
        let len = frame::record_len(subject.len(), headers.len(), payload.len());
        if len > self.cfg.record_max_bytes || subject.len() > u16::MAX as usize {
            return Err(StoreError::TooLarge {
                size_bytes: len,
                max_bytes: self.cfg.record_max_bytes,
            });
        }
        let id = self.core.intern(subject);
        if let Err(what) = self
            .core
            .admit(&self.cfg.limits, Some(id), frame::align_up(len) as u64)
        {
            return Err(StoreError::LimitReached(what));
        }
        let loc = self.put(&Frame {
            kind: Kind::Msg,
            seq,
            ts_ns,
            term,
            subject: subject.as_bytes(),
            headers,
            payload,
        });
        let tail = self.tail_mut();
        tail.last_msg_seq = seq;
        let b = tail.building.as_mut().expect("tail is being built");
        let local = if b.hot_subject.0 == id {
            b.hot_subject.1
        } else {
            let next_local = b.local_subjects.len() as u32;
            let local = *b.local_subjects.entry(id).or_insert(next_local);
            if local == next_local {
                b.index.subjects.push(subject.to_string());
            }
            b.hot_subject = (id, local);
            local
        };
        b.index.entries.push(IdxEntry {
            seq,
            ts_ns,
            term,
            offset: loc.offset,
            len: loc.len,
            subject: local,
        });
        self.core.push(
            seq,
            Entry {
                ts_ns,
                term,
                subject: id,
                size_bytes: loc.len,
                live: true,
                loc,
            },
        );
        self.last_ts_ns = ts_ns;
        let removed = self.core.enforce(&self.cfg.limits, ts_ns, Some(id));
        self.tombstones(&removed);
        Ok(())
    }

    /// Writes tombstones for removed sequences the compact marker does not cover.
    pub(super) fn tombstones(&mut self, removed: &[u64]) {
        for &seq in removed {
            if seq >= self.core.base_seq() {
                self.put(&Frame {
                    kind: Kind::Delete,
                    seq,
                    ts_ns: 0,
                    term: 0,
                    subject: b"",
                    headers: b"",
                    payload: b"",
                });
                let b = self.tail_mut().building.as_mut().expect("tail");
                b.index.tombstones.push(seq);
            }
        }
    }

    pub(super) fn put_marker_if_moved(&mut self) {
        let m = (self.core.base_seq(), self.core.floor_term());
        if m == self.marker {
            return;
        }
        self.put(&Frame {
            kind: Kind::Compact,
            seq: m.0,
            ts_ns: 0,
            term: m.1,
            subject: b"",
            headers: b"",
            payload: b"",
        });
        self.marker_seg = self.tail().id;
        let b = self.tail_mut().building.as_mut().expect("tail");
        if m.0 >= b.index.compact_floor {
            b.index.compact_floor = m.0;
            b.index.compact_term = m.1;
        }
        self.marker = m;
    }
}
