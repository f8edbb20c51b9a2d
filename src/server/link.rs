//! What shards say to each other, and the tasks that carry it. The data plane: a
//! shard is to its neighbours what a route is to another server, with interest
//! (`Sub`/`Unsub`, like RS+/RS-) and messages (`Msg`, like RMSG, with the queue
//! groups the receiver must serve). Everything else is control work (`Call`): a
//! closure the receiving shard runs on what it owns (a pool connection to dial, a
//! Raft frame for the groups, a monitoring report, a JetStream request).

use crate::server::accounts::AccountId;
use crate::server::interest::Origin;
use crate::server::shard::Msg;
use crate::server::shard::Shard;
use bytes::Bytes;
use glommio::channels::channel_mesh::{Receivers, Senders};
use natrix_shards::{Notify, WaitSet};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ops::Range;
use std::rc::Rc;

/// Items pending for one peer beyond which a publisher waits for the queue to drain.
pub const PENDING_ITEMS_MAX: usize = 64 * 1024;
/// Items in one batch at most. A busy link fills batches of this size, each
/// allocated once at its full size (all but a link's very first, which grows),
/// instead of one batch that grows (and copies itself) item by item.
const BATCH_ITEMS_MAX: usize = 1024;

/// What one shard hands another at once: items, in order, and the buffers that
/// its messages' bytes lie in (each message names one by its index). Messages read
/// from one chunk of a socket share that chunk's entry: a reference count taken
/// per message would be bumped on one core and dropped on the other, and its cache
/// line would bounce between them (a fifth of the CPU of a message crossing shards,
/// in a profile); a batch takes one per chunk.
pub struct Batch {
    pub items: Vec<Item>,
    pub chunks: Vec<Bytes>,
}

/// A batch being filled, and its messages' payload bytes.
#[derive(Default)]
struct Filling {
    items: Vec<Item>,
    chunks: Vec<Bytes>,
    payload_bytes: usize,
}

impl Filling {
    /// An empty batch with room for `items`.
    fn with_room(items: usize) -> Filling {
        Filling {
            items: Vec::with_capacity(items.min(BATCH_ITEMS_MAX)),
            chunks: Vec::new(),
            payload_bytes: 0,
        }
    }
}

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
    Msg(ShardMsg),
    /// Work for the receiving shard on what it owns: the closure runs (or starts)
    /// it there; an answer goes back on a channel the closure holds.
    Call(Work),
}

/// What `Item::Call` runs on the receiving shard.
pub type Work = Box<dyn FnOnce(&Rc<Shard>) + Send>;

pub struct ShardMsg {
    pub account: AccountId,
    /// The batch's chunk that holds the message, and where its parts are in it.
    pub chunk: usize,
    pub subject: Range<usize>,
    pub reply: Option<Range<usize>>,
    pub header_len: usize,
    pub payload: Range<usize>,
    /// Queue groups for which the receiver delivers to one local member.
    pub queues: Vec<Bytes>,
    /// It arrived over a route, so it goes to clients only.
    pub from_route: bool,
    /// Servers (route slots) the routes' shard sends it to: those the sender has
    /// no connection of its own to.
    pub route_slots: u64,
    /// See `Msg::shown`.
    pub shown: Option<Range<usize>>,
}

/// How a message is sent on: everything but its bytes.
pub struct Forward {
    pub account: AccountId,
    pub queues: Vec<Bytes>,
    pub from_route: bool,
    pub route_slots: u64,
}

impl ShardMsg {
    /// The message, borrowed from its batch's chunks.
    pub fn msg<'a>(&self, chunks: &'a [Bytes]) -> Msg<'a> {
        let chunk = &chunks[self.chunk];
        Msg {
            subject: &chunk[self.subject.clone()],
            reply: self.reply.clone().map(|r| &chunk[r]),
            header_len: self.header_len,
            payload: &chunk[self.payload.clone()],
            backing: Some(chunk),
            shown: self.shown.clone().map(|r| &chunk[r]),
        }
    }
}

/// Where `part` lies in `chunk` (which holds it).
fn range_in(chunk: &Bytes, part: &[u8]) -> Range<usize> {
    if part.is_empty() {
        return 0..0;
    }
    let start = (part.as_ptr() as usize).wrapping_sub(chunk.as_ptr() as usize);
    assert!(
        start <= chunk.len() && part.len() <= chunk.len() - start,
        "a message's part lies in its backing"
    );
    start..start + part.len()
}

/// Where a message's parts are in its chunk.
struct Parts {
    subject: Range<usize>,
    reply: Option<Range<usize>>,
    payload: Range<usize>,
    shown: Option<Range<usize>>,
}

