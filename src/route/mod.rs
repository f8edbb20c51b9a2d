//! Routes between servers of a cluster: the route protocol (`proto`), one route
//! connection (`conn`), and here the registry on the routes' shard (shard 0): the
//! live routes by remote server, the interest announced to them, soliciting with
//! retries, gossip of new servers (so that a seed is enough for a full mesh), and
//! the cluster's client URLs; and which server each configured route reached, so
//! that the JetStream meta group knows its voters (`configured_raft_peers`).

pub mod conn;
pub mod dial;
pub mod pool;
pub mod pool_in;
pub mod proto;
pub mod secure;
pub mod urls;

use crate::server::shard::{InterestKey, Shard};
use crate::server::Server;
use ahash::{AHashMap, AHashSet};
use conn::Route;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info};

/// The shard that holds the routes (and the Raft groups).
pub const ROUTES_SHARD: usize = 0;
/// Pause between attempts to reach a route, growing to this from 100 ms.
const RECONNECT_DELAY_MAX_MS: u64 = 1000;
/// Servers a cluster may have besides this one (route slots; a 64-bit mask).
const SLOTS_MAX: usize = 64;
/// Attempts for a route learned by gossip, at least (configured routes are retried
/// forever; `connect_retries` may allow more).
const IMPLICIT_ATTEMPTS_MAX: u32 = 10;

/// The server a dialed route URL leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reached {
    /// This very server.
    Myself,
    /// Another server, by id.
    Server(String),
}

pub struct Routes {
    pub my_id: String,
    pub cluster_name: RefCell<String>,
    pub dynamic_name: Cell<bool>,
    advertise: Option<String>,
    pub listen_host: String,
    pub listen_port: Cell<u16>,
    /// Route URLs from the config or flags (replaced on reload).
    pub configured: RefCell<Vec<String>>,
    /// Our own client URLs, first in every `connect_urls`.
    pub own_client_urls: Vec<String>,
    pub user: Option<String>,
    pub pass: Option<String>,
    /// Routes run over TLS (`cluster { tls {} }`).
    pub tls: bool,
    conns: RefCell<AHashMap<u64, Rc<Route>>>,
    registered: RefCell<AHashMap<String, Rc<Route>>>,
    /// What the routes have been told: this server's client interest per key.
    announced: RefCell<AHashMap<InterestKey, u32>>,
    /// The remote server in each route slot (slots index route interest on shards).
    slots: RefCell<Vec<Option<String>>>,
    /// host:port of every route URL with a soliciting task.
    soliciting: RefCell<AHashSet<String>>,
    /// What each configured route's host:port turned out to be.
    reached: RefCell<AHashMap<String, Reached>>,
    next_rid: Cell<u64>,
}

impl Routes {
    pub fn new(server: &Server) -> Option<Routes> {
        let cluster = server.opts.cluster.as_ref()?;
        let name = cluster.name.clone();
        let listen_host = cluster.host.clone();
        let auth = cluster.authorization.as_ref();
        Some(Routes {
            my_id: server.id.clone(),
            dynamic_name: Cell::new(name.is_none()),
            cluster_name: RefCell::new(name.unwrap_or_else(|| format!("{}-dyn", &server.id[..8]))),
            advertise: cluster.advertise.clone(),
            listen_host,
            listen_port: Cell::new(cluster.port),
            configured: RefCell::new(cluster.routes.clone()),
            own_client_urls: urls::client_urls(server),
            user: auth.and_then(|a| a.user.clone()),
            pass: auth.and_then(|a| a.password.clone()),
            tls: cluster.tls.is_some(),
            conns: RefCell::default(),
            registered: RefCell::default(),
            announced: RefCell::default(),
            slots: RefCell::new(vec![None; SLOTS_MAX]),
            soliciting: RefCell::default(),
            reached: RefCell::default(),
            next_rid: Cell::new(1),
        })
    }

    /// Our route URL as others should dial it (INFO's `ip`).
    pub fn route_url(&self) -> String {
        match &self.advertise {
            Some(a) => format!("nats-route://{a}/"),
            None => format!(
                "nats-route://{}:{}/",
                urls::dialable_host(&self.listen_host),
                self.listen_port.get()
            ),
        }
    }

