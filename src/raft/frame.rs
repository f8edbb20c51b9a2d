//! The frame: everything one node's shard sends to one peer node in one turn.
//!
//! ```text
//! frame   := payload_len:u32le  crc32c(payload):u32le  payload
//! payload := version:u8  from_node:u64le  to_node:u64le  incarnation:u64le  count:u32le  item*
//! item    := 1:u8 group:u64le len:u32le raft-message(protobuf)      a Raft message
//!          | 2:u8 group:u64le from:u64le to:u64le term:u64le          "this group is quiet"
//! ```
//! A frame with no items is the node-level heartbeat. Raft messages use the raft crate's
//! own protobuf codec. [`check`] and [`parse`] answer [`FrameError::Incomplete`] until
//! a whole frame is buffered, so a stream reader can call them on a growing buffer.

use protobuf::Message as _;
use raft::eraftpb::Message;

use super::log_store::GroupId;
use super::NodeId;

/// Bytes before the payload: length and checksum.
pub const HEADER_BYTES: usize = 8;
/// Largest payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;
/// Largest number of items in one frame.
pub const MAX_ITEMS: usize = 1 << 20;
const VERSION: u8 = 1;
const TAG_RAFT: u8 = 1;
const TAG_QUIET: u8 = 2;

/// Why a buffer does not hold a valid frame (yet).
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes are needed.
    Incomplete,
    /// The announced payload is larger than [`MAX_PAYLOAD_BYTES`].
    TooLarge(usize),
    /// The checksum does not match.
    BadChecksum,
    /// The payload is malformed.
    Malformed(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for FrameError {}

/// One unit inside a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A Raft message for one group.
    Raft { group: GroupId, msg: Message },
    /// The leader replica `from` tells replica `to` that the group is idle at `term`:
    /// stop ticking it until something happens.
    Quiet {
        group: GroupId,
        from: u64,
        to: u64,
        term: u64,
    },
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub from_node: NodeId,
    pub to_node: NodeId,
    /// Changes every time the sending node restarts.
    pub incarnation: u64,
    pub items: Vec<Item>,
}

/// Encodes a frame.
pub fn encode(frame: &Frame) -> Vec<u8> {
    // Sized once: a frame of appends can run to megabytes, and growing it as it is
    // written copied it over and over.
    let items_bytes: usize = frame
        .items
        .iter()
        .map(|item| match item {
            Item::Raft { msg, .. } => 1 + 8 + 4 + msg.compute_size() as usize,
            Item::Quiet { .. } => 1 + 4 * 8,
        })
        .sum();
    let mut out = Vec::with_capacity(HEADER_BYTES + 1 + 3 * 8 + 4 + items_bytes);
    out.resize(HEADER_BYTES, 0);
    out.push(VERSION);
    out.extend_from_slice(&frame.from_node.to_le_bytes());
    out.extend_from_slice(&frame.to_node.to_le_bytes());
    out.extend_from_slice(&frame.incarnation.to_le_bytes());
    out.extend_from_slice(&(frame.items.len() as u32).to_le_bytes());
    for item in &frame.items {
        match item {
            Item::Raft { group, msg } => {
                out.push(TAG_RAFT);
                out.extend_from_slice(&group.to_le_bytes());
                // Sizes were computed (and cached in `msg`) above.
                let len = msg.get_cached_size();
                out.extend_from_slice(&len.to_le_bytes());
                let at = out.len();
                let mut os = protobuf::CodedOutputStream::vec(&mut out);
                msg.write_to_with_cached_sizes(&mut os)
                    .and_then(|()| os.flush())
                    .expect("encoding a raft message");
                drop(os);
                debug_assert_eq!(out.len() - at, len as usize);
            }
            Item::Quiet {
                group,
                from,
                to,
                term,
            } => {
                out.push(TAG_QUIET);
                for v in [*group, *from, *to, *term] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    let payload_len = out.len() - HEADER_BYTES;
    assert!(payload_len <= MAX_PAYLOAD_BYTES, "frame too large");
    let crc = crc32c::crc32c(&out[HEADER_BYTES..]);
    out[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Returns the length of the complete, checksum-valid frame at the start of `buf`.
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    if buf.len() < HEADER_BYTES {
        return Err(FrameError::Incomplete);
    }
    let payload_len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(FrameError::TooLarge(payload_len));
    }
    let total = HEADER_BYTES + payload_len;
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    if crc32c::crc32c(&buf[HEADER_BYTES..total]) != crc {
        return Err(FrameError::BadChecksum);
    }
    Ok(total)
}

/// The sending node of a frame [`check`] accepted (a reader learns its peer from it).
pub fn from_node(frame: &[u8]) -> Result<NodeId, FrameError> {
    let b = frame
        .get(HEADER_BYTES + 1..HEADER_BYTES + 9)
        .ok_or(FrameError::Malformed("short frame"))?;
    Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Malformed("truncated payload"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

/// Decodes the frame at the start of `buf`; returns it and the bytes it took.
pub fn parse(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
    let total = check(buf)?;
    let mut r = Reader {
        buf: &buf[HEADER_BYTES..total],
    };
    if r.u8()? != VERSION {
        return Err(FrameError::Malformed("unknown version"));
    }
    let from_node = r.u64()?;
    let to_node = r.u64()?;
    let incarnation = r.u64()?;
    let count = r.u32()? as usize;
    if count > MAX_ITEMS {
        return Err(FrameError::Malformed("too many items"));
    }
    let mut items = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        match r.u8()? {
            TAG_RAFT => {
                let group = r.u64()?;
                let len = r.u32()? as usize;
                let bytes = r.take(len)?;
                let msg = Message::parse_from_bytes(bytes)
                    .map_err(|_| FrameError::Malformed("bad raft message"))?;
                items.push(Item::Raft { group, msg });
            }
            TAG_QUIET => items.push(Item::Quiet {
                group: r.u64()?,
                from: r.u64()?,
                to: r.u64()?,
                term: r.u64()?,
            }),
            _ => return Err(FrameError::Malformed("unknown item")),
        }
    }
    if !r.buf.is_empty() {
        return Err(FrameError::Malformed("trailing bytes"));
    }
    Ok((
        Frame {
            from_node,
            to_node,
            incarnation,
            items,
        },
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    fn sample() -> Frame {
        let mut msg = Message::default();
        msg.set_msg_type(MessageType::MsgAppend);
        msg.to = 2;
        msg.from = 1;
        msg.term = 3;
        let e = Entry {
            index: 9,
            term: 3,
            data: b"hello".to_vec().into(),
            ..Default::default()
        };
        msg.mut_entries().push(e);
        Frame {
            from_node: 1,
            to_node: 2,
            incarnation: 77,
            items: vec![
                Item::Raft { group: 5, msg },
                Item::Quiet {
                    group: 6,
                    from: 1,
                    to: 2,
                    term: 3,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let f = sample();
        let bytes = encode(&f);
        let (back, used) = parse(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, f);
        assert_eq!(from_node(&bytes), Ok(1));
        assert!(from_node(&bytes[..12]).is_err());
    }

    #[test]
    fn incomplete_until_whole() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert_eq!(check(&bytes[..cut]), Err(FrameError::Incomplete));
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(check(&two), Ok(bytes.len()));
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = encode(&sample());
        for i in HEADER_BYTES..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert_eq!(check(&bad), Err(FrameError::BadChecksum), "byte {i}");
        }
        let mut huge = bytes.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(check(&huge), Err(FrameError::TooLarge(_))));
    }
}
