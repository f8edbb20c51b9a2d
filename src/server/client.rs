//! One client connection: its state, the reader that parses and executes what the
//! client sends, and the writer that drains its outbound buffer to the socket.

use crate::net::{FrameReader, KeepAlive, KeepAliveStep, Outbound, SharedStream};
use crate::options::{Permissions, SubjectPermission};
use crate::proto::{self, encode, ClientOp, ParseError};
use crate::server::accounts::AccountId;
use crate::server::auth::{Credentials, Login};
use crate::server::interest::{Interest, Subscription};
use crate::server::responses::ReplyGrants;
use crate::server::secure::{secure, Secured};
use crate::server::shard::{Msg, Shard};
use crate::server::stall::{self, Stall};
use crate::subject;
use crate::tls::Stream;
use ahash::AHashMap;
use bytes::Bytes;
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, trace, warn};

pub use crate::proto::connect::ConnectInfo;

pub struct Client {
    pub cid: u64,
    pub addr: SocketAddr,
    pub start: SystemTime,
    pub start_instant: Instant,
    pub account: Cell<AccountId>,
    pub user: RefCell<Option<String>>,
    pub info: RefCell<ConnectInfo>,
    permissions: RefCell<Option<Arc<Permissions>>>,
    connected: Cell<bool>,
    closed: Cell<bool>,
    out: Outbound,
    subs: RefCell<AHashMap<Bytes, Rc<Subscription>>>,
    pub in_msgs: Cell<u64>,
    pub in_bytes: Cell<u64>,
    pub out_msgs: Cell<u64>,
    pub out_bytes: Cell<u64>,
    pub last_activity: Cell<SystemTime>,
    keep_alive: KeepAlive,
    max_pending: usize,
    /// Above half of max_pending, and so counted in the server's `pressure`.
    pressured: Cell<bool>,
    /// What this client, as a producer, ran into during its current read.
    stall: Stall,
    /// Peer shards this client published to since its last PING (see `pong`).
    crossed: Cell<u64>,
    /// Replies it may publish though its permissions deny them (`allow_responses`).
    replies: RefCell<Option<ReplyGrants>>,
    /// With `verify_and_map`, the names its certificate offers; the user is one.
    cert_names: Option<crate::tls::map::CertNames>,
    /// What its INFO asked it to sign, when nkey users may log in.
    nonce: Option<String>,
    /// TLS version and cipher suite, for `/connz`.
    pub tls: Option<(String, String)>,
}

