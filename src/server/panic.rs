//! A panic anywhere ends the process at once, logged. A shard that died while the
//! others ran on would keep its interest in them and its queues full for good (a
//! zombie); a supervisor restarts a dead process, and the store brings back
//! everything acknowledged.

/// Makes every panic log itself and abort the process.
pub fn abort_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!("Fatal: panic on thread {name}: {info}; the process stops");
        print(info);
        std::process::abort();
    }));
}

/// Test-only switch (debug builds): with `NATRIX_TEST_PANIC_SHARD=N` and
/// `NATRIX_TEST_PANIC_FILE=PATH`, shard N panics once PATH exists.
pub fn injected(shard_id: usize) {
    if !cfg!(debug_assertions) {
        return;
    }
    let shard = std::env::var("NATRIX_TEST_PANIC_SHARD").ok();
    let file = std::env::var_os("NATRIX_TEST_PANIC_FILE");
    if let (Some(shard), Some(file)) = (shard, file) {
        if shard.parse() == Ok(shard_id) && std::path::Path::new(&file).exists() {
            panic!("injected panic on shard {shard_id}");
        }
    }
}
