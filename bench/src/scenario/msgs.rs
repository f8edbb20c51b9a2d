//! Publishers and subscribers: pipelined PUBs gathered into large writes, and
//! subscribers that read large chunks and count every complete MSG.

use super::Ctx;
use crate::conn::{Conn, Flow};
use crate::engine::Coord;
use crate::stats::{new_histogram, now_nanos, ClientResult, Role};
use natrix::proto::encode;
use natrix::proto::server_parser::ServerOp;
use natrix_shards::Notify;
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// PINGs a publisher may have unanswered before it waits.
const PINGS_IN_FLIGHT: u64 = 4;
/// How often a publisher paused by --inflight looks again.
const INFLIGHT_POLL: Duration = Duration::from_micros(100);
/// Read buffer of a subscriber.
const SUB_READ_BUFFER: usize = 256 * 1024;
/// How often a waiting subscriber looks at the other clients' progress.
const SUB_POLL: Duration = Duration::from_millis(50);
/// How often a publisher probes for the subscribers' interest (see `probe_interest`).
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// How long it probes before giving up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the payload that carry the send time, when the payload is large enough.
pub const STAMP_BYTES: usize = 8;

/// The bytes of one PUB, with room for a send stamp at `stamp_at` when there is one.
pub struct Template {
    pub bytes: Vec<u8>,
    pub stamp_at: Option<usize>,
}

impl Template {
    pub fn new(subject: &str, reply: Option<&[u8]>, size: usize) -> Template {
        let mut bytes = Vec::new();
        encode::publish_head(&mut bytes, subject.as_bytes(), reply, size);
        let at = bytes.len();
        bytes.extend((0..size).map(|i| b'a' + (i % 26) as u8));
        bytes.extend_from_slice(b"\r\n");
        Template {
            bytes,
            stamp_at: (size >= STAMP_BYTES).then_some(at),
        }
    }

    /// Appends `count` copies, each stamped with `stamp`.
    pub fn append(&self, out: &mut Vec<u8>, count: usize, stamp: u64) {
        for _ in 0..count {
            let at = out.len();
            out.extend_from_slice(&self.bytes);
            if let Some(s) = self.stamp_at {
                out[at + s..at + s + STAMP_BYTES].copy_from_slice(&stamp.to_le_bytes());
            }
        }
    }
}

/// The send stamp in a payload of the configured size.
pub fn read_stamp(payload: &[u8], size: usize) -> Option<u64> {
    if size >= STAMP_BYTES && payload.len() == size {
        Some(u64::from_le_bytes(payload[..STAMP_BYTES].try_into().ok()?))
    } else {
        None
    }
}

/// What a publisher's reading task tells it.
#[derive(Default)]
struct Inbound {
    pongs: Cell<u64>,
    pings_owed: Cell<u64>,
    error: RefCell<Option<String>>,
    wake: Notify,
}

pub async fn publisher(
    ctx: Rc<Ctx>,
    index: usize,
    slot: usize,
    quota: Option<u64>,
) -> ClientResult {
    let server = ctx.server_for_slot(slot);
    let mut result = ClientResult::new(Role::Pub, index, &server.address());
    let mut conn = match Conn::connect(server, &format!("natrix-bench-pub-{index}"), 4096).await {
        Ok(c) => c,
        Err(e) => return ctx.fail(result, e),
    };
    ctx.coord.record_info(&conn.info);
    Coord::bump(&ctx.coord.pubs_ready);
    if !ctx.coord.wait_until(|| Coord::is(&ctx.coord.go)).await {
        return result;
    }
    if ctx.cross_server && ctx.fanout > 0 {
        if let Err(e) = probe_interest(&ctx, &mut conn, index).await {
            return ctx.fail(result, e);
        }
    }
    let inbound = Rc::new(Inbound::default());
    let stream = conn.stream.clone();
    let reader = glommio::spawn_local(read_acks(conn, inbound.clone()));
    match publish(&ctx, &stream, &inbound, quota, &mut result).await {
        Ok(()) => {}
        Err(e) => result = ctx.fail(result, e),
    }
    drop(reader);
    Coord::bump(&ctx.coord.pubs_done);
    result
}

