//! One shard's state: its clients, one sublist per account (local subscriptions and
//! the interest of peer shards), the links to its peers, and the routing of every
//! message published on it.

use crate::route::conn::Route;
use crate::route::pool::PoolState;
use crate::route::Routes;
use crate::server::accounts::AccountId;
use crate::server::client::Client;
use crate::server::interest::{Interest, InternalSub, Origin, RemoteInterest, Subscription};
use crate::server::link::{Forward, Item, Link, ShardMsg};
use crate::server::stats::{ShardCounters, ShardQuery, ShardReport};
use crate::server::Server;
use crate::sublist::Sublist;
use ahash::AHashMap;
use bytes::Bytes;
use natrix_shards::{Notify, WaitSet};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub type InterestKey = (AccountId, Bytes, Option<Bytes>);

/// Where a message comes from, which decides where it may go next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hop {
    /// Published by a client of this shard.
    Client,
    /// Arrived over a route (on the routes' shard).
    Route,
    /// Forwarded by a peer shard; first published by one of its clients.
    Shard,
    /// Forwarded by a peer shard; it had arrived there over a route.
    ShardFromRoute,
}

impl Hop {
    /// Whether a message on this hop may go to `entry`.
    fn may_reach(self, entry: &Interest) -> bool {
        match (self, entry) {
            (_, Interest::Local(_) | Interest::Internal(_)) => true,
            (Hop::Client, _) => true,
            (Hop::Route, Interest::Remote(r)) => r.origin == Origin::Clients,
            (Hop::Shard, Interest::Route(_)) => true,
            _ => false,
        }
    }
}

/// Where one message goes beyond this shard's clients.
#[derive(Default)]
struct Plan {
    peers_plain: u64,
    /// Servers the routes' shard must send to for us (no pool connection here).
    route_slots: u64,
    peer_queues: Vec<(usize, Bytes)>,
    routes: Vec<(Weak<Route>, Vec<Bytes>)>,
}

impl Plan {
    fn add_route(&mut self, route: &Weak<Route>, queue: Option<&Bytes>) {
        let at = match self.routes.iter().position(|(r, _)| r.ptr_eq(route)) {
            Some(at) => at,
            None => {
                self.routes.push((route.clone(), Vec::new()));
                self.routes.len() - 1
            }
        };
        if let Some(q) = queue {
            self.routes[at].1.push(q.clone());
        }
    }

    fn is_empty(&self) -> bool {
        self.peers_plain == 0 && self.peer_queues.is_empty() && self.routes.is_empty()
    }
}

/// A message as the router sees it. `backing`, when present, holds the bytes the
/// slices point into, so that forwarding to a peer shard copies nothing.
pub struct Msg<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub header_len: usize,
    pub payload: &'a [u8],
    pub backing: Option<&'a Bytes>,
    /// The subject subscribers see, when it differs from the one routed on (a
    /// JetStream delivery is routed on its deliver subject, shown on its own).
    pub shown: Option<&'a [u8]>,
}

