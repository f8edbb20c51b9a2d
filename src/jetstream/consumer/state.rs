//! A consumer's delivery and acknowledgement state, free of I/O: what was
//! delivered, what waits for an ack and until when, what is due again. The caller
//! supplies the clock (`now_ms`, monotonic) and reads the stream.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A delivered message that waits for its ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Consumer sequence of its latest delivery.
    pub consumer_seq: u64,
    pub deliveries: u64,
    /// When it is due again (monotonic ms), unless acked.
    #[serde(skip)]
    pub deadline_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seqs {
    pub consumer_seq: u64,
    pub stream_seq: u64,
}

/// What an expired deadline means for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Deliver it again.
    Redeliver(u64),
    /// It reached max_deliver: dropped from pending, with its delivery count.
    Exhausted { stream_seq: u64, deliveries: u64 },
}

/// The part of a consumer that survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerState {
    pub delivered: Seqs,
    pub ack_floor: Seqs,
    /// Next stream sequence to consider for a first delivery.
    pub next_seq: u64,
    pub pending: BTreeMap<u64, Pending>,
    /// Stream sequences due for redelivery, oldest first.
    #[serde(default)]
    pub redeliver: BTreeSet<u64>,
    /// (deadline, stream sequence) of each pending message not due yet.
    #[serde(skip)]
    deadlines: BTreeSet<(u64, u64)>,
}

/// Timing rules from the consumer's config.
#[derive(Clone, Debug, Default)]
pub struct AckRules {
    pub ack_wait_ms: u64,
    pub backoff_ms: Vec<u64>,
    /// 0: unlimited.
    pub max_deliver: u64,
}

impl AckRules {
    fn wait_ms(&self, deliveries: u64) -> u64 {
        if self.backoff_ms.is_empty() {
            return self.ack_wait_ms;
        }
        let at = (deliveries.saturating_sub(1) as usize).min(self.backoff_ms.len() - 1);
        self.backoff_ms[at]
    }
}

impl ConsumerState {
    /// Sets when a pending message is due (it leaves the redelivery queue).
    fn set_deadline(&mut self, stream_seq: u64, deadline_ms: u64) {
        let Some(p) = self.pending.get_mut(&stream_seq) else {
            return;
        };
        self.deadlines.remove(&(p.deadline_ms, stream_seq));
        p.deadline_ms = deadline_ms;
        self.deadlines.insert((deadline_ms, stream_seq));
    }

    /// Drops a message from pending, with its deadline and redelivery.
    fn drop_pending(&mut self, stream_seq: u64) -> Option<Pending> {
        let p = self.pending.remove(&stream_seq)?;
        self.deadlines.remove(&(p.deadline_ms, stream_seq));
        self.redeliver.remove(&stream_seq);
        Some(p)
    }

    pub fn new(start_seq: u64) -> ConsumerState {
        ConsumerState {
            next_seq: start_seq.max(1),
            delivered: Seqs {
                consumer_seq: 0,
                stream_seq: start_seq.saturating_sub(1),
            },
            ack_floor: Seqs {
                consumer_seq: 0,
                stream_seq: start_seq.saturating_sub(1),
            },
            ..Default::default()
        }
    }

    /// After a restart: every pending message waits a full ack wait again.
    pub fn restore_deadlines(&mut self, now_ms: u64, rules: &AckRules) {
        self.deadlines.clear();
        for (seq, p) in self.pending.iter_mut() {
            p.deadline_ms = now_ms + rules.wait_ms(p.deliveries);
            if !self.redeliver.contains(seq) {
                self.deadlines.insert((p.deadline_ms, *seq));
            }
        }
    }

    /// Records a delivery of `stream_seq` (first or again); returns its consumer
    /// sequence and delivery count. With `track` false (ack none) nothing waits.
    /// The consumer sequence and delivery count the next delivery of
    /// `stream_seq` will have (what `on_delivered` then returns).
    pub fn next_delivery(&self, stream_seq: u64, track: bool) -> (u64, u64) {
        let deliveries = match self.pending.get(&stream_seq) {
            Some(p) if track => p.deliveries + 1,
            _ => 1,
        };
        (self.delivered.consumer_seq + 1, deliveries)
    }

