//! The server: what every shard shares (options, identity, accounts, auth), and
//! start-up of the shards, their listeners and the monitoring port.
//!
//! Module map:
//! - `accounts`, `auth`: the account registry and logins.
//! - `client`: one client connection (reader, writer, operations).
//! - `secure`: the TLS step of a client connection.
//! - `interest`, `shard`, `link`: per-shard subscriptions, routing, and the queues
//!   between shards (the same model as routes between servers).
//! - `stats`: counters and cross-shard reports for monitoring.
//! - `stall`: slowing fast producers down to their consumers' pace.
//! - `sys`: the `$SYS` account's request services.
//! - `control`: signals (stop, lame duck, reload) and what the shards do about them.
//! - `start`: binding listeners and running the shards.
//! - `panic`: a panic ends the process, logged (no half-dead server).
//! - `responses`: `allow_responses`, replies a user may publish though denied.

pub mod accounts;
pub mod auth;
pub mod client;
pub mod control;
pub mod interest;
pub mod link;
pub mod panic;
pub mod ports;
pub mod reload;
pub mod responses;
pub mod secure;
pub mod shard;
pub mod stall;
pub mod start;
pub mod stats;
pub mod sys;

use crate::options::Options;
use accounts::Accounts;
use auth::Auth;
use control::Control;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The nats-server version whose protocol and API we speak; clients read it from INFO.
pub const COMPAT_VERSION: &str = "2.10.0";
/// Shards at most: a message's peer set is a 64-bit mask.
pub const SHARDS_MAX: usize = 64;

pub struct Server {
    pub opts: Options,
    pub id: String,
    pub name: String,
    pub accounts: Accounts,
    /// Swapped whole on reload; read only when a client logs in, never per message.
    auth: std::sync::RwLock<std::sync::Arc<Auth>>,
    /// TLS for new connections; swapped whole on reload.
    tls: std::sync::RwLock<std::sync::Arc<crate::tls::Contexts>>,
    /// Requests from signals (lame duck, reload), polled by the shards.
    pub control: Control,
    pub start: SystemTime,
    pub start_instant: Instant,
    pub shard_count: usize,
    /// Cores this process may use, read at start-up (shard threads are pinned to one).
    pub cores: usize,
    /// The client port actually bound (differs from the option when that was 0).
    pub port: u16,
    pub config_file: Option<String>,
    /// This server's Raft node id when it runs the JetStream meta group (JetStream
    /// and a cluster configured), derived from `server_name`.
    pub raft_node: Option<crate::raft::NodeId>,
    /// Interest changes announced between shards so far; see `Shard::interest_current`.
    pub interest_epoch: AtomicU64,
    /// Per shard, its consumers above half their max_pending; see `stall`.
    pub pressure: stall::Pressure,
    /// Bytes JetStream streams hold, per shard and account: publishes check the
    /// server's and the accounts' storage limits against it.
    pub js_usage: crate::jetstream::usage::StoredBytes,
    /// JetStream has reopened its streams: shards may accept clients.
    pub js_ready: std::sync::atomic::AtomicBool,
    next_cid: AtomicU64,
    connections: AtomicUsize,
}

impl Server {
    pub fn new(
        opts: Options,
        shard_count: usize,
        config_file: Option<String>,
    ) -> Result<Server, String> {
        assert!(
            (1..=SHARDS_MAX).contains(&shard_count),
            "shard count within limits"
        );
        let accounts = Accounts::from_options(&opts);
        let auth = Auth::from_options(&opts, &accounts)?;
        let tls = crate::tls::Contexts::from_options(&opts)?;
        crate::jetstream::check_cluster_options(&opts)?;
        let raft_node = (opts.jetstream.is_some() && opts.cluster.is_some())
            .then(|| {
                opts.server_name
                    .as_deref()
                    .map(crate::jetstream::node_id::node_id)
            })
            .flatten();
        let id = new_server_id();
        let name = opts.server_name.clone().unwrap_or_else(|| id.clone());
        let js_usage = crate::jetstream::usage::StoredBytes::new(shard_count, &accounts, &opts);
        Ok(Server {
            port: opts.port,
            opts,
            id,
            name,
            accounts,
            auth: std::sync::RwLock::new(std::sync::Arc::new(auth)),
            tls: std::sync::RwLock::new(std::sync::Arc::new(tls)),
            control: Control::default(),
            start: SystemTime::now(),
            start_instant: Instant::now(),
            shard_count,
            cores: natrix_shards::runtime::available_cores(),
            config_file,
            raft_node,
            interest_epoch: AtomicU64::new(0),
            pressure: stall::Pressure::new(shard_count),
            js_ready: std::sync::atomic::AtomicBool::new(false),
            js_usage,
            next_cid: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
        })
    }

    /// Whether this server serves the JetStream API (alone, or as a storage node of
    /// a cluster; a plain node of a cluster forwards it to those).
    pub fn jetstream_api(&self) -> bool {
        self.opts.jetstream.is_some()
    }

    pub fn auth(&self) -> std::sync::Arc<Auth> {
        self.auth.read().expect("auth lock").clone()
    }

    pub fn replace_auth(&self, auth: Auth) {
        *self.auth.write().expect("auth lock") = std::sync::Arc::new(auth);
    }

    pub fn tls(&self) -> std::sync::Arc<crate::tls::Contexts> {
        self.tls.read().expect("tls lock").clone()
    }

    pub fn replace_tls(&self, tls: crate::tls::Contexts) {
        *self.tls.write().expect("tls lock") = std::sync::Arc::new(tls);
    }

    pub fn next_cid(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a new connection; false when max_connections is reached.
    pub fn connection_opened(&self) -> bool {
        let max = self.opts.max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn auth_timeout_ms(&self) -> u64 {
        self.opts
            .authorization
            .as_ref()
            .and_then(|a| a.timeout_ms)
            .unwrap_or(self.opts.auth_timeout_ms)
    }

    /// A client's INFO; `nonce` for it to sign when nkey users may log in.
    pub fn info_line(
        &self,
        cid: u64,
        ip: IpAddr,
        connect_urls: &[String],
        nonce: Option<&str>,
    ) -> String {
        let no_advertise = self.opts.cluster.as_ref().is_some_and(|c| c.no_advertise);
        crate::proto::info::ServerInfo {
            server_id: self.id.clone(),
            server_name: self.name.clone(),
            version: COMPAT_VERSION.to_string(),
            proto: 1,
            git_commit: Some(String::new()),
            go: format!("natrix {VERSION}"),
            host: self.opts.host.clone(),
            port: self.port,
            headers: true,
            auth_required: self.auth().required(),
            tls_required: self.opts.tls.is_some(),
            tls_verify: self.opts.tls.as_ref().is_some_and(|t| t.verify),
            max_payload: self.opts.max_payload as u64,
            client_id: Some(cid),
            client_ip: Some(ip.to_string()),
            jetstream: self.jetstream_api().then_some(true),
            connect_urls: if no_advertise {
                Vec::new()
            } else {
                connect_urls.to_vec()
            },
            ldm: self.control.lame_duck(),
            nonce: nonce.map(str::to_string),
            ..Default::default()
        }
        .line()
    }
}

/// A server id in nats-server's shape: 'N' and 55 base32 characters.
fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(56);
    out.push('N');
    for _ in 0..55 {
        out.push(ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char);
    }
    out
}