    pub fn next_rid(&self) -> u64 {
        let rid = self.next_rid.get();
        self.next_rid.set(rid + 1);
        rid
    }

    pub fn add_conn(&self, shard: &Shard, route: &Rc<Route>) {
        self.conns.borrow_mut().insert(route.rid, route.clone());
        shard.housekeeping_due.notify();
    }

    pub fn registered(&self) -> Vec<Rc<Route>> {
        let mut routes: Vec<_> = self.registered.borrow().values().cloned().collect();
        routes.sort_by_key(|r| r.rid);
        routes
    }

    pub fn is_registered(&self, server_id: &str) -> bool {
        self.registered.borrow().contains_key(server_id)
    }

    /// Registers a route once its remote server is known. A second route to the
    /// same server is a duplicate: both servers keep the one solicited by the
    /// server with the smaller id, so they agree without talking. Returns false
    /// when `route` is the one to close.
    /// The registered route to the server in `slot`.
    /// On the message path: no copy of the server's id.
    pub fn route_in_slot(&self, slot: u8) -> Option<Rc<Route>> {
        let slots = self.slots.borrow();
        let id = slots.get(slot as usize)?.as_ref()?;
        self.registered.borrow().get(id).cloned()
    }

    /// The registered route to the server `id`.
    pub fn registered_route(&self, id: &str) -> Option<Rc<Route>> {
        self.registered.borrow().get(id).cloned()
    }

    pub fn register(
        &self,
        shard: &Shard,
        route: &Rc<Route>,
        remote_id: &str,
        pool_url: Option<String>,
    ) -> bool {
        let existing = self.registered.borrow().get(remote_id).cloned();
        if let Some(old) = existing {
            let keep_new = route.solicited == (self.my_id.as_str() < remote_id);
            if !keep_new {
                debug!(
                    "rid:{} - Detected duplicate remote route {remote_id:?}",
                    route.rid
                );
                return false;
            }
            debug!(
                "rid:{} - Replacing duplicate remote route {remote_id:?}",
                old.rid
            );
            // closing it unregisters it and frees its slot
            old.close(shard, "Duplicate Route");
        }
        let Some(slot) = self.take_slot(remote_id) else {
            tracing::warn!(
                "rid:{} - More than {SLOTS_MAX} servers in the cluster; refusing route",
                route.rid
            );
            return false;
        };
        route.slot.set(Some(slot));
        self.registered
            .borrow_mut()
            .insert(remote_id.to_string(), route.clone());
        if let Some(url) = pool_url {
            self.dial_pool(shard, slot, &url);
        }
        self.send_all_interest(route);
        self.publish_connect_urls(shard);
        true
    }

    /// Housekeeping for every route connection (handshake timeout, keep-alive).
    /// Returns when a route next needs a look.
    pub fn tick(&self, shard: &Shard, now: std::time::Instant) -> Option<std::time::Instant> {
        let conns: Vec<Rc<Route>> = self.conns.borrow().values().cloned().collect();
        conns
            .iter()
            .filter_map(|route| route.tick(shard, now))
            .min()
    }

    /// Forgets a closed route (registered or not).
    /// Closes every route connection but `rid`'s.
    pub fn close_all_except(&self, shard: &Shard, rid: u64, reason: &str) {
        let others: Vec<Rc<conn::Route>> = self
            .conns
            .borrow()
            .values()
            .filter(|r| r.rid != rid)
            .cloned()
            .collect();
        for r in others {
            r.close(shard, reason);
        }
    }

    pub fn remove(&self, shard: &Shard, route: &Route) {
        self.conns.borrow_mut().remove(&route.rid);
        let remote_id = route.remote_id();
        let mut registered = self.registered.borrow_mut();
        let was = remote_id
            .as_ref()
            .is_some_and(|id| registered.get(id).is_some_and(|r| r.rid == route.rid));
        if was {
            registered.remove(remote_id.as_deref().unwrap_or_default());
            drop(registered);
            if let Some(slot) = route.slot.get() {
                self.slots.borrow_mut()[slot as usize] = None;
                for peer in shard.peers() {
                    shard.run_on(peer, move |shard: &Rc<Shard>| pool::forget(shard, slot));
                }
            }
            self.publish_connect_urls(shard);
        }
    }

