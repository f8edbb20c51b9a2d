//! An inbound pool connection, read on the shard it serves. A peer's shard k dials
//! us for the messages its clients publish (`pool`); once the routes' shard has
//! checked its CONNECT, the socket moves to our shard k, which reads it there, so
//! that route traffic into this server uses every shard and its messages reach
//! local clients without a hop through the routes' shard. A TLS route, a peer we
//! have not registered yet, or a shard number we do not have stays on the routes'
//! shard.

use crate::net::{FrameReader, SharedStream};
use crate::route::conn::{self, Route, Stop};
use crate::route::Routes;
use crate::server::shard::Shard;
use crate::tls::Stream;
use bytes::Bytes;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use tracing::{debug, warn};

/// The shard (and the peer's route slot) that should read `route`, a connection
/// whose CONNECT just passed; None to keep it here.
pub fn serving_shard(shard: &Shard, routes: &Routes, route: &Route) -> Option<(usize, u8)> {
    let to = route.pool_shard()?;
    if to == shard.id || to >= shard.count || routes.tls {
        return None;
    }
    let server_id = route.pool_server()?;
    let slot = routes.registered_route(&server_id)?.slot.get()?;
    Some((to, slot))
}

/// Moves the connection to shard `to` once what we sent on it (INFO) is written.
pub async fn hand_off(
    shard: &Shard,
    route: &Rc<Route>,
    stream: SharedStream,
    writer: glommio::Task<()>,
    (to, slot): (usize, u8),
    tail: Bytes,
) {
    route.written().await;
    // Dropping the writer cancels it: it waits for more to write, with nothing in
    // flight.
    drop(writer);
    route.detach();
    if let Some(routes) = shard.routes.as_ref() {
        routes.remove(shard, route);
    }
    let Some(server_id) = route.pool_server() else {
        return;
    };
    // SAFETY: the stream is alive (we hold it), so its descriptor is open; dup gives
    // a new descriptor of the same socket, which the OwnedFd then owns alone.
    let fd = unsafe { libc::dup(stream.borrow().as_raw_fd()) };
    if fd < 0 {
        warn!(
            "{} - pool connection not moved to shard {to}: {}",
            route.addr,
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    drop(stream);
    let addr = route.addr;
    shard.run_on(to, move |shard: &Rc<Shard>| {
        let shard = shard.clone();
        glommio::spawn_local(serve_here(shard, fd, addr, (server_id, slot), tail)).detach();
    });
}

/// Reads a handed-off pool connection on this shard until it ends.
async fn serve_here(
    shard: Rc<Shard>,
    fd: OwnedFd,
    addr: SocketAddr,
    (server_id, slot): (String, u8),
    tail: Bytes,
) {
    // SAFETY: a connected TCP socket whose only descriptor we own.
    let tcp = unsafe { glommio::net::TcpStream::from_raw_fd(fd.into_raw_fd()) };
    let stream: SharedStream = Rc::new(RefCell::new(Stream::Plain(tcp)));
    let route = Route::inbound_pool(addr, server_id, slot);
    let writer = route.start_writer(&stream);
    shard.pool_in.borrow_mut().push(route.clone());
    debug!(
        "shard {} - pool connection from {addr} (slot {slot}) is read here",
        shard.id
    );
    let outcome = conn::read_loop(&shard, &route, &stream, FrameReader::starting_with(tail)).await;
    let reason = match outcome.map_err(|stopped| stopped.stop) {
        Err(Stop::Error(reason)) => reason,
        _ => "Closed".to_string(),
    };
    shard
        .pool_in
        .borrow_mut()
        .retain(|r| !Rc::ptr_eq(r, &route));
    route.close(&shard, &reason);
    writer.await;
}

/// The server in `slot` went away: its pool connections read here end too.
pub fn forget(shard: &Shard, slot: u8) {
    for route in shard.pool_in.borrow().iter() {
        if route.slot.get() == Some(slot) {
            route.shutdown_now();
        }
    }
}