impl Parts {
    /// The parts of `msg`, which lie in `chunk`.
    fn within(chunk: &Bytes, msg: &Msg) -> Parts {
        Parts {
            subject: range_in(chunk, msg.subject),
            reply: msg.reply.map(|r| range_in(chunk, r)),
            payload: range_in(chunk, msg.payload),
            shown: msg.shown.map(|s| range_in(chunk, s)),
        }
    }

    /// A copy of `msg` in one buffer of its own (a message with no backing).
    fn copied(msg: &Msg) -> (Bytes, Parts) {
        let mut buf = Vec::with_capacity(
            msg.subject.len()
                + msg.reply.map_or(0, <[u8]>::len)
                + msg.payload.len()
                + msg.shown.map_or(0, <[u8]>::len),
        );
        let mut copy = |part: &[u8]| {
            let start = buf.len();
            buf.extend_from_slice(part);
            start..buf.len()
        };
        let parts = Parts {
            subject: copy(msg.subject),
            reply: msg.reply.map(&mut copy),
            payload: copy(msg.payload),
            shown: msg.shown.map(&mut copy),
        };
        (Bytes::from(buf), parts)
    }
}

/// The outgoing side of the queue to one peer shard.
#[derive(Default)]
pub struct Link {
    /// The batch being filled.
    filling: RefCell<Filling>,
    /// Filled batches the outbox has not taken yet, oldest first.
    full: RefCell<VecDeque<Filling>>,
    /// Items in `filling` and `full`.
    pending_items: Cell<usize>,
    /// Message payload bytes in them; see `stall::Pressure::in_flight`.
    pending_bytes: Cell<usize>,
    /// Wakes the outbox task (its only waiter).
    notify: Notify,
    /// Every reader on this shard may wait here at once (`Shard::backpressure`).
    drained: WaitSet,
}

impl Link {
    pub fn push(&self, item: Item) {
        debug_assert!(
            !matches!(item, Item::Msg(_)),
            "messages go through push_msg, with their bytes"
        );
        self.room_for_one();
        self.filling.borrow_mut().items.push(item);
        self.pending_items.set(self.pending_items.get() + 1);
        self.notify.notify();
    }

    /// Queues `msg`. Its bytes stay where they were read: the batch holds that
    /// chunk once for all the messages read in it.
    pub fn push_msg(&self, msg: &Msg, forward: Forward) {
        self.room_for_one();
        let mut filling = self.filling.borrow_mut();
        let (chunk, parts) = match msg.backing {
            Some(backing) => (
                chunk_index(&mut filling.chunks, backing),
                Parts::within(backing, msg),
            ),
            None => {
                let (owned, parts) = Parts::copied(msg);
                (chunk_index(&mut filling.chunks, &owned), parts)
            }
        };
        let item = ShardMsg {
            account: forward.account,
            chunk,
            subject: parts.subject,
            reply: parts.reply,
            header_len: msg.header_len,
            payload: parts.payload,
            queues: forward.queues,
            from_route: forward.from_route,
            route_slots: forward.route_slots,
            shown: parts.shown,
        };
        filling.payload_bytes += msg.payload.len();
        self.pending_bytes
            .set(self.pending_bytes.get() + msg.payload.len());
        filling.items.push(Item::Msg(item));
        self.pending_items.set(self.pending_items.get() + 1);
        self.notify.notify();
    }