    /// A dialed route URL (`host:port`) led to `reached`.
    pub fn reached(&self, host_port: &str, reached: Reached) {
        self.reached
            .borrow_mut()
            .insert(host_port.to_string(), reached);
    }

    /// The registered route to the natrix server with Raft node id `node`.
    pub fn raft_route(&self, node: crate::raft::NodeId) -> Option<Rc<Route>> {
        self.registered
            .borrow()
            .values()
            .find(|r| r.remote().and_then(|s| s.raft_node) == Some(node))
            .cloned()
    }

    /// The Raft nodes of every connected server that advertises one: (node, name,
    /// whether its meta group existed when it connected).
    pub fn connected_raft_peers(&self) -> Vec<(crate::raft::NodeId, String, bool)> {
        let mut peers: Vec<_> = self
            .registered
            .borrow()
            .values()
            .filter_map(|r| r.remote())
            .filter_map(|remote| Some((remote.raft_node?, remote.name, remote.meta_member)))
            .collect();
        peers.sort();
        peers.dedup();
        peers
    }

    /// Once every configured route has reached a server that is connected now (or
    /// this server itself): the Raft nodes among those servers, with their names.
    /// None while any is still unknown or not connected.
    pub fn configured_raft_peers(&self) -> Option<Vec<(crate::raft::NodeId, String, bool)>> {
        let reached = self.reached.borrow();
        let registered = self.registered.borrow();
        let mut peers = Vec::new();
        for url in self.configured.borrow().iter() {
            let target = urls::route_target(url)?;
            match reached.get(&target.host_port)? {
                Reached::Myself => {}
                Reached::Server(id) => {
                    let remote = registered.get(id)?.remote()?;
                    if let Some(node) = remote.raft_node {
                        if !peers.iter().any(|(n, _, _)| *n == node) {
                            peers.push((node, remote.name, remote.meta_member));
                        }
                    }
                }
            }
        }
        Some(peers)
    }

    fn take_slot(&self, remote_id: &str) -> Option<u8> {
        let mut slots = self.slots.borrow_mut();
        let free = slots.iter().position(Option::is_none)?;
        slots[free] = Some(remote_id.to_string());
        Some(free as u8)
    }

    /// Asks every other shard to dial its own connection to a natrix peer, so that
    /// messages leave this server from the shard that received them.
    fn dial_pool(&self, shard: &Shard, slot: u8, url: &str) {
        let Some(target) = urls::route_target(url) else {
            return;
        };
        for peer in shard.peers() {
            let connect = conn::connect_json(self, &target, &self.my_id, Some(peer));
            let url = target.host_port.clone();
            shard.run_on(peer, move |shard: &Rc<Shard>| {
                pool::dial(shard, slot, url, connect)
            });
        }
    }

    fn send_all_interest(&self, route: &Route) {
        let announced = self.announced.borrow();
        route.send_interest_snapshot(&announced);
    }

    /// This server's client interest in `key` changed to `weight`; tell the routes
    /// when that changes what they know (first or last entry, a queue's weight).
    pub fn client_interest_changed(&self, shard: &Shard, key: &InterestKey, weight: u32) {
        let old = {
            let mut announced = self.announced.borrow_mut();
            let old = announced.get(key).copied().unwrap_or(0);
            if weight == 0 {
                announced.remove(key);
            } else {
                announced.insert(key.clone(), weight);
            }
            old
        };
        let queue = key.2.is_some();
        let changed = if queue {
            old != weight
        } else {
            (old == 0) != (weight == 0)
        };
        if !changed {
            return;
        }
        let account = shard.server.accounts.name(key.0);
        for route in self.registered.borrow().values() {
            route.send_interest(account, key, weight);
        }
    }

    /// Tells every other route about a newly registered server (its INFO as it
    /// sent it), so that they connect to it too.
    pub fn gossip(&self, from: &Route, info_json: &[u8]) {
        for route in self.registered.borrow().values() {
            if route.rid != from.rid {
                route.send_info(info_json);
            }
        }
    }