    pub fn on_delivered(
        &mut self,
        stream_seq: u64,
        now_ms: u64,
        rules: &AckRules,
        track: bool,
    ) -> (u64, u64) {
        self.delivered.consumer_seq += 1;
        let consumer_seq = self.delivered.consumer_seq;
        let redelivery = self.redeliver.remove(&stream_seq);
        if !redelivery {
            debug_assert!(stream_seq >= self.next_seq, "first deliveries go forward");
            self.next_seq = stream_seq + 1;
            self.delivered.stream_seq = stream_seq;
        }
        if !track {
            self.ack_floor = self.delivered;
            return (consumer_seq, 1);
        }
        let entry = self.pending.entry(stream_seq).or_insert(Pending {
            consumer_seq,
            deliveries: 0,
            deadline_ms: 0,
        });
        entry.deliveries += 1;
        entry.consumer_seq = consumer_seq;
        let deliveries = entry.deliveries;
        self.set_deadline(stream_seq, now_ms + rules.wait_ms(deliveries));
        (consumer_seq, deliveries)
    }

    /// A stream sequence passed over by a first delivery (filtered out, deleted).
    pub fn skip_to(&mut self, next_seq: u64) {
        if next_seq > self.next_seq {
            self.next_seq = next_seq;
            if self.pending.is_empty() && self.redeliver.is_empty() {
                self.ack_floor.stream_seq = self.ack_floor.stream_seq.max(next_seq - 1);
            }
        }
    }

    /// `+ACK` of one message; false when it was not pending.
    pub fn ack(&mut self, stream_seq: u64) -> bool {
        let found = self.drop_pending(stream_seq).is_some();
        if found {
            self.update_floor();
        }
        found
    }

    /// Ack policy `all`: everything up to `stream_seq`.
    pub fn ack_all(&mut self, stream_seq: u64) -> bool {
        let acked: Vec<u64> = self.pending.range(..=stream_seq).map(|(s, _)| *s).collect();
        for s in &acked {
            self.drop_pending(*s);
        }
        self.update_floor();
        !acked.is_empty()
    }

    /// `-NAK` (with a delay): due again after `delay_ms`, at once by default.
    pub fn nak(&mut self, stream_seq: u64, now_ms: u64, delay_ms: u64) -> bool {
        if !self.pending.contains_key(&stream_seq) {
            return false;
        }
        if delay_ms == 0 {
            self.set_deadline(stream_seq, now_ms);
            self.deadlines.remove(&(now_ms, stream_seq));
            self.redeliver.insert(stream_seq);
        } else {
            self.redeliver.remove(&stream_seq);
            self.set_deadline(stream_seq, now_ms + delay_ms);
        }
        true
    }

    /// `+WPI`: the ack wait starts again.
    pub fn in_progress(&mut self, stream_seq: u64, now_ms: u64, rules: &AckRules) -> bool {
        let Some(p) = self.pending.get(&stream_seq) else {
            return false;
        };
        if self.redeliver.contains(&stream_seq) {
            return true;
        }
        let deadline = now_ms + rules.wait_ms(p.deliveries);
        self.set_deadline(stream_seq, deadline);
        true
    }

    /// `+TERM`: never delivered again. Returns its delivery count.
    pub fn terminate(&mut self, stream_seq: u64) -> Option<Pending> {
        let p = self.drop_pending(stream_seq)?;
        self.update_floor();
        Some(p)
    }

