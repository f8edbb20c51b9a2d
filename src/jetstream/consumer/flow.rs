//! Flow control of a push consumer, as nats-server does it: the server counts the
//! bytes it pushed, asks the client for a flow-control reply once half a window is
//! out, and stops pushing when a whole window is out and unanswered. Each answer
//! doubles the window, up to a limit. Free of I/O.

/// The most bytes a push consumer may have out unanswered (nats-server's figure).
pub const LIMIT_BYTES: u64 = 32 * 1024 * 1024;
/// The first window: a sixteenth of the limit, so a slow client is found early.
const FIRST_WINDOW_BYTES: u64 = LIMIT_BYTES / 16;

#[derive(Debug)]
pub struct FlowControl {
    window_bytes: u64,
    out_bytes: u64,
    asked: Option<Request>,
}

/// An unanswered flow-control request: its reply subject, and the bytes its
/// answer releases.
#[derive(Debug)]
struct Request {
    reply: String,
    releases_bytes: u64,
}

impl Default for FlowControl {
    fn default() -> Self {
        FlowControl {
            window_bytes: FIRST_WINDOW_BYTES,
            out_bytes: 0,
            asked: None,
        }
    }
}

impl FlowControl {
    /// Whether pushing must wait for the client's answer.
    pub fn stalled(&self) -> bool {
        self.out_bytes > self.window_bytes
    }

    /// Counts a pushed message; true when a flow-control request should follow it.
    pub fn on_pushed(&mut self, size_bytes: u64) -> bool {
        self.out_bytes += size_bytes;
        match &mut self.asked {
            None => self.out_bytes > self.window_bytes / 2,
            Some(r) => {
                // Far past the last request: its answer will release this one too.
                if self.out_bytes - r.releases_bytes >= self.window_bytes {
                    r.releases_bytes += size_bytes;
                }
                false
            }
        }
    }

    /// Records the request just sent with reply subject `reply`.
    pub fn asked(&mut self, reply: String) {
        debug_assert!(self.asked.is_none(), "one request out at a time");
        self.asked = Some(Request {
            reply,
            releases_bytes: self.out_bytes,
        });
    }

    /// The reply subject of the request waiting for an answer.
    pub fn waiting_on(&self) -> Option<&str> {
        self.asked.as_ref().map(|r| r.reply.as_str())
    }

    /// An answer arrived on `subject`; true when it was the one awaited.
    pub fn on_answer(&mut self, subject: &str) -> bool {
        let Some(r) = self.asked.take_if(|r| r.reply == subject) else {
            return false;
        };
        self.window_bytes = (self.window_bytes * 2).min(LIMIT_BYTES);
        self.out_bytes = self.out_bytes.saturating_sub(r.releases_bytes);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_at_half_a_window_and_stalls_past_a_window() {
        let mut fc = FlowControl::default();
        let half = FIRST_WINDOW_BYTES / 2;
        assert!(!fc.on_pushed(half));
        assert!(fc.on_pushed(1));
        fc.asked("r1".into());
        assert!(!fc.on_pushed(half - 1));
        assert!(!fc.stalled(), "a whole window may be out");
        assert!(!fc.on_pushed(1));
        assert!(fc.stalled());
        assert_eq!(fc.waiting_on(), Some("r1"));
    }

    #[test]
    fn an_answer_releases_what_was_out_and_widens_the_window() {
        let mut fc = FlowControl::default();
        fc.on_pushed(FIRST_WINDOW_BYTES + 1);
        fc.asked("r1".into());
        assert!(fc.stalled());
        assert!(!fc.on_answer("stale"));
        assert!(fc.stalled());
        assert!(fc.on_answer("r1"));
        assert!(!fc.stalled());
        assert_eq!(fc.waiting_on(), None);
        assert!(!fc.on_pushed(FIRST_WINDOW_BYTES));
        assert!(fc.on_pushed(1), "the window doubled");
    }

    #[test]
    fn the_window_stops_at_the_limit() {
        let mut fc = FlowControl::default();
        for i in 0..10 {
            fc.on_pushed(LIMIT_BYTES);
            fc.asked(format!("r{i}"));
            assert!(fc.on_answer(&format!("r{i}")));
        }
        assert!(!fc.on_pushed(LIMIT_BYTES / 2));
        assert!(fc.on_pushed(1));
    }
}
