//! The real disk: glommio DMA files (io_uring, O_DIRECT) and `std::fs`.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use glommio::io::{DmaFile, OpenOptions};

/// Alignment of the ends `data_end` reports.
const BLOCK_BYTES: u64 = 4096;

pub(super) async fn open(path: &Path, create: bool) -> io::Result<DmaFile> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .dma_open(path)
        .await?;
    Ok(f)
}

pub(super) fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        names.push(ent?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// glommio decides once per device whether reads may use the poll ring, by a
/// probe read on the first file opened. On an empty file that read "succeeds"
/// even where polling is unsupported, and every later read fails with
/// EOPNOTSUPP. Opening a write-only file first makes the probe fail (EBADF, one
/// logged error) and settles the device on the ordinary ring.
pub(super) async fn settle_iopoll_probe(dir: &Path) -> io::Result<()> {
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
        .await?;
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
pub(super) fn data_end(file: &DmaFile, size: u64) -> u64 {
    let fd = file.as_raw_fd();
    let mut pos = 0i64;
    let mut end = 0u64;
    loop {
        // SAFETY: lseek on a file descriptor we own; no memory is passed.
        let d = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if d < 0 {
            let e = io::Error::last_os_error();
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

pub(super) async fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = glommio::io::Directory::open(dir).await?;
    d.sync().await?;
    let _ = d.close().await;
    Ok(())
}

pub(super) async fn replace_durably(dir: &Path, name: &str, bytes: Vec<u8>) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let file = glommio::io::BufferedFile::create(&tmp).await?;
    let len = bytes.len();
    let written = file.write_at(bytes, 0).await?;
    assert_eq!(written, len, "short write");
    file.fdatasync().await?;
    file.close().await?;
    glommio::io::rename(&tmp, dir.join(name)).await?;
    sync_dir(dir).await
}
