//! An in-memory disk that injects faults, for tests (in the spirit of
//! TigerBeetle's testing storage). Everything it does follows from its seed.
//!
//! The model:
//! - A file holds what reads see now, what a crash would keep (its contents
//!   at its last completed fdatasync), and the operations since then (writes,
//!   truncations, allocations) in order. An fdatasync covers the operations
//!   completed when it was issued, not those that complete while it runs.
//! - Directory entries (create, rename, remove) go to one ordered journal that
//!   `sync_dir` makes durable (of any directory: like ext4's single journal).
//! - `FaultyDisk::crash()`: the process dies (every handle taken before fails
//!   from then on); each file goes back to its synced contents and keeps, per
//!   seed, none, all or a random subset of its later operations in order, a
//!   kept write possibly torn (only its first sectors land); the directory
//!   keeps a prefix of its journal since the last sync.
//! - Faults on demand: bit flips on read at chosen offsets, an errno (ENOSPC,
//!   EIO) for writes and allocations, another for syncs, and a disk that lies
//!   about fdatasync (to show that the durability checks can fail).
//! - Operations may yield to the executor before they complete (per seed), so
//!   that writes, syncs and reads interleave as they do on io_uring.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Disk;

/// The unit a torn write keeps whole.
const SECTOR_BYTES: usize = 512;
/// Alignment of the ends `data_end` reports (as the real disk's).
const BLOCK_BYTES: u64 = 4096;

/// A small deterministic PRNG (SplitMix64), for the disk and for workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// What a crash did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// File operations not synced that were lost.
    pub ops_lost: u64,
    /// File operations not synced that landed anyway.
    pub ops_kept: u64,
    /// Kept writes of which only the first sectors landed.
    pub writes_torn: u64,
    /// Directory operations not synced that were lost.
    pub dir_ops_lost: u64,
}

#[derive(Clone, Debug)]
enum Op {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
    Allocate(u64),
}

/// A file's bytes: `data`, then zeros up to `size`.
#[derive(Clone, Debug, Default)]
struct Contents {
    data: Vec<u8>,
    size: u64,
}

impl Contents {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write { pos, bytes } => {
                let (pos, end) = (*pos as usize, *pos as usize + bytes.len());
                if self.data.len() < pos {
                    // Zeros from a zeroed allocation: byte loops are slow in debug builds.
                    self.data
                        .extend_from_slice(&vec![0u8; pos - self.data.len()]);
                }
                let overlap = (self.data.len() - pos).min(bytes.len());
                self.data[pos..pos + overlap].copy_from_slice(&bytes[..overlap]);
                self.data.extend_from_slice(&bytes[overlap..]);
                self.size = self.size.max(end as u64);
            }
            Op::SetLen(len) => {
                self.data.truncate(*len as usize);
                self.size = *len;
            }
            Op::Allocate(len) => self.size = self.size.max(*len),
        }
    }

    fn read(&self, pos: u64, len: usize) -> Vec<u8> {
        let end = (pos + len as u64).min(self.size);
        if pos >= end {
            return Vec::new();
        }
        let mut out = vec![0u8; (end - pos) as usize];
        let have = (self.data.len() as u64).min(end);
        if pos < have {
            out[..(have - pos) as usize].copy_from_slice(&self.data[pos as usize..have as usize]);
        }
        out
    }
}

#[derive(Debug, Default)]
struct Inode {
    now: Contents,
    synced: Contents,
    since_sync: Vec<Op>,
    /// Operations ever applied to `synced` (those before `since_sync`).
    synced_ops: u64,
}

impl Inode {
    fn push(&mut self, op: Op) {
        self.now.apply(&op);
        self.since_sync.push(op);
    }

    /// Operations ever pushed.
    fn ops(&self) -> u64 {
        self.synced_ops + self.since_sync.len() as u64
    }

    /// Makes the first `ops` operations ever pushed durable.
    fn sync_upto(&mut self, ops: u64) {
        let n = ops.saturating_sub(self.synced_ops) as usize;
        for op in self.since_sync.drain(..n) {
            self.synced.apply(&op);
        }
        self.synced_ops += n as u64;
    }
}

