//! Verifying a segment record by record. Pure: works on the segment's bytes.
//!
//! A zero length followed only by zeros is the clean end. A record that fails
//! its check is skipped by looking for the next valid record (records start on
//! 8-byte boundaries): if one is found, the stretch in between is reported as
//! damage (corruption in the middle); if none, it is a torn tail, cut off.

use std::collections::HashMap;

use crate::frame::{self, Kind, ALIGN_BYTES, HEADER_BYTES};
use crate::index::{Damage, IdxEntry, SegmentIndex, INDEX_VERSION};

/// A torn tail: where the valid data ends and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub reason: &'static str,
    /// Records follow never-written space (zeros where a record header should be;
    /// what comes before the next record may be the end of a lost write's last
    /// record, rewritten with its block by the next write): a batch the crash interrupted,
    /// whose later writes landed and earlier ones did not. None of it was durable
    /// (a batch is durable only once every write before it completed and was
    /// synced), so the log ends here and later segments go too.
    pub unwritten: bool,
}

const INCOMPLETE_REASON: &str = "incomplete record";

/// The unit of a segment write: a write lost in a crash leaves whole blocks of zeros.
const WRITE_BLOCK_BYTES: usize = 4096;

/// Whether the bad stretch `buf[from..to]` is space a lost write never filled:
/// zeros where a record header should be (no record, whole or damaged, starts with
/// one), or a whole aligned block of zeros inside it (writes cover whole blocks; a
/// record damaged in place keeps its bytes). A damaged record whose payload holds
/// a whole aligned block of zeros reads the same; that is the price of telling an
/// interrupted batch from damage without a marker.
fn unwritten(buf: &[u8], from: usize, to: usize) -> bool {
    let to = to.min(buf.len());
    if buf[from..to.min(from + HEADER_BYTES)]
        .iter()
        .all(|&b| b == 0)
    {
        return true;
    }
    let mut block = from.next_multiple_of(WRITE_BLOCK_BYTES);
    while block + WRITE_BLOCK_BYTES <= to {
        if buf[block..block + WRITE_BLOCK_BYTES]
            .iter()
            .all(|&b| b == 0)
        {
            return true;
        }
        block += WRITE_BLOCK_BYTES;
    }
    false
}

/// Why a log ends at unwritten space with records after it.
pub const UNWRITTEN_REASON: &str = "unwritten space before later records (an interrupted batch)";

#[derive(Debug)]
pub struct Scan {
    pub index: SegmentIndex,
    pub torn: Option<TornTail>,
}

