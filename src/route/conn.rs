//! One route connection to another server: the handshake (CONNECT and INFO, cluster
//! name, self and duplicate detection), interest in both directions, and messages
//! (RMSG/HMSG) delivered to this server's clients only; and, between natrix servers
//! that run the JetStream meta group (both advertised `natrix_raft`), Raft frames
//! (RAFT) for that group.

use crate::net::{FrameReader, KeepAlive, KeepAliveStep, Outbound, SharedStream};
use crate::proto::client_parser::ParseError;
use crate::proto::connect::{from_object, RouteConnect};
use crate::proto::encode;
use crate::proto::info::ServerInfo;
use crate::read_loop::Stopped;
use crate::route::proto::{self, RouteOp};
use crate::route::urls::RouteTarget;
use crate::route::{Routes, ROUTES_SHARD};
use crate::server::interest::{Interest, Origin, RemoteInterest, RouteInterest};
use crate::server::shard::{InterestKey, Msg, Shard};
use crate::subject;
use crate::tls::map::CertNames;
use ahash::AHashMap;
use bytes::Bytes;
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, error, info, warn};

/// A route whose backlog passes this is closed rather than allowed to grow.
const ROUTE_PENDING_MAX_BYTES: usize = 256 << 20;

/// What we learned about the server at the other end from its INFO.
#[derive(Clone, Debug, Default)]
pub struct RemoteServer {
    pub id: String,
    pub name: String,
    pub connect_urls: Vec<String>,
    /// Its Raft node id, when it runs the JetStream meta group (`natrix_raft`).
    pub raft_node: Option<crate::raft::NodeId>,
    /// Its meta group existed when it sent its INFO.
    pub meta_member: bool,
}

pub struct Route {
    pub rid: u64,
    pub addr: SocketAddr,
    pub solicited: bool,
    pub configured: bool,
    /// The `host:port` we dialed, for a solicited route.
    dialed: RefCell<Option<String>>,
    /// `verify_and_map`: the names the accepted route's certificate offers.
    cert_names: RefCell<Option<CertNames>>,
    pub start: SystemTime,
    pub last_activity: Cell<SystemTime>,
    remote: RefCell<Option<RemoteServer>>,
    registered: Cell<bool>,
    /// The server id of an inbound connection a peer's shard dialed (a pool
    /// member): it carries that shard's messages and its own clients' plain
    /// interest, so that a subscription reaches us before the shard's next message
    /// does; it is never registered.
    pool_of: RefCell<Option<String>>,
    /// For a pool member: the peer's shard that dialed it.
    pool_shard: Cell<Option<usize>>,
    /// The slot the routes' shard gave the remote server, once registered.
    pub slot: Cell<Option<u8>>,
    closed: Cell<bool>,
    started: std::time::Instant,
    keep_alive: KeepAlive,
    out: Outbound,
    pub in_msgs: Cell<u64>,
    pub in_bytes: Cell<u64>,
    pub out_msgs: Cell<u64>,
    pub out_bytes: Cell<u64>,
    interest: RefCell<AHashMap<InterestKey, Interest>>,
    this: Weak<Route>,
}

/// How a route connection ended, for the task that dialed it.
pub enum Outcome {
    /// It was a route to this very server.
    SelfRoute,
    Closed {
        remote_id: Option<String>,
    },
}

impl Route {
    pub fn remote_id(&self) -> Option<String> {
        self.remote.borrow().as_ref().map(|r| r.id.clone())
    }

    /// A pool connection handed to the shard it serves (`pool_in`).
    pub fn inbound_pool(addr: SocketAddr, server_id: String, slot: u8) -> Rc<Route> {
        let route = Route::new(0, addr, false, false);
        *route.pool_of.borrow_mut() = Some(server_id);
        route.slot.set(Some(slot));
        route
    }

    /// Forgets the connection without closing its socket (which moves elsewhere).
    pub fn detach(&self) {
        self.closed.set(true);
    }

    /// Waits until everything sent so far is written.
    pub async fn written(&self) {
        self.out.wait_backlog_at_most(0).await
    }