    /// A full batch moves to `full`, and a new one of full size takes its place.
    fn room_for_one(&self) {
        let mut filling = self.filling.borrow_mut();
        if filling.items.len() >= BATCH_ITEMS_MAX {
            let done = std::mem::replace(&mut *filling, Filling::with_room(BATCH_ITEMS_MAX));
            self.full.borrow_mut().push_back(done);
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending_items.get()
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.get()
    }

    /// Waits until the outbox task has taken what is pending.
    pub async fn drained(&self) {
        self.drained
            .wait_until(|| self.pending_len() <= PENDING_ITEMS_MAX)
            .await
    }

    /// The oldest pending batch and its message bytes, if any; wakes whoever waits
    /// for room. After a partly filled batch, the next starts with room for as
    /// many items.
    fn take(&self) -> Option<(Batch, usize)> {
        let taken = match self.full.borrow_mut().pop_front() {
            Some(full) => full,
            None => {
                let mut filling = self.filling.borrow_mut();
                if filling.items.is_empty() {
                    return None;
                }
                let room = filling.items.len();
                std::mem::replace(&mut *filling, Filling::with_room(room))
            }
        };
        self.pending_items
            .set(self.pending_items.get() - taken.items.len());
        self.pending_bytes
            .set(self.pending_bytes.get() - taken.payload_bytes);
        self.drained.wake_all();
        let batch = Batch {
            items: taken.items,
            chunks: taken.chunks,
        };
        Some((batch, taken.payload_bytes))
    }
}

/// The index of `chunk` among a batch's chunks, added when it is not the last one
/// (messages come in the order they were read).
fn chunk_index(chunks: &mut Vec<Bytes>, chunk: &Bytes) -> usize {
    let same = chunks
        .last()
        .is_some_and(|last| last.as_ptr() == chunk.as_ptr() && last.len() == chunk.len());
    if !same {
        chunks.push(chunk.clone());
    }
    chunks.len() - 1
}

/// Moves batches from a link to the peer's queue, one at a time, in order.
pub async fn outbox(shard: Rc<Shard>, peer: usize, senders: Rc<Senders<Batch>>) {
    let link = shard.link(peer);
    loop {
        link.notify.wait().await;
        while let Some((batch, bytes)) = link.take() {
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
    while let Ok(Some(Batch { items, chunks })) = receivers.recv_from(peer).await {
        let mut bytes = 0;
        for item in items {
            if let Item::Msg(m) = &item {
                bytes += m.payload.len();
            }
            shard.apply_from_peer(peer, item, &chunks);
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

    fn forward() -> Forward {
        Forward {
            account: AccountId(0),
            queues: Vec::new(),
            from_route: false,
            route_slots: 0,
        }
    }

    /// Messages read from one chunk cross in one entry of it, at their places; a
    /// message with no backing brings its own; the next batch starts empty.
    #[test]
    fn a_batch_holds_each_chunk_once_and_every_message_at_its_place() {
        let link = Link::default();
        let chunk =
            Bytes::from_static(b"PUB a.b 3\r\none\r\nPUB c 0\r\n\r\nPUB d _INBOX.1 2\r\nhi\r\n");
        // The first place `part` appears in the chunk, as the parser would slice it.
        let at = |part: &[u8]| {
            let from = chunk.windows(part.len()).position(|w| w == part).unwrap();
            &chunk[from..from + part.len()]
        };
        let from_chunk = [
            (at(b"a.b"), None, at(b"one")),
            (at(b"c"), None, &chunk[..0]),
            (at(b"d"), Some(at(b"_INBOX.1")), at(b"hi")),
        ];
        for (subject, reply, payload) in from_chunk {
            let msg = Msg {
                subject,
                reply,
                header_len: 0,
                payload,
                backing: Some(&chunk),
                shown: None,
            };
            link.push_msg(&msg, forward());
        }
        let own = Msg {
            subject: b"deliver.1",
            reply: Some(b"$JS.ACK.x"),
            header_len: 0,
            payload: b"stored",
            backing: None,
            shown: Some(b"orders.1"),
        };
        link.push_msg(&own, forward());
        let (batch, payload_bytes) = link.take().expect("a batch");
        assert_eq!(payload_bytes, 3 + 2 + 6);
        assert_eq!(
            batch.chunks.len(),
            2,
            "the read chunk once, and the owned one"
        );
        let got: Vec<Msg> = batch
            .items
            .iter()
            .map(|item| match item {
                Item::Msg(m) => m.msg(&batch.chunks),
                _ => panic!("messages were queued"),
            })
            .collect();
        for (msg, (subject, reply, payload)) in got.iter().zip(from_chunk) {
            assert_eq!(
                (msg.subject, msg.reply, msg.payload),
                (subject, reply, payload)
            );
        }
        let last = &got[3];
        assert_eq!(
            (last.subject, last.reply, last.payload, last.shown),
            (own.subject, own.reply, own.payload, own.shown)
        );
        assert!(link.take().is_none(), "the next batch starts empty");
        link.push_msg(&own, forward());
        let (next, _) = link.take().expect("a batch");
        assert_eq!((next.items.len(), next.chunks.len()), (1, 1));
    }

    /// Every reader of a shard waits for room on the same link at once; each must
    /// wake (one waker slot lost all but the last: a detached reader left with no
    /// waker was dropped by glommio, closing its connection without a word).
    #[test]
    fn every_task_waiting_for_room_wakes() {
        glommio::LocalExecutor::default().run(async {
            let link = Rc::new(Link::default());
            for _ in 0..=PENDING_ITEMS_MAX {
                link.push(Item::Call(Box::new(|_: &Rc<Shard>| {})));
            }
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let link = link.clone();
                    glommio::spawn_local(async move { link.drained().await })
                })
                .collect();
            glommio::yield_if_needed().await;
            glommio::executor().yield_task_queue_now().await;
            let mut taken = 0;
            while let Some((batch, _)) = link.take() {
                assert!(batch.items.len() <= BATCH_ITEMS_MAX);
                assert_eq!(
                    batch.items.capacity(),
                    BATCH_ITEMS_MAX,
                    "allocated once, at full size"
                );
                taken += batch.items.len();
            }
            assert_eq!(taken, PENDING_ITEMS_MAX + 1);
            assert_eq!(link.pending_len(), 0);
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
