//! The delivery task of one consumer: it sends what is due (redeliveries first,
//! then new messages up to what is durable), answers and expires pull requests,
//! sends idle heartbeats and advisories, and saves the consumer's state.

use super::ack;
use super::state::Expiry;
use super::{Consumer, PullRequest};
use crate::jetstream::api::types::{kind, MaxDeliveriesAdvisory};
use crate::jetstream::headers;
use crate::jetstream::stream::Stream;
use crate::jetstream::{send, time_string};
use crate::server::shard::Shard;
use bytes::Bytes;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// How long a changed consumer state may wait before it is saved.
const SAVE_DELAY_MS: u64 = 50;
/// Deliveries per turn before the task yields to others.
const DELIVERIES_PER_TURN: usize = 256;
/// How often a consumer with an inactive_threshold checks whether it is in use.
const IDLE_CHECK_MS: u64 = 1000;
/// How long a consumer with nothing to time sleeps before it looks again anyway.
const QUIET_SLEEP_MS: u64 = 60_000;

pub async fn run(shard: Rc<Shard>, stream: Rc<Stream>, consumer: Rc<Consumer>) {
    let mut last_save = Instant::now();
    loop {
        if consumer.deleted.get() || stream.deleted.get() {
            return;
        }
        if !consumer.acts_here() {
            // A clustered consumer's replica that does not lead: its leader delivers.
            if consumer.dirty.get() {
                consumer.save();
            }
            consumer.wake.wait().await;
            continue;
        }
        let now = Instant::now();
        expire_pending(&shard, &stream, &consumer);
        expire_requests(&shard, &stream, &consumer, now);
        deliver_ready(&shard, &stream, &consumer).await;
        if consumer.deleted.get() {
            return;
        }
        heartbeats(&shard, &stream, &consumer, now);
        if inactive_too_long(&shard, &stream, &consumer, now) {
            if consumer.cluster.get().is_some() {
                // Every replica goes with it: the meta leader removes it (asked as
                // a client would), then again after another threshold if need be.
                let delete = format!("$JS.API.CONSUMER.DELETE.{}.{}", stream.name, consumer.name);
                let nobody = Some(&b"_NATRIX.consumer.inactive"[..]);
                crate::jetstream::send(&shard, stream.account, delete.as_bytes(), nobody, b"", b"");
                consumer.last_active.set(now);
                continue;
            }
            crate::jetstream::registry::remove_consumer(&shard, &stream, &consumer.name, false);
            return;
        }
        if consumer.dirty.get() && last_save.elapsed() >= Duration::from_millis(SAVE_DELAY_MS) {
            consumer.save();
            last_save = Instant::now();
        }
        let sleep = next_wake(&consumer, Instant::now());
        let woken = futures_lite::future::or(consumer.wake.wait(), glommio::timer::sleep(sleep));
        let woken = futures_lite::future::or(woken, became_durable(&stream, &consumer));
        match push_without_listener(&shard, &stream, &consumer) {
            Some(deliver) => {
                let listener = shard
                    .interest_added
                    .wait_until(|| shard.has_interest(stream.account, &deliver));
                futures_lite::future::or(woken, listener).await
            }
            None => woken.await,
        }
    }
}

/// Resolves when more of the stream is deliverable, for a consumer that has
/// somewhere to deliver: consumers only deliver what is durable
/// (`Stream::deliverable_seq`), and nothing else wakes them for a new message.
async fn became_durable(stream: &Stream, consumer: &Consumer) {
    if target(consumer).is_none() {
        return std::future::pending().await;
    }
    let deliverable = stream.deliverable_seq();
    stream
        .deliverable_advanced
        .wait_until(|| stream.deliverable_seq() > deliverable)
        .await
}