    pub fn weak(&self) -> Weak<Route> {
        self.this.clone()
    }

    pub fn pool_shard(&self) -> Option<usize> {
        self.pool_shard.get()
    }

    /// Shuts the socket now: its reader ends and closes the route.
    pub fn shutdown_now(&self) {
        self.out.shutdown_now();
    }

    pub fn pool_server(&self) -> Option<String> {
        self.pool_of.borrow().clone()
    }

    fn is_pool_member(&self) -> bool {
        self.pool_of.borrow().is_some()
    }

    pub fn remote(&self) -> Option<RemoteServer> {
        self.remote.borrow().clone()
    }

    pub fn remote_connect_urls(&self) -> Vec<String> {
        self.remote
            .borrow()
            .as_ref()
            .map(|r| r.connect_urls.clone())
            .unwrap_or_default()
    }

    pub fn subscription_count(&self) -> usize {
        self.interest.borrow().len()
    }

    pub fn subscription_subjects(&self) -> Vec<String> {
        self.interest
            .borrow()
            .keys()
            .map(|(_, s, _)| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// The (account, subject, queue) of each subscription the remote announced.
    pub fn subscription_keys(&self) -> Vec<InterestKey> {
        self.interest.borrow().keys().cloned().collect()
    }

    pub fn pending_bytes(&self) -> usize {
        self.out.pending()
    }

    fn send(&self, bytes: &[u8]) {
        if !self.closed.get() {
            self.out.append(bytes.len(), |b| b.extend_from_slice(bytes));
        }
    }

    pub fn send_info(&self, info_json: &[u8]) {
        let mut line = Vec::with_capacity(info_json.len() + 7);
        line.extend_from_slice(b"INFO ");
        line.extend_from_slice(info_json);
        line.extend_from_slice(b"\r\n");
        self.send(&line);
    }

    pub fn send_interest(&self, account: &str, key: &InterestKey, weight: u32) {
        let (_, subject, queue) = key;
        let mut line = Vec::new();
        if weight == 0 {
            proto::encode_unsub(&mut line, account, subject, queue.as_deref());
        } else {
            proto::encode_sub(
                &mut line,
                account,
                subject,
                queue.as_deref().map(|q| (q, weight)),
            );
        }
        self.send(&line);
    }

    pub fn send_interest_snapshot(&self, shard_accounts: &AHashMap<InterestKey, u32>) {
        for (key, weight) in shard_accounts {
            let account = self.account_name(key);
            self.send_interest(&account, key, *weight);
        }
    }

    fn account_name(&self, key: &InterestKey) -> String {
        ACCOUNT_NAMES.with(|names| {
            names
                .borrow()
                .get(key.0.index())
                .cloned()
                .unwrap_or_default()
        })
    }

    /// Sends one message, with the queue groups the other server serves.
    pub fn send_msg(&self, account: &str, msg: &Msg, queues: &[Bytes]) {
        if self.closed.get() {
            return;
        }
        let queues: Vec<&[u8]> = queues.iter().map(|q| &q[..]).collect();
        let reply = msg.reply.map(|r| (r, proto::shown_on_route(r, msg.shown)));
        let reply_len = reply.map_or(0, |(r, shown)| r.len() + shown.map_or(0, |s| 1 + s.len()));
        let names = account.len() + msg.subject.len() + reply_len;
        let queue_bytes: usize = queues.iter().map(|q| q.len() + 1).sum();
        let need = encode::message_len_max(names + queue_bytes, msg.payload.len());
        let pending = self.out.append(need, |out| {
            proto::encode_msg(
                out,
                account,
                msg.subject,
                reply,
                &queues,
                msg.header_len,
                msg.payload,
            )
        });
        self.out_msgs.set(self.out_msgs.get() + 1);
        self.out_bytes
            .set(self.out_bytes.get() + msg.payload.len() as u64);
        if pending > ROUTE_PENDING_MAX_BYTES {
            warn!(
                "rid:{} - Route backlog over {ROUTE_PENDING_MAX_BYTES} bytes; closing",
                self.rid
            );
            self.out.discard();
            self.closed.set(true);
            self.out.shutdown_now();
        }
    }

    /// Sends one Raft frame (only to a peer that advertised `natrix_raft`).
    pub fn send_raft(&self, frame: &[u8]) {
        if self.closed.get() {
            return;
        }
        let need = encode::message_len_max(0, frame.len());
        self.out.append(need, |out| proto::encode_raft(out, frame));
    }

    /// Called by the housekeeping tick: a route must finish its handshake within
    /// the auth timeout, and answer PINGs (ping_interval, ping_max) like a client.
    /// Returns when the route next needs a look.
    pub fn tick(&self, shard: &Shard, now: Instant) -> Option<Instant> {
        let opts = &shard.server.opts;
        if !self.registered.get() && !self.is_pool_member() {
            let due = self.started + Duration::from_millis(shard.server.auth_timeout_ms());
            if now < due {
                return Some(due);
            }
            warn!(
                "{} - rid:{} - Route handshake timed out",
                self.addr, self.rid
            );
            self.send(b"-ERR 'Authentication Timeout'\r\n");
            self.close(shard, "Authentication Timeout");
            return None;
        }
        match self
            .keep_alive
            .step(now, opts.ping_interval_ms, opts.ping_max)
        {
            KeepAliveStep::WaitUntil(due) => Some(due),
            KeepAliveStep::Ping(due) => {
                self.send(b"PING\r\n");
                Some(due)
            }
            KeepAliveStep::Stale => {
                warn!("{} - rid:{} - Route stale; closing", self.addr, self.rid);
                self.send(b"-ERR 'Stale Connection'\r\n");
                self.close(shard, "Stale Connection");
                None
            }
        }
    }

    /// Ends the route: the interest it brought goes at once.
    pub fn close(&self, shard: &Shard, reason: &str) {
        if self.closed.replace(true) {
            return;
        }
        let entries: Vec<(InterestKey, Interest)> = self.interest.borrow_mut().drain().collect();
        for ((account, subject, queue), entry) in entries {
            shard.remove_interest(account, &subject, queue.as_ref(), &entry);
        }
        if let Some(routes) = shard.routes.as_ref() {
            routes.remove(shard, self);
        }
        info!(
            "{} - rid:{} - Route connection closed: {reason}",
            self.addr, self.rid
        );
        self.out.close();
    }
}

impl Route {
    pub fn new(rid: u64, addr: SocketAddr, solicited: bool, configured: bool) -> Rc<Route> {
        Rc::new_cyclic(|this| Route {
            rid,
            addr,
            solicited,
            configured,
            dialed: RefCell::new(None),
            cert_names: RefCell::new(None),
            start: SystemTime::now(),
            last_activity: Cell::new(SystemTime::now()),
            remote: RefCell::new(None),
            registered: Cell::new(false),
            pool_of: RefCell::new(None),
            pool_shard: Cell::new(None),
            slot: Cell::new(None),
            closed: Cell::new(false),
            started: std::time::Instant::now(),
            keep_alive: KeepAlive::new(Instant::now()),
            out: Outbound::default(),
            in_msgs: Cell::new(0),
            in_bytes: Cell::new(0),
            out_msgs: Cell::new(0),
            out_bytes: Cell::new(0),
            interest: RefCell::default(),
            this: this.clone(),
        })
    }

    /// Attaches the socket and starts the writer task.
    pub fn start_writer(self: &Rc<Self>, stream: &SharedStream) -> glommio::Task<()> {
        self.out.attach(stream);
        let (route, stream) = (self.clone(), stream.clone());
        glommio::spawn_local(async move {
            if let Err(e) = route.out.drain_to(&stream, || {}).await {
                warn!(
                    "{} - rid:{} - Route write failed: {e}",
                    route.addr, route.rid
                );
            }
        })
    }

    pub fn send_line(&self, bytes: &[u8]) {
        self.send(bytes);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Closes a pool connection of this shard (it holds no interest and is in no
    /// registry).
    pub fn close_pool_conn(&self) {
        if !self.closed.replace(true) {
            self.out.close();
        }
    }
}

thread_local! {
    /// Account names by index, for encoding interest snapshots on this shard.
    static ACCOUNT_NAMES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn remember_account_names(shard: &Shard) {
    ACCOUNT_NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if names.is_empty() {
            let accounts = &shard.server.accounts;
            *names = (0..accounts.len())
                .map(|i| {
                    accounts
                        .name(crate::server::accounts::AccountId(i as u32))
                        .to_string()
                })
                .collect();
        }
    });
}

/// The INFO this server sends on routes.
pub fn route_info(shard: &Shard, routes: &Routes) -> ServerInfo {
    let server = &shard.server;
    ServerInfo {
        server_id: server.id.clone(),
        server_name: server.name.clone(),
        version: crate::server::COMPAT_VERSION.to_string(),
        proto: 1,
        go: format!("natrix {}", crate::server::VERSION),
        host: routes.listen_host.clone(),
        port: routes.listen_port.get(),
        headers: true,
        max_payload: server.opts.max_payload as u64,
        cluster: Some(routes.cluster_name.borrow().clone()),
        cluster_dynamic: routes.dynamic_name.get(),
        ip: Some(routes.route_url()),
        connect_urls: routes.own_client_urls.clone(),
        lnoc: true,
        jetstream: Some(false),
        tls_required: routes.tls,
        tls_verify: routes.tls,
        natrix_pool: true,
        natrix_raft: server.raft_node.is_some(),
        natrix_node: server.raft_node,
        natrix_meta: shard.meta.get().is_some_and(|m| m.status().exists),
        tags: server.opts.server_tags.clone(),
        ..Default::default()
    }
}

pub fn info_json(shard: &Shard, routes: &Routes) -> String {
    route_info(shard, routes).json()
}

pub fn connect_json(
    routes: &Routes,
    target: &RouteTarget,
    id: &str,
    pool_shard: Option<usize>,
) -> String {
    let connect = RouteConnect {
        user: Some(
            target
                .user
                .clone()
                .or_else(|| routes.user.clone())
                .unwrap_or_default(),
        ),
        pass: Some(
            target
                .pass
                .clone()
                .or_else(|| routes.pass.clone())
                .unwrap_or_default(),
        ),
        tls_required: routes.tls,
        headers: true,
        name: id.to_string(),
        cluster: Some(routes.cluster_name.borrow().clone()),
        cluster_dynamic: routes.dynamic_name.get(),
        lnoc: true,
        natrix_pool: pool_shard,
        ..Default::default()
    };
    serde_json::to_string(&connect).expect("CONNECT serializes")
}

/// Serves one route connection, dialed by us (`target`) or accepted, until it ends.
pub async fn serve(
    shard: Rc<Shard>,
    stream: TcpStream,
    target: Option<RouteTarget>,
    configured: bool,
) -> Outcome {
    let routes = shard
        .routes
        .as_ref()
        .expect("routes live on the routes' shard");
    remember_account_names(&shard);
    let Ok(addr) = stream.peer_addr() else {
        return Outcome::Closed { remote_id: None };
    };
    let _ = stream.set_nodelay(true);
    let dialed = target.as_ref().map(|t| t.host_port.as_str());
    let Some((stream, cert_names)) =
        super::secure::secure(&shard.server, stream, dialed, addr).await
    else {
        return Outcome::Closed { remote_id: None };
    };
    let route = Route::new(routes.next_rid(), addr, target.is_some(), configured);
    *route.dialed.borrow_mut() = target.as_ref().map(|t| t.host_port.clone());
    *route.cert_names.borrow_mut() = cert_names;
    routes.add_conn(&shard, &route);
    let stream: SharedStream = Rc::new(RefCell::new(stream));
    let writer = route.start_writer(&stream);
    if let Some(target) = &target {
        route.send(
            format!(
                "CONNECT {}\r\n",
                connect_json(routes, target, &shard.server.id, None)
            )
            .as_bytes(),
        );
    }
    route.send_info(info_json(&shard, routes).as_bytes());
    info!("{addr} - rid:{} - Route connection created", route.rid);
    let outcome = read_loop(&shard, &route, &stream, FrameReader::default()).await;
    let outcome = match outcome {
        Err(Stopped {
            stop: Stop::HandOff { to, slot },
            unread,
        }) => {
            super::pool_in::hand_off(&shard, &route, stream, writer, (to, slot), unread).await;
            return Outcome::Closed { remote_id: None };
        }
        other => other.map_err(|stopped| stopped.stop),
    };
    let reason = match &outcome {
        Ok(()) => "Closed".to_string(),
        Err(Stop::SelfRoute) => "Route to self".to_string(),
        Err(Stop::Error(reason)) => reason.clone(),
        Err(Stop::HandOff { .. }) => unreachable!("handed off above"),
    };
    route.close(&shard, &reason);
    writer.await;
    match outcome {
        Err(Stop::SelfRoute) => Outcome::SelfRoute,
        _ => Outcome::Closed {
            remote_id: route.remote_id(),
        },
    }
}

pub enum Stop {
    SelfRoute,
    Error(String),
    /// A pool connection moves to the shard it serves (with the bytes read past
    /// its CONNECT, which `Stopped` holds).
    HandOff {
        to: usize,
        slot: u8,
    },
}

/// The read loop's view of a route or pool connection.
struct RouteProtocol<'a> {
    shard: &'a Rc<Shard>,
    route: &'a Rc<Route>,
    control_line_max: usize,
    payload_max: usize,
    /// Bytes still to drop of an oversized RAFT operation.
    skip: Cell<usize>,
}

impl crate::read_loop::Protocol for RouteProtocol<'_> {
    type Op<'a> = RouteOp<'a>;
    type Stop = Stop;

    fn closed(&self) -> bool {
        self.route.closed.get()
    }

    fn touched(&self) {
        self.route.last_activity.set(SystemTime::now());
    }

    fn skip(&self, available: usize) -> usize {
        let skipped = self.skip.get().min(available);
        self.skip.set(self.skip.get() - skipped);
        skipped
    }

    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<(RouteOp<'a>, usize), ParseError> {
        proto::parse(bytes, self.control_line_max, self.payload_max)
    }

    async fn execute<'op>(&self, op: RouteOp<'op>, chunk: &'op Bytes) -> Result<(), Stop> {
        if let RouteOp::RaftTooLarge { size } = op {
            warn!(
                "{} - rid:{} - Dropping a {size}-byte Raft frame: too large",
                self.route.addr, self.route.rid
            );
            self.skip.set(proto::raft_skip_bytes(size));
            return Ok(());
        }
        handle(self.shard, self.route, op, chunk).await
    }

