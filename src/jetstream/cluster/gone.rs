//! A stream or consumer removed through the meta group is answered once every
//! other server that held a replica has let it go, or after `GONE_WAIT`: a
//! client's next request must not find it on a server that had not applied the
//! removal yet (nats-server answers a delete from the group's leader, after it
//! removed it).
//!
//! Subjects, in the system account (the catch-up service's, `catchup`):
//! `$NRX.SC.<node>.G.<group>` asks server `node` to answer once it holds no
//! replica of `group`; the answer comes to `$NRX.SC.<asker>.H.<group>`.

use super::Cluster;
use crate::raft::{GroupId, NodeId};
use crate::server::shard::Shard;
use ahash::AHashMap;
use bytes::Bytes;
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// How long a removal's answer waits for the other servers at most.
const GONE_WAIT: Duration = Duration::from_secs(2);
/// Questions a server waits on at once; past it, it answers at once.
const WAITING_MAX: usize = 256;

/// A removal waiting for the servers that held `group`.
pub struct Waiting {
    left: usize,
    done: Option<oneshot::Sender<()>>,
}

/// Waits until every server of `peers` but this one has let `group` go.
pub async fn wait_gone(shard: &Shard, cl: &Cluster, group: GroupId, peers: &[NodeId]) {
    let others: Vec<NodeId> = peers.iter().copied().filter(|p| *p != cl.node).collect();
    if others.is_empty() {
        return;
    }
    let (tx, rx) = oneshot::channel();
    let waiting = Waiting {
        left: others.len(),
        done: Some(tx),
    };
    cl.gone_waits.borrow_mut().insert(group, waiting);
    let system = shard.server.accounts.system();
    let reply = format!("$NRX.SC.{}.H.{group}", cl.node);
    for peer in others {
        let question = format!("$NRX.SC.{peer}.G.{group}");
        crate::jetstream::send(
            shard,
            system,
            question.as_bytes(),
            Some(reply.as_bytes()),
            b"",
            b"",
        );
    }
    super::answer_within(rx, GONE_WAIT).await;
    cl.gone_waits.borrow_mut().remove(&group);
}

/// Another server asks to be told once this one holds no replica of `group`.
pub fn on_question(cl: &Rc<Cluster>, group: GroupId, reply: Bytes) {
    let Some(shard) = cl.shard() else { return };
    let system = shard.server.accounts.system();
    let watch = if holds(cl, group) {
        cl.gone_watchers.watch(group)
    } else {
        None
    };
    let Some(let_go) = watch else {
        crate::jetstream::send(&shard, system, &reply, None, b"", b"");
        return;
    };
    let cl = cl.clone();
    glommio::spawn_local(async move {
        if super::answer_within(let_go, GONE_WAIT).await.is_none() {
            cl.gone_watchers.forget_abandoned(group);
        }
        crate::jetstream::send(&shard, system, &reply, None, b"", b"");
    })
    .detach();
}

/// The questions of other servers waiting for this one to let a group go.
#[derive(Default)]
pub struct Watchers {
    by_group: RefCell<AHashMap<GroupId, Vec<oneshot::Sender<()>>>>,
    count: Cell<usize>,
}

impl Watchers {
    /// None when `WAITING_MAX` questions wait already.
    fn watch(&self, group: GroupId) -> Option<oneshot::Receiver<()>> {
        if self.count.get() >= WAITING_MAX {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.by_group
            .borrow_mut()
            .entry(group)
            .or_default()
            .push(tx);
        self.count.set(self.count.get() + 1);
        Some(rx)
    }

    /// This server no longer holds a replica of `group`.
    pub fn let_go(&self, group: GroupId) {
        let Some(watching) = self.by_group.borrow_mut().remove(&group) else {
            return;
        };
        self.count.set(self.count.get() - watching.len());
        for tx in watching {
            let _ = tx.send(());
        }
    }

    /// Drops the questions about `group` that stopped waiting.
    fn forget_abandoned(&self, group: GroupId) {
        let mut by_group = self.by_group.borrow_mut();
        let Some(watching) = by_group.get_mut(&group) else {
            return;
        };
        let before = watching.len();
        watching.retain(|tx| !tx.is_canceled());
        self.count.set(self.count.get() - (before - watching.len()));
        if watching.is_empty() {
            by_group.remove(&group);
        }
    }
}

/// A server let `group` go.
pub fn on_answer(cl: &Cluster, group: GroupId) {
    let mut waits = cl.gone_waits.borrow_mut();
    let Some(w) = waits.get_mut(&group) else {
        return;
    };
    w.left = w.left.saturating_sub(1);
    if w.left == 0 {
        if let Some(done) = w.done.take() {
            let _ = done.send(());
        }
    }
}

pub fn holds(cl: &Cluster, group: GroupId) -> bool {
    cl.streams.borrow().contains_key(&group) || cl.consumers.borrow().contains_key(&group)
}
