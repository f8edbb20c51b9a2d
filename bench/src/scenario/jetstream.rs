//! JetStream scenarios (`--js`): publish into a stream natrix-bench creates
//! (`--stream`, `--replicas`, `--storage`), synchronously (`--window 1`) or with
//! `--window` acks in flight; and consume a stored stream (filled first when it holds
//! fewer than `--msgs`) with a pull (`--pull`, `--window` messages a request) or push
//! (`--push`) consumer shared by `--sub` subscribers. A server whose INFO lacks
//! `"jetstream": true` is refused with a clear message.

use super::Ctx;
use crate::admin::Admin;
use crate::conn::ServerInfo;
use crate::conn::{Conn, Flow, Stream};
use crate::engine::Coord;
use crate::flags::{Flags, Storage};
use crate::scenario::msgs::Template;
use crate::stats::{new_histogram, now_nanos, ClientResult, Role};
use crate::url::ServerUrl;
use natrix::proto::encode;
use natrix::proto::server_parser::ServerOp;
use natrix_shards::Notify;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The durable consumer a consume run creates (and deletes after).
pub const CONSUMER: &str = "natrix-bench";
const SUB_READ_BUFFER: usize = 256 * 1024;
const POLL: Duration = Duration::from_millis(50);

/// Reads the INFO a server sends first, over a plain blocking socket.
pub fn probe_info(url: &ServerUrl) -> Result<ServerInfo, String> {
    let address = url.address();
    let stream = TcpStream::connect(address.as_str())
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("{address}: no INFO: {e}"))?;
    let json = line
        .trim_end()
        .strip_prefix("INFO ")
        .ok_or_else(|| format!("{address}: expected INFO, got {line:?}"))?;
    ServerInfo::from_json(json.as_bytes())
}

/// Refuses a server whose INFO does not say `"jetstream": true`.
pub fn require(info: &ServerInfo) -> Result<(), String> {
    if info.jetstream {
        Ok(())
    } else {
        Err(format!(
            "JetStream scenarios need a JetStream server: {} {} does not announce \
             \"jetstream\": true in its INFO (start it with -js)",
            if info.server_name.is_empty() {
                "the server"
            } else {
                &info.server_name
            },
            info.version
        ))
    }
}

/// Deletes the stream if it exists and creates it afresh for a publish run.
pub fn create_stream(admin: &mut Admin, flags: &Flags) -> Result<(), String> {
    let name = &flags.stream;
    let _ = admin.api(
        &format!("$JS.API.STREAM.DELETE.{name}"),
        &serde_json::json!({}),
    );
    admin.api(
        &format!("$JS.API.STREAM.CREATE.{name}"),
        &stream_config(flags),
    )?;
    Ok(())
}

fn stream_config(flags: &Flags) -> serde_json::Value {
    serde_json::json!({
        "name": flags.stream,
        "subjects": [flags.subject],
        "storage": match flags.storage { Storage::File => "file", Storage::Memory => "memory" },
        "num_replicas": flags.replicas,
        "retention": "limits",
        "discard": "old",
    })
}