    fn malformed(&self, error: ParseError) -> Stop {
        error!(
            "{} - rid:{} - Route protocol error: {error:?}; closing",
            self.route.addr, self.route.rid
        );
        self.route.send(b"-ERR 'Unknown Protocol Operation'\r\n");
        Stop::Error("Protocol Violation".into())
    }

    async fn settle(&self) {
        self.shard.backpressure().await;
    }
}

pub async fn read_loop(
    shard: &Rc<Shard>,
    route: &Rc<Route>,
    stream: &SharedStream,
    reader: FrameReader,
) -> Result<(), Stopped<Stop>> {
    let protocol = RouteProtocol {
        shard,
        route,
        control_line_max: shard.server.opts.max_control_line.max(4096),
        payload_max: shard.server.opts.max_payload,
        skip: Cell::new(0),
    };
    crate::read_loop::run(&protocol, stream, reader).await
}

async fn handle(
    shard: &Rc<Shard>,
    route: &Rc<Route>,
    op: RouteOp<'_>,
    chunk: &Bytes,
) -> Result<(), Stop> {
    match (op, shard.routes.as_ref()) {
        (RouteOp::Connect(json), Some(routes)) => {
            check_connect(shard, routes, route, json)?;
            if let Some((to, slot)) = super::pool_in::serving_shard(shard, routes, route) {
                return Err(Stop::HandOff { to, slot });
            }
        }
        (RouteOp::Info(json), Some(routes)) => handle_info(shard, routes, route, json)?,
        // A pool connection read on its own shard was introduced on the routes' shard.
        (RouteOp::Connect(_) | RouteOp::Info(_), None) => {}
        (op, _) => handle_traffic(shard, route, op, chunk).await?,
    }
    Ok(())
}

