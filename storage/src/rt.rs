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
        .spawn(move || natrix_shards::park_guard::guarded(f()))
        .expect("executor starts")
        .join()
        .expect("executor thread")
}
