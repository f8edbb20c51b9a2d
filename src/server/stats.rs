//! Counters each shard keeps, and the reports shards send each other when a
//! monitoring endpoint or a system request needs the whole server's view.

use crate::server::client::Client;
use crate::server::shard::Shard;
use crate::sublist::SublistStats;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::SystemTime;

#[derive(Default)]
pub struct ShardCounters {
    pub in_msgs: Cell<u64>,
    pub in_bytes: Cell<u64>,
    pub out_msgs: Cell<u64>,
    pub out_bytes: Cell<u64>,
    pub slow_consumers: Cell<u64>,
    /// Reads after which a fast producer was stalled.
    pub stalls: Cell<u64>,
    pub total_connections: Cell<u64>,
}

impl ShardCounters {
    pub fn count_in(&self, bytes: usize) {
        self.in_msgs.set(self.in_msgs.get() + 1);
        self.in_bytes.set(self.in_bytes.get() + bytes as u64);
    }

    pub fn count_out(&self, bytes: usize) {
        self.out_msgs.set(self.out_msgs.get() + 1);
        self.out_bytes.set(self.out_bytes.get() + bytes as u64);
    }
}

#[derive(Clone, Copy, Default, Debug)]
pub struct Counters {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub stalls: u64,
    pub total_connections: u64,
}

#[derive(Clone, Copy, Default, Debug)]
pub struct ShardQuery {
    pub connections: bool,
    pub subscriptions: bool,
    /// The closed connections this shard remembers, too.
    pub closed: bool,
}

#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub cid: u64,
    pub addr: SocketAddr,
    pub start: SystemTime,
    pub last_activity: SystemTime,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub account: String,
    pub user: Option<String>,
    pub subscriptions: usize,
    /// Filled when asked for (and always for a closed connection).
    pub subs: Vec<SubInfo>,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    /// When and why it closed; None while open.
    pub stop: Option<SystemTime>,
    pub reason: Option<String>,
    /// TLS version and cipher suite of a TLS connection.
    pub tls: Option<(String, String)>,
}

/// Closed connections a shard remembers for `/connz?state=closed` unless
/// `max_closed_clients` says otherwise (nats-server's default): oldest dropped first.
pub const CLOSED_CONNECTIONS_DEFAULT: usize = 10_000;

/// The ring of this shard's most recently closed connections; bounded by
/// `max_closed_clients` (so the server keeps at most that many per shard, and
/// `/connz` shows the newest `max_closed_clients` of them all).
#[derive(Default)]
pub struct ClosedConns {
    ring: RefCell<VecDeque<ConnInfo>>,
}

impl ClosedConns {
    pub fn push(&self, info: ConnInfo, max: usize) {
        let mut ring = self.ring.borrow_mut();
        while ring.len() >= max.max(1) {
            ring.pop_front();
        }
        ring.push_back(info);
    }

    pub fn snapshot(&self) -> Vec<ConnInfo> {
        self.ring.borrow().iter().cloned().collect()
    }
}

/// A connection's monitoring view; its subscriptions only when `with_subs`.
pub fn conn_info(shard: &Shard, cl: &Client, with_subs: bool) -> ConnInfo {
    let info = cl.info.borrow();
    let account = shard.server.accounts.name(cl.account.get()).to_string();
    ConnInfo {
        cid: cl.cid,
        addr: cl.addr,
        start: cl.start,
        last_activity: cl.last_activity.get(),
        name: info.name.clone(),
        lang: info.lang.clone(),
        version: info.version.clone(),
        subs: if with_subs {
            cl.subscription_details(&account)
        } else {
            Vec::new()
        },
        account,
        user: cl.user.borrow().clone(),
        subscriptions: cl.subscription_count(),
        pending_bytes: cl.pending_bytes(),
        in_msgs: cl.in_msgs.get(),
        in_bytes: cl.in_bytes.get(),
        out_msgs: cl.out_msgs.get(),
        out_bytes: cl.out_bytes.get(),
        stop: None,
        reason: None,
        tls: cl.tls.clone(),
    }
}

#[derive(Clone, Debug)]
pub struct SubInfo {
    pub account: String,
    pub subject: String,
    pub queue: Option<String>,
    pub sid: String,
    pub cid: u64,
    pub msgs: u64,
    /// Deliveries after which it ends (UNSUB with a count); 0 for none.
    pub max: u64,
}

#[derive(Debug, Default)]
pub struct ShardReport {
    pub counters: Counters,
    pub num_connections: usize,
    pub num_subscriptions: u64,
    pub sublist: SublistStats,
    pub connections: Vec<ConnInfo>,
    pub closed: Vec<ConnInfo>,
    pub subscriptions: Vec<SubInfo>,
}

pub fn report(shard: &Shard, query: &ShardQuery) -> ShardReport {
    let c = &shard.counters;
    let clients = shard.clients.borrow();
    let subscriptions = shard.local_subscriptions();
    let mut report = ShardReport {
        counters: Counters {
            in_msgs: c.in_msgs.get(),
            in_bytes: c.in_bytes.get(),
            out_msgs: c.out_msgs.get(),
            out_bytes: c.out_bytes.get(),
            slow_consumers: c.slow_consumers.get(),
            stalls: c.stalls.get(),
            total_connections: c.total_connections.get(),
        },
        num_connections: clients.len(),
        num_subscriptions: subscriptions.len() as u64,
        sublist: shard.sublist_stats(),
        ..Default::default()
    };
    if query.connections {
        report.connections = clients
            .values()
            .map(|cl| conn_info(shard, cl, query.subscriptions))
            .collect();
    }
    if query.closed {
        report.closed = shard.closed.snapshot();
    }
    if query.subscriptions {
        report.subscriptions = subscriptions;
    }
    report
}

/// Every shard's report, this shard's included, in shard order.
pub async fn gather(shard: &Rc<Shard>, query: ShardQuery) -> Vec<ShardReport> {
    let mut waiting = Vec::new();
    for peer in shard.peers() {
        let (tx, rx) = futures_channel::oneshot::channel();
        shard.run_on(peer, move |shard: &Rc<Shard>| {
            let _ = tx.send(shard.report(&query));
        });
        waiting.push(rx);
    }
    let mut reports = vec![report(shard, &query)];
    for rx in waiting {
        if let Ok(r) = rx.await {
            reports.push(r);
        }
    }
    reports
}

pub fn total_counters(reports: &[ShardReport]) -> Counters {
    reports.iter().fold(Counters::default(), |a, r| Counters {
        in_msgs: a.in_msgs + r.counters.in_msgs,
        in_bytes: a.in_bytes + r.counters.in_bytes,
        out_msgs: a.out_msgs + r.counters.out_msgs,
        out_bytes: a.out_bytes + r.counters.out_bytes,
        slow_consumers: a.slow_consumers + r.counters.slow_consumers,
        stalls: a.stalls + r.counters.stalls,
        total_connections: a.total_connections + r.counters.total_connections,
    })
}
