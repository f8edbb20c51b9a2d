//! What shards say to each other, and the tasks that carry it. A shard is to its
//! neighbours what a route is to another server: interest (`Sub`/`Unsub`, like
//! RS+/RS-), messages (`Msg`, like RMSG, with the queue groups the receiver must
//! serve), and queries for monitoring.

use crate::server::accounts::AccountId;
use crate::server::interest::Origin;
use crate::server::shard::Shard;
use crate::server::stats::{ShardQuery, ShardReport};
use bytes::Bytes;
use glommio::channels::channel_mesh::{Receivers, Senders};
use natrix_shards::{Notify, WaitSet};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Items pending for one peer beyond which a publisher waits for the queue to drain.
pub const PENDING_ITEMS_MAX: usize = 64 * 1024;

pub type Batch = Vec<Item>;

pub enum Item {
    /// Interest (first entry, or a queue group's new weight), and whose it is.
    Sub {
        account: AccountId,
        subject: Bytes,
        queue: Option<Bytes>,
        weight: u32,
        origin: Origin,
    },
    Unsub {
        account: AccountId,
        subject: Bytes,
        queue: Option<Bytes>,
        origin: Origin,
    },
    /// A server got route slot `slot`: this shard dials its own connection to it
    /// at `url` and introduces itself with the CONNECT json `connect`.
    PoolDial {
        slot: u8,
        url: String,
        connect: String,
    },
    /// The server in `slot` is gone; forget the shard's connection to it.
    PoolForget {
        slot: u8,
    },
    Msg(ShardMsg),
    /// A Raft frame from node `from` that arrived on another shard's connection,
    /// for the shard that hosts the Raft groups (shard 0).
    Raft {
        from: crate::raft::NodeId,
        frame: Vec<u8>,
    },
    /// The cluster's client URLs changed; clients hear it in an INFO.
    ConnectUrls(std::sync::Arc<Vec<String>>),
    Query(ShardQuery, futures_channel::oneshot::Sender<ShardReport>),
    /// Work for the receiving shard on what it owns (a JetStream stream): the
    /// closure starts it there; its answer comes back on a channel it holds.
    Call(Work),
}

/// What `Item::Call` runs on the receiving shard.
pub type Work = Box<dyn FnOnce(&Rc<Shard>) + Send>;

pub struct ShardMsg {
    pub account: AccountId,
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    pub header_len: usize,
    pub payload: Bytes,
    /// Queue groups for which the receiver delivers to one local member.
    pub queues: Vec<Bytes>,
    /// It arrived over a route, so it goes to clients only.
    pub from_route: bool,
    /// Servers (route slots) the routes' shard sends it to: those the sender has
    /// no connection of its own to.
    pub route_slots: u64,
    /// See `Msg::shown`.
    pub shown: Option<Bytes>,
}

/// The outgoing side of the queue to one peer shard.
#[derive(Default)]
pub struct Link {
    pending: RefCell<Batch>,
    /// Message payload bytes in `pending`; see `stall::Pressure::in_flight`.
    pending_bytes: Cell<usize>,
    /// Wakes the outbox task (its only waiter).
    notify: Notify,
    /// Every reader on this shard may wait here at once (`Shard::backpressure`).
    drained: WaitSet,
}

impl Link {
    pub fn push(&self, item: Item) {
        if let Item::Msg(m) = &item {
            self.pending_bytes
                .set(self.pending_bytes.get() + m.payload.len());
        }
        self.pending.borrow_mut().push(item);
        self.notify.notify();
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.get()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Waits until the outbox task has taken what is pending.
    pub async fn drained(&self) {
        self.drained
            .wait_until(|| self.pending_len() <= PENDING_ITEMS_MAX)
            .await
    }

    /// The pending batch and its message bytes; wakes whoever waits for room.
    fn take(&self) -> (Batch, usize) {
        let batch = std::mem::take(&mut *self.pending.borrow_mut());
        if !batch.is_empty() {
            self.drained.wake_all();
        }
        (batch, self.pending_bytes.replace(0))
    }
}

/// Moves batches from a link to the peer's queue, one at a time, in order.
pub async fn outbox(shard: Rc<Shard>, peer: usize, senders: Rc<Senders<Batch>>) {
    let link = shard.link(peer);
    loop {
        link.notify.wait().await;
        loop {
            let (batch, bytes) = link.take();
            if batch.is_empty() {
                break;
            }
            shard.server.pressure.sent(shard.id, peer, bytes);
            if senders.send_to(peer, batch).await.is_err() {
                return;
            }
        }
    }
}

/// Applies what one peer sends, batch by batch. While a consumer here is above
/// half its max_pending, the writers get to run between batches.
pub async fn inbox(shard: Rc<Shard>, peer: usize, receivers: Rc<Receivers<Batch>>) {
    let pressure = &shard.server.pressure;
    while let Ok(Some(batch)) = receivers.recv_from(peer).await {
        let mut bytes = 0;
        for item in batch {
            if let Item::Msg(m) = &item {
                bytes += m.payload.len();
            }
            shard.apply_from_peer(peer, item);
        }
        pressure.applied(peer, shard.id, bytes);
        if pressure.any(1 << shard.id) {
            futures_lite::future::yield_now().await;
        } else {
            glommio::yield_if_needed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reader of a shard waits for room on the same link at once; each must
    /// wake (one waker slot lost all but the last: a detached reader left with no
    /// waker was dropped by glommio, closing its connection without a word).
    #[test]
    fn every_task_waiting_for_room_wakes() {
        glommio::LocalExecutor::default().run(async {
            let link = Rc::new(Link::default());
            for slot in 0..=PENDING_ITEMS_MAX {
                link.push(Item::PoolForget { slot: slot as u8 });
            }
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let link = link.clone();
                    glommio::spawn_local(async move { link.drained().await })
                })
                .collect();
            glommio::yield_if_needed().await;
            glommio::executor().yield_task_queue_now().await;
            let (batch, _) = link.take();
            assert_eq!(batch.len(), PENDING_ITEMS_MAX + 1);
            for waiter in waiters {
                glommio::timer::timeout(std::time::Duration::from_secs(5), async {
                    waiter.await;
                    Ok(())
                })
                .await
                .expect("a waiter for room was never woken");
            }
        });
    }
}