pub struct Shard {
    this: Weak<Shard>,
    pub id: usize,
    pub count: usize,
    pub server: Arc<Server>,
    pub clients: RefCell<AHashMap<u64, Rc<Client>>>,
    pub counters: ShardCounters,
    /// Connections closed on this shard, for `/connz?state=closed`.
    pub closed: crate::server::stats::ClosedConns,
    sublists: RefCell<Vec<Sublist<Interest>>>,
    /// Entries per key on this shard, split by whose interest they are.
    local_interest: RefCell<AHashMap<(Origin, InterestKey), u32>>,
    remote_interest: RefCell<AHashMap<(usize, Origin, InterestKey), Rc<RemoteInterest>>>,
    /// Plain subscriptions of this shard's own clients and services, per key: what
    /// its pool connections announce, ahead of the messages they carry.
    own_plain: RefCell<AHashMap<InterestKey, u32>>,
    /// This shard's own connections to other servers, by route slot (the pool).
    pub pool: RefCell<AHashMap<u8, PoolState>>,
    /// Other servers' pool connections to this shard, read here (`route::pool_in`).
    pub pool_in: RefCell<Vec<Rc<Route>>>,
    /// The routes to other servers; only on shard 0 of a clustered server.
    pub routes: Option<Routes>,
    /// The JetStream meta group; only on shard 0 of a clustered JetStream server.
    pub meta: std::cell::OnceCell<Rc<crate::jetstream::meta::MetaHost>>,
    /// Clustered JetStream (assignments, groups); only on shard 0, with `meta`.
    pub cluster: std::cell::OnceCell<Rc<crate::jetstream::cluster::Cluster>>,
    /// The JetStream streams this shard owns.
    pub js: crate::jetstream::registry::Streams,
    /// Which shard owns each stream; used on shard 0 only.
    pub catalog: crate::jetstream::catalog::Catalog,
    /// Client URLs of every server in the cluster, for INFO's `connect_urls`.
    pub connect_urls: RefCell<std::sync::Arc<Vec<String>>>,
    links: Vec<Link>,
    /// Interest changes this shard knows of: its own announcements plus those it
    /// applied from peers. Equal to the server's epoch when nothing is in flight.
    epoch_known: Cell<u64>,
    epoch_waiters: WaitSet,
    /// Woken whenever interest is added here (push consumers wait for listeners).
    pub interest_added: WaitSet,
    /// A new connection has deadlines (auth timeout, first PING) that the
    /// housekeeping task's current sleep may pass.
    pub housekeeping_due: Notify,
    pub control: crate::server::control::ShardControl,
    accept_task: RefCell<Option<glommio::Task<()>>>,
    rng: Cell<u64>,
}

impl Shard {
    pub fn new(id: usize, count: usize, server: Arc<Server>) -> Rc<Shard> {
        Rc::new_cyclic(|this| Shard::build(this.clone(), id, count, server))
    }

