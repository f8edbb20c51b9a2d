//! The disk seam: every file operation of the file store (segments, indexes,
//! the directory) goes through `Disk` and `SegFile`.
//!
//! - `Disk::Real` is what the store always did: glommio DMA files on io_uring
//!   for segments, `std::fs` for the small synchronous calls (listing,
//!   removing, indexes), glommio's blocking thread for index writes.
//! - `Disk::Faulty` (`faulty`, tests and the `testing` feature only) is an
//!   in-memory disk driven by a seed: a simulated crash loses what was not
//!   fdatasynced (or keeps it torn at a sector boundary), reads can flip bits,
//!   writes and syncs fail with ENOSPC or EIO on demand.
//!
//! Enums rather than trait objects: the append path pays one match per write,
//! and a production build has a single variant.

#[cfg(any(test, feature = "testing"))]
pub mod faulty;
mod real;

use std::io;
use std::ops::Deref;
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, ReadResult};

/// Where a log's files live.
#[derive(Clone, Default)]
pub enum Disk {
    /// The file system, through io_uring (O_DIRECT where it allows).
    #[default]
    Real,
    /// An in-memory disk that injects faults.
    #[cfg(any(test, feature = "testing"))]
    Faulty(faulty::FaultyHandle),
}

/// One open segment file.
pub(crate) enum SegFile {
    Real(DmaFile),
    #[cfg(any(test, feature = "testing"))]
    Faulty(faulty::FaultyFile),
}

/// Bytes read from a segment file.
pub(crate) enum ReadBytes {
    Dma(ReadResult),
    #[cfg(any(test, feature = "testing"))]
    Mem(Vec<u8>),
}

impl Deref for ReadBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadBytes::Dma(r) => r,
            #[cfg(any(test, feature = "testing"))]
            ReadBytes::Mem(v) => v,
        }
    }
}

macro_rules! on_disk {
    ($self:expr, $real:pat => $r:expr, $faulty:pat => $f:expr) => {
        match $self {
            $real => $r,
            #[cfg(any(test, feature = "testing"))]
            $faulty => $f,
        }
    };
}

impl Disk {
    pub fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        on_disk!(self, Disk::Real => std::fs::create_dir_all(dir), Disk::Faulty(d) => d.check())
    }

    /// Whatever the disk needs before the first file is opened in `dir`.
    pub(crate) async fn prepare(&self, dir: &Path) -> io::Result<()> {
        on_disk!(self, Disk::Real => real::settle_iopoll_probe(dir).await, Disk::Faulty(d) => d.check())
    }

    /// Names of the entries (files and directories) in `dir`.
    pub fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        on_disk!(self, Disk::Real => real::list(dir), Disk::Faulty(d) => d.list(dir))
    }

    pub(crate) fn remove(&self, path: &Path) -> io::Result<()> {
        on_disk!(self, Disk::Real => std::fs::remove_file(path), Disk::Faulty(d) => d.remove(path))
    }

    /// A whole small file (an index, a state file).
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        on_disk!(self, Disk::Real => std::fs::read(path), Disk::Faulty(d) => d.read(path))
    }

    /// Creates or replaces a small file (an index), without syncing it.
    pub(crate) fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        on_disk!(self, Disk::Real => std::fs::write(path, bytes), Disk::Faulty(d) => d.write(path, bytes))
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        on_disk!(self, Disk::Real => std::fs::rename(from, to), Disk::Faulty(d) => d.rename(from, to))
    }

    /// Removes `dir` and everything under it (not durable until a directory sync).
    pub fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        on_disk!(self, Disk::Real => std::fs::remove_dir_all(dir), Disk::Faulty(d) => d.remove_dir_all(dir))
    }

    /// Replaces the small file `dir/name` by `bytes`, atomically and durably: a
    /// temporary file written and fdatasynced, renamed over it, the directory synced.
    pub async fn replace_durably(&self, dir: &Path, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        on_disk!(self,
            Disk::Real => real::replace_durably(dir, name, bytes).await,
            Disk::Faulty(d) => d.replace_durably(dir, name, bytes).await)
    }

    /// Opens a segment file for reading and writing; `create` creates it
    /// empty (truncating any file of that name).
    pub(crate) async fn open(&self, path: &Path, create: bool) -> io::Result<SegFile> {
        on_disk!(self,
            Disk::Real => real::open(path, create).await.map(SegFile::Real),
            Disk::Faulty(d) => d.open(path, create).await.map(SegFile::Faulty))
    }

    /// Makes the directory's entries (files created, renamed, removed) durable.
    pub(crate) async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        on_disk!(self, Disk::Real => real::sync_dir(dir).await, Disk::Faulty(d) => d.sync_dir(dir).await)
    }

    /// Runs blocking file work off the executor where the disk blocks (the
    /// real one: on glommio's blocking thread); the in-memory disk runs it
    /// in place, so that a seed replays the same schedule.
    pub(crate) async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        on_disk!(self,
            Disk::Real => glommio::executor().spawn_blocking(f).await,
            Disk::Faulty(_) => f())
    }
}

