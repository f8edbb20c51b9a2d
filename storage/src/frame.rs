//! Record framing: encode, `check` and `parse` one record. Pure, no I/O.
//!
//! Layout (little endian), every record starts on an 8-byte boundary:
//! ```text
//!  0 u32 len          header + subject + headers + payload (padding excluded)
//!  4 u32 crc32c       over bytes [8, len)
//!  8 u8  kind         1 = message, 2 = delete tombstone, 3 = compact marker
//!  9 u8  version      1
//! 10 u16 subject_len
//! 12 u32 headers_len
//! 16 u64 seq          message: its sequence (Raft: index); delete: target; compact: new first seq
//! 24 u64 ts_ns        message: time stored; otherwise 0
//! 32 u64 term         message: Raft term (0 for plain streams); compact: term of first seq - 1
//! 40 subject, headers, payload
//! ```
//! A zero `len` marks the end of the written part of a (zero-preallocated) segment.

pub const HEADER_BYTES: usize = 40;
pub const ALIGN_BYTES: usize = 8;
/// Hard limit on one record (header included).
pub const RECORD_MAX_BYTES: usize = 16 << 20;
const VERSION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Msg = 1,
    Delete = 2,
    Compact = 3,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Msg),
            2 => Some(Kind::Delete),
            3 => Some(Kind::Compact),
            _ => None,
        }
    }
}

/// One decoded record, borrowing from the buffer it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    pub seq: u64,
    pub ts_ns: u64,
    pub term: u64,
    pub subject: &'a [u8],
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes are needed to decide (torn or still being written).
    Incomplete,
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

pub fn align_up(v: usize) -> usize {
    (v + ALIGN_BYTES - 1) & !(ALIGN_BYTES - 1)
}

/// Framed length (header included, padding excluded) of a record with these parts.
pub fn record_len(subject_len: usize, headers_len: usize, payload_len: usize) -> usize {
    HEADER_BYTES + subject_len + headers_len + payload_len
}

/// Space the record takes in a segment, padding included.
pub fn stored_len(subject_len: usize, headers_len: usize, payload_len: usize) -> usize {
    align_up(record_len(subject_len, headers_len, payload_len))
}

/// The 40-byte header of a record with these parts, crc32c included (computed
/// over the rest of the header and the parts, so the record's bytes can be
/// copied straight to where they go, in as many pieces as needed).
pub fn encode_header(f: &Frame<'_>) -> [u8; HEADER_BYTES] {
    let len = record_len(f.subject.len(), f.headers.len(), f.payload.len());
    assert!(len <= RECORD_MAX_BYTES, "record too large: {len}");
    assert!(f.subject.len() <= u16::MAX as usize);
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[8] = f.kind as u8;
    h[9] = VERSION;
    h[10..12].copy_from_slice(&(f.subject.len() as u16).to_le_bytes());
    h[12..16].copy_from_slice(&(f.headers.len() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&f.seq.to_le_bytes());
    h[24..32].copy_from_slice(&f.ts_ns.to_le_bytes());
    h[32..40].copy_from_slice(&f.term.to_le_bytes());
    let mut crc = crc32c::crc32c(&h[8..]);
    for part in [f.subject, f.headers, f.payload] {
        crc = crc32c::crc32c_append(crc, part);
    }
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one record (and its padding) to `out`; returns its framed length.
pub fn encode(out: &mut Vec<u8>, f: &Frame<'_>) -> usize {
    let header = encode_header(f);
    let len = record_len(f.subject.len(), f.headers.len(), f.payload.len());
    let start = out.len();
    assert!(start.is_multiple_of(ALIGN_BYTES), "records start aligned");
    out.reserve(align_up(len));
    out.extend_from_slice(&header);
    out.extend_from_slice(f.subject);
    out.extend_from_slice(f.headers);
    out.extend_from_slice(f.payload);
    out.resize(start + align_up(len), 0);
    len
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks the record at the start of `buf`; returns its framed length.
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    if buf.len() < 4 {
        return Err(FrameError::Incomplete);
    }
    let len = u32_at(buf, 0) as usize;
    if len < HEADER_BYTES {
        return Err(FrameError::Invalid("length below header size"));
    }
    if len > RECORD_MAX_BYTES {
        return Err(FrameError::Invalid("length above record limit"));
    }
    if buf.len() < HEADER_BYTES {
        return Err(FrameError::Incomplete);
    }
    if Kind::from_u8(buf[8]).is_none() {
        return Err(FrameError::Invalid("unknown kind"));
    }
    if buf[9] != VERSION {
        return Err(FrameError::Invalid("unknown version"));
    }
    let subject_len = u16::from_le_bytes([buf[10], buf[11]]) as usize;
    let headers_len = u32_at(buf, 12) as usize;
    if HEADER_BYTES + subject_len + headers_len > len {
        return Err(FrameError::Invalid("parts exceed length"));
    }
    if buf.len() < len {
        return Err(FrameError::Incomplete);
    }
    let crc = u32_at(buf, 4);
    if crc32c::crc32c(&buf[8..len]) != crc {
        return Err(FrameError::Invalid("checksum mismatch"));
    }
    Ok(len)
}

/// Parses the record at the start of `buf` (checked); returns it and the bytes
/// it takes in the segment, padding included.
pub fn parse(buf: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    let len = check(buf)?;
    let subject_len = u16::from_le_bytes([buf[10], buf[11]]) as usize;
    let headers_len = u32_at(buf, 12) as usize;
    let s = HEADER_BYTES;
    let h = s + subject_len;
    let p = h + headers_len;
    let frame = Frame {
        kind: Kind::from_u8(buf[8]).expect("checked"),
        seq: u64_at(buf, 16),
        ts_ns: u64_at(buf, 24),
        term: u64_at(buf, 32),
        subject: &buf[s..h],
        headers: &buf[h..p],
        payload: &buf[p..len],
    };
    Ok((frame, align_up(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(seq: u64, subject: &'a [u8], payload: &'a [u8]) -> Frame<'a> {
        Frame {
            kind: Kind::Msg,
            seq,
            ts_ns: 77,
            term: 3,
            subject,
            headers: b"NATS/1.0\r\n\r\n",
            payload,
        }
    }

    #[test]
    fn round_trip_and_alignment() {
        let mut out = Vec::new();
        let a = msg(1, b"foo.bar", b"hello");
        let b = msg(2, b"x", b"");
        let la = encode(&mut out, &a);
        assert_eq!(out.len() % ALIGN_BYTES, 0);
        encode(&mut out, &b);
        let (fa, na) = parse(&out).unwrap();
        assert_eq!(fa, a);
        assert_eq!(na, align_up(la));
        let (fb, nb) = parse(&out[na..]).unwrap();
        assert_eq!(fb, b);
        assert_eq!(na + nb, out.len());
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_flip_is_caught() {
        let mut out = Vec::new();
        let len = encode(&mut out, &msg(9, b"a.b.c", b"payload bytes"));
        for cut in 0..len {
            assert!(check(&out[..cut]).is_err(), "prefix {cut}");
        }
        for byte in 0..len {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[byte] ^= 1 << bit;
                assert!(check(&bad).is_err(), "flip {byte}:{bit} went unnoticed");
            }
        }
    }

    #[test]
    fn zero_length_is_invalid() {
        assert_eq!(
            check(&[0u8; 64]),
            Err(FrameError::Invalid("length below header size"))
        );
        assert_eq!(check(&[0u8; 2]), Err(FrameError::Incomplete));
    }
}
