//! Signals and what the server does about them, as nats-server: SIGTERM/SIGINT stop,
//! SIGUSR2 enters lame duck mode (no new clients, clients told to move, closed over
//! `lame_duck_duration`, then exit), SIGHUP reloads the config file. A signal thread
//! records the request and rings a bell that wakes each shard's housekeeping task,
//! which acts on it.

use crate::server::shard::Shard;
use crate::server::Server;
use std::cell::Cell;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

#[derive(Default)]
pub struct Control {
    lame_duck: AtomicBool,
    reload_requests: AtomicU64,
    /// A stop was asked for: shards save what they hold, then the process exits.
    stopping: AtomicBool,
    shards_flushed: AtomicUsize,
    /// Rung from the signal thread: each request counts one.
    rings: AtomicU64,
    /// The housekeeping task of each shard that waits for a ring, by shard id.
    ring_waiters: Mutex<Vec<Option<Waker>>>,
}

/// How long a stop waits for the shards to save JetStream state.
const STOP_FLUSH_WAIT_MS: u64 = 2000;

impl Control {
    pub fn lame_duck(&self) -> bool {
        self.lame_duck.load(Ordering::Acquire)
    }

    pub fn enter_lame_duck(&self) {
        self.lame_duck.store(true, Ordering::Release);
        self.ring();
    }

    pub fn request_reload(&self) {
        self.reload_requests.fetch_add(1, Ordering::AcqRel);
        self.ring();
    }

