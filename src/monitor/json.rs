//! The JSON documents of the monitoring endpoints, shared by HTTP and `$SYS` requests.

use crate::route::Routes;
use crate::server::stats::{total_counters, ConnInfo, ShardReport};
use crate::server::{Server, COMPAT_VERSION};
use crate::timefmt::{go_duration, rfc3339};
use serde_json::{json, Value};
use std::time::SystemTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Varz,
    Connz,
    Subsz,
    Routez,
    Healthz,
    Idz,
}

/// Paging and detail switches of /connz and /subsz.
#[derive(Clone, Debug)]
pub struct ListParams {
    pub subs: bool,
    pub offset: usize,
    pub limit: usize,
}

const LIST_LIMIT_DEFAULT: usize = 1024;

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            subs: false,
            offset: 0,
            limit: LIST_LIMIT_DEFAULT,
        }
    }
}

impl ListParams {
    /// From a URL query string such as `subs=1&limit=10`.
    pub fn from_query(query: &str) -> ListParams {
        let mut p = ListParams::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "subs" => p.subs = matches!(v, "1" | "true" | "detail"),
                "offset" => p.offset = v.parse().unwrap_or(0),
                "limit" => p.limit = v.parse().unwrap_or(LIST_LIMIT_DEFAULT),
                _ => {}
            }
        }
        p
    }

    /// From the JSON body of a `$SYS` request (`{"subscriptions":true}` etc.).
    pub fn from_json(body: &[u8]) -> ListParams {
        let mut p = ListParams::default();
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            p.subs = v["subscriptions"].as_bool().unwrap_or(false)
                || v["subs"].as_bool().unwrap_or(false);
            p.offset = v["offset"].as_u64().unwrap_or(0) as usize;
            p.limit = v["limit"]
                .as_u64()
                .map_or(LIST_LIMIT_DEFAULT, |l| l as usize);
        }
        p
    }
}

/// One endpoint's document; `routes` is the routes' registry (shard 0 answers).
pub fn endpoint(
    server: &Server,
    routes: Option<&Routes>,
    e: Endpoint,
    reports: &[ShardReport],
    params: &ListParams,
) -> Value {
    match e {
        Endpoint::Varz => varz(server, routes, reports),
        Endpoint::Connz => connz(server, reports, params),
        Endpoint::Subsz => subsz(server, reports, params),
        Endpoint::Routez => routez(server, routes, params),
        Endpoint::Healthz => json!({"status": "ok"}),
        Endpoint::Idz => json!({"server_id": server.id, "server_name": server.name}),
    }
}

struct Process {
    rss_bytes: u64,
    cpu_percent: f64,
}

fn process(server: &Server) -> Process {
    let page = 4096;
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page);
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    let uptime = server.start_instant.elapsed().as_secs_f64().max(0.001);
    Process {
        rss_bytes,
        cpu_percent: ((ticks as f64 / 100.0) / uptime * 1000.0).round() / 10.0,
    }
}

fn cluster_block(routes: Option<&Routes>) -> Value {
    let Some(r) = routes else { return json!({}) };
    json!({
        "name": *r.cluster_name.borrow(),
        "addr": r.listen_host,
        "cluster_port": r.listen_port.get(),
        "auth_timeout": 2,
        "urls": *r.configured.borrow(),
        "tls_timeout": 2,
        "pool_size": 1,
    })
}

