//! Opening a log: list the segments, load each one's index (or rebuild it by
//! scanning: the tail always), cut torn tails, drop what follows a batch a crash
//! interrupted, report damage, and rebuild the sequence table. `RecoveryReport`
//! says what was found.

use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use super::index_writes::IndexWrites;
use super::tail::{Pending, PIECE_MIN_BYTES};
use super::{align_down, idx_path, seg_path, Building, Inner, Loc, Seg, BLOCK_BYTES};
use crate::config::LogConfig;
use crate::core::{Core, Entry};
use crate::disk::{Disk, SegFile};
use crate::index::SegmentIndex;
use crate::recovery::{scan_segment, TornTail};
use crate::{Result, StoreError};

/// Read size when scanning a segment.
const SCAN_READ_BYTES: usize = 8 << 20;

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
    pub(super) fn add_missing(&mut self, seq: u64) {
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

async fn read_all(file: &SegFile, size: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size as usize);
    let mut pos = 0u64;
    while pos < size {
        let n = ((size - pos) as usize).min(SCAN_READ_BYTES);
        let r = file
            .read_at_aligned(pos, n.next_multiple_of(BLOCK_BYTES as usize))
            .await?;
        let got = r.len().min(n);
        out.extend_from_slice(&r[..got]);
        if got < n {
            break;
        }
        pos += n as u64;
    }
    Ok(out)
}

/// One segment as found on open: its index (read or rebuilt) and, for the
/// tail, the bytes of its last partial block.
struct Loaded {
    seg: Seg,
    index: SegmentIndex,
    tail_bytes: Vec<u8>,
    /// It has a valid `.idx`: it was sealed once durable, so nothing before it
    /// is a batch the crash interrupted.
    sealed: bool,
    /// How its scan ended: at a torn tail (`Some`), unwritten or not.
    torn: Option<bool>,
}