    pub fn reload_requests(&self) -> u64 {
        self.reload_requests.load(Ordering::Acquire)
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn shard_flushed(&self) {
        self.shards_flushed.fetch_add(1, Ordering::AcqRel);
    }

    pub fn rings(&self) -> u64 {
        self.rings.load(Ordering::Acquire)
    }

    /// Wakes every shard's housekeeping task (from any thread).
    fn ring(&self) {
        self.rings.fetch_add(1, Ordering::AcqRel);
        let waiters: Vec<Waker> = self
            .ring_waiters
            .lock()
            .expect("ring waiters")
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in waiters {
            waker.wake();
        }
    }

    /// Ends once the bell has rung more than `seen` times; returns the count.
    pub async fn rung_since(&self, seen: u64, shard_id: usize) -> u64 {
        poll_fn(|cx| {
            let mut waiters = self.ring_waiters.lock().expect("ring waiters");
            // Read under the lock: a ring after this read finds the waker below.
            let rings = self.rings();
            if rings != seen {
                return Poll::Ready(rings);
            }
            if waiters.len() <= shard_id {
                waiters.resize(shard_id + 1, None);
            }
            waiters[shard_id] = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Lets the shards save JetStream state (bounded wait), then exits.
fn stop(server: &Server) -> ! {
    if server.jetstream_api() {
        server.control.stopping.store(true, Ordering::Release);
        server.control.ring();
        let deadline = Instant::now() + std::time::Duration::from_millis(STOP_FLUSH_WAIT_MS);
        while server.control.shards_flushed.load(Ordering::Acquire) < server.shard_count
            && Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    exit(server);
}

/// The way out once the server is done: its ports file goes, then the process.
pub fn exit(server: &Server) -> ! {
    crate::server::ports::remove(server);
    info!("Server Exiting..");
    std::process::exit(0);
}

/// Starts the thread that turns signals into requests.
pub fn watch_signals(server: Arc<Server>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGTERM | SIGINT => {
                        let name = if signal == SIGTERM {
                            "terminated"
                        } else {
                            "interrupt"
                        };
                        info!("Trapped \"{name}\" signal");
                        stop(&server);
                    }
                    SIGUSR2 => {
                        info!("Entering lame duck mode, stop accepting new clients");
                        server.control.enter_lame_duck();
                    }
                    SIGHUP => server.control.request_reload(),
                    SIGUSR1 => info!("Reopening log file is not supported; logging continues"),
                    _ => {}
                }
            }
        })?;
    Ok(())
}

/// How long lame duck mode waits for this server's Raft leaderships to move.
const LEADERSHIP_HANDOFF_WAIT_MS: u64 = 2_000;

/// Per-shard progress through lame duck mode and reloads.
#[derive(Default)]
pub struct ShardControl {
    flushing: Cell<bool>,
    lame_duck_since: Cell<Option<Instant>>,
    initial_clients: Cell<usize>,
    reloads_seen: Cell<u64>,
}

/// How often a shard in lame duck mode looks at what is left to close.
const LAME_DUCK_TICK_MS: u64 = 100;

/// Called by each shard's housekeeping tick; returns when it next needs a look.
pub fn tick(shard: &Shard, now: Instant) -> Option<Instant> {
    let server = &shard.server;
    if server.control.stopping() && !shard.control.flushing.replace(true) {
        if let Some(shard) = shard.this() {
            glommio::spawn_local(async move {
                crate::jetstream::registry::flush(&shard).await;
                shard.server.control.shard_flushed();
            })
            .detach();
        }
    }
    let requested = server.control.reload_requests();
    if shard.id == 0 && shard.control.reloads_seen.replace(requested) != requested {
        crate::server::reload::reload(shard);
    }
    if server.control.lame_duck() {
        lame_duck_tick(shard, now);
        return Some(now + Duration::from_millis(LAME_DUCK_TICK_MS));
    }
    None
}

fn lame_duck_tick(shard: &Shard, now: Instant) {
    let control = &shard.control;
    let since = match control.lame_duck_since.get() {
        Some(since) => since,
        None => {
            start_lame_duck(shard, now);
            now
        }
    };
    let opts = &shard.server.opts;
    let elapsed_ms = now.duration_since(since).as_millis() as u64;
    let grace_ms = opts
        .lame_duck_grace_period_ms
        .min(opts.lame_duck_duration_ms);
    // A storage node first hands its leaderships to others (bounded wait).
    let leaderships_handed = shard
        .cluster
        .get()
        .is_none_or(|cl| cl.leads_nothing() || elapsed_ms >= LEADERSHIP_HANDOFF_WAIT_MS);
    if shard.id == 0
        && leaderships_handed
        && (shard.server.open_connections() == 0 || elapsed_ms >= opts.lame_duck_duration_ms)
    {
        exit(&shard.server);
    }
    if elapsed_ms < grace_ms {
        return;
    }
    // Close clients evenly over what is left of the duration.
    let spread_ms = (opts.lame_duck_duration_ms - grace_ms).max(1);
    let due = (elapsed_ms - grace_ms).min(spread_ms);
    let initial = control.initial_clients.get();
    let should_be_closed = (initial as u64 * due).div_ceil(spread_ms) as usize;
    let open = shard.clients.borrow().len();
    let closed = initial.saturating_sub(open);
    let to_close = should_be_closed
        .saturating_sub(closed)
        .max(usize::from(due == spread_ms) * open);
    let victims: Vec<_> = shard
        .clients
        .borrow()
        .values()
        .take(to_close)
        .cloned()
        .collect();
    for client in victims {
        client.close(shard, "Server Shutdown");
    }
}

fn start_lame_duck(shard: &Shard, now: Instant) {
    let control = &shard.control;
    control.lame_duck_since.set(Some(now));
    control.initial_clients.set(shard.clients.borrow().len());
    shard.stop_accepting();
    let urls = shard.connect_urls.borrow().clone();
    crate::server::client::connect_urls_changed(shard, urls);
    if let Some(routes) = &shard.routes {
        routes.announce_lame_duck(shard);
    }
    if let Some(cl) = shard.cluster.get() {
        cl.step_down_everywhere();
    }
    if shard.id == 0 {
        warn!(
            "Lame duck mode: closing {} client(s) over {} ms",
            shard.server.open_connections(),
            shard.server.opts.lame_duck_duration_ms
        );
    }
}

/// `natrix --signal CMD[=PID]`: sends CMD to a running server, as nats-server does.
pub fn send_signal(spec: &str) -> Result<(), String> {
    let (command, target) = match spec.split_once('=') {
        Some((c, t)) => (c, Some(t)),
        None => (spec, None),
    };
    let signal = match command {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        other => return Err(format!("unknown signal {other:?}")),
    };
    let pid = match target {
        Some(t) => resolve_pid(t)?,
        None => find_single_server()?,
    };
    // SAFETY: kill only sends a signal to the process the user named.
    if unsafe { libc::kill(pid, signal) } != 0 {
        let e = std::io::Error::last_os_error();
        error!("signal {command} to {pid}: {e}");
        return Err(format!("signal {command} to {pid}: {e}"));
    }
    Ok(())
}

/// A pid, or a pid file's path.
fn resolve_pid(target: &str) -> Result<i32, String> {
    let pid = match target.parse::<i32>() {
        Ok(pid) => pid,
        Err(_) => {
            let text = std::fs::read_to_string(target)
                .map_err(|e| format!("cannot read pid file {target:?}: {e}"))?;
            text.trim()
                .parse()
                .map_err(|_| format!("no pid in {target:?}"))?
        }
    };
    // kill(2) reads 0 and negative pids as process groups, -1 as every process
    // the user may signal.
    if pid <= 0 {
        return Err(format!("invalid pid {pid}: not a process"));
    }
    Ok(pid)
}

fn find_single_server() -> Result<i32, String> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if pid != me && comm.trim() == "natrix" {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => Err("no natrix process found".into()),
        _ => Err(format!(
            "multiple natrix processes found ({found:?}); name one with CMD=PID"
        )),
    }
}
