//! glommio 0.9 can park its executor (sleep in io_uring) while tasks are
//! runnable; storage-bench hung this way under load. See storage/README.md
//! ("Known problem"). Ignored while the bug is present: most runs hang and
//! fail after 30 s (`cargo test -p natrix-storage --test park_guard -- --ignored`).

use std::sync::mpsc;
use std::time::Duration;

use natrix_storage::rt::{raise_memlock_limit, IO_MEMORY_BYTES};

/// CPU-only tasks that yield whenever preempted, with no I/O in flight, on an
/// executor whose preempt timer is short enough to fire between the reactor
/// poll and the scheduler's first check now and then (a loaded machine does
/// the same to the benchmark's 200 µs timer).
#[test]
#[ignore]
fn cpu_bound_yielding_tasks_finish() {
    raise_memlock_limit();
    let (tx, rx) = mpsc::channel();
    let _ex = glommio::LocalExecutorBuilder::default()
        .io_memory(IO_MEMORY_BYTES)
        .preempt_timer(Duration::from_micros(30))
        .spawn(move || async move {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    glommio::spawn_local(async {
                        for _ in 0..2000 {
                            let mut x = 0u64;
                            for i in 0..200 {
                                x = std::hint::black_box(x.wrapping_add(i));
                            }
                            glommio::yield_if_needed().await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
            let _ = tx.send(());
        })
        .expect("executor starts");
    // A parked executor thread is left behind, asleep.
    assert!(
        rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "the executor parked with runnable tasks"
    );
}
