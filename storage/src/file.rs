//! The file store: a directory of append-only segments written with O_DIRECT
//! through io_uring (glommio DMA files), group commit, recovery.
//!
//! All methods take `&self` and never hold the inner borrow across an await, so
//! the owning shard can share one `Rc<FileStore>` between its publish tasks
//! (which `append`) and a flusher task (which `commit`s once per loop turn).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::config::{Durability, LogConfig, PurgeRequest, StoredMsg};
use crate::core::{Core, Entry};
use crate::frame::{self, Frame, Kind};
use crate::index::{IdxEntry, SegmentIndex, INDEX_VERSION};
use crate::recovery::{scan_segment, TornTail};
use crate::watch::{DurableWatch, Ticket};
use crate::{Result, StoreError};

/// Write granularity and alignment of the tail block.
const BLOCK_BYTES: u64 = 4096;
/// Largest tail buffer, hence largest single write (several are in flight).
const PIECE_MAX_BYTES: usize = 1 << 20;
/// Smallest tail buffer (an idle log keeps one).
const PIECE_MIN_BYTES: usize = 16 << 10;
/// Full-size tail buffers kept for reuse once their commit finished (enough
/// for a few large commits in flight; trimmed when batches are small).
const FREE_PIECES: usize = 16;
/// Full-size buffers kept while batches are small.
const FREE_PIECES_IDLE: usize = 2;
/// Read size when scanning a segment.
const SCAN_READ_BYTES: usize = 8 << 20;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Loc {
    seg: u32,
    offset: u32,
    len: u32,
}

/// What `open` found: torn tails cut, damaged stretches, and sequences missing
/// (to be repaired from a replica). Corruption found later by reads is added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub torn_tails: Vec<(u32, TornTail)>,
    /// (segment, offset, resume offset) of each damaged stretch.
    pub damage: Vec<(u32, u64, u64)>,
    /// Inclusive ranges of sequences that are lost.
    pub missing: Vec<(u64, u64)>,
    pub segments_scanned: u32,
    pub segments_from_index: u32,
}

impl RecoveryReport {
    fn add_missing(&mut self, seq: u64) {
        if let Some(last) = self.missing.last_mut() {
            if last.1 + 1 == seq {
                last.1 = seq;
                return;
            }
        }
        self.missing.push((seq, seq));
    }

    pub fn missing_count(&self) -> u64 {
        self.missing.iter().map(|(a, b)| b - a + 1).sum()
    }
}

struct Seg {
    id: u32,
    file: Option<Rc<DmaFile>>,
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

/// The tail's current buffer: bytes `[start, start + fill)` of segment `seg`
/// (`start` block aligned), encoded in place in a DMA buffer that a commit
/// hands to the write as it is. `None` until the first byte.
struct Pending {
    seg: u32,
    start: u64,
    buf: Option<DmaBuffer>,
    fill: usize,
    /// Leading bytes already on disk (the partial block a commit rewrites).
    written: usize,
    /// The write of those leading bytes, when it may not have completed yet:
    /// the write that rewrites their block must start only after it.
    after: Option<Rc<WriteOp>>,
}

/// Bytes waiting for, or under, a write: `[start, start + len)` of `seg`. The
/// buffer is `len` rounded up to a block, zero padded.
#[derive(Clone)]
struct Chunk {
    seg: u32,
    start: u64,
    buf: Option<Rc<DmaBuffer>>,
    len: usize,
    /// The segment is complete after this chunk: seal it once durable.
    seal: bool,
    /// Its write: started as soon as the chunk is complete if its segment
    /// file exists (a full tail buffer is written while the batch still
    /// fills), else by its commit, which waits for it before its fdatasync.
    op: Rc<WriteOp>,
    /// The write of the chunk before, whose last partial block this chunk
    /// rewrites: this one's write starts only once that one completed.
    after: Option<Rc<WriteOp>>,
}

/// One chunk's write: started once, completed once (also when it could not
/// start, so that nothing waits for it forever).
#[derive(Default)]
struct WriteOp {
    started: Cell<bool>,
    done: Done,
    err: RefCell<Option<std::io::Error>>,
}

impl WriteOp {
    fn fail(&self, e: std::io::Error) {
        *self.err.borrow_mut() = Some(e);
        self.done.complete(false);
    }

    /// Marks a write that will never start as failed.
    fn abandon(&self) {
        if !self.started.replace(true) {
            self.fail(std::io::Error::other("write not started"));
        }
    }
}

/// Starts the chunk's write into `file` (once), after the write it depends on.
fn start_write(c: &Chunk, file: Rc<DmaFile>) {
    if c.op.started.replace(true) {
        return;
    }
    let Some(buf) = c.buf.clone() else {
        c.op.done.complete(true);
        return;
    };
    let (op, after, pos) = (c.op.clone(), c.after.clone(), c.start);
    glommio::spawn_local(async move {
        if let Some(a) = after {
            if !a.done.wait().await {
                op.fail(std::io::Error::other("an earlier write failed"));
                return;
            }
        }
        let want = buf.len();
        let r = file.write_rc_at(buf, pos).await;
        drop(file);
        match r {
            Ok(w) if w == want => op.done.complete(true),
            Ok(w) => op.fail(std::io::Error::other(format!(
                "short write: {w} of {want} bytes"
            ))),
            Err(e) => op.fail(e.into()),
        }
    })
    .detach();
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| &b.as_bytes()[..self.len])
    }
}

