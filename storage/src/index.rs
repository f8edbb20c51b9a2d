//! The per-segment index: what a segment holds, persisted with rkyv beside a
//! sealed segment (`<id>.idx`) so that reopening neither reads nor parses the data.
//! Pure: encoding to and from bytes.

use rkyv::{Archive, Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"NXI1";
pub const INDEX_VERSION: u32 = 1;

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IdxEntry {
    pub seq: u64,
    pub ts_ns: u64,
    pub term: u64,
    pub offset: u32,
    pub len: u32,
    /// Index into `SegmentIndex::subjects`.
    pub subject: u32,
}

/// A stretch of bytes that failed verification; `[offset, resume_offset)`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub resume_offset: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub version: u32,
    pub segment_id: u32,
    /// Bytes of records in the segment (padding of the last record included).
    pub data_len_bytes: u64,
    /// Messages in file order (sequences strictly increase).
    pub entries: Vec<IdxEntry>,
    pub subjects: Vec<String>,
    /// Delete tombstones in file order.
    pub tombstones: Vec<u64>,
    /// Largest compact marker in the segment: (first seq, term before it); (0, 0) if none.
    pub compact_floor: u64,
    pub compact_term: u64,
    pub damage: Vec<Damage>,
}

impl SegmentIndex {
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("index serializes");
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(MAGIC);
        out
    }

    /// Decodes an index file; `None` if it is damaged or from another version.
    pub fn from_file_bytes(bytes: &[u8]) -> Option<SegmentIndex> {
        if bytes.len() < 8 || &bytes[bytes.len() - 4..] != MAGIC {
            return None;
        }
        let body = &bytes[..bytes.len() - 8];
        let crc = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().ok()?);
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
        aligned.extend_from_slice(body);
        let idx = rkyv::from_bytes::<SegmentIndex, rkyv::rancor::Error>(&aligned).ok()?;
        (idx.version == INDEX_VERSION).then_some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detected() {
        let idx = SegmentIndex {
            version: INDEX_VERSION,
            segment_id: 4,
            data_len_bytes: 4096,
            entries: vec![IdxEntry {
                seq: 7,
                ts_ns: 1,
                term: 2,
                offset: 0,
                len: 48,
                subject: 0,
            }],
            subjects: vec!["a.b".into()],
            tombstones: vec![3],
            compact_floor: 2,
            compact_term: 1,
            damage: vec![],
        };
        let bytes = idx.to_file_bytes();
        assert_eq!(SegmentIndex::from_file_bytes(&bytes), Some(idx));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert_eq!(SegmentIndex::from_file_bytes(&bad), None, "flip at {i}");
        }
        assert_eq!(
            SegmentIndex::from_file_bytes(&bytes[..bytes.len() - 1]),
            None
        );
    }
}
