//! The `Nats-Msg-Id` de-duplication window of a stream.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

pub struct Dedupe {
    window_ns: u64,
    ids: HashMap<String, u64>,
    /// (time stored, id), oldest first.
    order: VecDeque<(u64, String)>,
    last: Option<String>,
}

/// Ids remembered at most per stream, whatever the window says.
pub const IDS_MAX: usize = 1 << 20;

impl Dedupe {
    pub fn new(window: Duration) -> Dedupe {
        Dedupe {
            window_ns: window.as_nanos() as u64,
            ids: HashMap::new(),
            order: VecDeque::new(),
            last: None,
        }
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window_ns = window.as_nanos() as u64;
    }

    /// The sequence stored under `id` inside the window.
    pub fn seen(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    pub fn record(&mut self, id: &str, seq: u64, now_ns: u64) {
        self.last = Some(id.to_string());
        if self.window_ns == 0 {
            return;
        }
        if self.order.len() >= IDS_MAX {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.to_string(), seq);
        self.order.push_back((now_ns, id.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Forgets ids of messages above `seq` (lost in a failed write).
    pub fn forget_above(&mut self, seq: u64) {
        self.ids.retain(|_, s| *s <= seq);
        let ids = &self.ids;
        self.order.retain(|(_, id)| ids.contains_key(id));
    }

    /// The id of the newest message that carried one.
    pub fn last_id(&self) -> Option<String> {
        self.last.clone()
    }

    /// Forgets ids older than the window.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some((t, _)) = self.order.front() {
            if now_ns.saturating_sub(*t) < self.window_ns {
                break;
            }
            let (_, id) = self.order.pop_front().expect("front exists");
            self.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_for_the_window() {
        let mut d = Dedupe::new(Duration::from_secs(1));
        d.record("a", 1, 0);
        assert_eq!(d.seen("a"), Some(1));
        d.expire(999_999_999);
        assert_eq!(d.seen("a"), Some(1));
        d.expire(1_000_000_000);
        assert_eq!(d.seen("a"), None);
    }

    #[test]
    fn ids_of_lost_messages_are_forgotten() {
        let mut d = Dedupe::new(Duration::from_secs(60));
        d.record("a", 1, 0);
        d.record("b", 2, 0);
        d.forget_above(1);
        assert_eq!(d.seen("a"), Some(1));
        assert_eq!(d.seen("b"), None);
    }
}
