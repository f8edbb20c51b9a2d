//! A guard against glommio 0.9 putting an executor to sleep while tasks are runnable.
//!
//! glommio's loop polls the rings, installs the preempt timer, then runs the task
//! queues. If the preempt timer (or any completion on the latency ring) fires before
//! the first queue is picked, say because the thread was descheduled on a loaded
//! machine, the loop counts the turn as "nothing ran" and parks: it sleeps in
//! io_uring until an external event, with the woken tasks still queued. A pending
//! timer ends such a sleep, but if the task that held the timer is the one left
//! queued, nothing ever will. (Fixed upstream only in a fork, glommio/glommio#53.)
//!
//! The guard: each guarded executor runs a heartbeat task that publishes when it
//! means to run next; one watchdog thread for the whole process sleeps until the
//! earliest of those moments and wakes, from outside, the heartbeat of any executor
//! that is late. A wake from another thread goes through glommio's foreign-wake queue,
//! which interrupts the sleep; the loop then runs its queues. A busy executor that
//! merely ran one task for long gets a harmless extra wake.
//!
//! The heartbeat beats every `BEAT_BUSY_MS` while the executor is busy (where the bug
//! strikes: tasks are being woken; with a short preempt timer and a loaded machine it
//! can strike on many turns, so recovery must be quick) and every `BEAT_IDLE_MS` when
//! it spent less than `BUSY_PERCENT_MIN` of the time running tasks, so an idle shard
//! and the watchdog wake only a few times a second. Worst stall left: about one beat period plus `LATE_MS`.
//!
//! An executor must leave the watchdog before it ends ([`Guard`], held by [`guarded`]).
//! A foreign wake of a task whose executor has ended is queued on a channel nobody
//! drains any more, and each one keeps a reference to the task: glommio counts them in
//! 16 bits, so after 32,767 such wakes (under three minutes at the busy beat) the
//! watchdog thread died on "Waker invariant broken" and every executor of the process
//! lost its guard. The heartbeat's own waker, held in its pulse, also kept the ended
//! task alive, so it was never dropped and never left: processes that start and end
//! executors (Raft node handles, the storage tests, the benches) reached that.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Beat period while the executor runs other tasks.
const BEAT_BUSY_MS: u64 = 5;
/// Beat period while it ran nothing but the heartbeat.
const BEAT_IDLE_MS: u64 = 250;
/// How late a heartbeat may be before the watchdog wakes its executor.
const LATE_MS: u64 = 2;
/// The watchdog's longest sleep (it also picks up newly guarded executors then).
const WATCH_SLEEP_MS_MAX: u64 = 250;
/// The share of the time since the last beat, in percent, that the executor must have
/// spent running tasks to count as busy.
const BUSY_PERCENT_MIN: u128 = 5;

/// What the watchdog sees of one executor.
#[derive(Default)]
struct Pulse {
    /// Milliseconds since `epoch()` by which the heartbeat expects to have run again.
    due_ms: AtomicU64,
    /// The heartbeat task, to wake from the watchdog thread; taken when its executor
    /// leaves. Woken under this lock, so once it is taken no wake is under way.
    waker: Mutex<Option<Waker>>,
    /// Set when the executor has left the watchdog (it is ending).
    retired: AtomicBool,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

fn registry() -> &'static Mutex<Vec<Weak<Pulse>>> {
    static REGISTRY: OnceLock<Mutex<Vec<Weak<Pulse>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        std::thread::Builder::new()
            .name("park-guard".into())
            .spawn(watchdog)
            .expect("the park-guard thread starts");
        Mutex::new(Vec::new())
    })
}