    fn build(this: Weak<Shard>, id: usize, count: usize, server: Arc<Server>) -> Shard {
        let sublists = (0..server.accounts.len()).map(|_| Sublist::new()).collect();
        let routes = if id == 0 { Routes::new(&server) } else { None };
        Shard {
            this,
            id,
            count,
            server,
            clients: RefCell::default(),
            counters: ShardCounters::default(),
            closed: Default::default(),
            sublists: RefCell::new(sublists),
            local_interest: RefCell::default(),
            remote_interest: RefCell::default(),
            own_plain: RefCell::default(),
            pool: RefCell::default(),
            pool_in: RefCell::default(),
            routes,
            meta: std::cell::OnceCell::new(),
            cluster: std::cell::OnceCell::new(),
            js: Default::default(),
            catalog: Default::default(),
            connect_urls: RefCell::default(),
            links: (0..count).map(|_| Link::default()).collect(),
            epoch_known: Cell::new(0),
            epoch_waiters: WaitSet::default(),
            interest_added: WaitSet::default(),
            housekeeping_due: Notify::default(),
            control: Default::default(),
            accept_task: RefCell::new(None),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1)),
        }
    }

    pub fn this(&self) -> Option<Rc<Shard>> {
        self.this.upgrade()
    }

    pub fn set_accept_task(&self, task: glommio::Task<()>) {
        *self.accept_task.borrow_mut() = Some(task);
    }

    /// Closes this shard's client listener (lame duck mode).
    pub fn stop_accepting(&self) {
        drop(self.accept_task.borrow_mut().take());
    }

    pub fn link(&self, peer: usize) -> &Link {
        &self.links[peer]
    }

    pub fn peers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).filter(move |p| *p != self.id)
    }

    // ----- interest -------------------------------------------------------------

    /// Adds an entry and tells the peer shards when it is the first of its kind for
    /// its subject and queue, or when a queue group's weight changes.
    pub fn add_interest(
        &self,
        account: AccountId,
        subject: &Bytes,
        queue: Option<&Bytes>,
        entry: Interest,
    ) {
        let origin = entry.origin();
        let own_plain = queue.is_none() && entry.is_own();
        self.sublists.borrow_mut()[account.index()].insert(subject, queue.map(|q| &q[..]), entry);
        let key = (account, subject.clone(), queue.cloned());
        if own_plain {
            self.own_plain_changed(&key, true);
        }
        let weight = {
            let mut counts = self.local_interest.borrow_mut();
            let n = counts.entry((origin, key.clone())).or_insert(0);
            *n += 1;
            *n
        };
        if weight == 1 || queue.is_some() {
            self.announce(origin, &key, weight);
        }
        if origin == Origin::Clients {
            self.client_interest_changed(&key);
        }
        self.interest_added.wake_all();
    }

    pub fn remove_interest(
        &self,
        account: AccountId,
        subject: &Bytes,
        queue: Option<&Bytes>,
        entry: &Interest,
    ) -> bool {
        let origin = entry.origin();
        let removed = self.sublists.borrow_mut()[account.index()].remove(
            subject,
            queue.map(|q| &q[..]),
            entry,
        );
        if !removed {
            return false;
        }
        let key = (account, subject.clone(), queue.cloned());
        if queue.is_none() && entry.is_own() {
            self.own_plain_changed(&key, false);
        }
        let weight = {
            let mut counts = self.local_interest.borrow_mut();
            let n = counts
                .get_mut(&(origin, key.clone()))
                .expect("counted when added");
            *n -= 1;
            let n = *n;
            if n == 0 {
                counts.remove(&(origin, key.clone()));
            }
            n
        };
        if weight == 0 || queue.is_some() {
            self.announce(origin, &key, weight);
        }
        if origin == Origin::Clients {
            self.client_interest_changed(&key);
        }
        true
    }

    /// Counts an own plain subscription; the first and the last of a key go out on
    /// this shard's pool connections, so that a client that subscribes and then
    /// publishes (a request with a fresh inbox) is heard in that order elsewhere.
    fn own_plain_changed(&self, key: &InterestKey, added: bool) {
        if self.server.opts.cluster.is_none() {
            return; // no pool connections, ever
        }
        let announce = {
            let mut counts = self.own_plain.borrow_mut();
            let n = counts.entry(key.clone()).or_insert(0);
            if added {
                *n += 1;
            } else {
                assert!(*n > 0, "an own subscription removed more often than added");
                *n -= 1;
            }
            let n = *n;
            if n == 0 {
                counts.remove(key);
            }
            n == u32::from(added)
        };
        if !announce {
            return;
        }
        let account = self.server.accounts.name(key.0);
        for state in self.pool.borrow().values() {
            if let PoolState::Ready(conn) = state {
                conn.send_interest(account, key, u32::from(added));
            }
        }
    }

    /// Every own plain subscription, on a pool connection about to carry messages.
    pub fn announce_own_plain(&self, conn: &Route) {
        for key in self.own_plain.borrow().keys() {
            conn.send_interest(self.server.accounts.name(key.0), key, 1);
        }
    }

    fn announce(&self, origin: Origin, key: &InterestKey, weight: u32) {
        if self.count == 1 {
            return;
        }
        let (account, subject, queue) = key;
        for peer in self.peers() {
            let item = if weight == 0 {
                Item::Unsub {
                    account: *account,
                    subject: subject.clone(),
                    queue: queue.clone(),
                    origin,
                }
            } else {
                Item::Sub {
                    account: *account,
                    subject: subject.clone(),
                    queue: queue.clone(),
                    weight,
                    origin,
                }
            };
            self.links[peer].push(item);
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

    /// The whole server's client interest in `key` (members, for a queue group),
    /// as routes must hear it. Only the routes' shard asks.
    fn client_weight(&self, key: &InterestKey) -> u32 {
        let local = self
            .local_interest
            .borrow()
            .get(&(Origin::Clients, key.clone()))
            .copied()
            .unwrap_or(0);
        let remote = self.remote_interest.borrow();
        let peers: u32 = self
            .peers()
            .filter_map(|p| remote.get(&(p, Origin::Clients, key.clone())))
            .map(|r| r.weight.get())
            .sum();
        local + peers
    }

    fn client_interest_changed(&self, key: &InterestKey) {
        if let Some(routes) = &self.routes {
            routes.client_interest_changed(self, key, self.client_weight(key));
        }
    }

    /// Waits while any link has more pending than it may hold.
    pub async fn backpressure(&self) {
        for peer in self.peers() {
            self.links[peer].drained().await;
        }
    }

    // ----- routing ---------------------------------------------------------------

    /// Delivers a message a client of this shard published. True when anybody, here
    /// or elsewhere, had interest.
    pub fn route(&self, from: Option<&Client>, account: AccountId, msg: &Msg) -> bool {
        self.dispatch(from, account, msg, Hop::Client, None, u64::MAX)
    }

    /// Delivers a message that arrived over a route: to this server's clients only.
    pub fn route_from_route(&self, account: AccountId, msg: &Msg, queues: &[Bytes]) -> bool {
        self.dispatch(None, account, msg, Hop::Route, Some(queues), u64::MAX)
    }

    /// Routes one message. `hop` says where it came from, which decides where it may
    /// go: a peer shard's message is not forwarded to other shards, a route's
    /// message is not sent to routes (one hop, as between servers). `queues`, for
    /// a message that came from elsewhere, names the queue groups this shard serves;
    /// for a client's own publish every matching group is served. `route_slots` are
    /// the servers whose routes this shard serves for a peer shard's message.
    fn dispatch(
        &self,
        from: Option<&Client>,
        account: AccountId,
        msg: &Msg,
        hop: Hop,
        queues: Option<&[Bytes]>,
        route_slots: u64,
    ) -> bool {
        let matched = self.sublists.borrow_mut()[account.index()].matches(msg.subject);
        if matched.is_empty() {
            return false;
        }
        let mut plan = Plan::default();
        let mut delivered = false;
        for entry in &matched.plain {
            match entry {
                Interest::Local(_) | Interest::Internal(_) => {
                    delivered |= self.deliver(from, entry, account, msg)
                }
                Interest::Remote(r) if hop.may_reach(entry) => self.plan_remote(&mut plan, r, None),
                Interest::Route(r) if hop.may_reach(entry) && route_slots & (1 << r.slot) != 0 => {
                    plan.add_route(&r.route, None)
                }
                _ => {}
            }
        }
        for (queue, members) in &matched.queues {
            if queues.is_some_and(|listed| !listed.contains(queue)) {
                continue;
            }
            match self.pick(members, hop) {
                Some(Interest::Remote(r)) => self.plan_remote(&mut plan, r, Some(queue)),
                Some(Interest::Route(r)) => plan.add_route(&r.route, Some(queue)),
                Some(entry) => delivered |= self.deliver(from, entry, account, msg),
                None => {}
            }
        }
        if plan.is_empty() {
            return delivered;
        }
        let peers = self.forward(account, msg, hop, &plan);
        if let Some(from) = from {
            from.note_peers(peers);
        }
        true
    }

    /// Interest a peer shard holds. Another server's interest goes out through this
    /// shard's own pool connection to that server when it has one; else the routes'
    /// shard sends it. While the pool connection is being made, nothing is sent to
    /// that server, so that its messages never take two paths and overtake each
    /// other (as if its interest had not arrived yet).
    fn plan_remote(&self, plan: &mut Plan, r: &RemoteInterest, queue: Option<&Bytes>) {
        if let (Origin::Server(slot), Some(routes)) = (r.origin, &self.routes) {
            // Announced on a pool connection read on another shard.
            if let Some(route) = routes.route_in_slot(slot) {
                plan.add_route(&route.weak(), queue);
            }
            return;
        }
        if let Origin::Server(slot) = r.origin {
            match self.pool.borrow().get(&slot) {
                Some(PoolState::Ready(conn)) => {
                    plan.add_route(&Rc::downgrade(conn), queue);
                    return;
                }
                Some(PoolState::Connecting) => return,
                Some(PoolState::Failed) | None => plan.route_slots |= 1 << slot,
            }
        }
        match queue {
            Some(q) => plan.peer_queues.push((r.shard, q.clone())),
            None => plan.peers_plain |= 1 << r.shard,
        }
    }

    /// Sends to routes and peer shards; returns the peer shards sent to.
    fn forward(&self, account: AccountId, msg: &Msg, hop: Hop, plan: &Plan) -> u64 {
        for (route, queues) in &plan.routes {
            if let Some(route) = route.upgrade() {
                route.send_msg(self.server.accounts.name(account), msg, queues);
            }
        }
        if plan.peers_plain == 0 && plan.peer_queues.is_empty() {
            return 0;
        }
        let mut sent = 0;
        for peer in self.peers() {
            let peer_queues: Vec<Bytes> = plan
                .peer_queues
                .iter()
                .filter(|(p, _)| *p == peer)
                .map(|(_, q)| q.clone())
                .collect();
            if plan.peers_plain & (1 << peer) == 0 && peer_queues.is_empty() {
                continue;
            }
            sent |= 1 << peer;
            let forward = Forward {
                account,
                queues: peer_queues,
                from_route: hop == Hop::Route,
                route_slots: plan.route_slots,
            };
            self.links[peer].push_msg(msg, forward);
        }
        sent
    }

    /// One member of a queue group, at random in proportion to weight: this
    /// server's clients first, another server's only when there are none.
    fn pick<'a>(&self, members: &'a [Interest], hop: Hop) -> Option<&'a Interest> {
        let eligible = |m: &&Interest| hop.may_reach(m);
        let tier_weight = |route: bool| -> u64 {
            members
                .iter()
                .filter(eligible)
                .filter(|m| m.is_route_kind() == route)
                .map(|m| m.weight() as u64)
                .sum()
        };
        let (route, total) = match tier_weight(false) {
            0 => (true, tier_weight(true)),
            n => (false, n),
        };
        if total == 0 {
            return None;
        }
        let mut at = self.random() % total;
        for m in members
            .iter()
            .filter(eligible)
            .filter(|m| m.is_route_kind() == route)
        {
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
                match &**svc {
                    InternalSub::Sys(service) => {
                        crate::server::sys::handle(self, *service, account, msg)
                    }
                    InternalSub::JetStream(service) => {
                        crate::jetstream::on_internal(self, service, account, msg)
                    }
                }
                true
            }
            Interest::Remote(_) | Interest::Route(_) => false,
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
        if client.send_msg(self, &sub.sid, msg) {
            if let Some(from) = from {
                from.note_pressured(&client);
            }
        }
        if max > 0 && delivered == max {
            client.remove_subscription(self, &sub.sid);
        }
        true
    }

    // ----- what peers send --------------------------------------------------------

    /// Applies one item from shard `peer`; `chunks` holds its batch's messages.
    pub fn apply_from_peer(&self, peer: usize, item: Item, chunks: &[Bytes]) {
        match item {
            Item::Msg(m) => self.deliver_from_peer(&m, chunks),
            Item::Sub {
                account,
                subject,
                queue,
                weight,
                origin,
            } => self.apply_remote_sub(peer, origin, (account, subject, queue), weight),
            Item::Unsub {
                account,
                subject,
                queue,
                origin,
            } => self.apply_remote_unsub(peer, origin, (account, subject, queue)),
            Item::Call(work) => match self.this() {
                Some(me) => work(&me),
                None => tracing::debug!("Dropping a call: the shard is going away"),
            },
        }
    }

    fn apply_remote_sub(&self, peer: usize, origin: Origin, key: InterestKey, weight: u32) {
        self.applied_from_peer();
        let map_key = (peer, origin, key);
        let existing = self.remote_interest.borrow().get(&map_key).cloned();
        match existing {
            Some(entry) => entry.weight.set(weight),
            None => {
                // Another server's interest that this shard cannot serve over a
                // pool connection of its own goes to the routes' shard.
                let holder = match origin {
                    Origin::Clients => peer,
                    Origin::Server(_) => crate::route::ROUTES_SHARD,
                };
                let entry = Rc::new(RemoteInterest {
                    shard: holder,
                    origin,
                    weight: Cell::new(weight),
                });
                let (account, subject, queue) = &map_key.2;
                self.sublists.borrow_mut()[account.index()].insert(
                    subject,
                    queue.as_deref(),
                    Interest::Remote(entry.clone()),
                );
                self.remote_interest
                    .borrow_mut()
                    .insert(map_key.clone(), entry);
            }
        }
        if origin == Origin::Clients {
            self.client_interest_changed(&map_key.2);
        }
        self.interest_added.wake_all();
    }

    fn apply_remote_unsub(&self, peer: usize, origin: Origin, key: InterestKey) {
        self.applied_from_peer();
        let Some(entry) = self
            .remote_interest
            .borrow_mut()
            .remove(&(peer, origin, key.clone()))
        else {
            return;
        };
        let (account, subject, queue) = &key;
        self.sublists.borrow_mut()[account.index()].remove(
            subject,
            queue.as_deref(),
            &Interest::Remote(entry),
        );
        if origin == Origin::Clients {
            self.client_interest_changed(&key);
        }
    }

    /// A message a peer shard forwarded.
    fn deliver_from_peer(&self, m: &ShardMsg, chunks: &[Bytes]) {
        let msg = m.msg(chunks);
        let hop = if m.from_route {
            Hop::ShardFromRoute
        } else {
            Hop::Shard
        };
        self.dispatch(None, m.account, &msg, hop, Some(&m.queues), m.route_slots);
    }

    // ----- internal services ---------------------------------------------------------

    /// Subscribes an internal service; returns the entry, to remove it later.
    pub fn add_internal(&self, account: AccountId, subject: &str, sub: InternalSub) -> Interest {
        let subject = Bytes::copy_from_slice(subject.as_bytes());
        let entry = Interest::Internal(Rc::new(sub));
        self.add_interest(account, &subject, None, entry.clone());
        entry
    }

    /// Whether anybody (here, on a peer shard or beyond a route) listens on `subject`.
    pub fn has_interest(&self, account: AccountId, subject: &[u8]) -> bool {
        !self.sublists.borrow_mut()[account.index()]
            .matches(subject)
            .is_empty()
    }

    /// Runs `work` on shard `peer` (here when it is this shard) and returns its
    /// answer; None when the peer is gone.
    pub async fn call<T: Send + 'static>(
        self: &Rc<Self>,
        peer: usize,
        work: impl FnOnce(Rc<Shard>) -> futures_lite::future::BoxedLocal<T> + Send + 'static,
    ) -> Option<T> {
        if peer == self.id {
            return Some(work(self.clone()).await);
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        let start = move |shard: &Rc<Shard>| {
            let answer = work(shard.clone());
            glommio::spawn_local(async move {
                let _ = tx.send(answer.await);
            })
            .detach();
        };
        self.run_on(peer, start);
        rx.await.ok()
    }

    /// Has shard `peer` run `work`, in order with everything else this shard
    /// sends it.
    pub fn run_on(&self, peer: usize, work: impl FnOnce(&Rc<Shard>) + Send + 'static) {
        debug_assert_ne!(peer, self.id, "work for this shard runs here");
        self.links[peer].push(Item::Call(Box::new(work)));
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
                    max: sub.max.get(),
                }),
                Interest::Internal(_) => out.push(crate::server::stats::SubInfo {
                    account: self.server.accounts.name(account).to_string(),
                    subject: String::from_utf8_lossy(subject).into_owned(),
                    queue: None,
                    sid: String::new(),
                    cid: 0,
                    msgs: 0,
                    max: 0,
                }),
                Interest::Remote(_) | Interest::Route(_) => {}
            });
        }
        out
    }
}
