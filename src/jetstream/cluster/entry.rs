//! The entries of a stream's Raft group. A message entry is binary (it is the hot
//! path); the rest are rare and carry the API request's JSON.
//!
//! A message entry carries the sequence the leader expects it to get: a replica
//! that already holds that sequence (a replay after a restart) skips it, and one
//! whose stream is elsewhere (a proposal made before a lost one) refuses it, the
//! same way on every replica.

use crate::raft::NodeId;
use bytes::Bytes;

const KIND_MSG: u8 = 1;
const KIND_PURGE: u8 = 2;
const KIND_DELETE: u8 = 3;
const KIND_COMPACT: u8 = 4;
const MSG_FIXED_BYTES: usize = 1 + 8 + 8 + 8 + 2 + 2 + 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgEntry {
    pub seq: u64,
    pub ts_ns: u64,
    /// The server whose leader proposed it: it sends the PubAck.
    pub proposer: NodeId,
    /// Where the PubAck goes (empty: none).
    pub reply: Bytes,
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEntry {
    Msg(MsgEntry),
    /// A purge request's JSON body.
    Purge(Removal),
    /// A message delete request's JSON body.
    Delete(Removal),
    /// Every replica holds the log up to this index: each compacts its log there once
    /// its store has made what it applied durable.
    Compact(u64),
}

/// A purge or a message delete: the API request's JSON, and the last sequence the
/// stream held when the leader proposed it. It never touches a message after
/// that one, so applying it again (a replay after a restart) leaves alone what
/// was stored after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub through_seq: u64,
    pub body: Bytes,
}

impl MsgEntry {
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.reply.len() <= u16::MAX as usize);
        assert!(self.subject.len() <= u16::MAX as usize);
        let mut out = Vec::with_capacity(
            MSG_FIXED_BYTES
                + self.reply.len()
                + self.subject.len()
                + self.headers.len()
                + self.payload.len(),
        );
        out.push(KIND_MSG);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.ts_ns.to_le_bytes());
        out.extend_from_slice(&self.proposer.to_le_bytes());
        out.extend_from_slice(&(self.reply.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.subject.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.reply);
        out.extend_from_slice(&self.subject);
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(&self.payload);
        out
    }
}

/// What a replica does with a committed message entry, by its stream's last
/// sequence: the same on every replica, and again on a replay after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgVerdict {
    /// The store holds that sequence already (applied before a restart).
    AlreadyStored,
    /// The next sequence: store it.
    Store,
    /// Proposed after a message that was lost: no replica stores it.
    Refuse,
}

pub fn verdict(entry_seq: u64, last_seq: u64) -> MsgVerdict {
    if entry_seq <= last_seq {
        MsgVerdict::AlreadyStored
    } else if entry_seq == last_seq + 1 {
        MsgVerdict::Store
    } else {
        MsgVerdict::Refuse
    }
}

pub fn encode_removal(purge: bool, through_seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + body.len());
    out.push(if purge { KIND_PURGE } else { KIND_DELETE });
    out.extend_from_slice(&through_seq.to_le_bytes());
    out.extend_from_slice(body);
    out
}

pub fn encode_compact(up_to: u64) -> Vec<u8> {
    let mut out = vec![KIND_COMPACT];
    out.extend_from_slice(&up_to.to_le_bytes());
    out
}

/// Decodes an entry; None for one this version does not know or a damaged one
/// (the group's log is checksummed, so only a newer peer could send it).
pub fn decode(data: &Bytes) -> Option<StreamEntry> {
    let (&kind, _) = data.split_first()?;
    match kind {
        KIND_MSG => decode_msg(data).map(StreamEntry::Msg),
        KIND_PURGE => decode_removal(data).map(StreamEntry::Purge),
        KIND_DELETE => decode_removal(data).map(StreamEntry::Delete),
        KIND_COMPACT => Some(StreamEntry::Compact(u64_after_kind(data)?)),
        _ => None,
    }
}

fn u64_after_kind(data: &Bytes) -> Option<u64> {
    let bytes: [u8; 8] = data.get(1..9)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn decode_removal(data: &Bytes) -> Option<Removal> {
    Some(Removal {
        through_seq: u64_after_kind(data)?,
        body: data.slice(9..),
    })
}

fn decode_msg(data: &Bytes) -> Option<MsgEntry> {
    if data.len() < MSG_FIXED_BYTES {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let reply_len = u16::from_le_bytes([data[25], data[26]]) as usize;
    let subject_len = u16::from_le_bytes([data[27], data[28]]) as usize;
    let headers_len = u32::from_le_bytes(data[29..33].try_into().expect("4 bytes")) as usize;
    let reply_at = MSG_FIXED_BYTES;
    let subject_at = reply_at + reply_len;
    let headers_at = subject_at + subject_len;
    let payload_at = headers_at.checked_add(headers_len)?;
    if payload_at > data.len() {
        return None;
    }
    Some(MsgEntry {
        seq: u64_at(1),
        ts_ns: u64_at(9),
        proposer: u64_at(17),
        reply: data.slice(reply_at..subject_at),
        subject: data.slice(subject_at..headers_at),
        headers: data.slice(headers_at..payload_at),
        payload: data.slice(payload_at..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_entry_round_trips_and_a_short_one_is_refused() {
        let m = MsgEntry {
            seq: 42,
            ts_ns: 7,
            proposer: 9,
            reply: Bytes::from_static(b"_INBOX.x"),
            subject: Bytes::from_static(b"orders.new"),
            headers: Bytes::from_static(b"NATS/1.0\r\nA: b\r\n\r\n"),
            payload: Bytes::from_static(b"hello"),
        };
        let bytes = Bytes::from(m.encode());
        assert_eq!(decode(&bytes), Some(StreamEntry::Msg(m)));
        for cut in 1..bytes.len() {
            if let Some(StreamEntry::Msg(short)) = decode(&bytes.slice(..cut)) {
                assert!(short.payload.len() < 5, "a cut entry is never read whole");
            }
        }
        let purge = Bytes::from(encode_removal(true, 12, b"{}"));
        let removal = Removal {
            through_seq: 12,
            body: Bytes::from_static(b"{}"),
        };
        assert_eq!(decode(&purge), Some(StreamEntry::Purge(removal)));
        assert_eq!(decode(&purge.slice(..8)), None);
        assert_eq!(decode(&Bytes::from_static(&[9, 1])), None);
        let compact = Bytes::from(encode_compact(77));
        assert_eq!(decode(&compact), Some(StreamEntry::Compact(77)));
        assert_eq!(decode(&compact.slice(..5)), None);
    }
}