impl Client {
    pub fn echo(&self) -> bool {
        self.info.borrow().echo
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub fn pending_bytes(&self) -> usize {
        self.out.pending()
    }

    /// Bytes queued for this client and not yet written, in flight included.
    pub fn backlog(&self) -> usize {
        self.out.backlog()
    }

    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    pub async fn wait_backlog_at_most(&self, limit: usize) {
        self.out.wait_backlog_at_most(limit).await
    }

    /// As a producer: `dest` is above half its max_pending after our publish.
    pub fn note_pressured(&self, dest: &Rc<Client>) {
        if dest.cid != self.cid {
            self.stall.note_local(dest);
        }
    }

    /// As a producer: our publish went to the peer shards in `mask`.
    pub fn note_peers(&self, mask: u64) {
        self.stall.note_peers(mask);
        self.crossed.set(self.crossed.get() | mask);
    }

    pub fn subscription_subjects(&self) -> Vec<String> {
        self.subs
            .borrow()
            .values()
            .map(|s| String::from_utf8_lossy(&s.subject).into_owned())
            .collect()
    }

    pub fn subscription_count(&self) -> usize {
        self.subs.borrow().len()
    }

    /// A request with reply subject `reply` reached a client with
    /// `allow_responses` that may not publish there otherwise.
    fn may_answer(&self, reply: &[u8]) {
        let mut replies = self.replies.borrow_mut();
        let Some(grants) = replies.as_mut() else {
            return;
        };
        let perms = self.permissions.borrow();
        let publish = perms.as_deref().and_then(|p| p.publish.as_ref());
        if !permitted(publish, reply) {
            grants.grant(reply, Instant::now());
        }
    }

    /// Whether a publish to `subject` answers a request this client received.
    fn answers(&self, subject: &[u8]) -> bool {
        let mut replies = self.replies.borrow_mut();
        replies
            .as_mut()
            .is_some_and(|g| g.allows(subject, Instant::now()))
    }

    /// Each subscription as `/connz?subs=detail` shows it, in sid order.
    pub fn subscription_details(&self, account: &str) -> Vec<crate::server::stats::SubInfo> {
        let mut out: Vec<_> = self
            .subs
            .borrow()
            .values()
            .map(|s| crate::server::stats::SubInfo {
                account: account.to_string(),
                subject: String::from_utf8_lossy(&s.subject).into_owned(),
                queue: s
                    .queue
                    .as_ref()
                    .map(|q| String::from_utf8_lossy(q).into_owned()),
                sid: String::from_utf8_lossy(&s.sid).into_owned(),
                cid: self.cid,
                msgs: s.delivered.get(),
                max: s.max.get(),
            })
            .collect();
        out.sort_by(|a, b| natural_sid(&a.sid).cmp(&natural_sid(&b.sid)));
        out
    }

    fn send_raw(&self, bytes: &[u8]) {
        if self.closed.get() {
            return;
        }
        self.out.append(bytes.len(), |b| b.extend_from_slice(bytes));
    }

    fn send_err(&self, text: &str) {
        let mut line = Vec::with_capacity(text.len() + 9);
        encode::error(&mut line, text);
        self.send_raw(&line);
    }

    /// Queues one message for this client; a client whose backlog passes
    /// max_pending is a slow consumer and is dropped, never waited for. True when
    /// it is left above half of max_pending, where a client producer should stall.
    pub fn send_msg(&self, shard: &Shard, sid: &[u8], msg: &Msg) -> bool {
        if self.closed.get() {
            return false;
        }
        let (header_len, payload) = if msg.header_len > 0 && !self.info.borrow().headers {
            (0, &msg.payload[msg.header_len..])
        } else {
            (msg.header_len, msg.payload)
        };
        let subject = msg.shown.unwrap_or(msg.subject);
        let reply = msg.reply.unwrap_or_default();
        let need = encode::message_len_max(subject.len() + sid.len() + reply.len(), payload.len());
        let pending = self.out.append(need, |out| {
            encode::message(out, subject, sid, msg.reply, header_len, payload)
        });
        if let Some(reply) = msg.reply {
            self.may_answer(reply);
        }
        self.out_msgs.set(self.out_msgs.get() + 1);
        self.out_bytes
            .set(self.out_bytes.get() + payload.len() as u64);
        shard.counters.count_out(payload.len());
        if pending > self.max_pending {
            self.slow_consumer(shard);
            return false;
        }
        let pressured = pending + self.out.in_flight() > self.max_pending / 2;
        if pressured && !self.pressured.replace(true) {
            shard.server.pressure.raise(shard.id);
        }
        pressured
    }

    /// The writer made progress: is this client back within half of max_pending?
    fn relieved(&self, shard: &Shard) {
        if self.pressured.get() && self.out.backlog() <= self.max_pending / 2 {
            self.unpressure(shard);
        }
    }

    fn unpressure(&self, shard: &Shard) {
        if self.pressured.replace(false) {
            shard.server.pressure.lower(shard.id);
        }
    }

    fn slow_consumer(&self, shard: &Shard) {
        shard
            .counters
            .slow_consumers
            .set(shard.counters.slow_consumers.get() + 1);
        warn!(
            "{} - cid:{} - Slow Consumer Detected: MaxPending of {} Exceeded",
            self.addr, self.cid, self.max_pending
        );
        self.out.discard();
        self.close(shard, "Slow Consumer (Pending Bytes)");
        self.out.shutdown_now();
    }

    /// Ends the connection: its interest goes at once; the writer sends what is
    /// queued (an -ERR, say) and then shuts the socket.
    pub fn close(&self, shard: &Shard, reason: &str) {
        if self.closed.replace(true) {
            return;
        }
        if shard.clients.borrow().contains_key(&self.cid) {
            self.remember_closed(shard, reason);
        }
        let subs: Vec<Rc<Subscription>> = self.subs.borrow_mut().drain().map(|(_, s)| s).collect();
        for sub in subs {
            drop_interest(shard, self.account.get(), &sub);
        }
        shard.clients.borrow_mut().remove(&self.cid);
        shard.server.connection_closed();
        self.unpressure(shard);
        self.stall.clear();
        debug!(
            "{} - cid:{} - Client connection closed: {reason}",
            self.addr, self.cid
        );
        self.out.close();
    }

    /// Keeps this connection's last view for `/connz?state=closed`.
    fn remember_closed(&self, shard: &Shard, reason: &str) {
        let mut info = crate::server::stats::conn_info(shard, self, true);
        info.stop = Some(SystemTime::now());
        info.reason = Some(reason.to_string());
        shard
            .closed
            .push(info, shard.server.opts.max_closed_clients);
    }

    pub fn remove_subscription(&self, shard: &Shard, sid: &[u8]) {
        let sub = self.subs.borrow_mut().remove(sid);
        if let Some(sub) = sub {
            drop_interest(shard, self.account.get(), &sub);
        }
    }

    // ----- periodic checks ---------------------------------------------------------

    /// Called by the shard's housekeeping timer: auth timeout and keep-alive pings.
    /// Returns when the connection next needs a look.
    pub fn tick(&self, shard: &Shard, now: Instant) -> Option<Instant> {
        let opts = &shard.server.opts;
        if !self.connected.get() {
            if !shard.server.auth().required() {
                return None;
            }
            let due = self.start_instant + Duration::from_millis(shard.server.auth_timeout_ms());
            if now < due {
                return Some(due);
            }
            self.send_err("Authentication Timeout");
            self.close(shard, "Authentication Timeout");
            return None;
        }
        match self
            .keep_alive
            .step(now, opts.ping_interval_ms, opts.ping_max)
        {
            KeepAliveStep::WaitUntil(due) => Some(due),
            KeepAliveStep::Ping(due) => {
                self.send_raw(b"PING\r\n");
                Some(due)
            }
            KeepAliveStep::Stale => {
                self.send_err("Stale Connection");
                self.close(shard, "Stale Connection");
                None
            }
        }
    }
}

/// A sid's sort key: numbers in numeric order, then other sids by their text.
fn natural_sid(sid: &str) -> (u64, &str) {
    (sid.parse().unwrap_or(u64::MAX), sid)
}

fn drop_interest(shard: &Shard, account: AccountId, sub: &Rc<Subscription>) {
    shard.remove_interest(
        account,
        &sub.subject,
        sub.queue.as_ref(),
        &Interest::Local(sub.clone()),
    );
}

/// Why the reader stops.
struct Closed;

/// Serves one accepted connection until it ends.
pub async fn serve(shard: Rc<Shard>, tcp: TcpStream) {
    let Ok(addr) = tcp.peer_addr() else { return };
    let _ = tcp.set_nodelay(true);
    let server = shard.server.clone();
    let cid = server.next_cid();
    let nonce = server
        .auth()
        .wants_nonce()
        .then(crate::server::auth::new_nonce);
    let info = server.info_line(
        cid,
        addr.ip(),
        &shard.connect_urls.borrow(),
        nonce.as_deref(),
    );
    let secured = match server.tls().client.clone() {
        None => Secured {
            stream: Stream::Plain(tcp),
            info_sent: false,
            cert_names: None,
        },
        Some(tls) => match secure(tcp, &tls, info.as_bytes(), addr, cid).await {
            Some(s) => s,
            None => return,
        },
    };
    let now = Instant::now();
    let client = Rc::new(Client {
        cid,
        addr,
        start: SystemTime::now(),
        start_instant: now,
        account: Cell::new(AccountId::GLOBAL),
        user: RefCell::new(None),
        info: RefCell::new(ConnectInfo::default()),
        permissions: RefCell::new(None),
        connected: Cell::new(false),
        closed: Cell::new(false),
        out: Outbound::default(),
        subs: RefCell::default(),
        in_msgs: Cell::new(0),
        in_bytes: Cell::new(0),
        out_msgs: Cell::new(0),
        out_bytes: Cell::new(0),
        last_activity: Cell::new(SystemTime::now()),
        keep_alive: KeepAlive::new(now),
        max_pending: server.opts.max_pending,
        pressured: Cell::new(false),
        stall: Stall::default(),
        crossed: Cell::new(0),
        replies: RefCell::new(None),
        cert_names: secured.cert_names,
        tls: secured.stream.tls_details(),
        nonce,
    });
    let stream: SharedStream = Rc::new(RefCell::new(secured.stream));
    client.out.attach(&stream);
    let _ = stream
        .borrow()
        .set_write_timeout(Some(std::time::Duration::from_millis(
            server.opts.write_deadline_ms.max(1),
        )));
    if !secured.info_sent {
        client.send_raw(info.as_bytes());
    }
    let writer = glommio::spawn_local(write_loop(shard.clone(), client.clone(), stream.clone()));
    if !server.connection_opened() {
        client.send_err("maximum connections exceeded");
        client.closed.set(true);
        client.out.close();
        writer.await;
        return;
    }
    shard
        .counters
        .total_connections
        .set(shard.counters.total_connections.get() + 1);
    shard.clients.borrow_mut().insert(cid, client.clone());
    shard.housekeeping_due.notify();
    debug!("{addr} - cid:{cid} - Client connection created");
    read_loop(&shard, &client, &stream).await;
    client.close(&shard, "Client Closed");
    writer.await;
}

async fn write_loop(shard: Rc<Shard>, client: Rc<Client>, stream: SharedStream) {
    let progress = || client.relieved(&shard);
    if let Err(e) = client.out.drain_to(&stream, progress).await {
        if e.kind() == io::ErrorKind::TimedOut {
            shard
                .counters
                .slow_consumers
                .set(shard.counters.slow_consumers.get() + 1);
            warn!(
                "{} - cid:{} - Slow Consumer Detected: WriteDeadline exceeded",
                client.addr, client.cid
            );
        }
        client.close(&shard, "Write Error");
    }
}

/// The read loop's view of a client connection.
struct ClientProtocol<'a> {
    shard: &'a Rc<Shard>,
    client: &'a Rc<Client>,
    limits: proto::Limits,
}

