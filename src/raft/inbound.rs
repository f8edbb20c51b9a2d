//! Checks a Raft message from the network before the `raft` crate sees it. The
//! crate trusts its peers: a commit index past the log, an append whose entries
//! do not follow on, or an acknowledgement of entries the leader never had
//! panics it. A peer is anyone who reaches the route port, so nothing it sends
//! may do that: such a message is dropped, or its commit index clamped to what
//! this replica holds (an honest leader never sends more).

use raft::eraftpb::{Message, MessageType};

/// What a replica knows of its own log and group, for the checks.
#[derive(Clone, Copy, Debug)]
pub struct LogView {
    pub last_index: u64,
    /// The sender is a replica on the node the frame came from, and not this one.
    /// (Not "a member the replica knows": a replica just added knows no members
    /// until the leader's snapshot arrives.)
    pub from_sender_node: bool,
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A type only a node gives itself (proposals, ticks, local reports).
    LocalOnly,
    /// A replica on another node than the one that sent the frame, or this one.
    Spoofed,
    /// Entries not numbered on from the append's index, or terms out of order.
    BadEntries,
    /// An acknowledgement of entries past this replica's log.
    AckPastLog,
    BadSnapshot,
    /// A leader-transfer request carries no term (raft forwards it as is);
    /// every other message between replicas does (raft reads term 0 as local).
    BadTerm,
}

/// Admits `msg` (clamping its commit index where needed) or says why not.
pub fn admit(msg: &mut Message, log: LogView) -> Result<(), Refused> {
    use MessageType::*;
    let ty = msg.get_msg_type();
    match ty {
        MsgHup | MsgBeat | MsgPropose | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum
        | MsgReadIndex | MsgReadIndexResp => return Err(Refused::LocalOnly),
        _ => {}
    }
    if !log.from_sender_node {
        return Err(Refused::Spoofed);
    }
    match ty {
        MsgAppend => check_entries(msg)?,
        MsgAppendResponse if !msg.reject && msg.index > log.last_index => {
            return Err(Refused::AckPastLog)
        }
        MsgSnapshot => check_snapshot(msg)?,
        MsgTransferLeader if msg.term != 0 => return Err(Refused::BadTerm),
        MsgTransferLeader => {}
        _ if msg.term == 0 => return Err(Refused::BadTerm),
        _ => {}
    }
    if ty == MsgHeartbeat {
        msg.commit = msg.commit.min(log.last_index);
    }
    Ok(())
}

fn check_entries(msg: &Message) -> Result<(), Refused> {
    // Raft reads the term of an index past its log as 0, so an append "after"
    // such an index with term 0 would match and commit past the log. Every group
    // starts from a snapshot at term 1: no honest append follows term 0.
    if msg.log_term == 0 {
        return Err(Refused::BadEntries);
    }
    let mut term = msg.log_term;
    for (i, e) in msg.entries.iter().enumerate() {
        let in_order = e.index == msg.index + 1 + i as u64;
        if !in_order || e.term < term || e.term > msg.term {
            return Err(Refused::BadEntries);
        }
        term = e.term;
    }
    Ok(())
}

fn check_snapshot(msg: &Message) -> Result<(), Refused> {
    let meta = msg.get_snapshot().get_metadata();
    let voters = &meta.get_conf_state().voters;
    if meta.index == 0 || meta.term == 0 || meta.term > msg.term || voters.is_empty() {
        return Err(Refused::BadSnapshot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    const LOG: LogView = LogView {
        last_index: 10,
        from_sender_node: true,
    };

    fn msg(ty: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(ty);
        m.term = 5;
        m
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn a_heartbeat_commit_past_the_log_is_clamped() {
        let mut m = msg(MessageType::MsgHeartbeat);
        m.commit = 1_000_000;
        assert_eq!(admit(&mut m, LOG), Ok(()));
        assert_eq!(m.commit, 10);
        m.commit = 7;
        assert_eq!(admit(&mut m, LOG), Ok(()));
        assert_eq!(m.commit, 7, "an honest commit is kept");
    }

    #[test]
    fn appends_must_number_on_and_keep_terms_in_order() {
        let mut m = msg(MessageType::MsgAppend);
        m.index = 10;
        m.log_term = 3;
        m.entries = vec![entry(11, 3), entry(12, 5)].into();
        assert_eq!(admit(&mut m.clone(), LOG), Ok(()));
        let mut past_the_log = m.clone();
        past_the_log.index = 15;
        past_the_log.log_term = 0;
        past_the_log.entries = vec![entry(16, 3)].into();
        assert_eq!(admit(&mut past_the_log, LOG), Err(Refused::BadEntries));
        for bad in [
            vec![entry(12, 3)],
            vec![entry(11, 3), entry(11, 3)],
            vec![entry(11, 2)],
            vec![entry(11, 6)],
            vec![entry(11, 4), entry(12, 3)],
        ] {
            m.entries = bad.into();
            assert_eq!(admit(&mut m, LOG), Err(Refused::BadEntries));
        }
    }

    #[test]
    fn acks_past_the_log_local_types_and_spoofed_senders_are_refused() {
        let mut ack = msg(MessageType::MsgAppendResponse);
        ack.index = 11;
        assert_eq!(admit(&mut ack, LOG), Err(Refused::AckPastLog));
        ack.reject = true;
        assert_eq!(
            admit(&mut ack, LOG),
            Ok(()),
            "a rejection names its own log"
        );
        for local in [
            MessageType::MsgHup,
            MessageType::MsgPropose,
            MessageType::MsgBeat,
        ] {
            assert_eq!(admit(&mut msg(local), LOG), Err(Refused::LocalOnly));
        }
        let spoofed = LogView {
            from_sender_node: false,
            ..LOG
        };
        let mut vote = msg(MessageType::MsgRequestVote);
        assert_eq!(admit(&mut vote, spoofed), Err(Refused::Spoofed));
    }

    /// Found by tests/hostile_proptest.rs: raft asserts on the term of what it
    /// forwards or answers.
    #[test]
    fn terms_must_be_what_raft_expects() {
        let mut transfer = msg(MessageType::MsgTransferLeader);
        assert_eq!(admit(&mut transfer, LOG), Err(Refused::BadTerm));
        transfer.term = 0;
        assert_eq!(admit(&mut transfer, LOG), Ok(()));
        let mut pre_vote = msg(MessageType::MsgRequestPreVote);
        pre_vote.term = 0;
        assert_eq!(admit(&mut pre_vote, LOG), Err(Refused::BadTerm));
    }

    #[test]
    fn a_snapshot_needs_an_index_a_term_and_voters() {
        let mut m = msg(MessageType::MsgSnapshot);
        assert_eq!(admit(&mut m, LOG), Err(Refused::BadSnapshot));
        let meta = m.mut_snapshot().mut_metadata();
        meta.index = 20;
        meta.term = 4;
        meta.mut_conf_state().voters = vec![1];
        assert_eq!(admit(&mut m, LOG), Ok(()));
    }
}