/// Everything but the handshake: keep-alive, interest, Raft frames and messages.
async fn handle_traffic(
    shard: &Rc<Shard>,
    route: &Rc<Route>,
    op: RouteOp<'_>,
    chunk: &Bytes,
) -> Result<(), Stop> {
    match op {
        RouteOp::Connect(_) | RouteOp::Info(_) => {}
        RouteOp::Ping => route.send(b"PONG\r\n"),
        RouteOp::Pong => route.keep_alive.answered(),
        RouteOp::Ok | RouteOp::Ignored | RouteOp::RaftTooLarge { .. } => {}
        RouteOp::Err(text) => {
            warn!(
                "{} - rid:{} - Route error: {}",
                route.addr,
                route.rid,
                String::from_utf8_lossy(text)
            );
            return Err(Stop::Error("Remote error".into()));
        }
        _ if !route.registered.get() && !route.is_pool_member() => {}
        RouteOp::Sub {
            account,
            subject,
            queue,
        } => add_route_interest(shard, route, account, subject, queue),
        RouteOp::Unsub {
            account,
            subject,
            queue,
        } => remove_route_interest(shard, route, account, subject, queue),
        // A pool connection, or any connection read on a shard without the groups.
        RouteOp::Raft(frame) if route.is_pool_member() || shard.id != ROUTES_SHARD => {
            super::pool::forward_raft(shard, frame)
        }
        RouteOp::Raft(frame) => {
            let node = route.remote().and_then(|r| r.raft_node);
            match (node, shard.meta.get()) {
                (Some(node), Some(host)) => host.on_frame(node, frame.to_vec()),
                _ => debug!(
                    "{} - rid:{} - Dropping a Raft frame: no meta group on both ends",
                    route.addr, route.rid
                ),
            }
        }
        RouteOp::Msg {
            account,
            subject,
            reply,
            queues,
            header_len,
            payload,
        } => {
            route.in_msgs.set(route.in_msgs.get() + 1);
            route
                .in_bytes
                .set(route.in_bytes.get() + payload.len() as u64);
            let Some(account) = lookup_account(shard, account) else {
                return Ok(());
            };
            let queues: Vec<Bytes> = queues.iter().map(|q| chunk.slice_ref(q)).collect();
            let (reply, shown) = match reply.map(proto::split_shown) {
                Some((reply, shown)) => (Some(reply), shown),
                None => (None, None),
            };
            let msg = Msg {
                subject,
                reply,
                header_len,
                payload,
                backing: Some(chunk),
                shown,
            };
            shard.interest_current().await;
            shard.route_from_route(account, &msg, &queues);
        }
    }
    Ok(())
}