pub fn varz(server: &Server, routes: Option<&Routes>, reports: &[ShardReport]) -> Value {
    let o = &server.opts;
    let totals = total_counters(reports);
    let p = process(server);
    let now = SystemTime::now();
    json!({
        "server_id": server.id,
        "server_name": server.name,
        "version": COMPAT_VERSION,
        "proto": 1,
        "go": format!("natrix {}", crate::server::VERSION),
        "host": o.host,
        "port": server.port,
        "auth_required": server.auth().required(),
        "max_connections": o.max_connections,
        "ping_interval": o.ping_interval_ms * 1_000_000,
        "ping_max": o.ping_max,
        "http_host": o.http_host.clone().unwrap_or_else(|| o.host.clone()),
        "http_port": o.http_port.unwrap_or(0),
        "https_port": 0,
        "auth_timeout": server.auth_timeout_ms() as f64 / 1000.0,
        "tls_timeout": o.tls.as_ref().map_or(2.0, |t| t.timeout_ms as f64 / 1000.0),
        "tls_required": o.tls.is_some(),
        "tls_verify": o.tls.as_ref().is_some_and(|t| t.verify),
        "max_control_line": o.max_control_line,
        "max_payload": o.max_payload,
        "max_pending": o.max_pending,
        "max_subscriptions": o.max_subscriptions,
        "write_deadline": o.write_deadline_ms * 1_000_000,
        "lame_duck_duration": o.lame_duck_duration_ms * 1_000_000,
        "cluster": cluster_block(routes),
        "gateway": {},
        "leaf": {},
        "mqtt": {},
        "websocket": {},
        "jetstream": {},
        "start": rfc3339(server.start),
        "now": rfc3339(now),
        "uptime": go_duration(server.start_instant.elapsed()),
        "mem": p.rss_bytes,
        "cores": server.cores,
        "gomaxprocs": server.shard_count,
        "shards": server.shard_count,
        "cpu": p.cpu_percent,
        "connections": reports.iter().map(|r| r.num_connections).sum::<usize>(),
        "total_connections": totals.total_connections,
        "routes": routes.map_or(0, |r| r.registered().len()),
        "remotes": routes.map_or(0, |r| r.registered().len()),
        "leafnodes": 0,
        "in_msgs": totals.in_msgs,
        "out_msgs": totals.out_msgs,
        "in_bytes": totals.in_bytes,
        "out_bytes": totals.out_bytes,
        "slow_consumers": totals.slow_consumers,
        "stalled_clients": totals.stalls,
        "subscriptions": reports.iter().map(|r| r.num_subscriptions).sum::<u64>(),
        "config_load_time": rfc3339(server.start),
        "system_account": server.accounts.name(server.accounts.system()),
    })
}

fn conn_json(c: &ConnInfo, subs: bool, now: SystemTime) -> Value {
    let mut v = json!({
        "cid": c.cid,
        "kind": "Client",
        "type": "nats",
        "ip": c.addr.ip().to_string(),
        "port": c.addr.port(),
        "start": rfc3339(c.start),
        "last_activity": rfc3339(c.last_activity),
        "rtt": "0s",
        "uptime": go_duration(now.duration_since(c.start).unwrap_or_default()),
        "idle": go_duration(now.duration_since(c.last_activity).unwrap_or_default()),
        "pending_bytes": c.pending_bytes,
        "in_msgs": c.in_msgs,
        "out_msgs": c.out_msgs,
        "in_bytes": c.in_bytes,
        "out_bytes": c.out_bytes,
        "subscriptions": c.subscriptions,
        "name": c.name,
        "lang": c.lang,
        "version": c.version,
        "account": c.account,
    });
    if let Some(user) = &c.user {
        v["authorized_user"] = user.clone().into();
    }
    if subs {
        let mut list = c.subscriptions_list.clone();
        list.sort();
        v["subscriptions_list"] = list.into();
    }
    v
}

pub fn connz(server: &Server, reports: &[ShardReport], params: &ListParams) -> Value {
    let now = SystemTime::now();
    let mut conns: Vec<&ConnInfo> = reports.iter().flat_map(|r| r.connections.iter()).collect();
    conns.sort_by_key(|c| c.cid);
    let total = conns.len();
    let page: Vec<Value> = conns
        .iter()
        .skip(params.offset)
        .take(params.limit)
        .map(|c| conn_json(c, params.subs, now))
        .collect();
    json!({
        "server_id": server.id,
        "now": rfc3339(now),
        "num_connections": page.len(),
        "total": total,
        "offset": params.offset,
        "limit": params.limit,
        "connections": page,
    })
}