fn watchdog() {
    loop {
        let pulses: Vec<Arc<Pulse>> = {
            let mut list = registry().lock().expect("park-guard registry");
            list.retain(|weak| {
                weak.upgrade()
                    .is_some_and(|p| !p.retired.load(Ordering::Acquire))
            });
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let now = now_ms();
        let mut wake_at_ms = now + WATCH_SLEEP_MS_MAX;
        for pulse in &pulses {
            let due_ms = pulse.due_ms.load(Ordering::Acquire);
            if due_ms == 0 {
                continue;
            }
            if now > due_ms + LATE_MS {
                wake(pulse);
                wake_at_ms = wake_at_ms.min(now + BEAT_BUSY_MS);
            } else {
                wake_at_ms = wake_at_ms.min(due_ms + LATE_MS + 1);
            }
        }
        drop(pulses);
        std::thread::sleep(Duration::from_millis(wake_at_ms.saturating_sub(now).max(1)));
    }
}

/// Wakes the executor behind `pulse` from this (foreign) thread, under the pulse's
/// lock: a [`Guard`] dropped meanwhile waits until the wake is queued.
fn wake(pulse: &Pulse) {
    let waker = pulse.waker.lock().expect("park-guard waker");
    if let Some(waker) = waker.as_ref() {
        waker.wake_by_ref();
    }
}

/// Keeps the executor it was made on guarded until dropped. Drop it on that executor
/// before the executor ends (unwinding counts): the watchdog then never wakes it again.
#[must_use = "the executor is guarded only while the Guard is held"]
pub struct Guard(Arc<Pulse>);

impl Guard {
    /// Guards the executor this is called on, from a task on it.
    pub fn install() -> Guard {
        let pulse = Arc::new(Pulse::default());
        registry()
            .lock()
            .expect("park-guard registry")
            .push(Arc::downgrade(&pulse));
        glommio::spawn_local(heartbeat(pulse.clone())).detach();
        Guard(pulse)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pulse = &self.0;
        pulse.retired.store(true, Ordering::Release);
        pulse.due_ms.store(0, Ordering::Release);
        // Taken under the lock the watchdog wakes under; dropped here, on the
        // executor's own thread.
        let waker = pulse.waker.lock().map(|mut w| w.take());
        drop(waker);
    }
}

/// Runs `future` on a guarded executor: the guard is held while `future` runs and
/// released when it returns or unwinds, before the executor ends.
pub async fn guarded<F: std::future::Future>(future: F) -> F::Output {
    let _guard = Guard::install();
    future.await
}

async fn heartbeat(pulse: Arc<Pulse>) {
    poll_fn(|cx| {
        let mut waker = pulse.waker.lock().expect("park-guard waker");
        if !pulse.retired.load(Ordering::Acquire) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Ready(())
    })
    .await;
    let mut last_beat = Instant::now();
    while !pulse.retired.load(Ordering::Acquire) {
        // The executor's statistics are taken (reset) by reading them: this reads the
        // time spent running tasks since the previous beat. Nothing else reads them.
        let running = glommio::executor().executor_stats().executor_runtime();
        let busy = running.as_micros() * 100 >= last_beat.elapsed().as_micros() * BUSY_PERCENT_MIN;
        last_beat = Instant::now();
        let period_ms = if busy { BEAT_BUSY_MS } else { BEAT_IDLE_MS };
        pulse.due_ms.store(now_ms() + period_ms, Ordering::Release);
        glommio::timer::sleep(Duration::from_millis(period_ms)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// CPU-bound tasks that yield when preempted, no I/O, a preempt timer short
    /// enough to fire before the scheduler's first look now and then: without the
    /// guard, most runs park for good (the executor sleeps with runnable tasks).
    #[test]
    fn cpu_bound_yielding_tasks_finish_on_a_guarded_executor() {
        crate::memlock::raise_to_hard_limit();
        let (tx, rx) = mpsc::channel();
        let _executor = glommio::LocalExecutorBuilder::default()
            .io_memory(512 << 10)
            .preempt_timer(Duration::from_micros(30))
            .spawn(move || async move {
                let _guard = Guard::install();
                let tasks: Vec<_> = (0..4)
                    .map(|_| glommio::spawn_local(spin_and_yield(2000)))
                    .collect();
                for task in tasks {
                    task.await;
                }
                let _ = tx.send(());
            })
            .expect("executor starts");
        assert!(
            rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the executor parked with runnable tasks"
        );
    }

    /// An executor that ends leaves the watchdog: its pulse is retired and holds no
    /// waker, so nothing wakes a task of a gone executor (each such wake would keep a
    /// reference in a queue nobody drains, and 32,767 of them kill the watchdog).
    #[test]
    fn an_ended_executor_is_never_woken_again() {
        crate::memlock::raise_to_hard_limit();
        let (tx, rx) = mpsc::channel();
        let executor = glommio::LocalExecutorBuilder::default()
            .io_memory(512 << 10)
            .spawn(move || async move {
                let guard = Guard::install();
                let _ = tx.send(guard.0.clone());
                // Busy beats, so the pulse is due again soon after the executor ends.
                spin_and_yield(2000).await;
                glommio::timer::sleep(Duration::from_millis(20)).await;
            })
            .expect("executor starts");
        executor.join().expect("executor ends");
        let pulse = rx.recv().expect("the pulse");
        assert!(pulse.retired.load(Ordering::Acquire));
        assert!(
            pulse.waker.lock().expect("waker").is_none(),
            "the watchdog can still wake the ended executor"
        );
        // The watchdog drops retired pulses on its next look.
        let deadline = Instant::now() + Duration::from_secs(5);
        while registry()
            .lock()
            .expect("registry")
            .iter()
            .filter_map(Weak::upgrade)
            .any(|p| Arc::ptr_eq(&p, &pulse))
        {
            assert!(
                Instant::now() < deadline,
                "the ended executor is still watched"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    async fn spin_and_yield(rounds: usize) {
        for _ in 0..rounds {
            let mut x = 0u64;
            for i in 0..200 {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            glommio::yield_if_needed().await;
        }
    }
}