/// The outcome of one commit, for the commits pipelined behind it: a commit
/// reports durability only once its predecessor did.
#[derive(Default)]
struct Done {
    ok: Cell<Option<bool>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Done {
    fn complete(&self, ok: bool) {
        self.ok.set(Some(ok));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Completes with whether that commit (and hence all before it) succeeded.
    async fn wait(&self) -> bool {
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

struct Inner {
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
    /// A commit wrote without syncing (interval mode).
    unsynced: bool,
    report: RecoveryReport,
    spare: Option<(u32, Rc<DmaFile>)>,
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
    read_epoch: std::cell::Cell<u64>,
    /// Cuts or reloads in progress: no block is cached or served meanwhile.
    cutting: std::cell::Cell<u32>,
    #[cfg(test)]
    sync_hook: RefCell<Option<SyncHook>>,
}

/// Bytes read ahead past a record that is not in memory.
const READ_AHEAD_BYTES: u64 = 256 << 10;

/// Ends a cut: cached blocks from before it stay void.
struct CutGuard<'a>(&'a FileStore);

impl Drop for CutGuard<'_> {
    fn drop(&mut self) {
        let s = self.0;
        s.read_epoch.set(s.read_epoch.get() + 1);
        s.cutting.set(s.cutting.get() - 1);
    }
}

/// A block of a segment as read from its file, `[start, start + bytes.len())`.
struct ReadBlock {
    seg: u32,
    start: u64,
    bytes: Bytes,
    epoch: u64,
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

async fn open_segment_file(path: &Path, create: bool) -> Result<DmaFile> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .dma_open(path)
        .await
        .map_err(std::io::Error::from)?;
    Ok(f)
}

/// glommio decides once per device whether reads may use the poll ring, by a
/// probe read on the first file opened. On an empty file that read "succeeds"
/// even where polling is unsupported, and every later read fails with
/// EOPNOTSUPP. Opening a write-only file first makes the probe fail (EBADF, one
/// logged error) and settles the device on the ordinary ring.
async fn settle_iopoll_probe(dir: &Path) -> Result<()> {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if DONE.with(|d| d.get()) {
        return Ok(());
    }
    let path = dir.join(".iopoll-probe.tmp");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(std::io::Error::from)?;
    let _ = f.close().await;
    std::fs::remove_file(&path)?;
    DONE.with(|d| d.set(true));
    Ok(())
}

/// End of the last stretch of the file holding data (`SEEK_DATA`/`SEEK_HOLE`),
/// rounded up to a block. Past it the file reads as zeros (holes, or
/// preallocated space never written), so a scan can stop there: a fresh
/// preallocated segment costs nothing to open. Where the file system cannot
/// tell, the whole file counts as data.
fn data_end(file: &DmaFile, size: u64) -> u64 {
    let fd = file.as_raw_fd();
    let mut pos = 0i64;
    let mut end = 0u64;
    loop {
        // SAFETY: lseek on a file descriptor we own; no memory is passed.
        let d = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if d < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return size;
        }
        // SAFETY: as above.
        let h = unsafe { libc::lseek(fd, d, libc::SEEK_HOLE) };
        if h < 0 {
            return size;
        }
        end = h as u64;
        if end >= size {
            break;
        }
        pos = h;
    }
    end.next_multiple_of(BLOCK_BYTES).min(size)
}

async fn read_all(file: &DmaFile, size: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size as usize);
    let mut pos = 0u64;
    while pos < size {
        let n = ((size - pos) as usize).min(SCAN_READ_BYTES);
        let r = file
            .read_at_aligned(pos, n.next_multiple_of(BLOCK_BYTES as usize))
            .await
            .map_err(std::io::Error::from)?;
        let got = r.len().min(n);
        out.extend_from_slice(&r[..got]);
        if got < n {
            break;
        }
        pos += n as u64;
    }
    Ok(out)
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

