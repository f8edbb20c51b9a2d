//! `/varz`: the server's configuration and totals (nats-server's `Varz`).

use crate::jetstream::jsz::VarzJetStream;
use crate::monitor::common::process;
use crate::route::Routes;
use crate::server::shard::Shard;
use crate::server::stats::{total_counters, ShardReport};
use crate::server::{Server, COMPAT_VERSION, VERSION};
use crate::timefmt::{go_duration, rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// nats-server's default TLS handshake timeout, reported when TLS is off.
const TLS_TIMEOUT_SECS: f64 = 2.0;
/// Route handshakes must finish within this (nats-server's route default).
const CLUSTER_AUTH_TIMEOUT_SECS: f64 = 2.0;
const NANOS_PER_MILLI: u64 = 1_000_000;

/// The `cluster` block (nats-server's `ClusterOptsVarz`); empty without a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ClusterVarz {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
}

/// A block for a feature natrix does not have (gateways, leaf nodes, MQTT,
/// websockets): `{}`, as nats-server shows it when the feature is not configured.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Unconfigured {}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub auth_required: bool,
    pub tls_required: bool,
    pub tls_verify: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub ping_interval: u64,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: u16,
    pub http_base_path: String,
    pub https_port: u16,
    pub auth_timeout: f64,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub cluster: ClusterVarz,
    pub gateway: Unconfigured,
    pub leaf: Unconfigured,
    pub mqtt: Unconfigured,
    pub websocket: Unconfigured,
    pub jetstream: VarzJetStream,
    pub tls_timeout: f64,
    pub write_deadline: u64,
    pub lame_duck_duration: u64,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: usize,
    pub gomaxprocs: usize,
    /// natrix: executors (one per core by default).
    pub shards: usize,
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub routes: usize,
    pub remotes: usize,
    pub leafnodes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    /// natrix: reads after which a fast producer was slowed to its consumers.
    pub stalled_clients: u64,
    pub subscriptions: u64,
    /// Requests served per monitoring path, since start.
    pub http_req_stats: BTreeMap<String, u64>,
    /// natrix: monitoring connections refused at the connection limit.
    pub http_refused_connections: u64,
    pub config_load_time: String,
    pub system_account: String,
}

fn cluster_block(routes: Option<&Routes>) -> ClusterVarz {
    let Some(r) = routes else {
        return ClusterVarz::default();
    };
    ClusterVarz {
        name: Some(r.cluster_name.borrow().clone()),
        addr: Some(r.listen_host.clone()),
        cluster_port: Some(r.listen_port.get()),
        auth_timeout: Some(CLUSTER_AUTH_TIMEOUT_SECS),
        urls: r.configured.borrow().clone(),
        tls_timeout: Some(TLS_TIMEOUT_SECS),
        pool_size: Some(1),
    }
}

/// What `/varz` needs besides the shards' reports.
pub struct VarzExtras {
    pub jetstream: VarzJetStream,
    pub http_req_stats: BTreeMap<String, u64>,
    pub http_refused_connections: u64,
}

pub fn varz(shard: &Shard, reports: &[ShardReport], extras: VarzExtras) -> Varz {
    let server: &Server = &shard.server;
    let routes = shard.routes.as_ref();
    let o = &server.opts;
    let totals = total_counters(reports);
    let p = process(server);
    let route_count = routes.map_or(0, |r| r.registered().len());
    Varz {
        server_id: server.id.clone(),
        server_name: server.name.clone(),
        version: COMPAT_VERSION.to_string(),
        proto: 1,
        go: format!("natrix {VERSION}"),
        host: o.host.clone(),
        port: server.port,
        auth_required: server.auth().required(),
        tls_required: o.tls.is_some(),
        tls_verify: o.tls.as_ref().is_some_and(|t| t.verify),
        connect_urls: shard.connect_urls.borrow().to_vec(),
        max_connections: o.max_connections,
        max_subscriptions: o.max_subscriptions,
        ping_interval: o.ping_interval_ms * NANOS_PER_MILLI,
        ping_max: o.ping_max,
        http_host: o.http_host.clone().unwrap_or_else(|| o.host.clone()),
        http_port: o.http_port.unwrap_or(0),
        http_base_path: String::new(),
        https_port: o.https_port.unwrap_or(0),
        auth_timeout: server.auth_timeout_ms() as f64 / 1000.0,
        max_control_line: o.max_control_line,
        max_payload: o.max_payload,
        max_pending: o.max_pending,
        cluster: cluster_block(routes),
        gateway: Unconfigured {},
        leaf: Unconfigured {},
        mqtt: Unconfigured {},
        websocket: Unconfigured {},
        jetstream: extras.jetstream,
        tls_timeout: o
            .tls
            .as_ref()
            .map_or(TLS_TIMEOUT_SECS, |t| t.timeout_ms as f64 / 1000.0),
        write_deadline: o.write_deadline_ms * NANOS_PER_MILLI,
        lame_duck_duration: o.lame_duck_duration_ms * NANOS_PER_MILLI,
        start: rfc3339(server.start),
        now: rfc3339(SystemTime::now()),
        uptime: go_duration(server.start_instant.elapsed()),
        mem: p.rss_bytes,
        cores: server.cores,
        gomaxprocs: server.shard_count,
        shards: server.shard_count,
        cpu: p.cpu_percent,
        connections: reports.iter().map(|r| r.num_connections).sum(),
        total_connections: totals.total_connections,
        routes: route_count,
        remotes: route_count,
        leafnodes: 0,
        in_msgs: totals.in_msgs,
        out_msgs: totals.out_msgs,
        in_bytes: totals.in_bytes,
        out_bytes: totals.out_bytes,
        slow_consumers: totals.slow_consumers,
        stalled_clients: totals.stalls,
        subscriptions: reports.iter().map(|r| r.num_subscriptions).sum(),
        http_req_stats: extras.http_req_stats,
        http_refused_connections: extras.http_refused_connections,
        config_load_time: rfc3339(server.start),
        system_account: server.accounts.name(server.accounts.system()).to_string(),
    }
}
