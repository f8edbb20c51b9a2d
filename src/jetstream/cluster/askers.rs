//! The replicas catching up from this server, as their batch requests show: the
//! stream's leader reports each one not current, with the messages it lacks,
//! until it says it has finished (or stops asking).

use crate::raft::{GroupId, NodeId};
use ahash::AHashMap;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Replicas remembered at most; past it, those that stopped asking go first, and
/// a new one is not remembered while all are asking.
const ASKERS_MAX: usize = 4096;
/// A replica that asked within this long is still catching up: it asks again at
/// once after each answer, and after a pause when no peer answers.
const ASKING_FOR: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
struct Asking {
    from_seq: u64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct Askers {
    asking: RefCell<AHashMap<(GroupId, NodeId), Asking>>,
}

impl Askers {
    /// `node`'s replica of `group` asked for the messages from `from_seq`.
    pub fn asked(&self, group: GroupId, node: NodeId, from_seq: u64, now: Instant) {
        let mut asking = self.asking.borrow_mut();
        if asking.len() >= ASKERS_MAX && !asking.contains_key(&(group, node)) {
            asking.retain(|_, a| now.duration_since(a.at) < ASKING_FOR);
            if asking.len() >= ASKERS_MAX {
                return;
            }
        }
        asking.insert((group, node), Asking { from_seq, at: now });
    }

    /// `node`'s replica of `group` has caught up.
    pub fn done(&self, group: GroupId, node: NodeId) {
        self.asking.borrow_mut().remove(&(group, node));
    }

    /// The sequence `node`'s replica of `group` asked for last, while it is still
    /// catching up.
    pub fn asking_from(&self, group: GroupId, node: NodeId, now: Instant) -> Option<u64> {
        let a = *self.asking.borrow().get(&(group, node))?;
        (now.duration_since(a.at) < ASKING_FOR).then_some(a.from_seq)
    }

    /// How many messages `node`'s replica of `group` lacks of `last_seq`, while it
    /// catches up.
    pub fn lacking(
        &self,
        group: GroupId,
        node: NodeId,
        last_seq: u64,
        now: Instant,
    ) -> Option<u64> {
        let from_seq = self.asking_from(group, node, now)?;
        Some((last_seq + 1).saturating_sub(from_seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_asking_is_catching_up_until_it_says_done_or_stops() {
        let a = Askers::default();
        let t = Instant::now();
        assert_eq!(a.lacking(1, 2, 100, t), None);
        a.asked(1, 2, 41, t);
        assert_eq!(a.lacking(1, 2, 100, t), Some(60));
        assert_eq!(a.lacking(1, 3, 100, t), None, "another replica");
        assert_eq!(a.lacking(1, 2, 100, t + ASKING_FOR), None, "stopped asking");
        a.asked(1, 2, 90, t + ASKING_FOR);
        assert_eq!(a.lacking(1, 2, 100, t + ASKING_FOR), Some(11));
        a.done(1, 2);
        assert_eq!(a.lacking(1, 2, 100, t + ASKING_FOR), None);
    }

    #[test]
    fn askers_are_bounded_and_the_stale_go_first() {
        let a = Askers::default();
        let t = Instant::now();
        for g in 0..ASKERS_MAX as u64 {
            a.asked(g, 1, 1, t);
        }
        a.asked(u64::MAX, 1, 1, t);
        assert_eq!(a.asking_from(u64::MAX, 1, t), None, "full of askers");
        let later = t + ASKING_FOR;
        a.asked(u64::MAX, 1, 7, later);
        assert_eq!(a.asking_from(u64::MAX, 1, later), Some(7));
        assert_eq!(a.asking.borrow().len(), 1, "the stale ones went");
    }
}
