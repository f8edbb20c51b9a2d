//! Stream and consumer infos from the servers that lead them: the meta leader
//! answers `STREAM.LIST` and creates, and a stream or consumer it holds no replica
//! of has its state and its cluster's view only on other servers. It asks the
//! leader (`$JS.API.STREAM.INFO`, `$JS.API.CONSUMER.INFO`, answered by the leader
//! alone) with a reply subject of its own, `$NRX.GI.<node>.<token>`, and waits a
//! bounded time, as nats-server gathers a clustered stream list.

use super::Cluster;
use crate::jetstream::api::types::{ConsumerInfo, StreamInfo};
use crate::raft::NodeId;
use crate::server::accounts::AccountId;
use crate::server::shard::{Msg, Shard};
use bytes::Bytes;
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// How long a gathering waits for the last answer.
const ANSWER_WAIT: Duration = Duration::from_millis(1_000);
/// Questions in flight at most; past it a stream is reported without its state.
const PENDING_MAX: usize = 4_096;

/// Questions asked and not yet answered, by token.
#[derive(Default)]
pub struct Pending {
    waiting: RefCell<ahash::AHashMap<u64, oneshot::Sender<Bytes>>>,
    next_token: Cell<u64>,
}

/// The reply subjects of this server's questions, subscribed in every account.
pub fn subscription(node: NodeId) -> String {
    format!("$NRX.GI.{node}.>")
}

/// An answer reached this server's subscription.
pub fn on_answer(shard: &Shard, msg: &Msg) {
    let Some(cl) = shard.cluster.get() else {
        return;
    };
    let subject = String::from_utf8_lossy(msg.subject);
    let Some(token) = subject.rsplit('.').next().and_then(|t| t.parse().ok()) else {
        return;
    };
    if let Some(tx) = cl.gather.waiting.borrow_mut().remove(&token) {
        let _ = tx.send(Bytes::copy_from_slice(msg.payload));
    }
}

/// The info of each stream in `names` from its leader, in order; None where no
/// leader answered in time.
pub async fn stream_infos(
    shard: &Shard,
    cl: &Cluster,
    account: AccountId,
    names: &[String],
) -> Vec<Option<StreamInfo>> {
    let asked: Vec<_> = names
        .iter()
        .map(|name| ask(shard, cl, account, &format!("$JS.API.STREAM.INFO.{name}")))
        .collect();
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut infos = Vec::with_capacity(asked.len());
    for question in asked {
        infos.push(match question {
            Some((token, rx)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let answer = super::answer_within(rx, left).await;
                cl.gather.waiting.borrow_mut().remove(&token);
                answer.and_then(|a| serde_json::from_slice::<StreamInfo>(&a).ok())
            }
            None => None,
        });
    }
    infos
}

/// The info of consumer `name` of `stream` from its leader; None when no leader
/// answered within `wait` (or its answer was an error).
pub async fn consumer_info(
    shard: &Shard,
    cl: &Cluster,
    account: AccountId,
    (stream, name): (&str, &str),
    wait: Duration,
) -> Option<ConsumerInfo> {
    let subject = format!("$JS.API.CONSUMER.INFO.{stream}.{name}");
    let (token, rx) = ask(shard, cl, account, &subject)?;
    let answer = super::answer_within(rx, wait.min(ANSWER_WAIT)).await;
    cl.gather.waiting.borrow_mut().remove(&token);
    serde_json::from_slice::<ConsumerInfo>(&answer?).ok()
}

/// Sends an API request whose answer comes to this server's gathering subject.
fn ask(
    shard: &Shard,
    cl: &Cluster,
    account: AccountId,
    subject: &str,
) -> Option<(u64, oneshot::Receiver<Bytes>)> {
    let pending = &cl.gather;
    if pending.waiting.borrow().len() >= PENDING_MAX {
        return None;
    }
    let token = pending.next_token.get() + 1;
    pending.next_token.set(token);
    let (tx, rx) = oneshot::channel();
    pending.waiting.borrow_mut().insert(token, tx);
    let reply = format!("$NRX.GI.{}.{token}", cl.node);
    crate::jetstream::send(
        shard,
        account,
        subject.as_bytes(),
        Some(reply.as_bytes()),
        b"",
        b"",
    );
    Some((token, rx))
}