/// A push consumer's deliver subject while nobody listens on it.
fn push_without_listener(shard: &Shard, stream: &Stream, consumer: &Consumer) -> Option<Bytes> {
    let c = consumer.config.borrow();
    let deliver = c.deliver_subject.as_ref()?;
    (!shard.has_interest(stream.account, deliver.as_bytes()))
        .then(|| Bytes::copy_from_slice(deliver.as_bytes()))
}

/// When the task must look again by itself: the next ack deadline, request expiry
/// or heartbeat, a pending save, the inactivity check; an idle durable sleeps long.
fn next_wake(consumer: &Consumer, now: Instant) -> Duration {
    let threshold = consumer.config.borrow().inactive_threshold;
    let idle_check_ms = if threshold > 0 {
        IDLE_CHECK_MS.min((threshold / 1_000_000 / 4).max(10) as u64)
    } else {
        QUIET_SLEEP_MS
    };
    let mut at = now + Duration::from_millis(idle_check_ms);
    let now_ms = consumer.now_ms();
    if let Some(d) = consumer.state.borrow().next_deadline_ms() {
        at = at.min(now + Duration::from_millis(d.saturating_sub(now_ms)));
    }
    for r in consumer.waiting.borrow().iter() {
        if let Some(e) = r.expires_at {
            at = at.min(e);
        }
        if let Some(hb) = r.heartbeat {
            at = at.min(r.last_sent + hb);
        }
    }
    if let Some(due) = consumer.replay_due.get() {
        at = at.min(due);
    }
    let hb = consumer.config.borrow().idle_heartbeat;
    if hb > 0 {
        at = at.min(consumer.last_push.get() + Duration::from_nanos(hb as u64));
    }
    if consumer.dirty.get() {
        at = at.min(now + Duration::from_millis(SAVE_DELAY_MS));
    }
    at.saturating_duration_since(now)
        .max(Duration::from_millis(1))
}

fn expire_pending(shard: &Shard, stream: &Stream, consumer: &Consumer) {
    let rules = consumer.rules();
    let now_ms = consumer.now_ms();
    let expired = consumer.state.borrow_mut().expire(now_ms, &rules);
    for e in expired {
        consumer.mark_dirty();
        if let Expiry::Exhausted {
            stream_seq,
            deliveries,
        } = e
        {
            let adv = MaxDeliveriesAdvisory {
                kind: kind::MAX_DELIVERIES,
                id: crate::jetstream::random_id(),
                timestamp: time_string(SystemTime::now()),
                stream: stream.name.clone(),
                consumer: consumer.name.clone(),
                stream_seq,
                deliveries,
            };
            let subject = format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
                stream.name, consumer.name
            );
            let body = serde_json::to_vec(&adv).expect("serializable");
            send(shard, stream.account, subject.as_bytes(), None, b"", &body);
        }
    }
}

fn expire_requests(shard: &Shard, stream: &Stream, consumer: &Consumer, now: Instant) {
    let expired: Vec<PullRequest> = {
        let mut waiting = consumer.waiting.borrow_mut();
        let (gone, kept): (Vec<_>, Vec<_>) = waiting
            .drain(..)
            .partition(|r| r.expires_at.is_some_and(|e| e <= now));
        waiting.extend(kept);
        gone
    };
    for r in expired {
        send_status(
            shard,
            stream,
            &r.reply,
            408,
            "Request Timeout",
            Some((r.batch_left, r.bytes_left)),
        );
    }
}

/// Sends a status message (`NATS/1.0 <code> <text>`) to a pull request's inbox.
pub fn send_status(
    shard: &Shard,
    stream: &Stream,
    reply: &[u8],
    code: u16,
    text: &str,
    pending: Option<(u64, u64)>,
) {
    let extra: Vec<(&str, String)> = match pending {
        Some((msgs, bytes)) => vec![
            ("Nats-Pending-Messages", msgs.to_string()),
            ("Nats-Pending-Bytes", bytes.to_string()),
        ],
        None => vec![],
    };
    let hdr = headers::status(code, text, &extra);
    send(shard, stream.account, reply, None, &hdr, b"");
}

