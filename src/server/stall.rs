//! Stalling fast producers, as nats-server does: a client whose publishes leave a
//! consumer above half its max_pending waits a little after that read, so that TCP
//! backpressure slows it to the consumer's pace instead of the consumer being
//! dropped. Each stalled destination costs 2 to 5 ms (more the fuller it is), at
//! most 10 ms per read in all, ending early when the destination drains. Only a
//! client's own read loop waits: deliveries from routes, peer shards and internal
//! services never do.
//!
//! A consumer on another shard cannot be seen from here; each shard keeps a count
//! of its own consumers above half their max_pending in `Pressure`, and a producer
//! that forwarded to a shard under pressure polls that count for the same bounds.
//! The count is per shard, not per consumer: a producer may wait for a consumer on
//! that shard that its own messages do not reach. It also waits while what it
//! sent a peer shard and that shard has not applied yet passes half of
//! max_pending, as it would for a route's backlog: without that bound a burst can
//! reach the peer all at once, before its count says anything.

use crate::server::client::Client;
use crate::server::shard::Shard;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const STALL_MIN: Duration = Duration::from_millis(2);
pub const STALL_MAX: Duration = Duration::from_millis(5);
pub const STALL_TOTAL: Duration = Duration::from_millis(10);
/// How often a producer stalled on another shard looks at its pressure again.
const PEER_POLL: Duration = Duration::from_millis(1);

/// What a producer on one shard can know of consumers on another: per shard, its
/// consumers above half their max_pending (written by that shard), and per
/// ordered pair of shards, the message bytes sent and not yet applied.
pub struct Pressure {
    shards: Box<[AtomicU32]>,
    in_flight: Box<[AtomicUsize]>,
    count: usize,
}

impl Pressure {
    pub fn new(shards: usize) -> Pressure {
        Pressure {
            shards: (0..shards).map(|_| AtomicU32::new(0)).collect(),
            in_flight: (0..shards * shards).map(|_| AtomicUsize::new(0)).collect(),
            count: shards,
        }
    }

    pub fn sent(&self, from: usize, to: usize, bytes: usize) {
        self.in_flight[from * self.count + to].fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn applied(&self, from: usize, to: usize, bytes: usize) {
        self.in_flight[from * self.count + to].fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes `from` handed its queue to `to` that `to` has not applied yet.
    pub fn in_flight(&self, from: usize, to: usize) -> usize {
        self.in_flight[from * self.count + to].load(Ordering::Relaxed)
    }

    pub fn raise(&self, shard: usize) {
        self.shards[shard].fetch_add(1, Ordering::Relaxed);
    }

    pub fn lower(&self, shard: usize) {
        self.shards[shard].fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether any shard in `mask` has a consumer under pressure.
    pub fn any(&self, mut mask: u64) -> bool {
        while mask != 0 {
            let shard = mask.trailing_zeros() as usize;
            if self.shards[shard].load(Ordering::Relaxed) > 0 {
                return true;
            }
            mask &= mask - 1;
        }
        false
    }
}

/// What one producer's current read ran into: local consumers above half their
/// max_pending, and the peer shards it forwarded to.
#[derive(Default)]
pub struct Stall {
    local: RefCell<Vec<Weak<Client>>>,
    peers: Cell<u64>,
}

impl Stall {
    pub fn note_local(&self, dest: &Rc<Client>) {
        let mut local = self.local.borrow_mut();
        if !local
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Rc::as_ptr(dest)))
        {
            local.push(Rc::downgrade(dest));
        }
    }

    pub fn note_peers(&self, mask: u64) {
        self.peers.set(self.peers.get() | mask);
    }

    /// Forgets what was noted (the producer is gone).
    pub fn clear(&self) {
        self.local.borrow_mut().clear();
        self.peers.set(0);
    }
}

/// How long one destination may stall a producer: 2 ms just above half of
/// max_pending, 2 ms more per tenth of that half beyond it, 5 ms at most.
pub fn duration(backlog: usize, max_pending: usize) -> Duration {
    let half = max_pending / 2;
    if backlog >= max_pending {
        return STALL_MAX;
    }
    let steps = backlog.saturating_sub(half) / (half / 10).max(1);
    (STALL_MIN + STALL_MIN * steps as u32).min(STALL_MAX)
}

/// After a producer's read: waits, within the bounds above, for what it noted.
/// Returns at once (two loads) when it noted nothing.
pub async fn wait(shard: &Shard, stall: &Stall) {
    if stall.peers.get() == 0 && stall.local.borrow().is_empty() {
        return;
    }
    let local = std::mem::take(&mut *stall.local.borrow_mut());
    let peers = stall.peers.replace(0);
    let deadline = Instant::now() + STALL_TOTAL;
    let mut stalled = false;
    for dest in local.iter().filter_map(Weak::upgrade) {
        stalled |= wait_local(&dest, deadline).await;
    }
    let mut peers = peers;
    while peers != 0 {
        let peer = peers.trailing_zeros() as usize;
        peers &= peers - 1;
        stalled |= wait_peer(shard, peer, deadline).await;
    }
    if stalled {
        let stalls = &shard.counters.stalls;
        stalls.set(stalls.get() + 1);
    }
}

/// True when it had to wait.
async fn wait_local(dest: &Client, deadline: Instant) -> bool {
    let (backlog, max) = (dest.backlog(), dest.max_pending());
    if backlog <= max / 2 || dest.is_closed() {
        return false;
    }
    let ttl = duration(backlog, max).min(deadline.saturating_duration_since(Instant::now()));
    if ttl.is_zero() {
        return false;
    }
    futures_lite::future::or(
        dest.wait_backlog_at_most(max / 2),
        glommio::timer::sleep(ttl),
    )
    .await;
    true
}

/// A peer shard is busy while what we sent it and it has not applied passes half
/// of max_pending (as a route's backlog would), or one of its consumers does.
fn peer_stall(shard: &Shard, peer: usize) -> Option<Duration> {
    let pressure = &shard.server.pressure;
    let max = shard.server.opts.max_pending;
    let backlog = pressure.in_flight(shard.id, peer) + shard.link(peer).pending_bytes();
    if pressure.any(1 << peer) {
        Some(STALL_MAX)
    } else if backlog > max / 2 {
        Some(duration(backlog, max))
    } else {
        None
    }
}

/// True when it had to wait; polls, as the peer cannot wake us.
async fn wait_peer(shard: &Shard, peer: usize, deadline: Instant) -> bool {
    let Some(ttl) = peer_stall(shard, peer) else {
        return false;
    };
    let until = deadline.min(Instant::now() + ttl);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        glommio::timer::sleep(left.min(PEER_POLL)).await;
        if peer_stall(shard, peer).is_none() {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_grows_with_the_backlog() {
        let max = 1000;
        assert_eq!(duration(501, max), STALL_MIN);
        assert_eq!(duration(560, max), Duration::from_millis(4));
        assert_eq!(duration(999, max), STALL_MAX);
        assert_eq!(duration(5000, max), STALL_MAX);
    }

    #[test]
    fn pressure_is_per_shard() {
        let p = Pressure::new(4);
        assert!(!p.any(u64::MAX >> 60));
        p.raise(2);
        assert!(p.any(0b0100));
        assert!(!p.any(0b1011));
        p.lower(2);
        assert!(!p.any(0b1111));
    }
}
