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
}

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
            Err(frame::FrameError::Incomplete) => Some("incomplete record"),
            Err(frame::FrameError::Invalid(why)) => Some(why),
        };
        if let Some(reason) = bad {
            match resync(buf, off + ALIGN_BYTES, last_msg_seq + 1) {
                Some(next) => {
                    index.damage.push(Damage {
                        offset: off as u64,
                        resume_offset: next as u64,
                    });
                    off = next;
                }
                None => {
                    torn = Some(TornTail {
                        offset: off as u64,
                        reason,
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