    async fn open(dir: &Path, cfg: LogConfig) -> Result<Inner> {
        cfg.validate()?;
        std::fs::create_dir_all(dir)?;
        settle_iopoll_probe(dir).await?;
        let mut ids = Vec::new();
        for ent in std::fs::read_dir(dir)? {
            let name = ent?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u32>().ok())
            {
                ids.push(id);
            } else if name.ends_with(".tmp") {
                std::fs::remove_file(dir.join(&*name))?;
            }
        }
        ids.sort_unstable();
        for w in ids.windows(2) {
            if w[1] != w[0] + 1 {
                return Err(StoreError::Invalid(format!(
                    "segment files not contiguous: {} then {}",
                    w[0], w[1]
                )));
            }
        }
        let mut created = false;
        if ids.is_empty() {
            ids.push(0);
            created = true;
        }
        let mut report = RecoveryReport::default();
        let mut loaded: Vec<(Seg, SegmentIndex, Vec<u8>)> = Vec::new();
        let last_id = *ids.last().expect("one");
        for &id in &ids {
            let path = seg_path(dir, id);
            let file = open_segment_file(&path, created).await?;
            let is_tail = id == last_id;
            let size = file.file_size().await.map_err(std::io::Error::from)?;
            let mut from_index = None;
            if !is_tail && !cfg.verify_all_on_open {
                if let Ok(bytes) = std::fs::read(idx_path(dir, id)) {
                    from_index = SegmentIndex::from_file_bytes(&bytes)
                        .filter(|i| i.segment_id == id && i.data_len_bytes <= size);
                }
            }
            let (index, tail_bytes) = match from_index {
                Some(i) => {
                    report.segments_from_index += 1;
                    (i, Vec::new())
                }
                None => {
                    report.segments_scanned += 1;
                    let bytes = read_all(&file, data_end(&file, size)).await?;
                    let scan = scan_segment(id, &bytes);
                    for d in &scan.index.damage {
                        tracing::error!(
                            segment = id,
                            offset = d.offset,
                            resume = d.resume_offset,
                            "corrupt records skipped"
                        );
                        report.damage.push((id, d.offset, d.resume_offset));
                    }
                    let data_len = scan.index.data_len_bytes;
                    if let Some(t) = scan.torn {
                        tracing::warn!(
                            segment = id,
                            offset = t.offset,
                            reason = t.reason,
                            "torn tail truncated"
                        );
                        report.torn_tails.push((id, t));
                        // Cut the junk so that later appends cannot meet it again.
                        file.truncate(data_len)
                            .await
                            .map_err(std::io::Error::from)?;
                        file.pre_allocate(cfg.segment_size_bytes, false)
                            .await
                            .map_err(std::io::Error::from)?;
                        file.fdatasync().await.map_err(std::io::Error::from)?;
                    }
                    let tail_bytes = if is_tail {
                        bytes[align_down(data_len) as usize..data_len as usize].to_vec()
                    } else {
                        Vec::new()
                    };
                    if !is_tail {
                        write_index(dir, &scan.index)?;
                    }
                    (scan.index, tail_bytes)
                }
            };
            if created {
                file.pre_allocate(cfg.segment_size_bytes, false)
                    .await
                    .map_err(std::io::Error::from)?;
                file.fdatasync().await.map_err(std::io::Error::from)?;
                sync_dir(dir).await?;
            }
            let seg = Seg {
                id,
                file: Some(Rc::new(file)),
                data_len: index.data_len_bytes,
                last_msg_seq: index.entries.last().map_or(0, |e| e.seq),
                building: None,
            };
            loaded.push((seg, index, tail_bytes));
        }
        // Apply indexes in order.
        let global_floor = loaded.iter().map(|l| l.1.compact_floor).max().unwrap_or(0);
        let marker_seg_found = loaded
            .iter()
            .filter(|l| l.1.compact_floor > 0)
            .map(|l| l.0.id)
            .max();
        let mut core: Core<Loc> = Core::new();
        for (seg, index, _) in &loaded {
            let ids: Vec<u32> = index.subjects.iter().map(|s| core.intern(s)).collect();
            for e in &index.entries {
                if e.seq <= core.last_seq() {
                    continue;
                }
                if e.seq > core.last_seq() + 1 {
                    if e.seq <= global_floor {
                        let term = core.floor_term();
                        core.compact(e.seq, term);
                    } else {
                        for s in core.last_seq() + 1..e.seq {
                            report.add_missing(s);
                            core.push_missing(
                                s,
                                Loc {
                                    seg: seg.id,
                                    offset: 0,
                                    len: 0,
                                },
                            );
                        }
                    }
                }
                core.push(
                    e.seq,
                    Entry {
                        ts_ns: e.ts_ns,
                        term: e.term,
                        subject: ids[e.subject as usize],
                        size_bytes: e.len,
                        live: true,
                        loc: Loc {
                            seg: seg.id,
                            offset: e.offset,
                            len: e.len,
                        },
                    },
                );
            }
            for &t in &index.tombstones {
                core.remove(t);
            }
            if index.compact_floor > 0 {
                core.compact(index.compact_floor, index.compact_term);
            }
        }
        let mut segs = Vec::with_capacity(loaded.len());
        let mut tail_bytes = Vec::new();
        let n = loaded.len();
        for (i, (mut seg, index, bytes)) in loaded.into_iter().enumerate() {
            if i + 1 == n {
                let mut b = Building::new(seg.id);
                for (local, name) in index.subjects.iter().enumerate() {
                    let g = core.intern(name);
                    b.local_subjects.insert(g, local as u32);
                }
                b.index = index;
                seg.building = Some(b);
                tail_bytes = bytes;
            }
            segs.push(seg);
        }
        let tail = segs.last().expect("tail");
        let buf = (!tail_bytes.is_empty()).then(|| {
            let mut b = glommio::allocate_dma_buffer(PIECE_MIN_BYTES);
            b.as_bytes_mut()[..tail_bytes.len()].copy_from_slice(&tail_bytes);
            b
        });
        let pending = Pending {
            seg: tail.id,
            start: align_down(tail.data_len),
            buf,
            fill: tail_bytes.len(),
            written: tail_bytes.len(),
            after: None,
        };
        let last_ts_ns = core.live(core.last_seq()).map_or(0, |e| e.ts_ns);
        let durable_point = (tail.id, tail.data_len);
        let marker = (core.base_seq(), core.floor_term());
        let marker_seg = marker_seg_found.unwrap_or(segs[0].id);
        Ok(Inner {
            dir: dir.to_path_buf(),
            cfg,
            durable_seq: core.last_seq(),
            core,
            segs,
            pending,
            piece_bytes: PIECE_MIN_BYTES,
            free: Vec::new(),
            finished: Vec::new(),
            inflight: Vec::new(),
            commits_begun: 0,
            dir_dirty: false,
            marker,
            marker_durable_floor: marker.0,
            marker_seg,
            marker_durable_seg: marker_seg,
            unsynced: false,
            report,
            spare: None,
            needs_recovery: false,
            durable_point,
            last_sync: Instant::now(),
            last_ts_ns,
            idx_writes: Rc::new(IndexWrites::default()),
        })
    }

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
    fn queue(&mut self, c: Chunk) {
        if let Some(f) = self.seg(c.seg).and_then(|s| s.file.clone()) {
            start_write(&c, f);
        }
        self.finished.push(c);
    }

    /// Takes the tail buffer's new bytes as a chunk (zero padded to a block); the
    /// buffer that follows starts with the last partial block, already encoded.
    fn take_tail(&mut self, seal: bool) -> Option<Chunk> {
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

    fn check_usable(&self) -> Result<()> {
        if self.needs_recovery {
            return Err(StoreError::Io(std::io::Error::other(
                "log is recovering from a failed write",
            )));
        }
        Ok(())
    }

    fn put_msg(
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
    fn tombstones(&mut self, removed: &[u64]) {
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

    fn put_marker_if_moved(&mut self) {
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

    fn begin_commit(&mut self, force_sync: bool) -> Option<CommitJob> {
        self.put_marker_if_moved();
        let sync = match self.cfg.durability {
            Durability::Always => true,
            Durability::Interval(d) => force_sync || self.last_sync.elapsed() >= d,
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
        if chunks.is_empty() && !(sync && self.unsynced) {
            return None;
        }
        let make_spare = (self.spare.is_none()
            && self.tail().data_len > self.cfg.segment_size_bytes / 2)
            .then_some(self.tail().id + 1);
        self.commits_begun += 1;
        let no = self.commits_begun;
        let tail = self.tail();
        let sync_file = if chunks.is_empty() {
            tail.file.clone()
        } else {
            None
        };
        let tail_point = (tail.id, tail.data_len);
        self.inflight.push((no, chunks.clone()));
        Some(CommitJob {
            no,
            chunks,
            sync,
            sync_file,
            make_spare,
            last_seq: self.core.last_seq(),
            tail_point,
            marker_floor: self.marker.0,
            marker_seg: self.marker_seg,
        })
    }

    /// A file created by a commit's write phase, visible to later commits at once.
    fn register_file(&mut self, id: u32, f: Rc<DmaFile>, spare: bool) {
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
    fn finish_commit(
        &mut self,
        job: CommitJob,
        result: Result<bool>,
        prev_ok: bool,
        watch: &DurableWatch,
    ) -> Result<u64> {
        let no = job.no;
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
        let synced = match result {
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the log will recover to its last durable point");
                self.needs_recovery = true;
                return Err(e);
            }
            Ok(_) if !prev_ok => {
                // The batch before this one failed: this one cannot count.
                self.needs_recovery = true;
                return Err(StoreError::NotDurable);
            }
            Ok(synced) => synced,
        };
        if synced {
            self.last_sync = Instant::now();
            self.unsynced = false;
        } else {
            self.unsynced = true;
        }
        self.marker_durable_seg = job.marker_seg;
        self.durable_point = job.tail_point;
        self.durable_seq = job.last_seq;
        self.marker_durable_floor = job.marker_floor;
        for id in sealed {
            self.seal(id);
        }
        self.drop_front_segments();
        watch.advance(job.last_seq);
        Ok(job.last_seq)
    }

    /// The segment is complete and durable: its index is written in the
    /// background (a cache: until it lands, a reopen scans the segment).
    fn seal(&mut self, id: u32) {
        let Some(seg) = self.segs.iter_mut().find(|s| s.id == id) else {
            return;
        };
        if let Some(b) = seg.building.take() {
            self.idx_writes.start(self.dir.clone(), b.index);
        }
    }

    fn drop_front_segments(&mut self) {
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
            let _ = std::fs::remove_file(idx_path(&self.dir, s.id));
            if let Err(e) = std::fs::remove_file(seg_path(&self.dir, s.id)) {
                tracing::warn!(segment = s.id, error = %e, "cannot remove segment");
            }
        }
    }

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
        match self.seg(loc.seg).and_then(|s| s.file.clone()) {
            Some(f) => Source::File(f),
            None => Source::Gone,
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

    fn mark_corrupt(&mut self, seq: u64) {
        if self.core.remove(seq) {
            self.report.add_missing(seq);
            self.report.missing.sort_unstable();
        }
    }
}

enum Source {
    Mem(Vec<u8>),
    File(Rc<DmaFile>),
    Gone,
}

/// A temporary file name for segment `id`'s index, unique in this process
/// (open removes every `*.tmp`, so one left behind by a crash or a cancelled
/// write is never trusted).
fn idx_tmp_path(dir: &Path, id: u32) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("{id:010}.idx.{n}.tmp"))
}

/// Writes an index synchronously (open only: it blocks anyway).
fn write_index(dir: &Path, index: &SegmentIndex) -> Result<()> {
    let tmp = idx_tmp_path(dir, index.segment_id);
    std::fs::write(&tmp, index.to_file_bytes())?;
    std::fs::rename(&tmp, idx_path(dir, index.segment_id))?;
    Ok(())
}

/// One sealed segment's index write in flight.
#[derive(Default)]
struct IdxWrite {
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
struct IndexWrites {
    /// Every write in flight, cancelled ones included (a segment id may
    /// appear twice only if its first write was cancelled).
    pending: RefCell<Vec<(u32, Rc<IdxWrite>)>>,
    /// Test hook: awaited between the temporary file's write and its rename.
    #[cfg(test)]
    gate: RefCell<Option<Rc<glommio::sync::Semaphore>>>,
    /// Test hook: run on the blocking thread before (`false`) and after
    /// (`true`) the temporary file's write.
    #[cfg(test)]
    on_blocking: RefCell<Option<BlockingHook>>,
}

#[cfg(test)]
type BlockingHook = Arc<dyn Fn(bool) + Send + Sync>;

impl IndexWrites {
    fn start(self: &Rc<Self>, dir: PathBuf, index: SegmentIndex) {
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
            let wrote = glommio::executor()
                .spawn_blocking(move || {
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
                            std::fs::write(&t, bytes)
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
                    std::fs::rename(&tmp, idx_path(&dir, id)).map(|_| true)
                }
                Ok(()) => Ok(false),
                Err(e) => Err(e),
            };
            if let Err(e) = &installed {
                tracing::warn!(segment = id, error = %e, "cannot write segment index; a reopen will scan the segment");
            }
            if !matches!(installed, Ok(true)) {
                let _ = std::fs::remove_file(&tmp);
            }
            this.pending.borrow_mut().retain(|(_, p)| !Rc::ptr_eq(p, &w));
            w.done.complete(true);
        })
        .detach();
    }

    /// Makes a write in flight for segment `id` leave no `.idx` behind.
    fn cancel(&self, id: u32) {
        for (_, w) in self.pending.borrow().iter().filter(|(i, _)| *i == id) {
            w.cancel();
        }
    }

    /// Cancels every write and waits (blocking, for at most the one file
    /// being written) until no temporary file can be created any more; one
    /// already written is removed by its task, or by the next open.
    fn cancel_all(&self) {
        for (_, w) in self.pending.borrow().iter() {
            w.cancel();
            drop(w.shared.writing.lock());
        }
    }

    /// Waits until no index write is in flight (cancelled ones included:
    /// their temporary files are gone after it).
    async fn wait_all(&self) {
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

async fn sync_dir(dir: &Path) -> Result<()> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(std::io::Error::from)?;
    d.sync().await.map_err(std::io::Error::from)?;
    let _ = d.close().await;
    Ok(())
}

struct CommitJob {
    no: u64,
    chunks: Vec<Chunk>,
    sync: bool,
    /// The file to sync when there is nothing to write (interval mode).
    sync_file: Option<Rc<DmaFile>>,
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

async fn new_segment_file(dir: &Path, id: u32, size: u64) -> Result<Rc<DmaFile>> {
    let f = open_segment_file(&seg_path(dir, id), true).await?;
    f.pre_allocate(size, false)
        .await
        .map_err(std::io::Error::from)?;
    Ok(Rc::new(f))
}

impl FileStore {
    /// Opens (or creates) the log in `dir`, recovering it.
    pub async fn open(dir: impl AsRef<Path>, cfg: LogConfig) -> Result<FileStore> {
        let inner = Inner::open(dir.as_ref(), cfg).await?;
        let watch = DurableWatch::new(inner.core.last_seq());
        Ok(FileStore {
            inner: RefCell::new(inner),
            watch,
            commit_lock: glommio::sync::Semaphore::new(1),
            last_done: RefCell::new(None),
            read_cache: RefCell::new(None),
            read_epoch: std::cell::Cell::new(0),
            cutting: std::cell::Cell::new(0),
            #[cfg(test)]
            sync_hook: RefCell::new(None),
        })
    }

    /// Marks a cut or reload of the files until the guard is dropped.
    fn cutting(&self) -> CutGuard<'_> {
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
    async fn read_through(&self, f: &DmaFile, loc: Loc, disk_end: u64) -> Result<Bytes> {
        let (lo, hi) = (loc.offset as u64, loc.offset as u64 + loc.len as u64);
        let start = lo & !4095;
        let end = (start + READ_AHEAD_BYTES).min(disk_end).max(hi);
        let epoch = self.read_epoch.get();
        let r = f
            .read_at(start, (end - start) as usize)
            .await
            .map_err(std::io::Error::from)?;
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
        self.commit_with(false).await
    }

    /// Like `commit` but always syncs, whatever the durability mode.
    pub async fn sync(&self) -> Result<u64> {
        self.commit_with(true).await
    }

    async fn commit_with(&self, force_sync: bool) -> Result<u64> {
        let permit = self.lock().await?;
        if self.inner.borrow().needs_recovery {
            self.settle().await;
            if self.inner.borrow().needs_recovery {
                self.recover_locked().await?;
            }
        }
        let job = self.inner.borrow_mut().begin_commit(force_sync);
        let Some(job) = job else {
            drop(permit);
            // Everything appended before this call went with an earlier batch.
            let prev = self.last_done.borrow().clone();
            if let Some(p) = prev {
                if !p.wait().await {
                    return Err(StoreError::NotDurable);
                }
            }
            return Ok(self.inner.borrow().durable_seq);
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

    async fn lock(&self) -> Result<glommio::sync::Permit<'_>> {
        self.commit_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))
    }

    /// Waits until every commit begun has finished and every write started
    /// for the next one completed (call with the lock held, so that no other
    /// commit begins).
    async fn settle(&self) {
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
    async fn run_commit(
        &self,
        job: CommitJob,
        permit: Option<glommio::sync::Permit<'_>>,
    ) -> Result<u64> {
        let done = Rc::new(Done::default());
        let prev = self.last_done.replace(Some(done.clone()));
        let wrote = self.write_phase(&job, permit).await;
        let result = match wrote {
            Ok((files, sync_dir)) if job.sync => {
                self.sync_phase(&job, files, sync_dir).await.map(|_| true)
            }
            Ok(_) => Ok(false),
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
    ) -> Result<(Vec<Rc<DmaFile>>, bool)> {
        let (dir, size) = {
            let i = self.inner.borrow();
            (i.dir.clone(), i.cfg.segment_size_bytes)
        };
        let mut touched: Vec<Rc<DmaFile>> = Vec::new();
        let mut first_err: Option<StoreError> = None;
        for c in &job.chunks {
            let file = self.inner.borrow().seg(c.seg).and_then(|s| s.file.clone());
            let file = match file {
                Some(f) => f,
                None => match new_segment_file(&dir, c.seg, size).await {
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
            match new_segment_file(&dir, id, size).await {
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
        job: &CommitJob,
        mut files: Vec<Rc<DmaFile>>,
        sync_dir_too: bool,
    ) -> Result<()> {
        #[cfg(test)]
        {
            let hook = self.sync_hook.borrow().as_ref().map(|h| h(job.no));
            if let Some(h) = hook {
                h.await?;
            }
        }
        if let Some(f) = &job.sync_file {
            files.push(f.clone());
        }
        for f in &files {
            f.fdatasync().await.map_err(std::io::Error::from)?;
        }
        if sync_dir_too {
            let dir = self.inner.borrow().dir.clone();
            sync_dir(&dir).await?;
        }
        Ok(())
    }

    /// Cuts the files back to the last durable point and reloads from disk.
    async fn recover_locked(&self) -> Result<()> {
        let _cut = self.cutting();
        // No index write may land while files are cut and reloaded.
        self.flush_indexes().await;
        let (dir, cfg, point, durable_seq, segs) = {
            let i = self.inner.borrow();
            let segs: Vec<(u32, Option<Rc<DmaFile>>)> =
                i.segs.iter().map(|s| (s.id, s.file.clone())).collect();
            (
                i.dir.clone(),
                i.cfg.clone(),
                i.durable_point,
                i.durable_seq,
                segs,
            )
        };
        for (id, file) in segs {
            if id > point.0 {
                let _ = std::fs::remove_file(seg_path(&dir, id));
                let _ = std::fs::remove_file(idx_path(&dir, id));
            } else if id == point.0 {
                let f = match file {
                    Some(f) => f,
                    None => Rc::new(open_segment_file(&seg_path(&dir, id), false).await?),
                };
                f.truncate(point.1).await.map_err(std::io::Error::from)?;
                f.pre_allocate(cfg.segment_size_bytes, false)
                    .await
                    .map_err(std::io::Error::from)?;
                f.fdatasync().await.map_err(std::io::Error::from)?;
            }
        }
        // Remove a spare beyond the durable tail too.
        let _ = std::fs::remove_file(seg_path(&dir, point.0 + 1));
        let report = self.inner.borrow().report.clone();
        let mut fresh = Inner::open(&dir, cfg).await?;
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
        self.watch.fail(durable_seq);
        Ok(())
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
        let job = self.inner.borrow_mut().begin_commit(true);
        if let Some(job) = job {
            if let Err(e) = self.run_commit(job, None).await {
                let _ = self.recover_locked().await;
                return Err(e);
            }
        }
        // No commit is in flight: once these land, no index write can land
        // for a segment cut below.
        self.flush_indexes().await;
        let (dir, size, loc, last_id) = {
            let inner = self.inner.borrow();
            let loc = inner.core.entry(index).expect("dense").loc;
            (
                inner.dir.clone(),
                inner.cfg.segment_size_bytes,
                loc,
                inner.tail().id,
            )
        };
        // A missing entry has no offset of its own: cut at the next record.
        let cut = if loc.len == 0 {
            let inner = self.inner.borrow();
            let seg = inner.seg(loc.seg).expect("segment");
            seg.building
                .as_ref()
                .and_then(|b| {
                    b.index
                        .entries
                        .iter()
                        .find(|e| e.seq > index)
                        .map(|e| e.offset as u64)
                })
                .unwrap_or(seg.data_len)
        } else {
            loc.offset as u64
        };
        // Later segments (and a spare) go first, then the index of the cut one.
        for id in loc.seg + 1..=last_id + 1 {
            let _ = std::fs::remove_file(idx_path(&dir, id));
            let _ = std::fs::remove_file(seg_path(&dir, id));
        }
        let _ = std::fs::remove_file(idx_path(&dir, loc.seg));
        let file = self
            .inner
            .borrow()
            .seg(loc.seg)
            .and_then(|s| s.file.clone())
            .expect("durable segment has a file");
        let r: Result<()> = async {
            file.truncate(cut).await.map_err(std::io::Error::from)?;
            file.pre_allocate(size, false)
                .await
                .map_err(std::io::Error::from)?;
            file.fdatasync().await.map_err(std::io::Error::from)?;
            sync_dir(&dir).await
        }
        .await;
        if let Err(e) = r {
            self.inner.borrow_mut().needs_recovery = true;
            return Err(e);
        }
        // Reload from disk: the cut segment is the tail again, indexes rebuilt.
        let cfg = self.inner.borrow().cfg.clone();
        let (report, old_base, old_live) = {
            let i = self.inner.borrow();
            let live: Vec<u64> = i.core.range(0, index - 1).map(|(s, _)| s).collect();
            (
                i.report.clone(),
                (i.core.base_seq(), i.core.floor_term()),
                live,
            )
        };
        let mut fresh = Inner::open(&dir, cfg).await?;
        fresh
            .report
            .missing
            .extend(report.missing.into_iter().filter(|m| m.0 < index));
        // Tombstones and markers written after the cut are gone with it: redo them.
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
        self.watch.rewind(index);
        // Make the redone marker and tombstones durable before returning.
        let job = self.inner.borrow_mut().begin_commit(true);
        if let Some(job) = job {
            if let Err(e) = self.run_commit(job, None).await {
                let _ = self.recover_locked().await;
                return Err(e);
            }
        }
        Ok(())
    }

    pub fn first_index(&self) -> u64 {
        self.inner.borrow().core.base_seq()
    }

    pub fn last_index(&self) -> u64 {
        self.inner.borrow().core.last_seq()
    }

    /// Raft: the term of the entry at `index` (or of the snapshot at `first_index - 1`).
    pub fn term(&self, index: u64) -> Option<u64> {
        let inner = self.inner.borrow();
        if index + 1 == inner.core.base_seq() {
            return Some(inner.core.floor_term());
        }
        inner.core.live(index).map(|e| e.term)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_lite::future::poll_once;

    use super::*;
    use crate::rt::run_local;

    /// Holds commit `held`'s fdatasync until `gate` is signalled (then fails
    /// it if `fail`), and records which commits reached their sync.
    fn hold_sync(
        s: &FileStore,
        held: u64,
        fail: bool,
    ) -> (Rc<glommio::sync::Semaphore>, Rc<RefCell<Vec<u64>>>) {
        let gate = Rc::new(glommio::sync::Semaphore::new(0));
        let reached = Rc::new(RefCell::new(Vec::new()));
        let (g, r) = (gate.clone(), reached.clone());
        *s.sync_hook.borrow_mut() = Some(Box::new(move |no| {
            r.borrow_mut().push(no);
            let g = g.clone();
            Box::pin(async move {
                if no == held {
                    g.acquire(1).await.expect("gate");
                    if fail {
                        return Err(std::io::Error::other("injected sync failure").into());
                    }
                }
                Ok(())
            })
        }));
        (gate, reached)
    }

    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..2_000 {
            if f() {
                return;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition never met");
    }

    #[test]
    fn next_batch_is_written_while_the_previous_sync_is_in_flight_but_durable_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let s = Rc::new(FileStore::open(&path, LogConfig::default()).await.unwrap());
            let (gate, reached) = hold_sync(&s, 1, false);
            let a = s.append("a", b"", &[1u8; 3000]).unwrap();
            let c1 = glommio::spawn_local({
                let s = s.clone();
                async move { s.commit().await }
            });
            until(|| reached.borrow().contains(&1)).await;
            // Batch 2 (which rewrites batch 1's last block) is written and synced
            // while batch 1's sync is still held.
            let b = s.append("b", b"", &[2u8; 3000]).unwrap();
            let c2 = glommio::spawn_local({
                let s = s.clone();
                async move { s.commit().await }
            });
            until(|| reached.borrow().contains(&2)).await;
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert_eq!(
                s.watch().durable_seq(),
                0,
                "nothing durable before batch 1's sync"
            );
            assert!(poll_once(s.wait_durable(b)).await.is_none());
            assert!(poll_once(s.wait_durable(a)).await.is_none());
            gate.signal(1);
            assert_eq!(c1.await.unwrap(), 1);
            assert_eq!(c2.await.unwrap(), 2);
            s.wait_durable(a).await.unwrap();
            s.wait_durable(b).await.unwrap();
            assert_eq!(s.get(2).await.unwrap().unwrap().payload[0], 2);
            let s = Rc::try_unwrap(s).ok().unwrap();
            drop(s);
            let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
            assert_eq!(s.state().last_seq, 2);
            assert_eq!(s.get(1).await.unwrap().unwrap().payload.len(), 3000);
            assert_eq!(s.get(2).await.unwrap().unwrap().payload[2999], 2);
        });
    }

    #[test]
    fn a_failed_sync_fails_the_batches_pipelined_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let s = Rc::new(FileStore::open(&path, LogConfig::default()).await.unwrap());
            let first = s.append("x", b"", b"durable").unwrap();
            s.commit().await.unwrap();
            s.wait_durable(first).await.unwrap();
            let (gate, reached) = hold_sync(&s, 2, true);
            let a = s.append("a", b"", b"lost").unwrap();
            let c1 = glommio::spawn_local({
                let s = s.clone();
                async move { s.commit().await }
            });
            until(|| reached.borrow().contains(&2)).await;
            let b = s.append("b", b"", b"lost too").unwrap();
            let c2 = glommio::spawn_local({
                let s = s.clone();
                async move { s.commit().await }
            });
            until(|| reached.borrow().contains(&3)).await;
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert!(poll_once(s.wait_durable(b)).await.is_none());
            gate.signal(1);
            assert!(c1.await.is_err());
            assert!(matches!(c2.await, Err(StoreError::NotDurable)));
            assert!(matches!(
                s.wait_durable(a).await,
                Err(StoreError::NotDurable)
            ));
            assert!(matches!(
                s.wait_durable(b).await,
                Err(StoreError::NotDurable)
            ));
            s.wait_durable(first).await.unwrap();
            // Cut back to the last durable point, and usable again.
            assert_eq!(s.state().last_seq, 1);
            let t = s.append("c", b"", b"after").unwrap();
            assert_eq!(t.seq, 2);
            s.commit().await.unwrap();
            s.wait_durable(t).await.unwrap();
            let s = Rc::try_unwrap(s).ok().unwrap();
            drop(s);
            let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
            assert_eq!(s.state().last_seq, 2);
            assert_eq!(&s.get(2).await.unwrap().unwrap().payload[..], b"after");
        });
    }

    #[test]
    fn records_straddling_tail_buffers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let cfg = LogConfig {
                segment_size_bytes: 4 << 20,
                record_max_bytes: 64 << 10,
                ..LogConfig::default()
            };
            let s = FileStore::open(&path, cfg.clone()).await.unwrap();
            let mut n = 0u64;
            // Sizes that cross buffer boundaries at odd places; a commit now and then.
            for i in 0..3_000u64 {
                let len = (i * 7919) % 9000;
                s.append("s", b"h", &vec![(i % 251) as u8; len as usize])
                    .unwrap();
                n += 1;
                if i % 400 == 0 {
                    s.commit().await.unwrap();
                }
                if i % 97 == 0 {
                    let m = s.get(n).await.unwrap().unwrap();
                    assert_eq!(m.payload.len() as u64, len);
                }
            }
            s.commit().await.unwrap();
            drop(s);
            let s = FileStore::open(&path, cfg).await.unwrap();
            assert_eq!(s.state().last_seq, n);
            assert!(s.recovery_report().torn_tails.is_empty());
            for i in 0..3_000u64 {
                let m = s.get(i + 1).await.unwrap().unwrap();
                assert_eq!(m.payload.len() as u64, (i * 7919) % 9000);
                assert!(m.payload.iter().all(|&b| b == (i % 251) as u8));
            }
        });
    }

    #[test]
    fn full_tail_buffers_are_written_before_the_commit_but_durable_only_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
            let mut last = None;
            for _ in 0..3_000 {
                last = Some(s.append("w", b"", &[7u8; 1024]).unwrap());
            }
            let ops: Vec<Rc<WriteOp>> = {
                let i = s.inner.borrow();
                i.finished.iter().map(|c| c.op.clone()).collect()
            };
            assert!(ops.len() >= 2, "3 MiB fill several tail buffers");
            assert!(ops.iter().all(|op| op.started.get()), "written at once");
            for op in &ops {
                assert!(op.done.wait().await, "write succeeded");
            }
            // Written, not synced: nothing is durable yet.
            assert_eq!(s.watch().durable_seq(), 0);
            assert!(poll_once(s.wait_durable(last.unwrap())).await.is_none());
            assert_eq!(s.get(1).await.unwrap().unwrap().payload[0], 7);
            assert_eq!(s.commit().await.unwrap(), 3_000);
            s.wait_durable(last.unwrap()).await.unwrap();
            drop(s);
            let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
            assert_eq!(s.state().last_seq, 3_000);
            assert!(s.recovery_report().torn_tails.is_empty());
            for seq in [1, 1_000, 2_999, 3_000] {
                assert_eq!(s.get(seq).await.unwrap().unwrap().payload.len(), 1024);
            }
        });
    }

    #[test]
    fn pipelined_commits_rewriting_partial_blocks_keep_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let cfg = LogConfig {
                segment_size_bytes: 4 << 20,
                record_max_bytes: 64 << 10,
                ..LogConfig::default()
            };
            let s = Rc::new(FileStore::open(&path, cfg.clone()).await.unwrap());
            let mut commits = Vec::new();
            let mut tickets = Vec::new();
            // Many commits in flight at once, most ending inside a block that the
            // next one rewrites, some batches filling whole tail buffers (written
            // before their commit), across segment rolls.
            for i in 0..4_000u64 {
                let len = if i % 500 < 10 {
                    200_000
                } else {
                    (i * 7919) % 3000
                };
                let len = len.min(60_000) as usize;
                tickets.push(s.append("p", b"", &vec![(i % 251) as u8; len]).unwrap());
                if i % 3 == 0 {
                    let sc = s.clone();
                    commits.push(glommio::spawn_local(async move { sc.commit().await }));
                }
                if i % 5 == 0 {
                    glommio::yield_if_needed().await;
                    futures_lite::future::yield_now().await;
                }
            }
            let sc = s.clone();
            commits.push(glommio::spawn_local(async move { sc.commit().await }));
            for c in commits {
                c.await.unwrap();
            }
            for t in tickets {
                s.wait_durable(t).await.unwrap();
            }
            let s = Rc::try_unwrap(s).ok().unwrap();
            drop(s);
            let s = FileStore::open(&path, cfg).await.unwrap();
            assert_eq!(s.state().last_seq, 4_000);
            assert!(s.recovery_report().torn_tails.is_empty());
            assert!(s.recovery_report().missing.is_empty());
            for i in 0..4_000u64 {
                let m = s.get(i + 1).await.unwrap().unwrap();
                let len = if i % 500 < 10 {
                    200_000
                } else {
                    (i * 7919) % 3000
                };
                assert_eq!(m.payload.len() as u64, len.min(60_000));
                assert!(m.payload.iter().all(|&b| b == (i % 251) as u8));
            }
        });
    }

    fn files(dir: &Path, suffix: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix))
            .collect();
        v.sort();
        v
    }

    fn small_segments() -> LogConfig {
        LogConfig {
            segment_size_bytes: 64 << 10,
            record_max_bytes: 16 << 10,
            ..LogConfig::default()
        }
    }

    async fn fill(s: &FileStore, n: u64) {
        for i in 0..n {
            s.append(&format!("s.{}", i % 5), b"", &[i as u8; 200])
                .unwrap();
            if i % 100 == 99 {
                s.commit().await.unwrap();
            }
        }
        s.commit().await.unwrap();
    }

    /// Holds every index write between its temporary file and its rename.
    fn hold_index_writes(s: &FileStore) -> (Rc<glommio::sync::Semaphore>, Rc<IndexWrites>) {
        let gate = Rc::new(glommio::sync::Semaphore::new(0));
        let w = s.inner.borrow().idx_writes.clone();
        *w.gate.borrow_mut() = Some(gate.clone());
        (gate, w)
    }

    #[test]
    fn sealed_indexes_are_written_in_the_background_and_used_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            fill(&s, 2_000).await;
            let sealed = s.segment_count() - 1;
            assert!(sealed >= 4, "{sealed}");
            s.flush_indexes().await;
            assert_eq!(files(&path, ".idx").len(), sealed);
            assert!(files(&path, ".tmp").is_empty());
            let before = s.state();
            drop(s);
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            assert_eq!(s.state(), before);
            let r = s.recovery_report();
            // Every sealed segment from its index; only the tail (and the
            // preallocated spare, which became the tail) scanned.
            assert_eq!(r.segments_from_index as usize, sealed, "{r:?}");
            assert!(r.segments_scanned <= 2, "{r:?}");
            for seq in [1, 777, 2_000] {
                let m = s.get(seq).await.unwrap().unwrap();
                assert_eq!(m.payload.as_ref(), &[(seq - 1) as u8; 200][..]);
            }
        });
    }

    #[test]
    fn a_segment_removed_while_its_index_is_written_leaves_no_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            let (gate, writes) = hold_index_writes(&s);
            fill(&s, 2_000).await;
            let front: Vec<u32> = s.inner.borrow().segs.iter().map(|g| g.id).collect();
            let sealed = &front[..front.len() - 1];
            assert!(sealed.len() >= 4);
            until(|| writes.pending.borrow().len() == sealed.len()).await;
            // Retention removes every sealed segment while their writes wait.
            s.purge(&PurgeRequest {
                subject: None,
                up_to_seq: None,
                keep: Some(1),
            })
            .unwrap();
            for _ in 0..4 {
                s.append("s.x", b"", b"after").unwrap();
                s.commit().await.unwrap();
            }
            let left: Vec<u32> = s.inner.borrow().segs.iter().map(|g| g.id).collect();
            let removed: Vec<u32> = sealed
                .iter()
                .copied()
                .filter(|id| !left.contains(id))
                .collect();
            assert!(removed.len() >= 3, "removed {removed:?}, left {left:?}");
            gate.signal(1_000);
            s.flush_indexes().await;
            for id in &removed {
                assert!(!idx_path(&path, *id).exists(), "index of removed {id}");
                assert!(!seg_path(&path, *id).exists());
            }
            assert!(
                files(&path, ".tmp").is_empty(),
                "{:?}",
                files(&path, ".tmp")
            );
            let before = s.state();
            drop(s);
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            assert_eq!(s.state(), before);
            let r = s.recovery_report();
            assert!(r.missing.is_empty() && r.damage.is_empty(), "{r:?}");
            assert_eq!(
                s.get(2_004).await.unwrap().unwrap().payload.as_ref(),
                b"after"
            );
        });
    }

    #[test]
    fn dropping_the_store_cancels_index_writes_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            let (gate, writes) = hold_index_writes(&s);
            fill(&s, 2_000).await;
            let sealed = s.segment_count() - 1;
            until(|| writes.pending.borrow().len() == sealed).await;
            let before = s.state();
            drop(s);
            gate.signal(1_000);
            writes.wait_all().await;
            assert!(files(&path, ".idx").is_empty());
            assert!(files(&path, ".tmp").is_empty());
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            assert_eq!(s.state(), before);
            let r = s.recovery_report();
            assert_eq!(r.segments_from_index, 0, "{r:?}");
            assert!(r.missing.is_empty() && r.damage.is_empty(), "{r:?}");
            // Open wrote the indexes it rebuilt (the old tail's too, now
            // that the preallocated spare is the tail).
            assert!(files(&path, ".idx").len() >= sealed);
        });
    }

    #[test]
    fn no_file_appears_in_the_directory_once_the_store_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            // The blocking thread waits before its first index write until
            // the store is gone, and says when that write is over.
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let (over_tx, over_rx) = std::sync::mpsc::channel::<()>();
            let (go_rx, over_tx) = (Mutex::new(go_rx), Mutex::new(over_tx));
            let writes = s.inner.borrow().idx_writes.clone();
            *writes.on_blocking.borrow_mut() = Some(Arc::new(move |after| {
                if after {
                    let _ = over_tx.lock().unwrap().send(());
                } else {
                    let _ = go_rx.lock().unwrap().recv();
                }
            }));
            fill(&s, 2_000).await;
            let sealed = s.segment_count() - 1;
            assert!(sealed >= 4);
            drop(s);
            let listing = files(&path, "");
            for _ in 0..sealed {
                go_tx.send(()).unwrap();
                over_rx.recv().unwrap();
            }
            // No await since the drop: the executor removed nothing since.
            assert_eq!(files(&path, ""), listing);
            assert!(files(&path, ".tmp").is_empty());
            writes.wait_all().await;
            std::fs::remove_dir_all(&path).unwrap();
        });
    }
}
