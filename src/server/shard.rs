//! One shard's state: its clients, one sublist per account (local subscriptions and
//! the interest of peer shards), the links to its peers, and the routing of every
//! message published on it.

use crate::server::accounts::AccountId;
use crate::server::client::Client;
use crate::server::interest::{Interest, InternalSub, RemoteInterest, Subscription};
use crate::server::link::{Item, Link, ShardMsg};
use crate::server::stats::{ShardCounters, ShardQuery, ShardReport};
use crate::server::Server;
use crate::sublist::Sublist;
use ahash::AHashMap;
use bytes::Bytes;
use natrix_shards::WaitSet;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;

type InterestKey = (AccountId, Bytes, Option<Bytes>);

/// A message as the router sees it. `backing`, when present, holds the bytes the
/// slices point into, so that forwarding to a peer shard copies nothing.
pub struct Msg<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub header_len: usize,
    pub payload: &'a [u8],
    pub backing: Option<&'a Bytes>,
}

impl Msg<'_> {
    fn bytes(&self, part: &[u8]) -> Bytes {
        match self.backing {
            Some(b) => b.slice_ref(part),
            None => Bytes::copy_from_slice(part),
        }
    }
}

pub struct Shard {
    this: Weak<Shard>,
    pub id: usize,
    pub count: usize,
    pub server: Arc<Server>,
    pub clients: RefCell<AHashMap<u64, Rc<Client>>>,
    pub counters: ShardCounters,
    sublists: RefCell<Vec<Sublist<Interest>>>,
    local_interest: RefCell<AHashMap<InterestKey, u32>>,
    remote_interest: RefCell<AHashMap<(usize, InterestKey), Rc<RemoteInterest>>>,
    links: Vec<Link>,
    /// Interest changes this shard knows of: its own announcements plus those it
    /// applied from peers. Equal to the server's epoch when nothing is in flight.
    epoch_known: Cell<u64>,
    epoch_waiters: WaitSet,
    rng: Cell<u64>,
}

impl Shard {
    pub fn new(id: usize, count: usize, server: Arc<Server>) -> Rc<Shard> {
        Rc::new_cyclic(|this| Shard::build(this.clone(), id, count, server))
    }

