//! Per-record durability notification: a commit advances the watch and wakes
//! the tasks waiting on sequences it covers. Single-threaded (one shard).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::{Result, StoreError};

/// Identifies one appended record for durability waits. After a failed commit
/// the log starts a new epoch: tickets of the old epoch above the last durable
/// sequence resolve to `NotDurable`, even if that sequence is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub seq: u64,
    pub(crate) epoch: u64,
}

#[derive(Default)]
pub struct DurableWatch {
    durable_seq: Cell<u64>,
    epoch: Cell<u64>,
    /// Durable sequence at the end of each past epoch, and whether it ended
    /// for lack of disk space.
    epoch_ends: RefCell<Vec<(u64, bool)>>,
    waiters: RefCell<BTreeMap<u64, Vec<Waker>>>,
}

impl DurableWatch {
    pub fn new(durable_seq: u64) -> Rc<Self> {
        let w = DurableWatch::default();
        w.durable_seq.set(durable_seq);
        Rc::new(w)
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable_seq.get()
    }

    pub(crate) fn ticket(&self, seq: u64) -> Ticket {
        Ticket {
            seq,
            epoch: self.epoch.get(),
        }
    }

    /// Everything up to `seq` is durable.
    pub(crate) fn advance(&self, seq: u64) {
        if seq <= self.durable_seq.get() {
            return;
        }
        self.durable_seq.set(seq);
        self.wake_upto(seq);
    }

    /// Sequences above `durable_seq` were lost (for lack of space when
    /// `disk_full`): start a new epoch.
    pub(crate) fn fail(&self, durable_seq: u64, disk_full: bool) {
        self.epoch_ends.borrow_mut().push((durable_seq, disk_full));
        self.epoch.set(self.epoch.get() + 1);
        self.durable_seq.set(durable_seq);
        self.wake_upto(u64::MAX);
    }

    /// Sequences at and above `from` were removed (Raft truncation) while durable.
    pub(crate) fn rewind(&self, from: u64) {
        if self.durable_seq.get() >= from {
            self.fail(from - 1, false);
        }
    }

    /// Whether the last failure was for lack of disk space.
    pub(crate) fn last_failure_disk_full(&self) -> bool {
        self.epoch_ends
            .borrow()
            .last()
            .is_some_and(|&(_, full)| full)
    }

    fn wake_upto(&self, seq: u64) {
        let mut waiters = self.waiters.borrow_mut();
        let rest = if seq == u64::MAX {
            BTreeMap::new()
        } else {
            waiters.split_off(&(seq + 1))
        };
        let ready = std::mem::replace(&mut *waiters, rest);
        drop(waiters);
        for w in ready.into_values().flatten() {
            w.wake();
        }
    }

    fn poll_ticket(&self, t: Ticket, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if t.epoch < self.epoch.get() {
            let (end, disk_full) = self.epoch_ends.borrow()[t.epoch as usize];
            return Poll::Ready(if t.seq <= end {
                Ok(())
            } else {
                Err(StoreError::NotDurable { disk_full })
            });
        }
        if self.durable_seq.get() >= t.seq {
            return Poll::Ready(Ok(()));
        }
        self.waiters
            .borrow_mut()
            .entry(t.seq)
            .or_default()
            .push(cx.waker().clone());
        Poll::Pending
    }

    /// Completes when the ticket's record is durable (or failed to become so).
    pub fn wait(self: &Rc<Self>, ticket: Ticket) -> WaitDurable {
        WaitDurable {
            watch: self.clone(),
            ticket,
        }
    }
}

pub struct WaitDurable {
    watch: Rc<DurableWatch>,
    ticket: Ticket,
}

impl Future for WaitDurable {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.watch.poll_ticket(self.ticket, cx)
    }
}