impl SegFile {
    pub(crate) async fn size(&self) -> io::Result<u64> {
        on_disk!(self, SegFile::Real(f) => f.file_size().await.map_err(io::Error::from), SegFile::Faulty(f) => f.size())
    }

    /// End of the last stretch of the file holding data, rounded up to a
    /// block (at most `size`): past it the file reads as zeros.
    pub(crate) fn data_end(&self, size: u64) -> u64 {
        on_disk!(self, SegFile::Real(f) => real::data_end(f, size), SegFile::Faulty(f) => f.data_end(size))
    }

    /// Up to `len` bytes at `pos` (fewer at the end of the file).
    pub(crate) async fn read_at(&self, pos: u64, len: usize) -> io::Result<ReadBytes> {
        on_disk!(self,
            SegFile::Real(f) => f.read_at(pos, len).await.map(ReadBytes::Dma).map_err(io::Error::from),
            SegFile::Faulty(f) => f.read_at(pos, len).await.map(ReadBytes::Mem))
    }

    /// Like `read_at`, for a block-aligned `pos` and `len`.
    pub(crate) async fn read_at_aligned(&self, pos: u64, len: usize) -> io::Result<ReadBytes> {
        on_disk!(self,
            SegFile::Real(f) => f.read_at_aligned(pos, len).await.map(ReadBytes::Dma).map_err(io::Error::from),
            SegFile::Faulty(f) => f.read_at(pos, len).await.map(ReadBytes::Mem))
    }

    /// Writes the whole (block-aligned) buffer at `pos`; returns the bytes written.
    pub(crate) async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        on_disk!(self,
            SegFile::Real(f) => f.write_rc_at(buf, pos).await.map_err(io::Error::from),
            SegFile::Faulty(f) => f.write_at(buf.as_bytes(), pos).await)
    }

    pub(crate) async fn truncate(&self, len_bytes: u64) -> io::Result<()> {
        on_disk!(self, SegFile::Real(f) => f.truncate(len_bytes).await.map_err(io::Error::from), SegFile::Faulty(f) => f.truncate(len_bytes).await)
    }

    /// Allocates the file up to `size_bytes` (it grows; its data does not change).
    pub(crate) async fn pre_allocate(&self, size_bytes: u64) -> io::Result<()> {
        on_disk!(self, SegFile::Real(f) => f.pre_allocate(size_bytes, false).await.map_err(io::Error::from), SegFile::Faulty(f) => f.pre_allocate(size_bytes).await)
    }

    /// Makes every write completed before it durable.
    pub(crate) async fn fdatasync(&self) -> io::Result<()> {
        on_disk!(self, SegFile::Real(f) => f.fdatasync().await.map_err(io::Error::from), SegFile::Faulty(f) => f.fdatasync().await)
    }
}