fn heartbeats(shard: &Shard, stream: &Stream, consumer: &Consumer, now: Instant) {
    let delivered = consumer.state.borrow().delivered;
    let beat = || {
        headers::status(
            100,
            "Idle Heartbeat",
            &[
                ("Nats-Last-Consumer", delivered.consumer_seq.to_string()),
                ("Nats-Last-Stream", delivered.stream_seq.to_string()),
            ],
        )
    };
    let (hb, deliver) = {
        let c = consumer.config.borrow();
        (c.idle_heartbeat, c.deliver_subject.clone())
    };
    if let Some(ds) = deliver {
        if hb > 0 && now >= consumer.last_push.get() + Duration::from_nanos(hb as u64) {
            let stalled_on = consumer
                .flow
                .borrow()
                .as_ref()
                .and_then(|fc| fc.waiting_on().map(str::to_string));
            // A client that missed the flow-control request answers this header.
            let beat = match stalled_on {
                Some(reply) => headers::with_added(&beat(), &[("Nats-Consumer-Stalled", reply)]),
                None => beat(),
            };
            send(shard, stream.account, ds.as_bytes(), None, &beat, b"");
            consumer.last_push.set(now);
        }
        return;
    }
    for r in consumer.waiting.borrow_mut().iter_mut() {
        if let Some(hb) = r.heartbeat {
            if now >= r.last_sent + hb {
                send(shard, stream.account, &r.reply, None, &beat(), b"");
                r.last_sent = now;
            }
        }
    }
}

fn inactive_too_long(shard: &Shard, stream: &Stream, consumer: &Consumer, now: Instant) -> bool {
    let (durable, threshold, deliver) = {
        let c = consumer.config.borrow();
        (
            c.durable_name.is_some(),
            c.inactive_threshold,
            c.deliver_subject.clone(),
        )
    };
    if threshold <= 0 {
        return false;
    }
    let active = match &deliver {
        Some(ds) => shard.has_interest(stream.account, ds.as_bytes()),
        None => !consumer.waiting.borrow().is_empty(),
    };
    if active {
        consumer.last_active.set(now);
        return false;
    }
    // A durable with an inactive_threshold goes too, as on nats-server 2.10.
    let _ = durable;
    now.duration_since(consumer.last_active.get()) >= Duration::from_nanos(threshold as u64)
}

/// What the next delivery goes out to.
enum Target {
    Push(Bytes),
    Pull(Bytes),
}

/// The next stream sequence to send, and whether it is a redelivery.
fn next_seq(stream: &Stream, consumer: &Consumer) -> Option<(u64, bool)> {
    let st = consumer.state.borrow();
    if let Some(seq) = st.next_redelivery() {
        return Some((seq, true));
    }
    let c = consumer.config.borrow();
    if c.ack_policy != crate::jetstream::api::types::AckPolicy::None
        && c.max_ack_pending > 0
        && st.pending.len() as i64 >= c.max_ack_pending
    {
        return None;
    }
    drop(c);
    let durable = stream.deliverable_seq();
    let seq = match consumer.lps.borrow().front() {
        Some(&s) => s,
        None => stream
            .store
            .next_matching(st.next_seq, &consumer.filters())?,
    };
    (seq <= durable).then_some((seq, false))
}

fn target(consumer: &Consumer) -> Option<Target> {
    if let Some(ds) = consumer.config.borrow().deliver_subject.as_ref() {
        return Some(Target::Push(Bytes::copy_from_slice(ds.as_bytes())));
    }
    consumer
        .waiting
        .borrow()
        .front()
        .map(|r| Target::Pull(r.reply.clone()))
}

