//! Request/reply: each requester has one request in flight and times its round trip;
//! responders in a queue group echo every request to its reply subject, one write per
//! chunk read.

use super::Ctx;
use crate::conn::{Conn, Flow};
use crate::engine::Coord;
use crate::scenario::msgs::Template;
use crate::stats::{new_histogram, now_nanos, ClientResult, Role};
use natrix::proto::encode;
use natrix::proto::server_parser::ServerOp;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const RESPONDER_READ_BUFFER: usize = 64 * 1024;
/// How often an idle responder looks whether the run is over.
const RESPONDER_POLL: Duration = Duration::from_millis(50);

pub async fn requester(
    ctx: Rc<Ctx>,
    index: usize,
    slot: usize,
    quota: Option<u64>,
) -> ClientResult {
    let server = ctx.server_for_slot(slot);
    let mut result = ClientResult::new(Role::Req, index, &server.address());
    match request_loop(&ctx, index, slot, quota, &mut result).await {
        Ok(()) => {}
        Err(e) => result = ctx.fail(result, e),
    }
    Coord::bump(&ctx.coord.pubs_done);
    result
}

async fn request_loop(
    ctx: &Ctx,
    index: usize,
    slot: usize,
    quota: Option<u64>,
    result: &mut ClientResult,
) -> Result<(), String> {
    let server = ctx.server_for_slot(slot);
    let mut conn = Conn::connect(server, &format!("natrix-bench-req-{index}"), 64 * 1024).await?;
    ctx.coord.record_info(&conn.info);
    let inbox = format!("_INBOX.{}.{index}", ctx.run_id);
    let mut setup = Vec::new();
    encode::subscribe(&mut setup, inbox.as_bytes(), None, b"1");
    setup.extend_from_slice(b"PING\r\n");
    conn.write(&setup).await?;
    conn.wait_pong().await?;
    conn.set_read_timeout(Some(ctx.flags.grace))?;
    Coord::bump(&ctx.coord.pubs_ready);
    if !ctx.coord.wait_until(|| Coord::is(&ctx.coord.go)).await {
        return Ok(());
    }
    let request = Template::new(&ctx.flags.subject, Some(inbox.as_bytes()), ctx.flags.size);
    let deadline = ctx.flags.duration.map(|d| Instant::now() + d);
    let mut latency = new_histogram();
    let mut out = Vec::with_capacity(request.bytes.len());
    result.first_ns = Some(now_nanos());
    result.expected = quota;
    loop {
        let more = match (quota, deadline) {
            (Some(q), _) => result.msgs < q,
            (None, Some(d)) => Instant::now() < d,
            _ => false,
        };
        if !more || Coord::is(&ctx.coord.abort) {
            break;
        }
        out.clear();
        let sent = now_nanos();
        request.append(&mut out, 1, sent);
        conn.write(&out).await?;
        let mut bytes = 0;
        conn.read_until(|op| {
            Ok(match op {
                ServerOp::Msg { payload, .. } => {
                    bytes = payload.len();
                    Flow::Stop
                }
                _ => Flow::Continue,
            })
        })
        .await?;
        let _ = latency.record(now_nanos().saturating_sub(sent).max(1));
        result.msgs += 1;
        result.bytes += bytes as u64;
        ctx.coord.published.fetch_add(1, Ordering::AcqRel);
    }
    result.last_ns = Some(now_nanos());
    result.latency = Some(latency);
    Ok(())
}

pub async fn responder(ctx: Rc<Ctx>, index: usize, slot: usize) -> ClientResult {
    let server = ctx.server_for_slot(slot);
    let mut result = ClientResult::new(Role::Rep, index, &server.address());
    match respond_loop(&ctx, index, slot, &mut result).await {
        Ok(()) => result,
        Err(e) => ctx.fail(result, e),
    }
}

async fn respond_loop(
    ctx: &Ctx,
    index: usize,
    slot: usize,
    result: &mut ClientResult,
) -> Result<(), String> {
    let server = ctx.server_for_slot(slot);
    let name = format!("natrix-bench-rep-{index}");
    let mut conn = Conn::connect(server, &name, RESPONDER_READ_BUFFER).await?;
    ctx.coord.record_info(&conn.info);
    let mut out = Vec::new();
    let queue = ctx.flags.queue.as_bytes();
    encode::subscribe(&mut out, ctx.flags.subject.as_bytes(), Some(queue), b"1");
    out.extend_from_slice(b"PING\r\n");
    conn.write(&out).await?;
    conn.wait_pong().await?;
    conn.set_read_timeout(Some(RESPONDER_POLL))?;
    Coord::bump(&ctx.coord.subs_ready);
    loop {
        match conn.reader.fill(&conn.stream).await {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(_) => {
                out.clear();
                let mut error = None;
                let now = now_nanos();
                conn.reader.drain(|op| {
                    match op {
                        ServerOp::Msg {
                            reply: Some(reply),
                            payload,
                            ..
                        } => {
                            encode::publish(&mut out, reply, None, payload);
                            result.msgs += 1;
                            result.bytes += payload.len() as u64;
                            result.first_ns.get_or_insert(now);
                            result.last_ns = Some(now);
                        }
                        ServerOp::Ping => out.extend_from_slice(b"PONG\r\n"),
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
                if !out.is_empty() {
                    conn.write(&out).await?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if Coord::is(&ctx.coord.stop) || Coord::is(&ctx.coord.abort) {
            return Ok(());
        }
    }
}