fn lookup_account(shard: &Shard, name: &[u8]) -> Option<crate::server::accounts::AccountId> {
    std::str::from_utf8(name)
        .ok()
        .and_then(|n| shard.server.accounts.lookup(n))
}

fn check_connect(shard: &Shard, routes: &Routes, route: &Route, json: &[u8]) -> Result<(), Stop> {
    let v: RouteConnect = from_object(json).map_err(|_| Stop::Error("Bad CONNECT".into()))?;
    if let Some(user) = &routes.user {
        // With `verify_and_map` the certificate names the user, as on nats-server
        // (different certificates may map to the one route user).
        let ok = match route.cert_names.borrow().as_ref() {
            Some(names) => names.names(user),
            None => {
                v.user.as_deref() == Some(user.as_str())
                    && v.pass.as_deref() == routes.pass.as_deref()
            }
        };
        if !ok {
            route.send(b"-ERR 'Authorization Violation'\r\n");
            return Err(Stop::Error("Authorization Violation".into()));
        }
    }
    if let Some(name) = &v.cluster {
        check_cluster_name(shard, routes, route, name, v.cluster_dynamic)?;
    }
    if v.natrix_pool.is_some() {
        *route.pool_of.borrow_mut() = Some(v.name.clone());
        route.pool_shard.set(v.natrix_pool);
    }
    Ok(())
}