/// Makes sure the stream holds at least --msgs messages (creating and filling it when
/// needed) and creates the durable consumer; returns the messages to consume.
pub fn prepare_consume(admin: &mut Admin, flags: &Flags, run_id: &str) -> Result<u64, String> {
    let name = &flags.stream;
    let stored = match admin.api(
        &format!("$JS.API.STREAM.INFO.{name}"),
        &serde_json::json!({}),
    ) {
        Ok(info) => info["state"]["messages"].as_u64().unwrap_or(0),
        Err(_) => {
            admin.api(
                &format!("$JS.API.STREAM.CREATE.{name}"),
                &stream_config(flags),
            )?;
            0
        }
    };
    if stored < flags.msgs {
        let payload = vec![b'x'; flags.size];
        let missing = flags.msgs - stored;
        let good = admin.publish_acked(&flags.subject, &payload, missing, 256)?;
        if good < missing {
            return Err(format!(
                "filling {name}: {} of {missing} publishes failed",
                missing - good
            ));
        }
    }
    let info = admin.api(
        &format!("$JS.API.STREAM.INFO.{name}"),
        &serde_json::json!({}),
    )?;
    let total = info["state"]["messages"].as_u64().unwrap_or(0);
    let _ = delete_consumer(admin, flags);
    let mut config = serde_json::json!({
        "durable_name": CONSUMER,
        "ack_policy": "none",
        "deliver_policy": "all",
        "max_ack_pending": -1,
    });
    if flags.push {
        config["deliver_subject"] = serde_json::Value::String(push_subject(run_id));
        config["deliver_group"] = serde_json::Value::String(flags.queue.clone());
    }
    admin.api(
        &format!("$JS.API.CONSUMER.DURABLE.CREATE.{name}.{CONSUMER}"),
        &serde_json::json!({"stream_name": name, "config": config}),
    )?;
    Ok(total)
}

pub fn delete_consumer(admin: &mut Admin, flags: &Flags) -> Result<(), String> {
    admin
        .api(
            &format!("$JS.API.CONSUMER.DELETE.{}.{CONSUMER}", flags.stream),
            &serde_json::json!({}),
        )
        .map(|_| ())
}

fn push_subject(run_id: &str) -> String {
    format!("_INBOX.{run_id}.push")
}

/// What a JetStream publisher's reading task tells it.
#[derive(Default)]
struct Acks {
    acked: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
    failed: RefCell<Option<String>>,
    /// (messages sent up to and including this batch, when the batch was sent)
    batches: RefCell<VecDeque<(u64, u64)>>,
    latency_counted: Cell<u64>,
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
    let outcome = publish(&ctx, index, slot, quota, &mut result).await;
    Coord::bump(&ctx.coord.pubs_done);
    match outcome {
        Ok(()) => result,
        Err(e) => ctx.fail(result, e),
    }
}

async fn publish(
    ctx: &Ctx,
    index: usize,
    slot: usize,
    quota: Option<u64>,
    result: &mut ClientResult,
) -> Result<(), String> {
    let flags = &ctx.flags;
    let server = ctx.server_for_slot(slot);
    let mut conn = Conn::connect(server, &format!("natrix-bench-jspub-{index}"), 64 * 1024).await?;
    let inbox = format!("_INBOX.{}.js{index}", ctx.run_id);
    let mut setup = Vec::new();
    encode::subscribe(&mut setup, inbox.as_bytes(), None, b"1");
    setup.extend_from_slice(b"PING\r\n");
    conn.write(&setup).await?;
    conn.wait_pong().await?;
    Coord::bump(&ctx.coord.pubs_ready);
    if !ctx.coord.wait_until(|| Coord::is(&ctx.coord.go)).await {
        return Ok(());
    }
    let acks = Rc::new(Acks::default());
    let stream = conn.stream.clone();
    let reader = glommio::spawn_local(read_acks(conn, acks.clone()));
    let template = Template::new(&flags.subject, Some(inbox.as_bytes()), flags.size);
    let window = flags.window as u64;
    let per_batch = ((flags.batch / template.bytes.len()).max(1) as u64).min(window);
    let deadline = flags.duration.map(|d| Instant::now() + d);
    let mut latency = new_histogram();
    let mut out = Vec::new();
    let mut sent = 0u64;
    result.first_ns = Some(now_nanos());
    loop {
        let more = match (quota, deadline) {
            (Some(q), _) => q - sent,
            (None, Some(d)) if Instant::now() < d => per_batch,
            _ => 0,
        };
        if more == 0 || Coord::is(&ctx.coord.abort) {
            break;
        }
        let room = window - (sent - acks.acked.get());
        if room == 0 {
            wait_acks(&acks, flags.grace).await?;
            continue;
        }
        let count = more.min(per_batch).min(room);
        let stamp = now_nanos();
        out.clear();
        template.append(&mut out, count as usize, stamp);
        sent += count;
        acks.batches.borrow_mut().push_back((sent, stamp));
        write(&stream, &out).await?;
        ctx.coord.published.fetch_add(count, Ordering::AcqRel);
        record_latency(&acks, &mut latency);
    }
    while acks.acked.get() < sent {
        if wait_acks(&acks, flags.grace).await.is_err() {
            break;
        }
        record_latency(&acks, &mut latency);
    }
    drop(reader);
    result.last_ns = Some(now_nanos());
    result.expected = Some(sent);
    result.msgs = acks.acked.get() - acks.errors.get();
    result.bytes = result.msgs * flags.size as u64;
    if !latency.is_empty() {
        result.latency = Some(latency);
    }
    if let Some(e) = acks.failed.borrow().clone() {
        return Err(e);
    }
    if acks.errors.get() > 0 {
        return Err(format!(
            "{} publish acks were errors, the first: {}",
            acks.errors.get(),
            acks.first_error.borrow().clone().unwrap_or_default()
        ));
    }
    Ok(())
}