/// The segment ids in `dir` (contiguous, sorted), removing leftover `*.tmp`
/// files; a new log gets segment 0 (the `bool` says it must be created).
fn list_segments(disk: &Disk, dir: &Path) -> Result<(Vec<u32>, bool)> {
    let mut ids = Vec::new();
    for name in disk.list(dir)? {
        if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|s| s.parse::<u32>().ok())
        {
            ids.push(id);
        } else if name.ends_with(".tmp") {
            disk.remove(&dir.join(&name))?;
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
    if ids.is_empty() {
        return Ok((vec![0], true));
    }
    Ok((ids, false))
}

/// The index of a sealed segment from its `.idx`, if that is valid for a
/// file of `size` bytes.
fn read_index(disk: &Disk, dir: &Path, id: u32, size: u64) -> Option<SegmentIndex> {
    let bytes = disk.read(&idx_path(dir, id)).ok()?;
    SegmentIndex::from_file_bytes(&bytes).filter(|i| index_fits(i, id, size))
}

/// An index (checksummed, so written by us) is used only if it describes this
/// segment and every record it lists lies within the file's data.
fn index_fits(index: &SegmentIndex, id: u32, size: u64) -> bool {
    let data_len = index.data_len_bytes;
    index.segment_id == id
        && data_len <= size
        && index
            .entries
            .iter()
            .all(|e| e.offset as u64 + e.len as u64 <= data_len)
}

/// Scans a segment record by record, reports damage, cuts a torn tail (the
/// file is truncated and preallocated again, so that later appends cannot
/// meet the junk) and returns its index and the bytes that were scanned.
async fn scan_and_repair(
    file: &SegFile,
    id: u32,
    size: u64,
    cfg: &LogConfig,
    report: &mut RecoveryReport,
) -> Result<(SegmentIndex, Vec<u8>, Option<bool>)> {
    let mut bytes = read_all(file, file.data_end(size)).await?;
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
    let torn = scan.torn.as_ref().map(|t| t.unwritten);
    if let Some(t) = scan.torn {
        tracing::warn!(
            segment = id,
            offset = t.offset,
            reason = t.reason,
            "torn tail truncated"
        );
        report.torn_tails.push((id, t));
        cut_and_preallocate(file, scan.index.data_len_bytes, cfg.segment_size_bytes).await?;
    } else if (bytes.len() as u64) < scan.index.data_len_bytes {
        // Cut inside the last record's padding: the padding comes back as zeros.
        tracing::warn!(segment = id, "segment cut inside padding; zeros restored");
        bytes.resize(scan.index.data_len_bytes as usize, 0);
        cut_and_preallocate(file, scan.index.data_len_bytes, cfg.segment_size_bytes).await?;
    }
    debug_assert!(scan.index.data_len_bytes <= bytes.len() as u64);
    Ok((scan.index, bytes, torn))
}

/// Truncates the file to `len_bytes`, preallocates it to `size_bytes` again
/// and syncs it.
pub(super) async fn cut_and_preallocate(
    file: &SegFile,
    len_bytes: u64,
    size_bytes: u64,
) -> Result<()> {
    file.truncate(len_bytes).await?;
    file.pre_allocate(size_bytes).await?;
    file.fdatasync().await?;
    Ok(())
}

/// Opens segment `id` and reads its index, or rebuilds it by scanning (the
/// tail always, a sealed segment whose index is missing or damaged, or every
/// segment with `verify_all_on_open`).
async fn load_segment(
    disk: &Disk,
    dir: &Path,
    cfg: &LogConfig,
    id: u32,
    is_tail: bool,
    create: bool,
    report: &mut RecoveryReport,
) -> Result<Loaded> {
    let file = disk.open(&seg_path(dir, id), create).await?;
    let size = file.size().await?;
    let from_index = (!is_tail && !cfg.verify_all_on_open)
        .then(|| read_index(disk, dir, id, size))
        .flatten();
    // With every segment verified, the index is still the proof of a seal.
    let sealed = from_index.is_some()
        || (!is_tail && cfg.verify_all_on_open && read_index(disk, dir, id, size).is_some());
    let (index, tail_bytes, torn) = match from_index {
        Some(i) => {
            report.segments_from_index += 1;
            (i, Vec::new(), None)
        }
        None => {
            report.segments_scanned += 1;
            let (index, bytes, torn) = scan_and_repair(&file, id, size, cfg, report).await?;
            let data_len = index.data_len_bytes;
            let tail_bytes = if is_tail {
                bytes[align_down(data_len) as usize..data_len as usize].to_vec()
            } else {
                // Durably: whether a segment has an index decides what a later open
                // keeps after damage (`interrupted_batch`), so this open's view of it
                // must survive a crash.
                let name = format!("{id:010}.idx");
                disk.replace_durably(dir, &name, index.to_file_bytes())
                    .await?;
                Vec::new()
            };
            (index, tail_bytes, torn)
        }
    };
    if create {
        file.pre_allocate(cfg.segment_size_bytes).await?;
        file.fdatasync().await?;
        disk.sync_dir(dir).await?;
    }
    let seg = Seg {
        id,
        file: Some(Rc::new(file)),
        data_len: index.data_len_bytes,
        last_msg_seq: index.entries.last().map_or(0, |e| e.seq),
        building: None,
    };
    Ok(Loaded {
        seg,
        index,
        tail_bytes,
        sealed,
        torn,
    })
}

/// Where a batch the crash interrupted left its mark: the position of the last
/// segment to keep when the segments after it hold only records that were never
/// durable. That is the case after a segment whose scan ended at unwritten space
/// with records after it, or a segment that ended cleanly while the next one
/// starts past a gap no compaction explains (the end of one segment never written,
/// the start of the next one written). Durability is a prefix, so a later segment
/// with an index (sealed once durable) rules it out.
fn interrupted_batch(loaded: &[Loaded]) -> Option<usize> {
    let floor = loaded
        .iter()
        .map(|l| l.index.compact_floor)
        .max()
        .unwrap_or(0);
    // Only segments after the last one with an index can hold such a batch.
    let first = loaded.iter().rposition(|l| l.sealed).map_or(0, |p| p + 1);
    let mut last_seq = loaded[..first]
        .iter()
        .filter_map(|l| l.index.entries.last().map(|e| e.seq))
        .max()
        .unwrap_or(0);
    for i in first..loaded.len().saturating_sub(1) {
        let l = &loaded[i];
        if let Some(e) = l.index.entries.last() {
            last_seq = last_seq.max(e.seq);
        }
        // A gap made by damage at the start of the next segment is not this.
        let next = &loaded[i + 1].index;
        let next_first = next
            .entries
            .first()
            .filter(|e| !next.damage.iter().any(|d| d.offset < e.offset as u64))
            .map(|e| e.seq);
        let gap = next_first.is_some_and(|f| f > last_seq + 1 && f > floor);
        match l.torn {
            Some(true) => return Some(i),
            None if gap => return Some(i),
            _ => {}
        }
    }
    None
}

/// Removes the segments after `keep` (highest first, so that a crash part way
/// leaves them contiguous) and `keep`'s index (it is the tail again and grows),
/// and makes that durable.
async fn drop_segments_after(disk: &Disk, dir: &Path, keep: u32, last: u32) -> Result<()> {
    for id in (keep + 1..=last).rev() {
        tracing::warn!(
            segment = id,
            "segment dropped: it follows unwritten space (a batch the crash interrupted)"
        );
        remove_if_present(disk, &idx_path(dir, id))?;
        disk.remove(&seg_path(dir, id))?;
    }
    remove_if_present(disk, &idx_path(dir, keep))?;
    Ok(disk.sync_dir(dir).await?)
}

fn remove_if_present(disk: &Disk, path: &Path) -> Result<()> {
    match disk.remove(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Rebuilds the sequence table from the segments' indexes, in order: gaps
/// below the largest compact marker are compacted away, other gaps are
/// missing records (reported).
fn replay_indexes(loaded: &[Loaded], report: &mut RecoveryReport) -> Core<Loc> {
    let global_floor = loaded
        .iter()
        .map(|l| l.index.compact_floor)
        .max()
        .unwrap_or(0);
    let mut core: Core<Loc> = Core::new();
    for Loaded { seg, index, .. } in loaded {
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
                        let loc = Loc {
                            seg: seg.id,
                            offset: 0,
                            len: 0,
                        };
                        core.push_missing(s, loc);
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
    core
}

impl Inner {
    /// Opens (or creates) the log in `dir` and recovers it.
    pub(super) async fn open(disk: Disk, dir: &Path, cfg: LogConfig) -> Result<Inner> {
        cfg.validate()?;
        disk.create_dir_all(dir)?;
        disk.prepare(dir).await?;
        let mut report = RecoveryReport::default();
        let loaded = loop {
            // The counts describe the load that is kept; cuts made before stay listed.
            report.segments_scanned = 0;
            report.segments_from_index = 0;
            let (ids, create) = list_segments(&disk, dir)?;
            let mut loaded = Vec::with_capacity(ids.len());
            let last_id = *ids.last().expect("one segment at least");
            for &id in &ids {
                let is_tail = id == last_id;
                let l = load_segment(&disk, dir, &cfg, id, is_tail, create, &mut report).await?;
                loaded.push(l);
            }
            match interrupted_batch(&loaded) {
                // Load again: the kept segment is the tail now.
                Some(keep) => drop_segments_after(&disk, dir, ids[keep], last_id).await?,
                None => break loaded,
            }
        };
        let mut core = replay_indexes(&loaded, &mut report);
        let marker_seg_found = loaded
            .iter()
            .filter(|l| l.index.compact_floor > 0)
            .map(|l| l.seg.id)
            .max();
        let mut segs = Vec::with_capacity(loaded.len());
        let mut tail_bytes = Vec::new();
        let n = loaded.len();
        for (i, l) in loaded.into_iter().enumerate() {
            let mut seg = l.seg;
            if i + 1 == n {
                let mut b = Building::new(seg.id);
                for (local, name) in l.index.subjects.iter().enumerate() {
                    let g = core.intern(name);
                    b.local_subjects.insert(g, local as u32);
                }
                b.index = l.index;
                seg.building = Some(b);
                tail_bytes = l.tail_bytes;
            }
            segs.push(seg);
        }
        let tail = segs.last().expect("tail");
        let pending = Pending::resume(tail.id, tail.data_len, &tail_bytes);
        let last_ts_ns = core.live(core.last_seq()).map_or(0, |e| e.ts_ns);
        let durable_point = (tail.id, tail.data_len);
        let marker = (core.base_seq(), core.floor_term());
        let marker_seg = marker_seg_found.unwrap_or(segs[0].id);
        let inner = Inner {
            disk,
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
            // A file a crash left may never have had its directory entry synced.
            dir_dirty: true,
            marker,
            marker_durable_floor: marker.0,
            marker_seg,
            marker_durable_seg: marker_seg,
            unsynced_files: Vec::new(),
            unsynced_in_flight: 0,
            seal_after_sync: Vec::new(),
            report,
            spare: None,
            needs_recovery: false,
            durable_point,
            last_sync: Instant::now(),
            last_ts_ns,
            idx_writes: Rc::new(IndexWrites::default()),
        };
        inner.check_invariants();
        Ok(inner)
    }
}
