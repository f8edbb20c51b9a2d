//! Idle connections: each completes the handshake, then only answers the server's PINGs
//! until the run is over.

use super::Ctx;
use crate::conn::{Conn, Flow};
use crate::engine::Coord;
use crate::stats::{now_nanos, ClientResult, Role};
use natrix::proto::server_parser::ServerOp;
use std::io;
use std::rc::Rc;
use std::time::Duration;

/// An idle connection's read buffer: it only ever reads PING.
const IDLE_READ_BUFFER: usize = 512;
const IDLE_POLL: Duration = Duration::from_millis(200);

pub async fn idle(ctx: Rc<Ctx>, index: usize, slot: usize) -> ClientResult {
    let server = ctx.server_for_slot(slot);
    let mut result = ClientResult::new(Role::Idle, index, &server.address());
    result.first_ns = Some(now_nanos());
    let mut conn = match Conn::connect(
        server,
        &format!("natrix-bench-idle-{index}"),
        IDLE_READ_BUFFER,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return ctx.fail(result, e),
    };
    result.last_ns = Some(now_nanos());
    result.msgs = 1;
    if index == 0 {
        ctx.coord.record_info(&conn.info);
    }
    Coord::bump(&ctx.coord.connected);
    if let Err(e) = conn.set_read_timeout(Some(IDLE_POLL)) {
        return ctx.fail(result, e);
    }
    while !Coord::is(&ctx.coord.stop) && !Coord::is(&ctx.coord.abort) {
        if let Err(e) = answer_pings(&mut conn).await {
            return ctx.fail(result, e);
        }
    }
    result
}

/// Reads once (or times out) and answers any PING read.
async fn answer_pings(conn: &mut Conn) -> Result<(), String> {
    match conn.reader.fill(&conn.stream).await {
        Ok(0) => Err("connection closed by the server".into()),
        Ok(_) => {
            let mut pings = 0;
            conn.reader.drain(|op| {
                if op == ServerOp::Ping {
                    pings += 1;
                }
                Flow::Continue
            })?;
            for _ in 0..pings {
                conn.write(b"PONG\r\n").await?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(()),
        Err(e) => Err(format!("read: {e}")),
    }
}