pub fn subsz(server: &Server, reports: &[ShardReport], params: &ListParams) -> Value {
    let count: u64 = reports.iter().map(|r| r.num_subscriptions).sum();
    let (mut inserts, mut removes, mut matches, mut hits, mut cache) = (0, 0, 0, 0, 0);
    for r in reports {
        inserts += r.sublist.inserts;
        removes += r.sublist.removes;
        matches += r.sublist.matches;
        hits += r.sublist.cache_hits;
        cache += r.sublist.cache_entries;
    }
    let mut v = json!({
        "server_id": server.id,
        "now": rfc3339(SystemTime::now()),
        "num_subscriptions": count,
        "num_cache": cache,
        "num_inserts": inserts,
        "num_removes": removes,
        "num_matches": matches,
        "cache_hit_rate": if matches > 0 { hits as f64 / matches as f64 } else { 0.0 },
        "max_fanout": 0,
        "avg_fanout": 0.0,
    });
    if params.subs {
        let all: Vec<Value> = reports
            .iter()
            .flat_map(|r| r.subscriptions.iter())
            .skip(params.offset)
            .take(params.limit)
            .map(|s| {
                let mut e = json!({
                    "account": s.account,
                    "subject": s.subject,
                    "sid": s.sid,
                    "msgs": s.msgs,
                    "cid": s.cid,
                });
                if let Some(q) = &s.queue {
                    e["qgroup"] = q.clone().into();
                }
                e
            })
            .collect();
        v["total"] = count.into();
        v["offset"] = params.offset.into();
        v["limit"] = params.limit.into();
        v["subscriptions_list"] = all.into();
    }
    v
}

pub fn routez(server: &Server, routes: Option<&Routes>, params: &ListParams) -> Value {
    let now = SystemTime::now();
    let list: Vec<Value> = routes
        .map(|r| r.registered())
        .unwrap_or_default()
        .iter()
        .map(|route| {
            let remote = route.remote().unwrap_or_default();
            let mut v = json!({
                "rid": route.rid,
                "remote_id": remote.id,
                "remote_name": remote.name,
                "did_solicit": route.solicited,
                "is_configured": route.configured,
                "ip": route.addr.ip().to_string(),
                "port": route.addr.port(),
                "start": rfc3339(route.start),
                "last_activity": rfc3339(route.last_activity.get()),
                "rtt": "0s",
                "uptime": go_duration(now.duration_since(route.start).unwrap_or_default()),
                "idle": go_duration(now.duration_since(route.last_activity.get()).unwrap_or_default()),
                "pending_size": route.pending_bytes(),
                "in_msgs": route.in_msgs.get(),
                "out_msgs": route.out_msgs.get(),
                "in_bytes": route.in_bytes.get(),
                "out_bytes": route.out_bytes.get(),
                "subscriptions": route.subscription_count(),
            });
            if params.subs {
                let mut subs = route.subscription_subjects();
                subs.sort();
                v["subscriptions_list"] = subs.into();
            }
            v
        })
        .collect();
    json!({
        "server_id": server.id,
        "server_name": server.name,
        "now": rfc3339(now),
        "num_routes": list.len(),
        "routes": list,
    })
}

/// The `server` block of system messages.
pub fn server_block(server: &Server) -> Value {
    json!({
        "name": server.name,
        "host": server.opts.host,
        "id": server.id,
        "ver": COMPAT_VERSION,
        "seq": 0,
        "jetstream": server.opts.jetstream.is_some(),
        "time": rfc3339(SystemTime::now()),
    })
}

/// The answer to `$SYS.REQ.SERVER.PING`: the server block and its statistics.
pub fn statsz_message(server: &Server, reports: &[ShardReport]) -> Value {
    let totals = total_counters(reports);
    let p = process(server);
    json!({
        "server": server_block(server),
        "statsz": {
            "start": rfc3339(server.start),
            "mem": p.rss_bytes,
            "cores": server.cores,
            "cpu": p.cpu_percent,
            "connections": reports.iter().map(|r| r.num_connections).sum::<usize>(),
            "total_connections": totals.total_connections,
            "active_accounts": server.accounts.len(),
            "subscriptions": reports.iter().map(|r| r.num_subscriptions).sum::<u64>(),
            "sent": {"msgs": totals.out_msgs, "bytes": totals.out_bytes},
            "received": {"msgs": totals.in_msgs, "bytes": totals.in_bytes},
            "slow_consumers": totals.slow_consumers,
            "routes": [],
        }
    })
}
