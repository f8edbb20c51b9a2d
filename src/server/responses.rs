//! `allow_responses`: a user who may not publish somewhere may still answer the
//! requests it received there, as on nats-server. Each reply subject delivered
//! to it is a grant for `max_msgs` publishes within `expires`. Free of I/O.

use crate::options::ResponsePermission;
use ahash::AHashMap;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Grants kept at most; past it the stale ones are pruned, and if none is
/// stale a new grant is refused (the request goes unanswered) rather than the
/// map growing without bound.
const GRANTS_MAX: usize = 65_536;
/// Grants are pruned after this many new ones or this long, whichever first
/// (nats-server's figures).
const PRUNE_AFTER_GRANTS: usize = 4096;
const PRUNE_AFTER_MS: u64 = 1000;

#[derive(Clone, Copy, Debug)]
struct Grant {
    at: Instant,
    used: u32,
}

#[derive(Debug)]
pub struct ReplyGrants {
    rule: ResponsePermission,
    grants: AHashMap<Bytes, Grant>,
    granted_since_prune: usize,
    last_prune: Instant,
}

impl ReplyGrants {
    pub fn new(rule: ResponsePermission, now: Instant) -> ReplyGrants {
        ReplyGrants {
            rule,
            grants: AHashMap::new(),
            granted_since_prune: 0,
            last_prune: now,
        }
    }

    /// A request with reply subject `reply` was delivered to the user.
    pub fn grant(&mut self, reply: &[u8], now: Instant) {
        self.granted_since_prune += 1;
        let due = now.duration_since(self.last_prune) >= Duration::from_millis(PRUNE_AFTER_MS);
        if self.granted_since_prune > PRUNE_AFTER_GRANTS || due || self.grants.len() >= GRANTS_MAX {
            self.prune(now);
        }
        if self.grants.len() >= GRANTS_MAX {
            return;
        }
        let grant = Grant { at: now, used: 0 };
        self.grants.insert(Bytes::copy_from_slice(reply), grant);
    }

    /// Whether a publish to `subject` answers a request within its grant.
    pub fn allows(&mut self, subject: &[u8], now: Instant) -> bool {
        let rule = self.rule;
        let Some(g) = self.grants.get_mut(subject) else {
            return false;
        };
        g.used += 1;
        if live(&rule, g, now) {
            return true;
        }
        self.grants.remove(subject);
        false
    }

    fn prune(&mut self, now: Instant) {
        let rule = self.rule;
        self.grants.retain(|_, g| {
            let spent = rule.max_msgs > 0 && i64::from(g.used) >= rule.max_msgs;
            let expired = rule
                .expires
                .is_some_and(|ttl| now.duration_since(g.at) > ttl);
            !spent && !expired
        });
        self.granted_since_prune = 0;
        self.last_prune = now;
    }
}

fn live(rule: &ResponsePermission, g: &Grant, now: Instant) -> bool {
    let within_count = rule.max_msgs <= 0 || i64::from(g.used) <= rule.max_msgs;
    let within_time = rule
        .expires
        .is_none_or(|ttl| now.duration_since(g.at) <= ttl);
    within_count && within_time
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(max_msgs: i64, expires_ms: Option<u64>) -> ResponsePermission {
        ResponsePermission {
            max_msgs,
            expires: expires_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn a_grant_allows_max_msgs_answers_within_expires() {
        let t0 = Instant::now();
        let mut g = ReplyGrants::new(rule(2, Some(1000)), t0);
        assert!(!g.allows(b"_INBOX.1", t0), "no request yet");
        g.grant(b"_INBOX.1", t0);
        assert!(g.allows(b"_INBOX.1", t0));
        assert!(g.allows(b"_INBOX.1", t0));
        assert!(!g.allows(b"_INBOX.1", t0), "two answers at most");
        g.grant(b"_INBOX.2", t0);
        let late = t0 + Duration::from_millis(1001);
        assert!(!g.allows(b"_INBOX.2", late), "expired");
    }

    #[test]
    fn unlimited_rules_and_the_bound() {
        let t0 = Instant::now();
        let mut g = ReplyGrants::new(rule(-1, None), t0);
        g.grant(b"r", t0);
        for _ in 0..100 {
            assert!(g.allows(b"r", t0 + Duration::from_secs(3600)));
        }
        for i in 0..GRANTS_MAX + 10 {
            g.grant(format!("r{i}").as_bytes(), t0);
        }
        assert!(g.grants.len() <= GRANTS_MAX, "bounded");
    }
}