async fn deliver_ready(shard: &Rc<Shard>, stream: &Rc<Stream>, consumer: &Consumer) {
    if stream.catching_up() {
        return; // its store lacks messages a peer is sending: none is skipped
    }
    if consumer
        .paused_until
        .get()
        .is_some_and(|t| t > SystemTime::now())
    {
        return;
    }
    if push_without_listener(shard, stream, consumer).is_some() {
        consumer.reset_flow();
        return;
    }
    let mut sent = 0;
    while let Some(target) = target(consumer) {
        if flow_stalled(consumer) {
            return;
        }
        let Some((seq, redelivery)) = next_seq(stream, consumer) else {
            finish_no_wait(shard, stream, consumer);
            return;
        };
        let msg = match stream.store.get(seq).await {
            Ok(Some(m)) => m,
            Err(natrix_storage::StoreError::Corrupt { .. }) if stream.cluster.get().is_some() => {
                // Other replicas hold it: this one gets it again and delivers nothing meanwhile.
                crate::jetstream::cluster::catchup::repair_damaged(shard, stream, seq);
                return;
            }
            Ok(None) | Err(_) => {
                skip(consumer, seq, redelivery);
                continue;
            }
        };
        if consumer.deleted.get() {
            return;
        }
        // The state may have moved while the read was in flight.
        if next_seq(stream, consumer) != Some((seq, redelivery)) {
            continue;
        }
        if !redelivery {
            let now = Instant::now();
            if let Some(due) = consumer.replay_wait(msg.timestamp_ns, now) {
                consumer.replay_due.set(Some(due));
                return;
            }
            consumer.replay_due.set(None);
            consumer.replayed.set(Some((now, msg.timestamp_ns)));
        }
        let headers_only = consumer.config.borrow().headers_only;
        let track = consumer.tracks_acks();
        let (cseq, dc) = consumer.state.borrow().next_delivery(seq, track);
        let pending = consumer
            .num_pending(stream)
            .saturating_sub(u64::from(!redelivery));
        let reply = ack::subject(
            &stream.name,
            &consumer.name,
            dc,
            seq,
            cseq,
            msg.timestamp_ns,
            pending,
        );
        // What a pull request's max_bytes counts, as on nats-server.
        let size = msg.subject.len() + reply.len() + msg.headers.len() + msg.payload.len();
        if let Target::Pull(_) = target {
            if !fits_request(shard, stream, consumer, size as u64) {
                continue;
            }
        }
        let rules = consumer.rules();
        let now_ms = consumer.now_ms();
        let delivered = consumer
            .state
            .borrow_mut()
            .on_delivered(seq, now_ms, &rules, track);
        debug_assert_eq!(delivered, (cseq, dc), "the delivery was foreseen");
        if !redelivery {
            let mut lps = consumer.lps.borrow_mut();
            if lps.front() == Some(&seq) {
                lps.pop_front();
                if lps.is_empty() {
                    drop(lps);
                    consumer
                        .state
                        .borrow_mut()
                        .skip_to(consumer.lps_end.get() + 1);
                }
            }
        }
        consumer.mark_dirty();
        let (hdr, body): (Vec<u8>, &[u8]) = if headers_only {
            (
                headers::with_added(
                    &msg.headers,
                    &[("Nats-Msg-Size", msg.payload.len().to_string())],
                ),
                b"",
            )
        } else {
            (msg.headers.to_vec(), &msg.payload)
        };
        let to = match &target {
            Target::Push(s) | Target::Pull(s) => s,
        };
        send_msg(
            shard,
            stream,
            to,
            msg.subject.as_bytes(),
            reply.as_bytes(),
            &hdr,
            body,
        );
        match &target {
            Target::Push(to) => {
                consumer.last_push.set(Instant::now());
                let pushed = to.len() + reply.len() + hdr.len() + body.len();
                flow_pushed(shard, stream, consumer, to, pushed as u64);
            }
            Target::Pull(_) => took_one(consumer, size as u64),
        }
        if !track {
            stream.retire_acked(seq);
        }
        sent += 1;
        if sent % DELIVERIES_PER_TURN == 0 {
            glommio::yield_if_needed().await;
        }
    }
}