/// As nats-server: a server whose name is its own random one takes a configured
/// name, or a greater random one, and drops its other routes, which come back
/// under the new name; so every server of a cluster without a name settles on
/// the same one.
fn check_cluster_name(
    shard: &Shard,
    routes: &Routes,
    route: &Route,
    theirs: &str,
    theirs_dynamic: bool,
) -> Result<(), Stop> {
    let ours = routes.cluster_name.borrow().clone();
    if ours == theirs || theirs.is_empty() {
        return Ok(());
    }
    if routes.dynamic_name.get() && (!theirs_dynamic || ours.as_str() < theirs) {
        info!("Cluster name updated to {theirs}");
        *routes.cluster_name.borrow_mut() = theirs.to_string();
        routes.dynamic_name.set(theirs_dynamic);
        routes.close_all_except(shard, route.rid, "Cluster Name Changed");
        return Ok(());
    }
    if theirs_dynamic {
        return Ok(());
    }
    error!(
        "{} - rid:{} - Rejecting connection, cluster name {theirs:?} does not match {ours:?}",
        route.addr, route.rid
    );
    route.send(b"-ERR 'Cluster Name Conflict'\r\n");
    Err(Stop::Error("Cluster Name Conflict".into()))
}

fn handle_info(
    shard: &Rc<Shard>,
    routes: &Routes,
    route: &Rc<Route>,
    json: &[u8],
) -> Result<(), Stop> {
    let v: ServerInfo = from_object(json).map_err(|_| Stop::Error("Bad INFO".into()))?;
    let id = v.server_id.clone();
    if id.is_empty() {
        return Err(Stop::Error("INFO without server_id".into()));
    }
    let connect_urls = v.connect_urls.clone();
    if !route.registered.get() {
        if id == routes.my_id {
            return Err(Stop::SelfRoute);
        }
        if let Some(name) = &v.cluster {
            check_cluster_name(shard, routes, route, name, v.cluster_dynamic)?;
        }
        let raft_node = v.natrix_node.filter(|_| v.natrix_raft);
        let name = if v.server_name.is_empty() {
            id.clone()
        } else {
            v.server_name.clone()
        };
        *route.remote.borrow_mut() = Some(RemoteServer {
            id: id.clone(),
            name: name.clone(),
            connect_urls,
            raft_node,
            meta_member: v.natrix_meta,
        });
        if route.configured {
            if let Some(host_port) = route.dialed.borrow().as_deref() {
                routes.reached(host_port, super::Reached::Server(id.clone()));
            }
        }
        let pool_url = if v.natrix_pool {
            route_url_of(&v)
        } else {
            None
        };
        if !routes.register(shard, route, &id, pool_url) {
            return Err(Stop::Error("Duplicate Route".into()));
        }
        route.registered.set(true);
        if let (Some(node), Some(host)) = (raft_node, shard.meta.get()) {
            host.learn_peer(node, &name);
            host.learn_tags(node, &v.tags);
        }
        debug!(
            "{} - rid:{} - Registering remote route {id:?}",
            route.addr, route.rid
        );
        routes.gossip(route, &gossip_info(v, route));
        return Ok(());
    }
    if route.remote_id().as_deref() == Some(id.as_str()) {
        let lame_duck = v.ldm;
        if let Some(remote) = route.remote.borrow_mut().as_mut() {
            remote.connect_urls = if lame_duck { Vec::new() } else { connect_urls };
        }
        routes.publish_connect_urls(shard);
        return Ok(());
    }
    // Gossip about another server: dial it unless we already have it.
    if id != routes.my_id && !routes.is_registered(&id) {
        if let Some(url) = route_url_of(&v) {
            debug!("rid:{} - Learned of server {id:?} at {url}", route.rid);
            routes.solicit(shard, &url, false);
        }
    }
    Ok(())
}

