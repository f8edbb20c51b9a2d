//! The route pool: every shard but the routes' own dials its own connection to each
//! natrix peer, and sends the messages its clients publish there directly, so that a
//! message leaves the server from the shard that received it. The server's interest
//! travels on the main route (shard 0); a pool connection carries RMSG outward and,
//! ahead of them, the plain subscriptions of its own shard's clients, so that the
//! peer learns of a subscription before the messages that follow it (the peer keeps
//! both: its interest in us is their union). Peers that do not pool (nats-server)
//! are served through shard 0, one route each.

use crate::net::{FrameReader, SharedStream};
use crate::route::conn::Route;
use crate::server::shard::Shard;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tracing::debug;

/// Attempts to dial a pool connection before giving up (shard 0 is used then).
const DIAL_ATTEMPTS_MAX: u32 = 5;

pub enum PoolState {
    /// Being dialed: messages for that server wait for it (none are sent), so that
    /// they never take two paths at once.
    Connecting,
    Ready(Rc<Route>),
    /// Could not be made, or broke: shard 0 serves that server until it re-registers.
    Failed,
}

/// Starts dialing the server in `slot`: this shard's own connection to it, which
/// introduces itself with the CONNECT json `connect`.
pub fn dial(shard: &Shard, slot: u8, host_port: String, connect: String) {
    if let Some(PoolState::Ready(old)) = shard.pool.borrow_mut().insert(slot, PoolState::Connecting)
    {
        old.close_pool_conn();
    }
    let Some(shard) = shard.this() else { return };
    glommio::spawn_local(run(shard, slot, host_port, connect)).detach();
}

/// The server in `slot` went away: forget this shard's connection to it.
pub fn forget(shard: &Shard, slot: u8) {
    if let Some(PoolState::Ready(conn)) = shard.pool.borrow_mut().remove(&slot) {
        conn.close_pool_conn();
    }
    super::pool_in::forget(shard, slot);
}

fn is_current(shard: &Shard, slot: u8, conn: Option<&Rc<Route>>) -> bool {
    match (shard.pool.borrow().get(&slot), conn) {
        (Some(PoolState::Connecting), None) => true,
        (Some(PoolState::Ready(c)), Some(conn)) => Rc::ptr_eq(c, conn),
        _ => false,
    }
}

fn fail(shard: &Shard, slot: u8, conn: Option<&Rc<Route>>) {
    if is_current(shard, slot, conn) {
        shard.pool.borrow_mut().insert(slot, PoolState::Failed);
    }
}

async fn run(shard: Rc<Shard>, slot: u8, host_port: String, connect: String) {
    let mut stream = None;
    for attempt in 0..DIAL_ATTEMPTS_MAX {
        if !is_current(&shard, slot, None) {
            return;
        }
        match glommio::net::TcpStream::connect(host_port.as_str()).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => debug!(
                "shard {} - pool connection to {host_port} failed: {e}",
                shard.id
            ),
        }
        glommio::timer::sleep(Duration::from_millis(100 << attempt)).await;
    }
    let Some(stream) = stream else {
        return fail(&shard, slot, None);
    };
    if !is_current(&shard, slot, None) {
        return;
    }
    let _ = stream.set_nodelay(true);
    let Ok(addr) = stream.peer_addr() else {
        return fail(&shard, slot, None);
    };
    let Some((stream, _)) =
        super::secure::secure(&shard.server, stream, Some(&host_port), addr).await
    else {
        return fail(&shard, slot, None);
    };
    let conn = Route::new(0, addr, true, false);
    let stream: SharedStream = Rc::new(RefCell::new(stream));
    let writer = conn.start_writer(&stream);
    conn.send_line(format!("CONNECT {connect}\r\n").as_bytes());
    shard.announce_own_plain(&conn);
    shard
        .pool
        .borrow_mut()
        .insert(slot, PoolState::Ready(conn.clone()));
    debug!(
        "shard {} - pool connection to {host_port} ready (slot {slot})",
        shard.id
    );
    // It only carries PINGs (and Raft frames, should a peer send any) our way.
    let _ = super::conn::read_loop(&shard, &conn, &stream, FrameReader::default()).await;
    fail(&shard, slot, Some(&conn));
    conn.close_pool_conn();
    writer.await;
}

/// Hands a Raft frame to shard 0 through the shard queues.
pub fn forward_raft(shard: &Shard, frame: &[u8]) {
    let Ok(from) = crate::raft::frame::from_node(frame) else {
        debug!("shard {} - dropping a short Raft frame", shard.id);
        return;
    };
    let frame = frame.to_vec();
    let to_groups = move |shard: &Shard| match shard.meta.get() {
        Some(host) => host.on_frame(from, frame),
        None => debug!("Dropping a Raft frame: no meta group here"),
    };
    if shard.id == 0 {
        to_groups(shard);
    } else {
        shard.run_on(0, move |shard: &std::rc::Rc<Shard>| to_groups(shard));
    }
}
