//! What [`super::storage_log::FileLogStore`] writes besides the log records, and how a
//! Raft entry becomes a log record's payload. Pure encoding, no I/O.
//!
//! ```text
//! entry payload := kind:u8 [context_len:u32le context] data
//!                  kind: 0 normal, 1 conf change, 2 conf change v2; | 0x80 if a context follows
//! state file    := "NXRS" version:u8 count:u32le (group replica term vote commit: u64le)* crc32c:u32le
//! snapshot file := "NXSN" version:u8 index:u64le term:u64le conf_len:u32le conf_state(protobuf)
//!                  data_len:u64le data crc32c:u32le
//! ```
//! The checksum covers every byte before it. Both files are replaced atomically (write a
//! temporary file, fdatasync, rename, sync the directory), so a reader sees the old or
//! the new content, never a mix; a bad checksum means a damaged disk.

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};

use super::log_store::GroupId;

const STATE_MAGIC: &[u8; 4] = b"NXRS";
const SNAPSHOT_MAGIC: &[u8; 4] = b"NXSN";
const VERSION: u8 = 1;
const HAS_CONTEXT: u8 = 0x80;
/// Largest number of groups in a state file (the driver's own limit is lower).
pub const MAX_GROUPS: usize = 1 << 22;
/// Largest snapshot data accepted when reading.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 34;
const GROUP_RECORD_BYTES: usize = 40;

/// One group's line in the state file.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupState {
    pub group: GroupId,
    pub replica: u64,
    pub hard_state: HardState,
}

