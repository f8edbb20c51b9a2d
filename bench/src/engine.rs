//! The clients' engine: glommio executors (one per core by default), each running its
//! share of the clients as tasks, and the few counters through which clients on
//! different executors agree on when to start and when they are done.

use crate::stats::ClientResult;
use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// io_uring memory per executor (three rings each must fit in locked memory).
const IO_MEMORY_BYTES: usize = 640 << 10;
/// How often a client waiting on another executor's progress looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Shared by every client of a run.
#[derive(Default)]
pub struct Coord {
    /// Subscribers (and responders) whose interest the server has confirmed.
    pub subs_ready: AtomicUsize,
    /// Publishers (and requesters) connected and waiting for `go`.
    pub pubs_ready: AtomicUsize,
    /// Set once everyone is ready: publishers start.
    pub go: AtomicBool,
    /// Messages written by publishers so far.
    pub published: AtomicU64,
    /// Messages counted by subscribers so far.
    pub received: AtomicU64,
    /// Publishers that finished (their last PING answered).
    pub pubs_done: AtomicUsize,
    /// Idle connections open.
    pub connected: AtomicUsize,
    /// Something failed: every client stops.
    pub abort: AtomicBool,
    /// The run is over: idle clients and responders stop.
    pub stop: AtomicBool,
    /// Executors whose clients have all finished.
    pub executors_done: AtomicUsize,
    /// The INFO of the first connection, for the report.
    pub info: Mutex<Option<crate::conn::ServerInfo>>,
}

impl Coord {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Acquire)
    }

    pub fn bump(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::AcqRel);
    }

    pub fn set(flag: &AtomicBool) {
        flag.store(true, Ordering::Release);
    }

    pub fn is(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Acquire)
    }

    pub fn record_info(&self, info: &crate::conn::ServerInfo) {
        let mut slot = self.info.lock().unwrap();
        if slot.is_none() {
            *slot = Some(info.clone());
        }
    }

    /// Waits (on an executor) until `condition` holds or the run is aborted; false
    /// when aborted.
    pub async fn wait_until(&self, condition: impl Fn() -> bool) -> bool {
        loop {
            if Coord::is(&self.abort) {
                return false;
            }
            if condition() {
                return true;
            }
            glommio::timer::sleep(POLL_INTERVAL).await;
        }
    }
}

pub struct Executors {
    handles: Vec<glommio::ExecutorJoinHandle<Vec<ClientResult>>>,
}

/// Starts `threads` executors; executor `i` runs `make(i)` to completion and returns
/// its clients' results.
pub fn start<F, Fut>(threads: usize, pin: bool, make: F) -> Result<Executors, String>
where
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Vec<ClientResult>> + 'static,
{
    natrix_shards::memlock::raise_to_hard_limit();
    let cores = natrix_shards::runtime::available_cores();
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let make = make.clone();
        let placement = if pin {
            Placement::Fixed(i % cores)
        } else {
            Placement::Unbound
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("bench-{i}"))
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || natrix_shards::park_guard::guarded(make(i)))
            .map_err(|e| format!("cannot start executor: {e}"))?;
        handles.push(handle);
    }
    Ok(Executors { handles })
}

impl Executors {
    pub fn join(self) -> Result<Vec<ClientResult>, String> {
        let mut out = Vec::new();
        for h in self.handles {
            out.extend(h.join().map_err(|e| format!("executor failed: {e}"))?);
        }
        Ok(out)
    }
}

/// Raises the soft limit on open files to the hard limit (idle runs open thousands).
pub fn raise_open_files() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