/// When clients are spread over several servers of a cluster, a subscriber's interest
/// reaches the other servers some time after its SUB was answered. Before publishing,
/// a publisher sends probes on the bench subject with a reply inbox (bench messages
/// have none) until every subscriber (one, for a queue group) has answered one, so that
/// no message is published where the subscribers' interest is not yet known.
async fn probe_interest(ctx: &Ctx, conn: &mut Conn, index: usize) -> Result<(), String> {
    let inbox = format!("_INBOX.{}.probe.{index}", ctx.run_id);
    let mut start = Vec::new();
    encode::subscribe(&mut start, inbox.as_bytes(), None, b"probe");
    conn.write(&start).await?;
    let mut probe = Vec::new();
    encode::publish(
        &mut probe,
        ctx.flags.subject.as_bytes(),
        Some(inbox.as_bytes()),
        b"",
    );
    let needed = if ctx.flags.scenario == crate::flags::Scenario::Queue {
        1
    } else {
        ctx.subscribers
    };
    let mut answered = vec![false; ctx.subscribers];
    let deadline = Instant::now() + PROBE_TIMEOUT;
    conn.set_read_timeout(Some(PROBE_INTERVAL))?;
    while answered.iter().filter(|a| **a).count() < needed {
        if Instant::now() > deadline {
            return Err(format!(
                "the subscribers' interest did not reach {} in {PROBE_TIMEOUT:?}",
                conn.info.server_name
            ));
        }
        if Coord::is(&ctx.coord.abort) {
            return Ok(());
        }
        conn.write(&probe).await?;
        loop {
            match conn.reader.fill(&conn.stream).await {
                Ok(0) => return Err("connection closed by the server".into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => return Err(format!("read: {e}")),
            }
            let mut pongs = 0;
            let mut error = None;
            conn.reader.drain(|op| {
                match op {
                    ServerOp::Msg {
                        sid: b"probe",
                        payload,
                        ..
                    } => {
                        let who = std::str::from_utf8(payload)
                            .ok()
                            .and_then(|t| t.parse().ok());
                        if let Some(a) = who.and_then(|i: usize| answered.get_mut(i)) {
                            *a = true;
                        }
                    }
                    ServerOp::Ping => pongs += 1,
                    ServerOp::Err(text) => {
                        error = Some(format!("server error: {}", String::from_utf8_lossy(text)))
                    }
                    _ => {}
                }
                Flow::Continue
            })?;
            if let Some(e) = error {
                return Err(e);
            }
            for _ in 0..pongs {
                conn.write(b"PONG\r\n").await?;
            }
            if answered.iter().filter(|a| **a).count() >= needed {
                break;
            }
        }
    }
    conn.set_read_timeout(None)?;
    conn.write(b"UNSUB probe\r\n").await
}

/// Reads what the server sends a publisher: PONGs (counted) and its PINGs (owed a
/// PONG, which the publisher writes so that writes never interleave).
async fn read_acks(mut conn: Conn, inbound: Rc<Inbound>) {
    let error = loop {
        match conn.reader.fill(&conn.stream).await {
            Ok(0) => break "connection closed by the server".to_string(),
            Ok(_) => {}
            Err(e) => break format!("read: {e}"),
        }
        let mut error = None;
        let drained = conn.reader.drain(|op| {
            match op {
                ServerOp::Pong => inbound.pongs.set(inbound.pongs.get() + 1),
                ServerOp::Ping => inbound.pings_owed.set(inbound.pings_owed.get() + 1),
                ServerOp::Err(text) => {
                    error = Some(format!("server error: {}", String::from_utf8_lossy(text)));
                    return Flow::Stop;
                }
                _ => {}
            }
            Flow::Continue
        });
        if let Some(e) = error.or(drained.err()) {
            break e;
        }
        inbound.wake.notify();
    };
    *inbound.error.borrow_mut() = Some(error);
    inbound.wake.notify();
}

async fn publish(
    ctx: &Ctx,
    stream: &crate::conn::Stream,
    inbound: &Inbound,
    quota: Option<u64>,
    result: &mut ClientResult,
) -> Result<(), String> {
    let flags = &ctx.flags;
    let template = Template::new(&flags.subject, None, flags.size);
    let per_batch = (flags.batch / template.bytes.len()).max(1) as u64;
    let deadline = flags.duration.map(|d| Instant::now() + d);
    let mut out = Vec::with_capacity(flags.batch + template.bytes.len() + 64);
    let (mut sent, mut pings, mut since_ping) = (0u64, 0u64, 0usize);
    result.first_ns = Some(now_nanos());
    loop {
        let count = match (quota, deadline) {
            (Some(q), _) => per_batch.min(q - sent),
            (None, Some(d)) if Instant::now() < d => per_batch,
            _ => 0,
        };
        if count == 0 || Coord::is(&ctx.coord.abort) {
            break;
        }
        template.append(&mut out, count as usize, now_nanos());
        for _ in 0..inbound.pings_owed.replace(0) {
            out.extend_from_slice(b"PONG\r\n");
        }
        since_ping += out.len();
        if since_ping >= flags.flush_bytes {
            out.extend_from_slice(b"PING\r\n");
            pings += 1;
            since_ping = 0;
        }
        write(stream, &out).await?;
        out.clear();
        sent += count;
        ctx.coord.published.fetch_add(count, Ordering::AcqRel);
        while pings > inbound.pongs.get() + PINGS_IN_FLIGHT {
            wait_inbound(inbound).await?;
        }
        wait_for_subscribers(ctx).await;
    }
    write(stream, b"PING\r\n").await?;
    pings += 1;
    while inbound.pongs.get() < pings {
        wait_inbound(inbound).await?;
    }
    result.last_ns = Some(now_nanos());
    result.msgs = sent;
    result.bytes = sent * flags.size as u64;
    Ok(())
}

/// Pauses while too many deliveries are outstanding (see --inflight).
async fn wait_for_subscribers(ctx: &Ctx) {
    let (Some(limit), fanout) = (ctx.inflight_msgs, ctx.fanout) else {
        return;
    };
    let coord = &ctx.coord;
    let outstanding = || {
        let delivered = coord.received.load(Ordering::Acquire);
        (coord.published.load(Ordering::Acquire) * fanout).saturating_sub(delivered)
    };
    while fanout > 0 && outstanding() > limit && !Coord::is(&coord.abort) {
        glommio::timer::sleep(INFLIGHT_POLL).await;
    }
}

async fn write(stream: &crate::conn::Stream, bytes: &[u8]) -> Result<(), String> {
    crate::conn::write_all(stream, bytes)
        .await
        .map_err(|e| format!("write: {e}"))
}

async fn wait_inbound(inbound: &Inbound) -> Result<(), String> {
    if let Some(e) = inbound.error.borrow().clone() {
        return Err(e);
    }
    inbound.wake.wait().await;
    match inbound.error.borrow().clone() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A subscriber on the bench subject (in the queue group when `queue`).
pub async fn subscriber(ctx: Rc<Ctx>, index: usize, slot: usize, queue: bool) -> ClientResult {
    let server = ctx.server_for_slot(slot);
    let mut result = ClientResult::new(Role::Sub, index, &server.address());
    let name = format!("natrix-bench-sub-{index}");
    let mut conn = match Conn::connect(server, &name, SUB_READ_BUFFER).await {
        Ok(c) => c,
        Err(e) => return ctx.fail(result, e),
    };
    ctx.coord.record_info(&conn.info);
    let mut sub = Vec::new();
    let group = queue.then_some(ctx.flags.queue.as_bytes());
    encode::subscribe(&mut sub, ctx.flags.subject.as_bytes(), group, b"1");
    sub.extend_from_slice(b"PING\r\n");
    let subscribed = async {
        conn.write(&sub).await?;
        conn.wait_pong().await?;
        conn.set_read_timeout(Some(SUB_POLL))
    };
    if let Err(e) = subscribed.await {
        return ctx.fail(result, e);
    }
    Coord::bump(&ctx.coord.subs_ready);
    if !queue {
        result.expected = ctx.expected_per_sub;
    }
    match count_messages(&ctx, &mut conn, queue, &mut result).await {
        Ok(()) => result,
        Err(e) => ctx.fail(result, e),
    }
}

async fn count_messages(
    ctx: &Ctx,
    conn: &mut Conn,
    queue: bool,
    result: &mut ClientResult,
) -> Result<(), String> {
    let size = ctx.flags.size;
    let mut latency = new_histogram();
    let mut last_progress = Instant::now();
    let coord = &ctx.coord;
    loop {
        match conn.reader.fill(&conn.stream).await {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(_) => {
                let now = now_nanos();
                let before = result.msgs;
                let mut pongs = 0;
                let mut error = None;
                let mut answers = Vec::new();
                conn.reader.drain(|op| {
                    match op {
                        ServerOp::Msg {
                            reply: Some(inbox), ..
                        } => {
                            // A publisher's probe (see `probe_interest`): answered, not counted.
                            let mut who = itoa::Buffer::new();
                            encode::publish(
                                &mut answers,
                                inbox,
                                None,
                                who.format(result.index).as_bytes(),
                            );
                        }
                        ServerOp::Msg { payload, .. } => {
                            result.msgs += 1;
                            result.bytes += payload.len() as u64;
                            if let Some(stamp) = read_stamp(payload, size) {
                                let _ = latency.record(now.saturating_sub(stamp).max(1));
                            }
                        }
                        ServerOp::Ping => pongs += 1,
                        ServerOp::Err(text) => {
                            error = Some(format!("server error: {}", String::from_utf8_lossy(text)))
                        }
                        _ => {}
                    }
                    Flow::Continue
                })?;
                if let Some(e) = error {
                    return Err(e);
                }
                for _ in 0..pongs {
                    answers.extend_from_slice(b"PONG\r\n");
                }
                if !answers.is_empty() {
                    conn.write(&answers).await?;
                }
                let got = result.msgs - before;
                if got > 0 {
                    result.first_ns.get_or_insert(now);
                    result.last_ns = Some(now);
                    coord.received.fetch_add(got, Ordering::AcqRel);
                    last_progress = Instant::now();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if Coord::is(&coord.abort) {
            break;
        }
        let pubs_done = Coord::get(&coord.pubs_done) == ctx.publishers;
        let target = match (ctx.expected_per_sub, pubs_done) {
            (Some(n), _) if !queue => Some(n),
            _ if pubs_done => Some(coord.published.load(Ordering::Acquire)),
            _ => None,
        };
        let counted = if queue {
            coord.received.load(Ordering::Acquire)
        } else {
            result.msgs
        };
        if target.is_some_and(|t| counted >= t) {
            break;
        }
        if pubs_done && last_progress.elapsed() > ctx.flags.grace {
            break;
        }
    }
    if !queue && result.expected.is_none() {
        result.expected = Some(coord.published.load(Ordering::Acquire));
    }
    if !latency.is_empty() {
        result.latency = Some(latency);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use natrix::proto::{parse, ClientOp, Limits};

    #[test]
    fn template_stamps_each_copy() {
        let t = Template::new("a.b", None, 16);
        let mut out = Vec::new();
        t.append(&mut out, 3, 0x0102_0304_0506_0708);
        let limits = Limits {
            control_line_max: 1024,
            payload_max: 1024,
        };
        let mut at = 0;
        for _ in 0..3 {
            let (op, n) = parse(&out[at..], &limits).unwrap();
            let ClientOp::Pub { payload, .. } = op else {
                panic!("not a PUB")
            };
            assert_eq!(read_stamp(payload, 16), Some(0x0102_0304_0506_0708));
            at += n;
        }
        assert_eq!(at, out.len());
        let small = Template::new("a", None, 4);
        assert!(small.stamp_at.is_none());
        assert_eq!(small.bytes, b"PUB a 4\r\nabcd\r\n");
    }
}