/// Where a server's routes are dialed: its INFO's `ip`, else its `host:port`.
pub fn route_url_of(info: &ServerInfo) -> Option<String> {
    match info.ip.as_deref() {
        Some(ip) if !ip.is_empty() => Some(ip.to_string()),
        _ if info.host.is_empty() || info.port == 0 => None,
        _ => Some(format!("nats-route://{}:{}/", info.host, info.port)),
    }
}

/// A new server's INFO as we pass it on to the others: with `ip` set so that they
/// can dial it (a server's own INFO may not carry one), as nats-server does.
fn gossip_info(mut info: ServerInfo, route: &Route) -> Vec<u8> {
    if route_url_of(&info).is_none() || info.host == "0.0.0.0" {
        info.ip = Some(format!("nats-route://{}:{}/", route.addr.ip(), info.port));
    } else {
        info.ip = route_url_of(&info);
    }
    info.json().into_bytes()
}

fn interest_key(
    shard: &Shard,
    account: &[u8],
    subject_: &[u8],
    queue: Option<&[u8]>,
) -> Option<InterestKey> {
    let account = lookup_account(shard, account)?;
    if !subject::is_valid_filter(subject_) {
        return None;
    }
    Some((
        account,
        Bytes::copy_from_slice(subject_),
        queue.map(Bytes::copy_from_slice),
    ))
}