fn plausible_header(buf: &[u8], min_seq: u64) -> bool {
    if buf.len() < HEADER_BYTES {
        return false;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4")) as usize;
    if !(HEADER_BYTES..=frame::RECORD_MAX_BYTES).contains(&len) || buf[9] != 1 {
        return false;
    }
    match buf[8] {
        1 => u64::from_le_bytes(buf[16..24].try_into().expect("8")) >= min_seq,
        2 | 3 => true,
        _ => false,
    }
}

/// Finds the next offset at or after `from` holding a valid record.
fn resync(buf: &[u8], from: usize, min_seq: u64) -> Option<usize> {
    let mut p = from;
    while p + HEADER_BYTES <= buf.len() {
        if plausible_header(&buf[p..], min_seq) && frame::check(&buf[p..]).is_ok() {
            return Some(p);
        }
        p += ALIGN_BYTES;
    }
    None
}

/// Scans one segment's bytes.
pub fn scan_segment(segment_id: u32, buf: &[u8]) -> Scan {
    let mut index = SegmentIndex {
        version: INDEX_VERSION,
        segment_id,
        ..SegmentIndex::default()
    };
    let mut subjects: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut last_msg_seq = 0u64;
    let mut off = 0usize;
    let mut torn = None;
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < 4 || (rest[..4] == [0; 4] && rest.iter().all(|&b| b == 0)) {
            break;
        }
        let bad = match frame::parse(rest) {
            Ok((f, n)) if f.kind != Kind::Msg || f.seq > last_msg_seq => {
                match f.kind {
                    Kind::Msg => {
                        let next = subjects.len() as u32;
                        let subject = *subjects.entry(f.subject.to_vec()).or_insert_with(|| {
                            index
                                .subjects
                                .push(String::from_utf8_lossy(f.subject).into_owned());
                            next
                        });
                        index.entries.push(IdxEntry {
                            seq: f.seq,
                            ts_ns: f.ts_ns,
                            term: f.term,
                            offset: off as u32,
                            len: n as u32,
                            subject,
                        });
                        last_msg_seq = f.seq;
                    }
                    Kind::Delete => index.tombstones.push(f.seq),
                    Kind::Compact => {
                        if f.seq >= index.compact_floor {
                            index.compact_floor = f.seq;
                            index.compact_term = f.term;
                        }
                    }
                }
                // A file cut inside the last record's padding keeps the record
                // whole: the padding is zeros, restored by the caller.
                off += n;
                None
            }
            Ok(_) => Some("sequence goes back"),
            Err(frame::FrameError::Incomplete) => Some(INCOMPLETE_REASON),
            Err(frame::FrameError::Invalid(why)) => Some(why),
        };
        if let Some(reason) = bad {
            match resync(buf, off + ALIGN_BYTES, last_msg_seq + 1) {
                Some(next) if unwritten(buf, off, next) => {
                    torn = Some(TornTail {
                        offset: off as u64,
                        reason: UNWRITTEN_REASON,
                        unwritten: true,
                    });
                    break;
                }
                Some(next) => {
                    index.damage.push(Damage {
                        offset: off as u64,
                        resume_offset: next as u64,
                    });
                    off = next;
                }
                None => {
                    // An incomplete record runs into the zeros past the data.
                    let incomplete = reason == INCOMPLETE_REASON;
                    torn = Some(TornTail {
                        offset: off as u64,
                        reason,
                        unwritten: incomplete || unwritten(buf, off, buf.len()),
                    });
                    break;
                }
            }
        }
    }
    index.data_len_bytes = off as u64;
    debug_assert!(off <= buf.len().next_multiple_of(ALIGN_BYTES));
    Scan { index, torn }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode, Frame};

    fn seg(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for seq in 1..=n {
            starts.push(out.len());
            encode(
                &mut out,
                &Frame {
                    kind: Kind::Msg,
                    seq,
                    ts_ns: seq,
                    term: 1,
                    subject: format!("s.{}", seq % 3).as_bytes(),
                    headers: b"",
                    payload: &vec![seq as u8; 30 + seq as usize],
                },
            );
        }
        (out, starts)
    }

    #[test]
    fn clean_segment_with_zero_tail() {
        let (mut b, _) = seg(10);
        let len = b.len();
        b.resize(len + 4096, 0);
        let s = scan_segment(0, &b);
        assert_eq!(s.index.entries.len(), 10);
        assert_eq!(s.index.data_len_bytes, len as u64);
        assert_eq!(s.torn, None);
        assert!(s.index.damage.is_empty());
        assert_eq!(s.index.subjects.len(), 3);
    }

    #[test]
    fn torn_tail_is_cut() {
        let (b, starts) = seg(10);
        let framed = frame::check(&b[starts[9]..]).unwrap();
        for cut in starts[9] + 1..starts[9] + framed {
            let mut t = b[..cut].to_vec();
            t.resize(b.len() + 512, 0);
            let s = scan_segment(0, &t);
            assert_eq!(s.index.entries.len(), 9, "cut {cut}");
            assert_eq!(s.torn.as_ref().unwrap().offset, starts[9] as u64);
        }
    }

    #[test]
    fn middle_damage_is_skipped_and_reported() {
        let (mut b, starts) = seg(10);
        b[starts[4] + 45] ^= 0xff;
        b.resize(b.len() + 512, 0);
        let s = scan_segment(0, &b);
        let seqs: Vec<u64> = s.index.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 6, 7, 8, 9, 10]);
        assert_eq!(s.index.damage.len(), 1);
        assert_eq!(s.index.damage[0].offset, starts[4] as u64);
        assert_eq!(s.index.damage[0].resume_offset, starts[5] as u64);
        assert_eq!(s.torn, None);
    }

    /// A crash that lost a write while a later one landed: zeros where records
    /// should be, then records. The log ends at the zeros (none of it was durable);
    /// a record damaged in place is still skipped, not cut.
    #[test]
    fn records_after_unwritten_space_end_the_log() {
        let (b, starts) = seg(200);
        // A lost write of whole blocks from a record boundary.
        let mut lost = b.clone();
        let from = starts[50];
        let to = (from + 8192).next_multiple_of(WRITE_BLOCK_BYTES);
        lost[from..to].fill(0);
        let s = scan_segment(0, &lost);
        assert_eq!(s.index.entries.len(), 50);
        assert_eq!(s.index.data_len_bytes, from as u64);
        let torn = s.torn.expect("the log ends at the lost write");
        assert!(torn.unwritten && torn.offset == from as u64, "{torn:?}");
        assert!(s.index.damage.is_empty());
        // Lost from inside a record: its start landed with the write before.
        let mut lost = b.clone();
        let from = (starts[50] + 20).next_multiple_of(WRITE_BLOCK_BYTES);
        lost[from..from + 2 * WRITE_BLOCK_BYTES].fill(0);
        let s = scan_segment(0, &lost);
        let torn = s
            .torn
            .expect("the log ends at the record the lost write cut");
        assert!(torn.unwritten, "{torn:?}");
        assert!(s.index.entries.iter().all(|e| (e.offset as usize) < from));
        // A bit flip keeps its bytes: skipped and reported.
        let mut flipped = b;
        flipped[starts[50] + 45] ^= 0xff;
        let s = scan_segment(0, &flipped);
        assert_eq!(s.index.entries.len(), 199);
        assert_eq!(s.index.damage.len(), 1);
        assert_eq!(s.torn, None);
    }

    #[test]
    fn file_cut_inside_the_last_padding_keeps_the_record() {
        let (b, starts) = seg(10);
        let framed = frame::check(&b[starts[9]..]).unwrap();
        let padded = b.len() - starts[9];
        assert!(framed < padded, "the last record has padding");
        for cut in starts[9] + framed..b.len() {
            let s = scan_segment(0, &b[..cut]);
            assert_eq!(s.index.entries.len(), 10, "cut {cut}");
            assert_eq!(s.index.data_len_bytes, b.len() as u64, "cut {cut}");
            assert_eq!(s.torn, None, "cut {cut}");
        }
    }

    #[test]
    fn zeroed_length_in_middle_is_not_an_end() {
        let (mut b, starts) = seg(5);
        b[starts[2]..starts[2] + 4].fill(0);
        let s = scan_segment(0, &b);
        assert_eq!(s.index.entries.len(), 4);
        assert_eq!(s.index.damage.len(), 1);
    }
}