impl crate::read_loop::Protocol for ClientProtocol<'_> {
    type Op<'a> = ClientOp<'a>;
    type Stop = Closed;

    fn closed(&self) -> bool {
        self.client.closed.get()
    }

    fn touched(&self) {
        self.client.last_activity.set(SystemTime::now());
    }

    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<(ClientOp<'a>, usize), ParseError> {
        proto::parse(bytes, &self.limits)
    }

    async fn execute<'op>(&self, op: ClientOp<'op>, chunk: &'op Bytes) -> Result<(), Closed> {
        execute(self.shard, self.client, op, chunk).await
    }

    fn malformed(&self, error: ParseError) -> Closed {
        protocol_error(self.shard, self.client, error)
    }

    async fn settle(&self) {
        stall::wait(self.shard, &self.client.stall).await;
        self.shard.backpressure().await;
    }
}

async fn read_loop(shard: &Rc<Shard>, client: &Rc<Client>, stream: &SharedStream) {
    let limits = proto::Limits {
        control_line_max: shard.server.opts.max_control_line,
        payload_max: shard.server.opts.max_payload,
    };
    let protocol = ClientProtocol {
        shard,
        client,
        limits,
    };
    // A stop has closed the client already; the caller closes it otherwise.
    let _ = crate::read_loop::run(&protocol, stream, FrameReader::default()).await;
}

