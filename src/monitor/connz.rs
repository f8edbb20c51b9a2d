//! `/connz`: client connections, open and recently closed (nats-server's `Connz`).

use crate::monitor::common::{subs_lists, SubDetail};
use crate::monitor::params::ListParams;
use crate::server::stats::{ConnInfo, ShardReport};
use crate::server::Server;
use crate::timefmt::{go_duration, rfc3339};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// One connection (nats-server's `ConnInfo`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ConnzEntry {
    pub cid: u64,
    pub kind: String,
    #[serde(rename = "type")]
    pub conn_type: String,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    pub name: String,
    pub lang: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher_suite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_user: Option<String>,
    pub account: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list_detail: Vec<SubDetail>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub connections: Vec<ConnzEntry>,
}

fn entry(c: &ConnInfo, params: &ListParams, now: SystemTime) -> ConnzEntry {
    // A closed connection's clock stopped when it closed.
    let end = c.stop.unwrap_or(now);
    let (subscriptions_list, subscriptions_list_detail) = subs_lists(&c.subs, params.subs);
    ConnzEntry {
        cid: c.cid,
        kind: "Client".into(),
        conn_type: "nats".into(),
        ip: c.addr.ip().to_string(),
        port: c.addr.port(),
        start: rfc3339(c.start),
        last_activity: rfc3339(c.last_activity),
        stop: c.stop.map(rfc3339),
        reason: c.reason.clone(),
        rtt: "0s".into(),
        uptime: go_duration(end.duration_since(c.start).unwrap_or_default()),
        idle: go_duration(end.duration_since(c.last_activity).unwrap_or_default()),
        pending_bytes: c.pending_bytes,
        in_msgs: c.in_msgs,
        out_msgs: c.out_msgs,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
        subscriptions: c.subscriptions,
        name: c.name.clone(),
        lang: c.lang.clone(),
        version: c.version.clone(),
        tls_version: c.tls.as_ref().map(|t| t.0.clone()),
        tls_cipher_suite: c.tls.as_ref().map(|t| t.1.clone()),
        authorized_user: c.user.clone(),
        account: c.account.clone(),
        subscriptions_list,
        subscriptions_list_detail,
    }
}

/// The connections `params.state` selects, in cid order; closed ones limited to
/// the newest `max_closed` over all shards.
fn selected<'a>(
    reports: &'a [ShardReport],
    params: &ListParams,
    max_closed: usize,
) -> Vec<&'a ConnInfo> {
    let mut conns: Vec<&ConnInfo> = Vec::new();
    if params.state.open() {
        conns.extend(reports.iter().flat_map(|r| r.connections.iter()));
    }
    if params.state.closed() {
        let mut closed: Vec<&ConnInfo> = reports.iter().flat_map(|r| r.closed.iter()).collect();
        closed.sort_by_key(|c| std::cmp::Reverse(c.stop));
        closed.truncate(max_closed);
        conns.extend(closed);
    }
    conns.sort_by_key(|c| c.cid);
    conns
}

pub fn connz(server: &Server, reports: &[ShardReport], params: &ListParams) -> Connz {
    let now = SystemTime::now();
    let conns = selected(reports, params, server.opts.max_closed_clients);
    let page: Vec<ConnzEntry> = conns
        .iter()
        .skip(params.offset)
        .take(params.limit)
        .map(|c| entry(c, params, now))
        .collect();
    Connz {
        server_id: server.id.clone(),
        now: rfc3339(now),
        num_connections: page.len(),
        total: conns.len(),
        offset: params.offset,
        limit: params.limit,
        connections: page,
    }
}