    /// The client URLs of every server in the cluster, this one first.
    pub fn connect_urls(&self) -> Vec<String> {
        let mut urls = self.own_client_urls.clone();
        for route in self.registered() {
            for url in route.remote_connect_urls() {
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
        }
        urls
    }

    /// Publishes the cluster's client URLs to every shard (and so to clients).
    pub fn publish_connect_urls(&self, shard: &Shard) {
        let urls = Arc::new(self.connect_urls());
        if *shard.connect_urls.borrow() == urls {
            return;
        }
        for peer in shard.peers() {
            let urls = urls.clone();
            shard.run_on(peer, move |shard: &Rc<Shard>| {
                crate::server::client::connect_urls_changed(shard, urls)
            });
        }
        crate::server::client::connect_urls_changed(shard, urls);
    }

    /// Starts a task that dials `url` (and redials it when the route drops).
    pub fn solicit(&self, shard: &Rc<Shard>, url: &str, configured: bool) {
        let Some(target) = urls::route_target(url) else {
            tracing::warn!("Ignoring bad route URL {url:?}");
            return;
        };
        if !self
            .soliciting
            .borrow_mut()
            .insert(target.host_port.clone())
        {
            return;
        }
        glommio::spawn_local(solicit_loop(shard.clone(), target, configured)).detach();
    }

    /// A reload named these routes: dial the new ones.
    pub fn reload_configured(&self, shard: &Rc<Shard>, urls: &[String]) {
        let added: Vec<String> = {
            let current = self.configured.borrow();
            urls.iter()
                .filter(|u| !current.contains(u))
                .cloned()
                .collect()
        };
        *self.configured.borrow_mut() = urls.to_vec();
        for url in added {
            info!("Reload: soliciting new route {url}");
            self.solicit(shard, &url, true);
        }
    }

    /// Tells the other servers that we are going away, so that they stop handing
    /// out our client URLs.
    pub fn announce_lame_duck(&self, shard: &Shard) {
        let mut info = conn::route_info(shard, self);
        info.ldm = true;
        let info = info.json();
        for route in self.registered.borrow().values() {
            route.send_info(info.as_bytes());
        }
    }

    fn stop_soliciting(&self, host_port: &str) {
        self.soliciting.borrow_mut().remove(host_port);
    }
}

async fn solicit_loop(shard: Rc<Shard>, target: urls::RouteTarget, configured: bool) {
    let mut delay_ms = 100;
    let mut failures = 0u32;
    let mut known_id: Option<String> = None;
    let opts = &shard.server.opts;
    let implicit_attempts = opts
        .cluster
        .as_ref()
        .map_or(0, |c| c.connect_retries.saturating_add(1))
        .max(IMPLICIT_ATTEMPTS_MAX);
    loop {
        let routes = shard.routes.as_ref().expect("routes' shard");
        let connected = known_id
            .as_deref()
            .is_some_and(|id| routes.is_registered(id));
        if !connected {
            match dial::dial(&target.host_port).await {
                Ok(stream) => {
                    let outcome =
                        conn::serve(shard.clone(), stream, Some(target.clone()), configured).await;
                    match outcome {
                        conn::Outcome::SelfRoute => {
                            routes.reached(&target.host_port, Reached::Myself);
                            info!("Detected route to self, ignoring {:?}", target.url);
                            break;
                        }
                        conn::Outcome::Closed { remote_id } => {
                            if remote_id.is_some() {
                                failures = 0;
                                delay_ms = 100;
                            }
                            known_id = remote_id.or(known_id);
                        }
                    }
                }
                Err(why) => {
                    failures += 1;
                    // Once a route has been up, each failure to get it back is news.
                    let every = match known_id {
                        Some(_) => opts.reconnect_error_reports,
                        None => opts.connect_error_reports,
                    };
                    dial::report(failures, every, &why);
                }
            }
        }
        if !configured && failures >= implicit_attempts {
            debug!("Giving up on implicit route {}", target.url);
            break;
        }
        glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
        delay_ms = (delay_ms * 2).min(RECONNECT_DELAY_MAX_MS);
    }
    if let Some(routes) = shard.routes.as_ref() {
        routes.stop_soliciting(&target.host_port);
    }
}
