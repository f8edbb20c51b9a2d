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
/// `wake_all`.
#[derive(Default)]
pub struct WaitSet {
    wakers: RefCell<Vec<Waker>>,
}

impl WaitSet {
    pub fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        wakers.into_iter().for_each(Waker::wake);
    }

    pub async fn wait_until(&self, condition: impl Fn() -> bool) {
        poll_fn(|cx| {
            if condition() {
                Poll::Ready(())
            } else {
                self.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
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
}