fn add_route_interest(
    shard: &Shard,
    route: &Rc<Route>,
    account: &[u8],
    subject: &[u8],
    queue: Option<(&[u8], u32)>,
) {
    let Some(key) = interest_key(shard, account, subject, queue.map(|q| q.0)) else {
        return;
    };
    let weight = queue.map_or(1, |q| q.1);
    if let Some(existing) = route.interest.borrow().get(&key) {
        existing.set_weight(weight);
        return;
    }
    let Some(entry) = interest_entry(shard, route, weight) else {
        return;
    };
    route
        .interest
        .borrow_mut()
        .insert(key.clone(), entry.clone());
    let (account, subject, queue) = key;
    shard.add_interest(account, &subject, queue.as_ref(), entry);
}

/// The entry for interest arriving on `route`. We send nothing on a pool member (its
/// server reads it only for PINGs): on the routes' shard its interest is served by
/// its server's registered route, on another shard by this shard's own pool
/// connection to that server (or the routes' shard).
fn interest_entry(shard: &Shard, route: &Route, weight: u32) -> Option<Interest> {
    let weight = Cell::new(weight);
    let Some(server_id) = route.pool_of.borrow().clone() else {
        let (route, slot) = (route.this.clone(), route.slot.get()?);
        return Some(Interest::Route(Rc::new(RouteInterest {
            route,
            slot,
            weight,
        })));
    };
    let Some(routes) = shard.routes.as_ref() else {
        let origin = Origin::Server(route.slot.get()?);
        return Some(Interest::Remote(Rc::new(RemoteInterest {
            shard: ROUTES_SHARD,
            origin,
            weight,
        })));
    };
    let main = routes.registered_route(&server_id)?;
    let (route, slot) = (main.this.clone(), main.slot.get()?);
    Some(Interest::Route(Rc::new(RouteInterest {
        route,
        slot,
        weight,
    })))
}

fn remove_route_interest(
    shard: &Shard,
    route: &Route,
    account: &[u8],
    subject: &[u8],
    queue: Option<&[u8]>,
) {
    let Some(key) = interest_key(shard, account, subject, queue) else {
        return;
    };
    let Some(entry) = route.interest.borrow_mut().remove(&key) else {
        return;
    };
    let (account, subject, queue) = key;
    shard.remove_interest(account, &subject, queue.as_ref(), &entry);
}
