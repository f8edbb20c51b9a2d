//! The answers of `$SYS` requests: `STATSZ` (and `PING`) and the envelope that
//! carries every other endpoint's document (nats-server's `ServerStatsMsg` and
//! `ServerAPIResponse`).

use crate::monitor::common::{process, server_block, DataStats, ServerBlock};
use crate::server::stats::{total_counters, ShardReport};
use crate::server::Server;
use crate::timefmt::rfc3339;
use serde::{Deserialize, Serialize};

/// One route's traffic (nats-server's `RouteStat`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RouteStat {
    pub rid: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub sent: DataStats,
    pub received: DataStats,
    pub pending: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ServerStats {
    pub start: String,
    pub mem: u64,
    pub cores: usize,
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub active_accounts: usize,
    pub subscriptions: u64,
    pub sent: DataStats,
    pub received: DataStats,
    pub slow_consumers: u64,
    pub routes: Vec<RouteStat>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ServerStatsMsg {
    pub server: ServerBlock,
    pub statsz: ServerStats,
}

/// A `$SYS` endpoint's answer: the server block and the document.
#[derive(Serialize, Clone, Debug)]
pub struct ServerApiResponse<T: Serialize> {
    pub server: ServerBlock,
    pub data: T,
}

fn route_stats(routes: Option<&crate::route::Routes>) -> Vec<RouteStat> {
    routes
        .map(|r| r.registered())
        .unwrap_or_default()
        .iter()
        .map(|route| RouteStat {
            rid: route.rid,
            name: route.remote().map(|r| r.name).unwrap_or_default(),
            sent: DataStats {
                msgs: route.out_msgs.get(),
                bytes: route.out_bytes.get(),
            },
            received: DataStats {
                msgs: route.in_msgs.get(),
                bytes: route.in_bytes.get(),
            },
            pending: route.pending_bytes(),
        })
        .collect()
}

/// The answer to `$SYS.REQ.SERVER.PING[.STATSZ]`.
pub fn statsz_message(
    server: &Server,
    routes: Option<&crate::route::Routes>,
    reports: &[ShardReport],
) -> ServerStatsMsg {
    let totals = total_counters(reports);
    let p = process(server);
    let cluster = routes.map(|r| r.cluster_name.borrow().clone());
    ServerStatsMsg {
        server: server_block(server, cluster),
        statsz: ServerStats {
            start: rfc3339(server.start),
            mem: p.rss_bytes,
            cores: server.cores,
            cpu: p.cpu_percent,
            connections: reports.iter().map(|r| r.num_connections).sum(),
            total_connections: totals.total_connections,
            active_accounts: server.accounts.len(),
            subscriptions: reports.iter().map(|r| r.num_subscriptions).sum(),
            sent: DataStats {
                msgs: totals.out_msgs,
                bytes: totals.out_bytes,
            },
            received: DataStats {
                msgs: totals.in_msgs,
                bytes: totals.in_bytes,
            },
            slow_consumers: totals.slow_consumers,
            routes: route_stats(routes),
        },
    }
}
