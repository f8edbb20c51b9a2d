//! Wake-ups between tasks on the same shard: `Notify` for one waiter, `WaitSet`
//! for any number of waiters on a condition.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Set by `notify`, consumed by `wait`. Notifications before a wait are not lost;
/// several notifications before one wait count once. One task waits; for several,
/// use `WaitSet`.
#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                let waiting = self.waker.take();
                // A second waiter would silently replace the first, which then never
                // wakes (and glommio drops a detached task left with no waker).
                debug_assert!(
                    waiting.is_none_or(|w| w.will_wake(cx.waker())),
                    "a Notify has one waiter; several wait on a WaitSet"
                );
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// Tasks wait here until a condition holds; whoever may have made it true calls
/// `wake_all`. A waiter dropped before it was woken takes its waker out again, so
/// that a task that waits here on every turn of a loop (beside other events that
/// end the wait first) holds one entry, not one per turn: glommio counts a task's
/// wakers in 16 bits and panics past 32,767.
#[derive(Default)]
pub struct WaitSet {
    wakers: RefCell<Vec<Option<Waker>>>,
    /// Incremented by every `wake_all`: a waiter's slot index is valid only in the
    /// generation it was taken in.
    generation: Cell<u64>,
}

impl WaitSet {
    pub fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        self.generation.set(self.generation.get() + 1);
        wakers.into_iter().flatten().for_each(Waker::wake);
    }

    pub async fn wait_until(&self, condition: impl Fn() -> bool) {
        let mut waiter = Waiter {
            set: self,
            slot: None,
        };
        poll_fn(|cx| {
            if condition() {
                return Poll::Ready(());
            }
            waiter.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Wakers held now (waiters not yet woken nor dropped).
    pub fn waiting(&self) -> usize {
        self.wakers.borrow().iter().flatten().count()
    }
}

/// One pending `wait_until`: its slot in the set, in the generation it was taken.
struct Waiter<'a> {
    set: &'a WaitSet,
    slot: Option<(u64, usize)>,
}

impl Waiter<'_> {
    fn register(&mut self, waker: &Waker) {
        let generation = self.set.generation.get();
        let mut wakers = self.set.wakers.borrow_mut();
        match self.slot {
            Some((g, at)) if g == generation => {
                let held = &mut wakers[at];
                if !held.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *held = Some(waker.clone());
                }
            }
            _ => {
                wakers.push(Some(waker.clone()));
                self.slot = Some((generation, wakers.len() - 1));
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let Some((generation, at)) = self.slot else {
            return;
        };
        if generation != self.set.generation.get() {
            return;
        }
        let mut wakers = self.set.wakers.borrow_mut();
        wakers[at] = None;
        // Trailing free slots go, so that a set waited on in a loop stays short.
        while wakers.last().is_some_and(Option::is_none) {
            wakers.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn notify_before_wait_is_kept() {
        glommio::LocalExecutor::default().run(async {
            let n = Rc::new(Notify::default());
            n.notify();
            n.wait().await;
            let n2 = n.clone();
            let t = glommio::spawn_local(async move { n2.wait().await });
            n.notify();
            t.await;
        });
    }

    #[test]
    fn wait_set_wakes_on_condition() {
        glommio::LocalExecutor::default().run(async {
            let ws = Rc::new(WaitSet::default());
            let flag = Rc::new(Cell::new(false));
            let (ws2, flag2) = (ws.clone(), flag.clone());
            let t = glommio::spawn_local(async move { ws2.wait_until(|| flag2.get()).await });
            glommio::yield_if_needed().await;
            flag.set(true);
            ws.wake_all();
            t.await;
        });
    }

    /// A task that waits on a set in every turn of a loop, each wait ended by
    /// something else, keeps one waker there (it kept one per turn, and glommio
    /// panicked once a task had 32,767 of them).
    #[test]
    fn a_wait_ended_by_something_else_leaves_no_waker_behind() {
        glommio::LocalExecutor::default().run(async {
            let ws = WaitSet::default();
            for _ in 0..40_000 {
                let never = ws.wait_until(|| false);
                let other = async {};
                futures_lite::future::or(never, other).await;
            }
            assert_eq!(ws.waiting(), 0);
            {
                let waiting = std::pin::pin!(ws.wait_until(|| false));
                assert!(futures_lite::future::poll_once(waiting).await.is_none());
                assert_eq!(ws.waiting(), 1);
            }
            assert_eq!(
                ws.waiting(),
                0,
                "dropped after one poll, it took its waker out"
            );
        });
    }
}
