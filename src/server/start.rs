//! Bringing the server up: check the ports, start the shards, and on each shard its
//! links, listener, housekeeping timer and (on shard 0) the monitoring port and the
//! system services.

use crate::server::client;
use crate::server::link::{inbox, outbox, Batch};
use crate::server::shard::Shard;
use crate::server::{sys, Server};
use glommio::net::TcpListener;
use natrix_shards::{ShardContext, ShardSettings};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info};

/// The longest an idle shard sleeps between housekeeping turns.
const HOUSEKEEPING_IDLE_MS: u64 = 1000;
/// The shortest: deadlines this close together share a turn.
const HOUSEKEEPING_SLEEP_MIN_MS: u64 = 100;

/// How long start-up waits for a port still held by a server that just exited:
/// io_uring tears its sockets down after the process is gone (about 100 ms here).
const PORT_RELEASE_WAIT_MS: u64 = 3000;

/// Checks that `host:port` is free (SO_REUSEPORT would otherwise let two servers
/// share it) and returns the port, chosen by the kernel when `port` is 0.
fn claim_port(host: &str, port: u16) -> io::Result<u16> {
    let deadline = Instant::now() + Duration::from_millis(PORT_RELEASE_WAIT_MS);
    loop {
        match crate::net::probe(host, port) {
            Ok(port) => return Ok(port),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Starts the shards (`spin_us`: see `ShardSettings::spinning`) and serves until
/// the server stops.
pub fn run(mut server: Server, spin_us: u64) -> io::Result<()> {
    let host = server.opts.host.clone();
    server.port = claim_port(&host, server.opts.port).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("Error listening on port: {host}:{}, {e}", server.opts.port),
        )
    })?;
    if let Some(cluster) = &mut server.opts.cluster {
        cluster.port = claim_port(&cluster.host, cluster.port).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "Error listening on cluster port: {}:{}, {e}",
                    cluster.host, cluster.port
                ),
            )
        })?;
    }
    let http_host = server
        .opts
        .http_host
        .clone()
        .unwrap_or_else(|| host.clone());
    for monitor_port in [&mut server.opts.http_port, &mut server.opts.https_port] {
        if let Some(port) = *monitor_port {
            let claimed = claim_port(&http_host, port).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("Error listening on monitor port: {http_host}:{port}, {e}"),
                )
            })?;
            *monitor_port = Some(claimed);
        }
    }
    if server.opts.https_port.is_some() && server.tls().client.is_none() {
        return Err(io::Error::other(
            "https monitoring needs TLS: a tls block (cert_file, key_file) or --tlscert/--tlskey",
        ));
    }
    log_start(&server);
    let server = Arc::new(server);
    crate::server::control::watch_signals(server.clone())?;
    let bound = Arc::new(AtomicUsize::new(0));
    let settings = ShardSettings::new(server.shard_count).spinning(spin_us);
    natrix_shards::run(settings, move |ctx: ShardContext<Batch>| {
        let server = server.clone();
        let bound = bound.clone();
        async move { run_shard(server, ctx, bound).await }
    })
}

fn log_start(server: &Server) {
    info!("Starting natrix");
    info!("  Version:  {}", crate::server::VERSION);
    info!(
        "  Compatible with nats-server {}",
        crate::server::COMPAT_VERSION
    );
    info!("  Name:     {}", server.name);
    info!("  ID:       {}", server.id);
    info!("  Shards:   {}", server.shard_count);
    if let Some(file) = &server.config_file {
        info!("Using configuration file: {file}");
    }
    if server.raft_node.is_some() {
        info!("JetStream: this server is a storage node of the cluster's JetStream");
    }
    for warning in &server.opts.warnings {
        tracing::warn!("{warning}");
    }
}

fn bind(host: &str, port: u16) -> TcpListener {
    match crate::net::listen(host, port) {
        Ok(l) => l,
        Err(e) => {
            error!("Error listening on {host}:{port}: {e}");
            std::process::exit(1);
        }
    }
}

async fn run_shard(server: Arc<Server>, ctx: ShardContext<Batch>, bound: Arc<AtomicUsize>) {
    let shard = Shard::new(ctx.id, ctx.count, server.clone());
    let senders = Rc::new(ctx.senders);
    let receivers = Rc::new(ctx.receivers);
    for peer in shard.peers() {
        glommio::spawn_local(outbox(shard.clone(), peer, senders.clone())).detach();
        glommio::spawn_local(inbox(shard.clone(), peer, receivers.clone())).detach();
    }
    if shard.id == 0 {
        sys::register(&shard);
        if server.jetstream_api() {
            if let Err(e) = crate::jetstream::catalog::start(&shard).await {
                error!("{e}");
                std::process::exit(1);
            }
        }
        // After the streams reopened: the node loop applies entries to them.
        if server.raft_node.is_some() {
            match crate::jetstream::meta::start(&shard).await {
                Ok(host) => {
                    let _ = shard.meta.set(host);
                }
                Err(e) => {
                    error!("Could not start the JetStream meta group: {e}");
                    std::process::exit(1);
                }
            }
        }
        server.js_ready.store(true, Ordering::Release);
        start_routes(&shard);
        start_monitoring(&shard);
    }
    // Clients come once JetStream has reopened its streams, as on nats-server.
    while !server.js_ready.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    let listener = bind(&server.opts.host, server.port);
    if bound.fetch_add(1, Ordering::AcqRel) + 1 == server.shard_count {
        info!(
            "Listening for client connections on {}:{}",
            server.opts.host, server.port
        );
        info!("Server is ready");
        crate::server::ports::write(&server);
    }
    let accept = glommio::spawn_local(accept_loop(shard.clone(), listener));
    shard.set_accept_task(accept);
    housekeeping(shard).await;
}