    /// Moves messages whose deadline passed to the redelivery queue, or out of
    /// pending once they reached max_deliver.
    pub fn expire(&mut self, now_ms: u64, rules: &AckRules) -> Vec<Expiry> {
        let mut due = Vec::new();
        while let Some(&(deadline, seq)) = self.deadlines.first() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop_first();
            due.push((seq, self.pending[&seq]));
        }
        let mut out = Vec::with_capacity(due.len());
        for (seq, p) in due {
            if rules.max_deliver > 0 && p.deliveries >= rules.max_deliver {
                self.pending.remove(&seq);
                out.push(Expiry::Exhausted {
                    stream_seq: seq,
                    deliveries: p.deliveries,
                });
            } else {
                self.redeliver.insert(seq);
                out.push(Expiry::Redeliver(seq));
            }
        }
        if out.iter().any(|e| matches!(e, Expiry::Exhausted { .. })) {
            self.update_floor();
        }
        out
    }

    /// The earliest deadline of a message not yet due for redelivery.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// The oldest message due again.
    pub fn next_redelivery(&self) -> Option<u64> {
        self.redeliver.first().copied()
    }

    /// Messages the stream no longer has stop waiting for acks.
    pub fn forget_below(&mut self, first_seq: u64) {
        let gone: Vec<u64> = self.pending.range(..first_seq).map(|(s, _)| *s).collect();
        for s in gone {
            self.drop_pending(s);
        }
        if self.next_seq < first_seq {
            self.next_seq = first_seq;
        }
        self.update_floor();
    }

    pub fn forget(&mut self, stream_seq: u64) {
        if self.drop_pending(stream_seq).is_some() {
            self.update_floor();
        }
    }

    pub fn num_redelivered(&self) -> u64 {
        self.pending.values().filter(|p| p.deliveries > 1).count() as u64
    }

    fn update_floor(&mut self) {
        match self.pending.iter().next() {
            None => {
                self.ack_floor = Seqs {
                    consumer_seq: self.delivered.consumer_seq,
                    stream_seq: self
                        .delivered
                        .stream_seq
                        .max(self.next_seq.saturating_sub(1)),
                }
            }
            Some((seq, p)) => {
                let floor = Seqs {
                    consumer_seq: p.consumer_seq.saturating_sub(1),
                    stream_seq: seq - 1,
                };
                self.ack_floor.stream_seq = self.ack_floor.stream_seq.max(floor.stream_seq);
                self.ack_floor.consumer_seq = self.ack_floor.consumer_seq.max(floor.consumer_seq);
            }
        }
        debug_assert!(
            self.ack_floor.stream_seq
                <= self
                    .next_seq
                    .saturating_sub(1)
                    .max(self.delivered.stream_seq)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AckRules {
        AckRules {
            ack_wait_ms: 1000,
            backoff_ms: vec![],
            max_deliver: 3,
        }
    }

    #[test]
    fn acks_move_the_floor_in_order() {
        let r = rules();
        let mut s = ConsumerState::new(1);
        for seq in 1..=3 {
            s.on_delivered(seq, 0, &r, true);
        }
        assert!(s.ack(2));
        assert_eq!(s.ack_floor.stream_seq, 0);
        assert!(s.ack(1));
        assert_eq!(s.ack_floor.stream_seq, 2);
        assert!(s.ack(3));
        assert_eq!(
            s.ack_floor,
            Seqs {
                consumer_seq: 3,
                stream_seq: 3
            }
        );
        assert!(!s.ack(3), "a second ack finds nothing");
    }

    #[test]
    fn unacked_messages_come_back_until_max_deliver() {
        let r = rules();
        let mut s = ConsumerState::new(1);
        s.on_delivered(1, 0, &r, true);
        assert_eq!(s.expire(999, &r), vec![]);
        assert_eq!(s.expire(1000, &r), vec![Expiry::Redeliver(1)]);
        assert_eq!(s.next_redelivery(), Some(1));
        assert_eq!(s.on_delivered(1, 1000, &r, true), (2, 2));
        assert_eq!(s.expire(2000, &r), vec![Expiry::Redeliver(1)]);
        assert_eq!(s.on_delivered(1, 2000, &r, true), (3, 3));
        assert_eq!(
            s.expire(3000, &r),
            vec![Expiry::Exhausted {
                stream_seq: 1,
                deliveries: 3
            }]
        );
        assert!(s.pending.is_empty());
        assert_eq!(s.ack_floor.stream_seq, 1);
    }

    #[test]
    fn nak_with_delay_and_ack_all() {
        let r = rules();
        let mut s = ConsumerState::new(1);
        for seq in 1..=4 {
            s.on_delivered(seq, 0, &r, true);
        }
        assert!(s.nak(2, 0, 0));
        assert_eq!(s.next_redelivery(), Some(2));
        assert!(s.nak(3, 0, 5000));
        assert_eq!(s.next_deadline_ms(), Some(1000));
        assert!(s.ack_all(3));
        assert_eq!(s.pending.keys().copied().collect::<Vec<_>>(), vec![4]);
        assert_eq!(s.ack_floor.stream_seq, 3);
    }

    #[test]
    fn skipped_sequences_move_an_idle_floor() {
        let r = rules();
        let mut s = ConsumerState::new(1);
        s.on_delivered(2, 0, &r, true);
        s.ack(2);
        s.skip_to(10);
        assert_eq!(s.ack_floor.stream_seq, 9);
        assert_eq!(s.next_seq, 10);
    }
}
