//! Configuration of a log or stream, and the public value types.

use std::time::Duration;

/// When appended records become durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Durable (fdatasync'ed) before acknowledged. The default.
    Always,
    /// nats-server's `sync_interval`: written at commit, synced at most this often.
    Interval(Duration),
}

/// What happens when a limit is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discard {
    /// Remove the oldest messages (the default).
    Old,
    /// Refuse the new message.
    New,
}

/// Limits of a stream, as in JetStream's stream config. 0 means unlimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_msgs: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub max_msgs_per_subject: u64,
    pub discard: Discard,
    /// With `Discard::New`, also refuse a message when its subject is full.
    pub discard_new_per_subject: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_msgs: 0,
            max_bytes: 0,
            max_age: Duration::ZERO,
            max_msgs_per_subject: 0,
            discard: Discard::Old,
            discard_new_per_subject: false,
        }
    }
}

/// Configuration of a file-backed log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub segment_size_bytes: u64,
    pub durability: Durability,
    pub limits: Limits,
    /// On open, verify every segment record by record (default: only those
    /// without a valid index, the tail among them).
    pub verify_all_on_open: bool,
    /// Largest accepted record (header included).
    pub record_max_bytes: usize,
}

pub const SEGMENT_SIZE_DEFAULT_BYTES: u64 = 64 << 20;
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 64 << 10;
pub const SEGMENT_SIZE_MAX_BYTES: u64 = 1 << 31;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_size_bytes: SEGMENT_SIZE_DEFAULT_BYTES,
            durability: Durability::Always,
            limits: Limits::default(),
            verify_all_on_open: false,
            record_max_bytes: 8 << 20,
        }
    }
}

impl LogConfig {
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let seg = self.segment_size_bytes;
        if !(SEGMENT_SIZE_MIN_BYTES..=SEGMENT_SIZE_MAX_BYTES).contains(&seg)
            || !seg.is_multiple_of(4096)
        {
            return Err(crate::StoreError::Invalid(format!(
                "segment_size_bytes {seg} must be a multiple of 4096 in [{SEGMENT_SIZE_MIN_BYTES}, {SEGMENT_SIZE_MAX_BYTES}]"
            )));
        }
        if self.record_max_bytes > crate::frame::RECORD_MAX_BYTES
            || self.record_max_bytes as u64 > seg / 2
        {
            return Err(crate::StoreError::Invalid(format!(
                "record_max_bytes {} must be at most {} and half a segment",
                self.record_max_bytes,
                crate::frame::RECORD_MAX_BYTES
            )));
        }
        Ok(())
    }
}

/// A message as stored and served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMsg {
    pub seq: u64,
    pub subject: String,
    pub headers: bytes::Bytes,
    pub payload: bytes::Bytes,
    pub timestamp_ns: u64,
    /// Raft term of the entry (0 for plain streams).
    pub term: u64,
}

/// Summary of a stream, as JetStream's StreamState.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamState {
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub first_ts_ns: u64,
    pub last_seq: u64,
    pub last_ts_ns: u64,
    pub num_deleted: u64,
    pub num_subjects: u64,
}

/// What to purge (JetStream's purge request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeRequest {
    /// Only messages on this subject (exact match or NATS wildcards).
    pub subject: Option<String>,
    /// Purge all messages below this sequence.
    pub up_to_seq: Option<u64>,
    /// Keep the newest `keep` messages.
    pub keep: Option<u64>,
}