/// Why a file could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum FormatError {
    Short,
    BadMagic,
    BadVersion(u8),
    BadChecksum,
    Malformed(&'static str),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for FormatError {}

impl From<FormatError> for std::io::Error {
    fn from(e: FormatError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// The stored payload of an entry: its kind, context (rare) and data.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut kind = e.get_entry_type() as u8;
    let mut out = Vec::with_capacity(1 + e.data.len());
    if e.context.is_empty() {
        out.push(kind);
    } else {
        kind |= HAS_CONTEXT;
        out.push(kind);
        out.extend_from_slice(&(e.context.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.context);
    }
    out.extend_from_slice(&e.data);
    out
}

/// The entry `(index, term)` whose stored payload is `payload`.
pub fn decode_entry(index: u64, term: u64, payload: &bytes::Bytes) -> Result<Entry, FormatError> {
    let (&kind, _) = payload.split_first().ok_or(FormatError::Short)?;
    let entry_type = match kind & !HAS_CONTEXT {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => return Err(FormatError::Malformed("entry kind")),
    };
    let mut at = 1;
    let mut e = Entry {
        index,
        term,
        ..Default::default()
    };
    e.set_entry_type(entry_type);
    if kind & HAS_CONTEXT != 0 {
        let len = read_u32(payload, &mut at)? as usize;
        let end = at.checked_add(len).ok_or(FormatError::Short)?;
        e.context = payload
            .get(at..end)
            .ok_or(FormatError::Short)?
            .to_vec()
            .into();
        at = end;
    }
    e.data = payload.slice(at..);
    Ok(e)
}

/// The state file: every group of the shard with its replica id and hard state.
pub fn encode_state(groups: &[GroupState]) -> Vec<u8> {
    assert!(groups.len() <= MAX_GROUPS, "too many groups");
    let mut out = Vec::with_capacity(13 + groups.len() * GROUP_RECORD_BYTES);
    out.extend_from_slice(STATE_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(groups.len() as u32).to_le_bytes());
    for g in groups {
        for v in [
            g.group,
            g.replica,
            g.hard_state.term,
            g.hard_state.vote,
            g.hard_state.commit,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    seal(out)
}

pub fn decode_state(buf: &[u8]) -> Result<Vec<GroupState>, FormatError> {
    let body = unseal(buf, STATE_MAGIC)?;
    let mut at = 5;
    let count = read_u32(body, &mut at)? as usize;
    if count > MAX_GROUPS || body.len() != at + count * GROUP_RECORD_BYTES {
        return Err(FormatError::Malformed("group count"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let group = read_u64(body, &mut at)?;
        let replica = read_u64(body, &mut at)?;
        let hard_state = HardState {
            term: read_u64(body, &mut at)?,
            vote: read_u64(body, &mut at)?,
            commit: read_u64(body, &mut at)?,
            ..Default::default()
        };
        out.push(GroupState {
            group,
            replica,
            hard_state,
        });
    }
    Ok(out)
}

/// A group's snapshot file: metadata (configuration included) and the state data.
pub fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let meta = s.get_metadata();
    let conf = meta
        .get_conf_state()
        .write_to_bytes()
        .expect("conf state encodes");
    let mut out = Vec::with_capacity(37 + conf.len() + s.data.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    out.extend_from_slice(&(conf.len() as u32).to_le_bytes());
    out.extend_from_slice(&conf);
    out.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
    out.extend_from_slice(&s.data);
    seal(out)
}

pub fn decode_snapshot(buf: &[u8]) -> Result<Snapshot, FormatError> {
    let body = unseal(buf, SNAPSHOT_MAGIC)?;
    let mut at = 5;
    let index = read_u64(body, &mut at)?;
    let term = read_u64(body, &mut at)?;
    let conf_len = read_u32(body, &mut at)? as usize;
    let conf_end = at.checked_add(conf_len).ok_or(FormatError::Short)?;
    let conf = ConfState::parse_from_bytes(body.get(at..conf_end).ok_or(FormatError::Short)?)
        .map_err(|_| FormatError::Malformed("conf state"))?;
    at = conf_end;
    let data_len = read_u64(body, &mut at)?;
    if data_len > MAX_SNAPSHOT_BYTES || body.len() as u64 != at as u64 + data_len {
        return Err(FormatError::Malformed("snapshot data length"));
    }
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().set_conf_state(conf);
    s.data = body[at..].to_vec().into();
    Ok(s)
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The checked body (magic and version included) of a sealed file.
fn unseal<'a>(buf: &'a [u8], magic: &[u8; 4]) -> Result<&'a [u8], FormatError> {
    if buf.len() < 9 {
        return Err(FormatError::Short);
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(FormatError::BadChecksum);
    }
    if &body[..4] != magic {
        return Err(FormatError::BadMagic);
    }
    if body[4] != VERSION {
        return Err(FormatError::BadVersion(body[4]));
    }
    Ok(body)
}

fn read_u32(buf: &[u8], at: &mut usize) -> Result<u32, FormatError> {
    let b = buf.get(*at..*at + 4).ok_or(FormatError::Short)?;
    *at += 4;
    Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

fn read_u64(buf: &[u8], at: &mut usize) -> Result<u64, FormatError> {
    let b = buf.get(*at..*at + 8).ok_or(FormatError::Short)?;
    *at += 8;
    Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_with_and_without_context() {
        let mut e = Entry {
            index: 9,
            term: 3,
            data: b"hello".to_vec().into(),
            ..Default::default()
        };
        let back = decode_entry(9, 3, &encode_entry(&e).into()).unwrap();
        assert_eq!(back, e);
        e.set_entry_type(EntryType::EntryConfChangeV2);
        e.context = b"ctx".to_vec().into();
        let back = decode_entry(9, 3, &encode_entry(&e).into()).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            decode_entry(1, 1, &vec![7u8].into()),
            Err(FormatError::Malformed("entry kind"))
        );
        assert_eq!(
            decode_entry(1, 1, &bytes::Bytes::new()),
            Err(FormatError::Short)
        );
    }

    #[test]
    fn state_round_trip_and_damage_refused() {
        let groups = vec![
            GroupState {
                group: 1,
                replica: 5,
                hard_state: HardState {
                    term: 4,
                    vote: 5,
                    commit: 10,
                    ..Default::default()
                },
            },
            GroupState {
                group: u64::MAX,
                replica: 1,
                hard_state: HardState::default(),
            },
        ];
        let mut buf = encode_state(&groups);
        assert_eq!(decode_state(&buf).unwrap(), groups);
        assert_eq!(
            decode_state(&buf[..buf.len() - 1]),
            Err(FormatError::BadChecksum)
        );
        buf[20] ^= 1;
        assert_eq!(decode_state(&buf), Err(FormatError::BadChecksum));
        assert_eq!(decode_state(&encode_state(&[])).unwrap(), vec![]);
    }

    #[test]
    fn snapshot_round_trip() {
        let mut s = Snapshot::default();
        s.mut_metadata().index = 42;
        s.mut_metadata().term = 7;
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s.mut_metadata().mut_conf_state().learners = vec![4];
        s.data = b"state".to_vec().into();
        let buf = encode_snapshot(&s);
        assert_eq!(decode_snapshot(&buf).unwrap(), s);
        assert_eq!(decode_snapshot(b"NXRS"), Err(FormatError::Short));
        assert_eq!(
            decode_snapshot(&encode_state(&[])),
            Err(FormatError::BadMagic)
        );
    }
}