fn flow_stalled(consumer: &Consumer) -> bool {
    consumer
        .flow
        .borrow()
        .as_ref()
        .is_some_and(|fc| fc.stalled())
}

/// Counts a pushed message for flow control, and asks the client for a
/// flow-control reply when it is due.
fn flow_pushed(shard: &Shard, stream: &Stream, consumer: &Consumer, to: &[u8], size_bytes: u64) {
    let mut flow = consumer.flow.borrow_mut();
    let Some(fc) = flow.as_mut() else { return };
    if !fc.on_pushed(size_bytes) {
        return;
    }
    let token = crate::jetstream::random_token(4);
    let reply = format!("$JS.FC.{}.{}.{token}", stream.name, consumer.name);
    let hdr = headers::status(100, "FlowControl Request", &[]);
    send(shard, stream.account, to, Some(reply.as_bytes()), &hdr, b"");
    fc.asked(reply);
}

fn send_msg(
    shard: &Shard,
    stream: &Stream,
    to: &[u8],
    subject: &[u8],
    reply: &[u8],
    hdr: &[u8],
    body: &[u8],
) {
    let _ = subject;
    crate::jetstream::send_as(shard, stream.account, to, subject, Some(reply), hdr, body);
}

fn skip(consumer: &Consumer, seq: u64, redelivery: bool) {
    let mut st = consumer.state.borrow_mut();
    if redelivery {
        st.forget(seq);
        return;
    }
    let mut lps = consumer.lps.borrow_mut();
    if lps.front() == Some(&seq) {
        lps.pop_front();
        if lps.is_empty() {
            st.skip_to(consumer.lps_end.get() + 1);
        }
    } else {
        st.skip_to(seq + 1);
    }
}

/// Checks the front pull request's byte budget; a message that can never fit
/// ends the request with a 409.
fn fits_request(shard: &Shard, stream: &Stream, consumer: &Consumer, size: u64) -> bool {
    let mut waiting = consumer.waiting.borrow_mut();
    let Some(r) = waiting.front() else {
        return false;
    };
    if !r.byte_limited || size <= r.bytes_left {
        return true;
    }
    // nats-server ends the request with a 409 here, after a partial batch too.
    let r = waiting.pop_front().expect("front exists");
    drop(waiting);
    send_status(
        shard,
        stream,
        &r.reply,
        409,
        "Message Size Exceeds MaxBytes",
        None,
    );
    false
}

fn took_one(consumer: &Consumer, size: u64) {
    let mut waiting = consumer.waiting.borrow_mut();
    let Some(r) = waiting.front_mut() else {
        return;
    };
    r.batch_left -= 1;
    r.delivered += 1;
    r.last_sent = Instant::now();
    r.bytes_left = r.bytes_left.saturating_sub(size);
    if r.batch_left == 0 || (r.byte_limited && r.bytes_left == 0) {
        waiting.pop_front();
    }
}

/// Nothing more to send now: no-wait requests end here, except one with an
/// `expires` that got nothing yet: as on nats-server it waits, once, for the first
/// messages (or its expiry), then ends when the stream has no more.
fn finish_no_wait(shard: &Shard, stream: &Stream, consumer: &Consumer) {
    let done: Vec<PullRequest> = {
        let mut waiting = consumer.waiting.borrow_mut();
        let (gone, kept): (Vec<_>, Vec<_>) = waiting
            .drain(..)
            .partition(|r| r.no_wait && (r.expires_at.is_none() || r.delivered > 0));
        waiting.extend(kept);
        gone
    };
    // nats-server 2.10+ ends a no-wait request with 404 even after a partial
    // batch (2.9 said 408); the pending counts tell what was left.
    for r in done {
        let pending = (r.delivered > 0).then_some((r.batch_left, r.bytes_left));
        send_status(shard, stream, &r.reply, 404, "No Messages", pending);
    }
}