#[derive(Clone, Debug)]
enum DirOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

fn apply_dir_op(names: &mut BTreeMap<PathBuf, u64>, op: &DirOp) {
    match op {
        DirOp::Link(p, ino) => {
            names.insert(p.clone(), *ino);
        }
        DirOp::Unlink(p) => {
            names.remove(p);
        }
        DirOp::Rename(from, to) => {
            if let Some(ino) = names.remove(from) {
                names.insert(to.clone(), ino);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Faults {
    write_errno: Option<i32>,
    sync_errno: Option<i32>,
    lie_about_sync: bool,
    /// (inode, offset, xor mask) applied to every read covering the offset.
    flips: Vec<(u64, u64, u8)>,
}

#[derive(Debug)]
struct State {
    /// Bumped by each crash: handles of an older epoch belong to a dead process.
    epoch: u64,
    rng: Rng,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    synced_names: BTreeMap<PathBuf, u64>,
    journal: Vec<DirOp>,
    faults: Faults,
}

impl State {
    fn dir_op(&mut self, op: DirOp) {
        apply_dir_op(&mut self.names, &op);
        self.journal.push(op);
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    fn inode(&mut self, ino: u64) -> io::Result<&mut Inode> {
        // An inode without a name stays readable through open handles.
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// The file at `path`, created (or emptied, as `O_TRUNC` does) when asked.
    fn open(&mut self, path: &Path, create: bool) -> io::Result<u64> {
        match (self.names.get(path).copied(), create) {
            (Some(ino), true) => {
                self.inode(ino)?.push(Op::SetLen(0));
                Ok(ino)
            }
            (Some(ino), false) => Ok(ino),
            (None, true) => {
                self.next_inode += 1;
                let ino = self.next_inode;
                self.inodes.insert(ino, Inode::default());
                self.dir_op(DirOp::Link(path.to_path_buf(), ino));
                Ok(ino)
            }
            (None, false) => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    fn write_fault(&self) -> io::Result<()> {
        match self.faults.write_errno {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }

    fn sync_fault(&self) -> io::Result<()> {
        match self.faults.sync_errno {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }

    fn flip(&self, ino: u64, pos: u64, bytes: &mut [u8]) {
        for &(i, off, mask) in &self.faults.flips {
            if i == ino && off >= pos && off < pos + bytes.len() as u64 {
                bytes[(off - pos) as usize] ^= mask;
            }
        }
    }

    fn crash(&mut self) -> CrashReport {
        self.epoch += 1;
        let mut report = CrashReport::default();
        // 0: nothing unsynced lands; 1: everything does; else a random subset.
        let mode = self.rng.below(4);
        let rng = &mut self.rng;
        for inode in self.inodes.values_mut() {
            let mut kept = inode.synced.clone();
            inode.synced_ops += inode.since_sync.len() as u64;
            for op in inode.since_sync.drain(..) {
                let keep = match mode {
                    0 => false,
                    1 => true,
                    _ => rng.chance(1, 2),
                };
                if !keep {
                    report.ops_lost += 1;
                    continue;
                }
                report.ops_kept += 1;
                match op {
                    Op::Write { pos, mut bytes } if mode >= 2 && rng.chance(1, 4) => {
                        let sectors = bytes.len().div_ceil(SECTOR_BYTES) as u64;
                        bytes.truncate(rng.below(sectors) as usize * SECTOR_BYTES);
                        report.writes_torn += 1;
                        kept.apply(&Op::Write { pos, bytes });
                    }
                    op => kept.apply(&op),
                }
            }
            inode.now = kept.clone();
            inode.synced = kept;
        }
        let journal = std::mem::take(&mut self.journal);
        let keep = match mode {
            0 => 0,
            1 => journal.len(),
            _ => self.rng.below(journal.len() as u64 + 1) as usize,
        };
        report.dir_ops_lost = (journal.len() - keep) as u64;
        let mut names = self.synced_names.clone();
        for op in &journal[..keep] {
            apply_dir_op(&mut names, op);
        }
        self.names = names.clone();
        self.synced_names = names;
        let live: Vec<u64> = self.names.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        self.faults.flips.retain(|f| live.contains(&f.0));
        report
    }
}

/// The test's side of a faulty disk: hands out disks to "processes" and
/// injects faults. Clones share the same disk.
#[derive(Clone)]
pub struct FaultyDisk {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FaultyDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultyDisk")
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultyDisk {
    pub fn new(seed: u64) -> FaultyDisk {
        let state = State {
            epoch: 0,
            rng: Rng::new(seed),
            next_inode: 0,
            inodes: BTreeMap::new(),
            names: BTreeMap::new(),
            synced_names: BTreeMap::new(),
            journal: Vec::new(),
            faults: Faults::default(),
        };
        FaultyDisk {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The disk as a process started now sees it (until the next crash).
    pub fn disk(&self) -> Disk {
        let epoch = lock(&self.state).epoch;
        Disk::Faulty(FaultyHandle {
            state: self.state.clone(),
            epoch,
        })
    }

    /// The process dies and the machine loses power: see the module docs.
    pub fn crash(&self) -> CrashReport {
        lock(&self.state).crash()
    }

    /// Writes and allocations fail with `errno` (e.g. `libc::ENOSPC`) until cleared.
    pub fn fail_writes(&self, errno: Option<i32>) {
        lock(&self.state).faults.write_errno = errno;
    }

    /// fdatasync and directory syncs fail with `errno` (e.g. `libc::EIO`) until cleared.
    pub fn fail_syncs(&self, errno: Option<i32>) {
        lock(&self.state).faults.sync_errno = errno;
    }

    /// fdatasync reports success without making anything durable.
    pub fn lie_about_sync(&self, lie: bool) {
        lock(&self.state).faults.lie_about_sync = lie;
    }

    /// Every read of `path` covering `offset` returns that byte xor `mask`
    /// (the stored bytes do not change). False if there is no such file.
    pub fn flip_on_read(&self, path: &Path, offset: u64, mask: u8) -> bool {
        let mut s = lock(&self.state);
        match s.names.get(path).copied() {
            Some(ino) => {
                s.faults.flips.push((ino, offset, mask));
                true
            }
            None => false,
        }
    }

    pub fn clear_flips(&self) {
        lock(&self.state).faults.flips.clear();
    }

    /// What a read of the whole file sees now (without flips).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = lock(&self.state);
        let ino = s.names.get(path)?;
        let c = &s.inodes.get(ino)?.now;
        Some(c.read(0, c.size as usize))
    }

    /// Names of the files in `dir`, sorted.
    pub fn files(&self, dir: &Path) -> Vec<String> {
        names_in(&lock(&self.state).names, dir)
    }

    /// Names of the files in `dir` as of the last directory sync (what a
    /// crash that keeps no unsynced directory operation would leave).
    pub fn synced_files(&self, dir: &Path) -> Vec<String> {
        names_in(&lock(&self.state).synced_names, dir)
    }
}

fn names_in(names: &BTreeMap<PathBuf, u64>, dir: &Path) -> Vec<String> {
    names
        .keys()
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

/// One process's view of a faulty disk: every call fails once the disk crashed.
#[derive(Clone)]
pub struct FaultyHandle {
    state: Arc<Mutex<State>>,
    epoch: u64,
}

impl FaultyHandle {
    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = lock(&self.state);
        if s.epoch != self.epoch {
            return Err(io::Error::other("simulated crash: this process is gone"));
        }
        Ok(s)
    }

    /// Lets other tasks run first, now and then (per seed).
    async fn maybe_yield(&self) {
        let go = self.lock().map(|mut s| s.rng.chance(1, 3));
        if go.unwrap_or(false) {
            futures_lite::future::yield_now().await;
        }
    }

    pub(super) fn check(&self) -> io::Result<()> {
        self.lock().map(|_| ())
    }

    /// The files in `dir` and its directories (those holding a file: a directory
    /// here exists only through the paths of its files).
    pub(super) fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock()?;
        let mut out: Vec<String> = s
            .names
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok()?.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        out.dedup();
        Ok(out)
    }

    pub(super) fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock()?;
        let under: Vec<PathBuf> = s
            .names
            .keys()
            .filter(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for p in under {
            s.dir_op(DirOp::Unlink(p));
        }
        Ok(())
    }

    pub(super) async fn replace_durably(
        &self,
        dir: &Path,
        name: &str,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        let tmp = dir.join(format!("{name}.tmp"));
        let f = self.open(&tmp, true).await?;
        f.write_at(&bytes, 0).await?;
        f.fdatasync().await?;
        self.rename(&tmp, &dir.join(name))?;
        self.sync_dir(dir).await
    }

    pub(super) fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock()?;
        s.inode_of(path)?;
        s.dir_op(DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    pub(super) fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut s = self.lock()?;
        let ino = s.inode_of(path)?;
        let c = &s.inode(ino)?.now;
        let mut out = c.read(0, c.size as usize);
        s.flip(ino, 0, &mut out);
        Ok(out)
    }

    pub(super) fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.lock()?;
        s.write_fault()?;
        let ino = s.open(path, true)?;
        let op = Op::Write {
            pos: 0,
            bytes: bytes.to_vec(),
        };
        s.inode(ino)?.push(op);
        Ok(())
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock()?;
        s.inode_of(from)?;
        s.dir_op(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    pub(super) async fn open(&self, path: &Path, create: bool) -> io::Result<FaultyFile> {
        self.maybe_yield().await;
        let ino = self.lock()?.open(path, create)?;
        Ok(FaultyFile {
            disk: self.clone(),
            ino,
        })
    }

    pub(super) async fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.maybe_yield().await;
        let mut s = self.lock()?;
        s.sync_fault()?;
        if !s.faults.lie_about_sync {
            s.synced_names = s.names.clone();
            s.journal.clear();
        }
        Ok(())
    }
}

/// An open file of a faulty disk.
pub struct FaultyFile {
    disk: FaultyHandle,
    ino: u64,
}

impl FaultyFile {
    pub(super) fn size(&self) -> io::Result<u64> {
        let mut s = self.disk.lock()?;
        Ok(s.inode(self.ino)?.now.size)
    }

    pub(super) fn data_end(&self, size: u64) -> u64 {
        let Ok(mut s) = self.disk.lock() else {
            return size;
        };
        match s.inode(self.ino) {
            Ok(i) => (i.now.data.len() as u64)
                .next_multiple_of(BLOCK_BYTES)
                .min(size),
            Err(_) => size,
        }
    }

    pub(super) async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.disk.maybe_yield().await;
        let mut s = self.disk.lock()?;
        let mut out = s.inode(self.ino)?.now.read(pos, len);
        s.flip(self.ino, pos, &mut out);
        Ok(out)
    }

    pub(super) async fn write_at(&self, bytes: &[u8], pos: u64) -> io::Result<usize> {
        self.disk.maybe_yield().await;
        let mut s = self.disk.lock()?;
        s.write_fault()?;
        let op = Op::Write {
            pos,
            bytes: bytes.to_vec(),
        };
        s.inode(self.ino)?.push(op);
        Ok(bytes.len())
    }

    pub(super) async fn truncate(&self, len_bytes: u64) -> io::Result<()> {
        self.disk.maybe_yield().await;
        let mut s = self.disk.lock()?;
        s.inode(self.ino)?.push(Op::SetLen(len_bytes));
        Ok(())
    }

    pub(super) async fn pre_allocate(&self, size_bytes: u64) -> io::Result<()> {
        self.disk.maybe_yield().await;
        let mut s = self.disk.lock()?;
        s.write_fault()?;
        s.inode(self.ino)?.push(Op::Allocate(size_bytes));
        Ok(())
    }

    /// Covers the operations completed when it is issued; those completing
    /// while it is in flight stay unsynced.
    pub(super) async fn fdatasync(&self) -> io::Result<()> {
        let covered = {
            let mut s = self.disk.lock()?;
            s.sync_fault()?;
            s.inode(self.ino)?.ops()
        };
        self.disk.maybe_yield().await;
        let mut s = self.disk.lock()?;
        if s.faults.lie_about_sync {
            return Ok(());
        }
        s.inode(self.ino)?.sync_upto(covered);
        Ok(())
    }
}