/// The monitoring ports: http, and https with the `tls` block's certificate.
fn start_monitoring(shard: &Rc<Shard>) {
    let opts = &shard.server.opts;
    let host = opts.http_host.clone().unwrap_or_else(|| opts.host.clone());
    let https_tls = shard.server.tls().client.clone();
    let ports = [(opts.http_port, None), (opts.https_port, https_tls)];
    for (port, tls) in ports {
        let Some(port) = port else { continue };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = bind(&host, port);
        info!("Starting {scheme} monitor on {scheme}://{host}:{port}");
        let serve = crate::monitor::http::serve(shard.clone(), listener, tls);
        glommio::spawn_local(serve).detach();
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(client::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                error!("Error accepting client connection: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Runs the shard's periodic checks when one is due: at most once per
/// `HOUSEKEEPING_SLEEP_MIN_MS` (many connections' deadlines share a turn, which
/// looks at every connection), and once per `HOUSEKEEPING_IDLE_MS` when nothing is
/// due (it also recounts JetStream usage then). A signal rings the control bell
/// for a turn at once; a new connection only brings the next turn forward to its
/// first deadline.
async fn housekeeping(shard: Rc<Shard>) {
    let control = &shard.server.control;
    let mut rings_seen = control.rings();
    let mut due = Instant::now();
    loop {
        let now = Instant::now();
        if now >= due {
            let next = housekeeping_turn(&shard, now);
            due = next.unwrap_or(now + Duration::from_millis(HOUSEKEEPING_IDLE_MS));
            due = due.clamp(
                now + Duration::from_millis(HOUSEKEEPING_SLEEP_MIN_MS),
                now + Duration::from_millis(HOUSEKEEPING_IDLE_MS),
            );
        }
        let woken = futures_lite::future::or(
            async {
                glommio::timer::sleep(due.saturating_duration_since(now)).await;
                Woken::Due
            },
            futures_lite::future::or(
                async {
                    shard.housekeeping_due.wait().await;
                    Woken::NewConnection
                },
                async { Woken::Rung(control.rung_since(rings_seen, shard.id).await) },
            ),
        )
        .await;
        match woken {
            Woken::Due => {}
            Woken::NewConnection => due = due.min(now + new_connection_deadline(&shard)),
            Woken::Rung(rings) => {
                rings_seen = rings;
                due = now;
            }
        }
    }
}

/// Why the housekeeping task woke.
enum Woken {
    Due,
    NewConnection,
    Rung(u64),
}

/// The soonest a new connection needs a look: its auth timeout or first PING.
fn new_connection_deadline(shard: &Shard) -> Duration {
    let server = &shard.server;
    let first_ms = server.auth_timeout_ms().min(server.opts.ping_interval_ms);
    Duration::from_millis(first_ms.max(HOUSEKEEPING_SLEEP_MIN_MS))
}

/// One pass over the checks; returns the earliest moment one of them is due again.
fn housekeeping_turn(shard: &Rc<Shard>, now: Instant) -> Option<Instant> {
    let clients: Vec<_> = shard.clients.borrow().values().cloned().collect();
    let mut due = clients.iter().filter_map(|c| c.tick(shard, now)).min();
    if let Some(routes) = &shard.routes {
        due = earliest(due, routes.tick(shard, now));
    }
    due = earliest(due, crate::server::control::tick(shard, now));
    crate::jetstream::registry::publish_usage(shard);
    crate::server::panic::injected(shard.id);
    due
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// On the routes' shard: listen for routes and dial the configured ones.
fn start_routes(shard: &Rc<Shard>) {
    let Some(routes) = shard.routes.as_ref() else {
        return;
    };
    let listener = bind(&routes.listen_host, routes.listen_port.get());
    info!("Cluster name is {}", routes.cluster_name.borrow());
    info!(
        "Listening for route connections on {}:{}",
        routes.listen_host,
        routes.listen_port.get()
    );
    let accepting = shard.clone();
    glommio::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    glommio::spawn_local(crate::route::conn::serve(
                        accepting.clone(),
                        stream,
                        None,
                        false,
                    ))
                    .detach();
                }
                Err(e) => {
                    error!("Error accepting route connection: {e}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
    .detach();
    for url in routes.configured.borrow().clone() {
        routes.solicit(shard, &url, true);
    }
    routes.publish_connect_urls(shard);
}