fn protocol_error(shard: &Shard, client: &Client, e: ParseError) -> Closed {
    let text = match e {
        ParseError::ControlLineTooLong => "Maximum Control Line Exceeded",
        ParseError::PayloadTooLarge { .. } => "Maximum Payload Violation",
        _ => "Unknown Protocol Operation",
    };
    debug!(
        "{} - cid:{} - protocol error: {e:?}",
        client.addr, client.cid
    );
    client.send_err(text);
    client.close(shard, text);
    Closed
}

async fn execute(
    shard: &Rc<Shard>,
    client: &Rc<Client>,
    op: ClientOp<'_>,
    chunk: &Bytes,
) -> Result<(), Closed> {
    if shard.server.opts.trace {
        let max = shard.server.opts.max_traced_msg_len;
        let line = crate::logging::cut_traced(format!("{op:?}"), max);
        trace!("{} - cid:{} - <<- {line}", client.addr, client.cid);
    }
    if !client.connected.get()
        && shard.server.auth().required()
        && !matches!(op, ClientOp::Connect(_))
    {
        client.send_err("Authorization Violation");
        client.close(shard, "Authorization Violation");
        return Err(Closed);
    }
    match op {
        ClientOp::Connect(json) => connect(shard, client, json).await?,
        ClientOp::Pub {
            subject,
            reply,
            header_len,
            payload,
        } => {
            let msg = Msg {
                subject,
                reply,
                header_len,
                payload,
                backing: Some(chunk),
                shown: None,
            };
            shard.interest_current().await;
            publish(shard, client, &msg);
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => subscribe(shard, client, subject, queue, sid),
        ClientOp::Unsub { sid, max } => unsubscribe(shard, client, sid, max),
        ClientOp::Ping => pong(shard, client).await,
        ClientOp::Pong => client.keep_alive.answered(),
        ClientOp::Info | ClientOp::Ok | ClientOp::Err => {}
    }
    Ok(())
}

/// A PONG is a barrier, as on nats-server: every subscriber has what this client
/// published before its PING. Messages to subscribers on other shards travel the
/// ordered queues between shards, so a call through each queue this client used
/// since its last PING returns once they are in those subscribers' buffers, and
/// their writers have had their turn. A client that crossed no shard answers at once.
async fn pong(shard: &Rc<Shard>, client: &Client) {
    let mut crossed = client.crossed.replace(0);
    while crossed != 0 {
        let peer = crossed.trailing_zeros() as usize;
        crossed &= crossed - 1;
        let barrier = |_| Box::pin(futures_lite::future::yield_now()) as _;
        shard.call(peer, barrier).await;
    }
    client.send_raw(b"PONG\r\n");
}

fn ok(client: &Client) {
    if client.info.borrow().verbose {
        client.send_raw(b"+OK\r\n");
    }
}

async fn connect(shard: &Rc<Shard>, client: &Rc<Client>, json: &[u8]) -> Result<(), Closed> {
    let info = match ConnectInfo::from_json(json) {
        Ok(info) => info,
        Err(e) => {
            debug!("{} - cid:{} - bad CONNECT: {e}", client.addr, client.cid);
            client.send_err("Invalid Connect Info");
            client.close(shard, "Protocol Violation");
            return Err(Closed);
        }
    };
    let Some(login) = login(shard, client, &info).await else {
        warn!(
            "{} - cid:{} - authentication error",
            client.addr, client.cid
        );
        client.send_err("Authorization Violation");
        client.close(shard, "Authentication Failure");
        return Err(Closed);
    };
    if client.closed.get() {
        return Err(Closed);
    }
    client.account.set(login.account);
    *client.user.borrow_mut() = login.user;
    *client.replies.borrow_mut() = login
        .permissions
        .as_ref()
        .and_then(|p| p.responses)
        .map(|rule| ReplyGrants::new(rule, Instant::now()));
    *client.permissions.borrow_mut() = login.permissions;
    *client.info.borrow_mut() = info;
    client.connected.set(true);
    ok(client);
    Ok(())
}

async fn login(shard: &Shard, client: &Client, info: &ConnectInfo) -> Option<Login> {
    let server = shard.server.clone();
    if let Some(names) = &client.cert_names {
        return server.auth().login_mapped(names);
    }
    let creds = Credentials {
        user: info.user.as_deref(),
        pass: info.pass.as_deref(),
        token: info.auth_token.as_deref(),
        nkey: info.nkey.as_deref(),
        sig: info.sig.as_deref(),
        nonce: client.nonce.as_deref().unwrap_or_default().as_bytes(),
    };
    let auth = server.auth();
    if !auth.is_slow(&creds) {
        return auth.login(&creds);
    }
    let (user, pass, token) = (
        info.user.clone(),
        info.pass.clone(),
        info.auth_token.clone(),
    );
    glommio::executor()
        .spawn_blocking(move || {
            auth.login(&Credentials {
                user: user.as_deref(),
                pass: pass.as_deref(),
                token: token.as_deref(),
                ..Credentials::default()
            })
        })
        .await
}

fn permitted(permission: Option<&SubjectPermission>, subject: &[u8]) -> bool {
    let Some(p) = permission else { return true };
    let hit = |list: &[String]| list.iter().any(|f| subject::matches(f.as_bytes(), subject));
    p.allow.as_deref().is_none_or(hit) && !hit(&p.deny)
}

fn publish(shard: &Shard, client: &Client, msg: &Msg) {
    client.in_msgs.set(client.in_msgs.get() + 1);
    client
        .in_bytes
        .set(client.in_bytes.get() + msg.payload.len() as u64);
    shard.counters.count_in(msg.payload.len());
    let (pedantic, no_responders) = {
        let info = client.info.borrow();
        (info.pedantic, info.no_responders && info.headers)
    };
    // As nats-server: pedantic mode reports a wildcard subject, and the message
    // still goes on (and is acknowledged in verbose mode).
    if pedantic && !subject::is_valid_publish(msg.subject) {
        client.send_err("Invalid Publish Subject");
    }
    if let Some(perms) = client.permissions.borrow().as_deref() {
        if !permitted(perms.publish.as_ref(), msg.subject) && !client.answers(msg.subject) {
            let text = format!(
                "Permissions Violation for Publish to \"{}\"",
                String::from_utf8_lossy(msg.subject)
            );
            client.send_err(&text);
            return;
        }
    }
    ok(client);
    let delivered = shard.route(Some(client), client.account.get(), msg);
    if !delivered && no_responders {
        if let Some(reply) = msg.reply {
            no_responders_reply(shard, client, reply);
        }
    }
}

/// A request nobody subscribes to: the requester gets a 503 status on its reply
/// subject, through its own subscriptions that match it.
fn no_responders_reply(shard: &Shard, client: &Client, reply: &[u8]) {
    const STATUS: &[u8] = b"NATS/1.0 503\r\n\r\n";
    let sids: Vec<Bytes> = client
        .subs
        .borrow()
        .values()
        .filter(|s| subject::matches(&s.subject, reply))
        .map(|s| s.sid.clone())
        .collect();
    let msg = Msg {
        subject: reply,
        reply: None,
        header_len: STATUS.len(),
        payload: STATUS,
        backing: None,
        shown: None,
    };
    for sid in sids {
        client.send_msg(shard, &sid, &msg);
    }
}

fn subscribe(shard: &Shard, client: &Client, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
    let queue_ok = queue.is_none_or(subject::is_valid_publish);
    if !subject::is_valid_filter(subject) || !queue_ok {
        client.send_err("Invalid Subject");
        return;
    }
    if let Some(perms) = client.permissions.borrow().as_deref() {
        if !permitted(perms.subscribe.as_ref(), subject) {
            let text = format!(
                "Permissions Violation for Subscription to \"{}\"",
                String::from_utf8_lossy(subject)
            );
            client.send_err(&text);
            return;
        }
    }
    let max_subs = shard.server.opts.max_subscriptions;
    if max_subs > 0 && client.subscription_count() >= max_subs {
        client.send_err("Maximum Subscriptions Exceeded");
        return;
    }
    if client.subs.borrow().contains_key(sid) {
        ok(client);
        return;
    }
    let sub = Rc::new(Subscription {
        client: shard
            .clients
            .borrow()
            .get(&client.cid)
            .map_or_else(Weak::new, Rc::downgrade),
        sid: Bytes::copy_from_slice(sid),
        subject: Bytes::copy_from_slice(subject),
        queue: queue.map(Bytes::copy_from_slice),
        max: Cell::new(0),
        delivered: Cell::new(0),
    });
    client
        .subs
        .borrow_mut()
        .insert(sub.sid.clone(), sub.clone());
    let (subject, queue) = (sub.subject.clone(), sub.queue.clone());
    shard.add_interest(
        client.account.get(),
        &subject,
        queue.as_ref(),
        Interest::Local(sub),
    );
    ok(client);
}

fn unsubscribe(shard: &Shard, client: &Client, sid: &[u8], max: Option<u64>) {
    let sub = client.subs.borrow().get(sid).cloned();
    if let Some(sub) = sub {
        match max {
            Some(max) if max > sub.delivered.get() => sub.max.set(max),
            _ => {
                client.remove_subscription(shard, sid);
            }
        }
    }
    ok(client);
}

/// The cluster's client URLs changed: remember them for new clients, and tell the
/// connected clients that understand async INFO (protocol 1), so that they can fail
/// over to any server.
pub fn connect_urls_changed(shard: &Shard, urls: Arc<Vec<String>>) {
    *shard.connect_urls.borrow_mut() = urls.clone();
    let clients: Vec<Rc<Client>> = shard.clients.borrow().values().cloned().collect();
    for c in clients {
        if c.connected.get() && c.info.borrow().protocol >= 1 {
            let line = shard.server.info_line(c.cid, c.addr.ip(), &urls, None);
            c.send_raw(line.as_bytes());
        }
    }
}