/// Records, for every message acknowledged since the last call, the time since its
/// batch was sent.
fn record_latency(acks: &Acks, latency: &mut hdrhistogram::Histogram<u64>) {
    let now = now_nanos();
    let acked = acks.acked.get();
    let mut batches = acks.batches.borrow_mut();
    let mut counted = acks.latency_counted.get();
    while let Some(&(end, stamp)) = batches.front() {
        let upto = end.min(acked);
        if upto > counted {
            let _ = latency.record_n(now.saturating_sub(stamp).max(1), upto - counted);
            counted = upto;
        }
        if end <= acked {
            batches.pop_front();
        } else {
            break;
        }
    }
    acks.latency_counted.set(counted);
}

async fn wait_acks(acks: &Acks, grace: Duration) -> Result<(), String> {
    if let Some(e) = acks.failed.borrow().clone() {
        return Err(e);
    }
    let before = acks.acked.get();
    let waited = glommio::timer::timeout(grace, async {
        acks.wake.wait().await;
        Ok(())
    })
    .await;
    if let Some(e) = acks.failed.borrow().clone() {
        return Err(e);
    }
    match waited {
        Err(_) if acks.acked.get() == before => Err(format!("no publish ack within {grace:?}")),
        _ => Ok(()),
    }
}

async fn read_acks(mut conn: Conn, acks: Rc<Acks>) {
    let error = loop {
        match conn.reader.fill(&conn.stream).await {
            Ok(0) => break "connection closed by the server".to_string(),
            Ok(_) => {}
            Err(e) => break format!("read: {e}"),
        }
        let mut error = None;
        let drained = conn.reader.drain(|op| {
            match op {
                ServerOp::Msg { payload, .. } => {
                    acks.acked.set(acks.acked.get() + 1);
                    if payload.windows(7).any(|w| w == b"\"error\"") {
                        acks.errors.set(acks.errors.get() + 1);
                        acks.first_error
                            .borrow_mut()
                            .get_or_insert_with(|| String::from_utf8_lossy(payload).into_owned());
                    }
                }
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
        acks.wake.notify();
    };
    *acks.failed.borrow_mut() = Some(error);
    acks.wake.notify();
}

async fn write(stream: &Stream, bytes: &[u8]) -> Result<(), String> {
    crate::conn::write_all(stream, bytes)
        .await
        .map_err(|e| format!("write: {e}"))
}

/// A consumer client: pulls (--window messages a request) or receives pushed messages
/// until every stored message has been counted by one of the subscribers.
pub async fn consumer(ctx: Rc<Ctx>, index: usize, slot: usize) -> ClientResult {
    let server = ctx.server_for_slot(slot);
    let mut result = ClientResult::new(Role::Sub, index, &server.address());
    match consume(&ctx, index, slot, &mut result).await {
        Ok(()) => result,
        Err(e) => ctx.fail(result, e),
    }
}

async fn consume(
    ctx: &Ctx,
    index: usize,
    slot: usize,
    result: &mut ClientResult,
) -> Result<(), String> {
    let flags = &ctx.flags;
    let server = ctx.server_for_slot(slot);
    let mut conn = Conn::connect(
        server,
        &format!("natrix-bench-consumer-{index}"),
        SUB_READ_BUFFER,
    )
    .await?;
    let inbox = format!("_INBOX.{}.pull{index}", ctx.run_id);
    let mut out = Vec::new();
    let push = push_subject(&ctx.run_id);
    if flags.push {
        encode::subscribe(
            &mut out,
            push.as_bytes(),
            Some(flags.queue.as_bytes()),
            b"1",
        );
    } else {
        encode::subscribe(&mut out, inbox.as_bytes(), None, b"1");
    }
    out.extend_from_slice(b"PING\r\n");
    conn.write(&out).await?;
    conn.wait_pong().await?;
    conn.set_read_timeout(Some(POLL))?;
    Coord::bump(&ctx.coord.subs_ready);
    if !ctx.coord.wait_until(|| Coord::is(&ctx.coord.go)).await {
        return Ok(());
    }
    let total = ctx.expected_per_sub.unwrap_or(0);
    result.expected = Some(total);
    let batch = flags.window.max(1);
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{CONSUMER}", flags.stream);
    let fetch = serde_json::json!({"batch": batch, "expires": 500_000_000u64}).to_string();
    let mut request = Vec::new();
    encode::publish(
        &mut request,
        next.as_bytes(),
        Some(inbox.as_bytes()),
        fetch.as_bytes(),
    );
    let mut in_request = 0usize;
    let mut last_progress = Instant::now();
    loop {
        if !flags.push && in_request == 0 {
            conn.write(&request).await?;
            in_request = batch;
        }
        match conn.reader.fill(&conn.stream).await {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(_) => {
                let now = now_nanos();
                let mut got = 0u64;
                let mut ended = false;
                let mut pings = 0;
                conn.reader.drain(|op| {
                    match op {
                        ServerOp::Msg {
                            header_len,
                            payload,
                            ..
                        } => {
                            if header_len > 0 && payload.starts_with(b"NATS/1.0 4") {
                                ended = true;
                            } else if header_len > 0 && payload.starts_with(b"NATS/1.0 100") {
                                // idle heartbeat or flow control
                            } else {
                                got += 1;
                                result.bytes += (payload.len() - header_len) as u64;
                            }
                        }
                        ServerOp::Ping => pings += 1,
                        _ => {}
                    }
                    Flow::Continue
                })?;
                for _ in 0..pings {
                    conn.write(b"PONG\r\n").await?;
                }
                if got > 0 {
                    result.msgs += got;
                    result.first_ns.get_or_insert(now);
                    result.last_ns = Some(now);
                    ctx.coord.received.fetch_add(got, Ordering::AcqRel);
                    last_progress = Instant::now();
                    in_request = in_request.saturating_sub(got as usize);
                }
                if ended {
                    in_request = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if ctx.coord.received.load(Ordering::Acquire) >= total || Coord::is(&ctx.coord.abort) {
            return Ok(());
        }
        if last_progress.elapsed() > flags.grace {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_without_jetstream() {
        let info = ServerInfo::from_json(br#"{"server_name":"n1","version":"2.9.10"}"#).unwrap();
        let e = require(&info).unwrap_err();
        assert!(
            e.contains("JetStream scenarios need a JetStream server"),
            "{e}"
        );
        let info = ServerInfo::from_json(br#"{"jetstream":true}"#).unwrap();
        assert!(require(&info).is_ok());
    }
}
