//! Runtime helpers: locked-memory limit and a small executor for tests and tools.

/// Raises the soft RLIMIT_MEMLOCK to the hard limit (glommio registers buffers).
pub fn raise_memlock_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
        }
    }
}

/// io_memory for executors that only run storage (small: several must fit in 8 MiB).
pub const IO_MEMORY_BYTES: usize = 512 << 10;

/// Runs `f` on a fresh glommio executor on this thread's own new thread and returns its output.
pub fn run_local<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    raise_memlock_limit();
    glommio::LocalExecutorBuilder::default()
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move {
            spawn_park_guard(std::time::Duration::from_millis(1));
            f().await
        })
        .expect("executor starts")
        .join()
        .expect("executor thread")
}

/// Works around a glommio 0.9 bug: the executor can park (sleep in io_uring
/// with no timer armed) while tasks are runnable. Its loop polls the rings,
/// re-arming the preempt timer, then runs the task queues; if the timer fires
/// in between (the thread was descheduled for longer than the preempt timer:
/// likely on a loaded machine with a short timer), `run_task_queues` stops
/// before running anything and reports that nothing ran, and the executor
/// parks. Only an I/O completion, a timer or a wake from another thread gets
/// it going again; with no I/O in flight (tasks that were preempted while
/// doing CPU work, or woken by a task that was) it sleeps forever. Fixed
/// upstream by glommio/glommio#53 (not in 0.9).
///
/// This spawns detached tasks that keep a timer pending on the current
/// executor, so that such a park lasts about `period` at most: call it once
/// per executor that runs CPU-heavy tasks (a shard, the benchmark, tests).
/// A guard is a task, so it can be stranded itself between its timer firing
/// and its next sleep; two guards half a period apart make it unlikely that
/// none is armed (it takes two strandings in a row). It costs two wake-ups
/// per `period` while the executor is otherwise idle.
pub fn spawn_park_guard(period: std::time::Duration) {
    for phase in [std::time::Duration::ZERO, period / 2] {
        glommio::spawn_local(async move {
            glommio::timer::sleep(phase).await;
            loop {
                glommio::timer::sleep(period).await;
            }
        })
        .detach();
    }
}