    fn build(this: Weak<Shard>, id: usize, count: usize, server: Arc<Server>) -> Shard {
        let sublists = (0..server.accounts.len()).map(|_| Sublist::new()).collect();
        Shard {
            this,
            id,
            count,
            server,
            clients: RefCell::default(),
            counters: ShardCounters::default(),
            sublists: RefCell::new(sublists),
            local_interest: RefCell::default(),
            remote_interest: RefCell::default(),
            links: (0..count).map(|_| Link::default()).collect(),
            epoch_known: Cell::new(0),
            epoch_waiters: WaitSet::default(),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1)),
        }
    }

    pub fn this(&self) -> Option<Rc<Shard>> {
        self.this.upgrade()
    }

    pub fn link(&self, peer: usize) -> &Link {
        &self.links[peer]
    }

    pub fn peers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).filter(move |p| *p != self.id)
    }

    // ----- interest -------------------------------------------------------------

    /// Adds a local entry (client subscription or internal service) and tells the
    /// peers when it is the first for its subject and queue, or when a queue
    /// group's weight changes. Returns true when the peers were told.
    pub fn add_interest(
        &self,
        account: AccountId,
        subject: &Bytes,
        queue: Option<&Bytes>,
        entry: Interest,
    ) -> bool {
        self.sublists.borrow_mut()[account.index()].insert(subject, queue.map(|q| &q[..]), entry);
        let key = (account, subject.clone(), queue.cloned());
        let weight = {
            let mut counts = self.local_interest.borrow_mut();
            let n = counts.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        if weight > 1 && queue.is_none() {
            return false;
        }
        self.announce(|| Item::Sub {
            account,
            subject: subject.clone(),
            queue: queue.cloned(),
            weight,
        });
        true
    }

    pub fn remove_interest(
        &self,
        account: AccountId,
        subject: &Bytes,
        queue: Option<&Bytes>,
        entry: &Interest,
    ) -> bool {
        let removed = self.sublists.borrow_mut()[account.index()].remove(
            subject,
            queue.map(|q| &q[..]),
            entry,
        );
        if !removed {
            return false;
        }
        let key = (account, subject.clone(), queue.cloned());
        let weight = {
            let mut counts = self.local_interest.borrow_mut();
            let n = counts.get_mut(&key).expect("counted when added");
            *n -= 1;
            let n = *n;
            if n == 0 {
                counts.remove(&key);
            }
            n
        };
        if weight > 0 && queue.is_none() {
            return false;
        }
        if weight == 0 {
            self.announce(|| Item::Unsub {
                account,
                subject: subject.clone(),
                queue: queue.cloned(),
            });
        } else {
            self.announce(|| Item::Sub {
                account,
                subject: subject.clone(),
                queue: queue.cloned(),
                weight,
            });
        }
        true
    }

    fn announce(&self, item: impl Fn() -> Item) {
        if self.count == 1 {
            return;
        }
        for peer in self.peers() {
            self.links[peer].push(item());
        }
        self.epoch_known.set(self.epoch_known.get() + 1);
        self.server.interest_epoch.fetch_add(1, Ordering::Release);
    }

    fn applied_from_peer(&self) {
        self.epoch_known.set(self.epoch_known.get() + 1);
        self.epoch_waiters.wake_all();
    }

    /// Waits until this shard has applied every interest change announced so far on
    /// any shard, so that a publish routed after it sees every subscription made
    /// before it, as on a server with one subscription index. One atomic load when
    /// nothing is in flight.
    pub async fn interest_current(&self) {
        let epoch = self.server.interest_epoch.load(Ordering::Acquire);
        if self.epoch_known.get() >= epoch {
            return;
        }
        self.epoch_waiters
            .wait_until(|| self.epoch_known.get() >= epoch)
            .await
    }

    /// Waits while any link has more pending than it may hold.
    pub async fn backpressure(&self) {
        for peer in self.peers() {
            self.links[peer].drained().await;
        }
    }

    // ----- routing ---------------------------------------------------------------

    /// Delivers a message published on this shard: to matching local entries and,
    /// once each, to peer shards with interest. True when anybody had interest.
    pub fn route(&self, from: Option<&Client>, account: AccountId, msg: &Msg) -> bool {
        let matched = self.sublists.borrow_mut()[account.index()].matches(msg.subject);
        if matched.is_empty() {
            return false;
        }
        let mut peers_plain: u64 = 0;
        let mut peer_queues: Vec<(usize, Bytes)> = Vec::new();
        let mut delivered = false;
        for entry in &matched.plain {
            match entry {
                Interest::Remote(r) => peers_plain |= 1 << r.shard,
                _ => delivered |= self.deliver(from, entry, account, msg),
            }
        }
        for (queue, members) in &matched.queues {
            match self.pick(members) {
                Some(Interest::Remote(r)) => peer_queues.push((r.shard, queue.clone())),
                Some(entry) => delivered |= self.deliver(from, entry, account, msg),
                None => {}
            }
        }
        if peers_plain == 0 && peer_queues.is_empty() {
            return delivered;
        }
        self.forward(account, msg, peers_plain, peer_queues);
        true
    }

    fn forward(&self, account: AccountId, msg: &Msg, plain: u64, queues: Vec<(usize, Bytes)>) {
        let subject = msg.bytes(msg.subject);
        let reply = msg.reply.map(|r| msg.bytes(r));
        let payload = msg.bytes(msg.payload);
        for peer in self.peers() {
            let peer_queues: Vec<Bytes> = queues
                .iter()
                .filter(|(p, _)| *p == peer)
                .map(|(_, q)| q.clone())
                .collect();
            if plain & (1 << peer) == 0 && peer_queues.is_empty() {
                continue;
            }
            self.links[peer].push(Item::Msg(ShardMsg {
                account,
                subject: subject.clone(),
                reply: reply.clone(),
                header_len: msg.header_len,
                payload: payload.clone(),
                queues: peer_queues,
            }));
        }
    }

    /// One member of a queue group, chosen at random in proportion to weight.
    fn pick<'a>(&self, members: &'a [Interest]) -> Option<&'a Interest> {
        let total: u64 = members.iter().map(|m| m.weight() as u64).sum();
        if total == 0 {
            return None;
        }
        let mut at = self.random() % total;
        for m in members {
            let w = m.weight() as u64;
            if at < w {
                return Some(m);
            }
            at -= w;
        }
        None
    }

    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    fn deliver(
        &self,
        from: Option<&Client>,
        entry: &Interest,
        account: AccountId,
        msg: &Msg,
    ) -> bool {
        match entry {
            Interest::Local(sub) => self.deliver_to_subscription(from, sub, msg),
            Interest::Internal(svc) => {
                crate::server::sys::handle(self, svc, account, msg);
                true
            }
            Interest::Remote(_) => false,
        }
    }

    fn deliver_to_subscription(
        &self,
        from: Option<&Client>,
        sub: &Rc<Subscription>,
        msg: &Msg,
    ) -> bool {
        let Some(client) = sub.client.upgrade() else {
            return false;
        };
        if let Some(from) = from {
            if from.cid == client.cid && !from.echo() {
                return false;
            }
        }
        let max = sub.max.get();
        let delivered = sub.delivered.get() + 1;
        if max > 0 && delivered > max {
            return false;
        }
        sub.delivered.set(delivered);
        client.send_msg(self, &sub.sid, msg);
        if max > 0 && delivered == max {
            client.remove_subscription(self, &sub.sid);
        }
        true
    }

    // ----- what peers send --------------------------------------------------------

    pub fn apply_from_peer(&self, peer: usize, item: Item) {
        match item {
            Item::Msg(m) => self.deliver_from_peer(m),
            Item::Sub {
                account,
                subject,
                queue,
                weight,
            } => self.apply_remote_sub(peer, (account, subject, queue), weight),
            Item::Unsub {
                account,
                subject,
                queue,
            } => self.apply_remote_unsub(peer, (account, subject, queue)),
            Item::Query(query, reply) => {
                let _ = reply.send(self.report(&query));
            }
        }
    }

    fn apply_remote_sub(&self, peer: usize, key: InterestKey, weight: u32) {
        let mut remote = self.remote_interest.borrow_mut();
        let map_key = (peer, key);
        self.applied_from_peer();
        if let Some(existing) = remote.get(&map_key) {
            existing.weight.set(weight);
            return;
        }
        let entry = Rc::new(RemoteInterest {
            shard: peer,
            weight: Cell::new(weight),
        });
        let (account, subject, queue) = &map_key.1;
        self.sublists.borrow_mut()[account.index()].insert(
            subject,
            queue.as_deref(),
            Interest::Remote(entry.clone()),
        );
        remote.insert(map_key, entry);
    }

    fn apply_remote_unsub(&self, peer: usize, key: InterestKey) {
        self.applied_from_peer();
        let Some(entry) = self
            .remote_interest
            .borrow_mut()
            .remove(&(peer, key.clone()))
        else {
            return;
        };
        let (account, subject, queue) = key;
        self.sublists.borrow_mut()[account.index()].remove(
            &subject,
            queue.as_deref(),
            &Interest::Remote(entry),
        );
    }

    /// A message a peer forwarded: local subscribers only (one hop), and one local
    /// member of each queue group the peer chose this shard for.
    fn deliver_from_peer(&self, m: ShardMsg) {
        let msg = Msg {
            subject: &m.subject,
            reply: m.reply.as_deref(),
            header_len: m.header_len,
            payload: &m.payload,
            backing: None,
        };
        let matched = self.sublists.borrow_mut()[m.account.index()].matches(&m.subject);
        for entry in &matched.plain {
            self.deliver(None, entry, m.account, &msg);
        }
        for queue in &m.queues {
            let Some((_, members)) = matched.queues.iter().find(|(q, _)| q == queue) else {
                continue;
            };
            let local: Vec<Interest> = members
                .iter()
                .filter(|e| !matches!(e, Interest::Remote(_)))
                .cloned()
                .collect();
            if let Some(entry) = self.pick(&local) {
                self.deliver(None, entry, m.account, &msg);
            }
        }
    }

    // ----- internal services ---------------------------------------------------------

    pub fn add_internal(&self, account: AccountId, subject: &str, sub: InternalSub) {
        let subject = Bytes::copy_from_slice(subject.as_bytes());
        self.add_interest(account, &subject, None, Interest::Internal(Rc::new(sub)));
    }

    // ----- monitoring ------------------------------------------------------------------

    pub fn report(&self, query: &ShardQuery) -> ShardReport {
        crate::server::stats::report(self, query)
    }

    pub fn sublist_stats(&self) -> crate::sublist::SublistStats {
        let lists = self.sublists.borrow();
        let mut total = crate::sublist::SublistStats::default();
        for s in lists.iter().map(|l| l.stats()) {
            total.inserts += s.inserts;
            total.removes += s.removes;
            total.matches += s.matches;
            total.cache_hits += s.cache_hits;
            total.cache_entries += s.cache_entries;
        }
        total
    }

    /// Local subscriptions, as (account, subject, queue, sid, cid, msgs).
    pub fn local_subscriptions(&self) -> Vec<crate::server::stats::SubInfo> {
        let mut out = Vec::new();
        let lists = self.sublists.borrow();
        for (index, list) in lists.iter().enumerate() {
            let account = AccountId(index as u32);
            list.for_each(|subject, queue, entry| match entry {
                Interest::Local(sub) => out.push(crate::server::stats::SubInfo {
                    account: self.server.accounts.name(account).to_string(),
                    subject: String::from_utf8_lossy(subject).into_owned(),
                    queue: queue.map(|q| String::from_utf8_lossy(q).into_owned()),
                    sid: String::from_utf8_lossy(&sub.sid).into_owned(),
                    cid: sub.client.upgrade().map_or(0, |c| c.cid),
                    msgs: sub.delivered.get(),
                }),
                Interest::Internal(_) => out.push(crate::server::stats::SubInfo {
                    account: self.server.accounts.name(account).to_string(),
                    subject: String::from_utf8_lossy(subject).into_owned(),
                    queue: None,
                    sid: String::new(),
                    cid: 0,
                    msgs: 0,
                }),
                Interest::Remote(_) => {}
            });
        }
        out
    }
}
