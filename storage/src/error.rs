//! Errors returned to the caller.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O failed (ENOSPC included: `is_disk_full`). Nothing after the last
    /// durable record was kept; the log stays usable.
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// A record failed its checksum: it is never served.
    #[error("corrupt record: segment {segment} offset {offset}: {reason}")]
    Corrupt {
        segment: u32,
        offset: u64,
        reason: &'static str,
    },
    /// Discard-new policy: the stream is full.
    #[error("maximum {0} exceeded")]
    LimitReached(&'static str),
    /// The request does not fit the log (e.g. Raft append at a wrong index).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The record is bigger than the configured maximum.
    #[error("record too large: {size_bytes} bytes, max {max_bytes}")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    /// The batch that held this record failed to reach the disk (for lack of
    /// space when `disk_full`).
    #[error("write failed before the record became durable{}", if *disk_full { ": no space left on the disk" } else { "" })]
    NotDurable { disk_full: bool },
}

impl StoreError {
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io(e) => {
                e.raw_os_error() == Some(libc::ENOSPC)
                    || e.kind() == io::ErrorKind::StorageFull
                    || e.to_string().contains("No space left")
            }
            StoreError::NotDurable { disk_full } => *disk_full,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
