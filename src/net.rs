//! Socket plumbing shared by client and route connections: one TCP stream read and
//! written by two tasks of the same shard, and an outbound buffer that producers
//! append to and one writer task drains (and that a stalled producer may wait on).

use crate::tls::Stream;
use natrix_shards::{Notify, WaitSet};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::rc::{Rc, Weak};

pub type SharedStream = Rc<RefCell<Stream>>;

/// Largest block of a connection's backlog (a single larger operation gets a block
/// of its own size). A backlog grows by adding blocks, so what is queued is never
/// moved again, however far the reader falls behind.
const OUT_BLOCK_BYTES_MAX: usize = 256 << 10;
/// Smallest block: an idle connection's whole buffer.
const OUT_BLOCK_BYTES_MIN: usize = 1 << 10;
/// Written blocks the writer keeps for reuse.
const OUT_BLOCKS_KEPT: usize = 2;

pub async fn read_into(stream: &SharedStream, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut s = stream.borrow_mut();
        futures_lite::AsyncRead::poll_read(Pin::new(&mut *s), cx, buf)
    })
    .await
}

pub async fn write_all(stream: &SharedStream, buf: &[u8]) -> io::Result<()> {
    write_all_reporting(stream, buf, |_| {}).await
}

/// `write_all`, telling `left` how many bytes are still to write after each write.
pub async fn write_all_reporting(
    stream: &SharedStream,
    mut buf: &[u8],
    mut left: impl FnMut(usize),
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| {
            let mut s = stream.borrow_mut();
            futures_lite::AsyncWrite::poll_write(Pin::new(&mut *s), cx, buf)
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        left(buf.len());
    }
    poll_fn(|cx| stream.borrow_mut().poll_flush_tls(cx)).await
}

/// A listener every shard may bind (SO_REUSEPORT, as glommio's own `bind`), with
/// SO_REUSEADDR too: the connections it accepts inherit it, so that after a crash
/// their TIME_WAIT remains do not keep a restarted server off its port.
pub fn listen(host: &str, port: u16) -> io::Result<glommio::net::TcpListener> {
    use std::os::unix::io::{FromRawFd, IntoRawFd};
    let socket = listening_socket(host, port, true)?;
    // SAFETY: a bound, listening TCP socket whose descriptor we hand over.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Checks that `host:port` is free by listening on it for a moment (without
/// SO_REUSEPORT, which would let two servers share it); returns the port, the
/// kernel's choice when `port` is 0.
pub fn probe(host: &str, port: u16) -> io::Result<u16> {
    let socket = listening_socket(host, port, false)?;
    let addr = socket.local_addr()?;
    addr.as_socket()
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("not an IP socket"))
}

/// For a wildcard host (`0.0.0.0`, `::` or empty), whether its listeners take IPv6
/// as well as IPv4, as nats-server's do (Go listens on `[::]`, dual-stack, for
/// `0.0.0.0`); None for any other host.
pub fn wildcard(host: &str) -> Option<bool> {
    matches!(host, "" | "0.0.0.0" | "::" | "[::]").then(ipv6_available)
}

fn ipv6_available() -> bool {
    use socket2::{Domain, Socket, Type};
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Socket::new(Domain::IPV6, Type::STREAM, None)
            .and_then(|s| {
                s.set_only_v6(false)?;
                s.bind(&std::net::SocketAddr::from(([0u16; 8], 0)).into())
            })
            .is_ok()
    })
}

fn listening_socket(host: &str, port: u16, reuse_port: bool) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::net::ToSocketAddrs;
    let dual_stack = wildcard(host) == Some(true);
    let addr = if dual_stack {
        std::net::SocketAddr::from(([0u16; 8], port))
    } else {
        (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("empty address"))?
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(1024)?;
    Ok(socket)
}

/// Every IPv4 and IPv6 address of the machine's interfaces, loopback included.
pub fn interface_ips() -> Vec<std::net::IpAddr> {
    let mut ips = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that freeifaddrs releases below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return ips;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        // SAFETY: a non-null ifa_addr points to a sockaddr of the family it names.
        if let Some(ip) = unsafe { ifa.ifa_addr.as_ref().and_then(|sa| sockaddr_ip(sa)) } {
            ips.push(ip);
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    ips
}

/// # Safety
/// `sa` must be the head of a sockaddr as large as its family says.
unsafe fn sockaddr_ip(sa: &libc::sockaddr) -> Option<std::net::IpAddr> {
    match i32::from(sa.sa_family) {
        libc::AF_INET => {
            let sin = &*(sa as *const libc::sockaddr as *const libc::sockaddr_in);
            Some(std::net::IpAddr::from(
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
            ))
        }
        libc::AF_INET6 => {
            let sin6 = &*(sa as *const libc::sockaddr as *const libc::sockaddr_in6);
            Some(std::net::IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

/// Shuts both directions of the socket, which ends a read waiting on it.
pub fn shutdown(stream: &SharedStream) {
    // SAFETY: the stream is alive (we hold it), so its descriptor is open and ours.
    unsafe { libc::shutdown(stream.borrow().as_raw_fd(), libc::SHUT_RDWR) };
}

/// Bytes waiting to be written to one connection: those appended since the writer
/// last took them, in blocks, and the unwritten rest of what it took (`in_flight`).
#[derive(Default)]
pub struct Outbound {
    blocks: RefCell<VecDeque<Vec<u8>>>,
    /// Bytes in `blocks`.
    pending: Cell<usize>,
    /// Written blocks, emptied, for the next appends.
    free: RefCell<Vec<Vec<u8>>>,
    in_flight: Cell<usize>,
    notify: Notify,
    /// Woken whenever the backlog shrinks (a write made progress, or it was dropped).
    drained: WaitSet,
    closing: Cell<bool>,
    stream: RefCell<Weak<RefCell<Stream>>>,
}

impl Outbound {
    pub fn attach(&self, stream: &SharedStream) {
        *self.stream.borrow_mut() = Rc::downgrade(stream);
    }

    /// Appends with `fill`, which writes at most `need` bytes, and wakes the
    /// writer; returns the bytes now pending.
    pub fn append(&self, need: usize, fill: impl FnOnce(&mut Vec<u8>)) -> usize {
        let mut blocks = self.blocks.borrow_mut();
        if blocks.back().is_none_or(|b| b.capacity() - b.len() < need) {
            blocks.push_back(self.new_block(need));
        }
        let block = blocks.back_mut().expect("a block with room");
        let before = block.len();
        fill(block);
        debug_assert!(block.len() - before <= need, "fill wrote more than it said");
        let pending = self.pending.get() + block.len() - before;
        self.pending.set(pending);
        drop(blocks);
        self.notify.notify();
        pending
    }

    /// A block for at least `need` bytes, as large as the backlog so far (within
    /// bounds), so that a growing backlog takes few blocks.
    fn new_block(&self, need: usize) -> Vec<u8> {
        let size = self
            .pending
            .get()
            .clamp(OUT_BLOCK_BYTES_MIN, OUT_BLOCK_BYTES_MAX)
            .max(need);
        let mut block = self.free.borrow_mut().pop().unwrap_or_default();
        block.reserve_exact(size);
        block
    }

    pub fn pending(&self) -> usize {
        self.pending.get()
    }

    /// Bytes the writer took and has not written yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Every byte not yet written to the socket.
    pub fn backlog(&self) -> usize {
        self.pending() + self.in_flight.get()
    }

    /// Waits until the backlog is at most `limit` or the connection is closing.
    pub async fn wait_backlog_at_most(&self, limit: usize) {
        self.drained
            .wait_until(|| self.backlog() <= limit || self.closing.get())
            .await
    }

    pub fn discard(&self) {
        self.blocks.borrow_mut().clear();
        self.pending.set(0);
        self.drained.wake_all();
    }

    /// The writer sends what is pending, then shuts the socket.
    pub fn close(&self) {
        self.closing.set(true);
        self.notify.notify();
        self.drained.wake_all();
    }

    /// Shuts the socket now, without waiting for the writer.
    pub fn shutdown_now(&self) {
        if let Some(stream) = self.stream.borrow().upgrade() {
            shutdown(&stream);
        }
    }

    /// The writer task: drains to `stream` until closed (Ok) or a write fails;
    /// `progress` runs after every write that shrank the backlog.
    pub async fn drain_to(&self, stream: &SharedStream, progress: impl Fn()) -> io::Result<()> {
        let result = loop {
            if self.pending.get() == 0 {
                if self.closing.get() {
                    break Ok(());
                }
                self.notify.wait().await;
                continue;
            }
            let taken = std::mem::take(&mut *self.blocks.borrow_mut());
            let mut left = self.pending.replace(0);
            self.in_flight.set(left);
            let mut written = Ok(());
            for block in taken {
                left -= block.len();
                if written.is_ok() {
                    written = self.write_tracked(stream, &block, left, &progress).await;
                }
                self.recycle(block);
            }
            self.in_flight.set(0);
            if let Err(e) = written {
                self.discard();
                break Err(e);
            }
        };
        shutdown(stream);
        self.drained.wake_all();
        result
    }

    fn recycle(&self, mut block: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < OUT_BLOCKS_KEPT && block.capacity() <= OUT_BLOCK_BYTES_MAX {
            block.clear();
            free.push(block);
        }
    }

    /// `write_all` of one block, counting `in_flight` down (`after`: the bytes of
    /// the blocks still to write) and waking waiters as it goes.
    async fn write_tracked(
        &self,
        stream: &SharedStream,
        buf: &[u8],
        after: usize,
        progress: &impl Fn(),
    ) -> io::Result<()> {
        write_all_reporting(stream, buf, |left| {
            self.in_flight.set(left + after);
            self.drained.wake_all();
            progress();
        })
        .await
    }
}

/// Reads a byte stream in chunks for a parser that consumes whole operations:
/// the unconsumed tail of one chunk starts the next, and when the parser knows the
/// size of an incomplete operation nothing is parsed again until it has arrived.
pub struct FrameReader {
    pending: bytes::BytesMut,
    read_size: usize,
    need: usize,
    /// `pending` is returned before anything is read (`starting_with`).
    ready: bool,
}

pub const READ_SIZE_MIN: usize = 512;
pub const READ_SIZE_MAX: usize = 64 * 1024;

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            pending: bytes::BytesMut::new(),
            read_size: READ_SIZE_MIN,
            need: 0,
            ready: false,
        }
    }
}

impl FrameReader {
    /// A reader whose first chunk is `read` (bytes another reader took past the
    /// operations it handled) when that is not empty.
    pub fn starting_with(read: bytes::Bytes) -> FrameReader {
        let mut reader = FrameReader::default();
        reader.pending.extend_from_slice(&read);
        reader.ready = !read.is_empty();
        reader
    }

    /// Everything read and not yet consumed, once it may hold a whole operation;
    /// None at end of stream or on a read error.
    pub async fn next_chunk(&mut self, stream: &SharedStream) -> Option<bytes::Bytes> {
        if std::mem::take(&mut self.ready) {
            return Some(self.pending.split().freeze());
        }
        loop {
            let start = self.pending.len();
            let want = self.read_size.max(self.need.saturating_sub(start));
            self.pending.resize(start + want, 0);
            let n = match read_into(stream, &mut self.pending[start..]).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!("read failed: {e}");
                    0
                }
            };
            self.pending.truncate(start + n);
            if n == 0 {
                return None;
            }
            self.read_size = next_read_size(self.read_size, n);
            if self.pending.len() >= self.need {
                return Some(self.pending.split().freeze());
            }
        }
    }

    /// Keeps `chunk[consumed..]` for the next read; `need` is the size of the
    /// next operation when known (0 otherwise).
    pub fn keep_tail(&mut self, chunk: &bytes::Bytes, consumed: usize, need: usize) {
        self.need = need;
        self.pending.extend_from_slice(&chunk[consumed..]);
    }
}

fn next_read_size(current: usize, got: usize) -> usize {
    if got == current {
        (current * 2).min(READ_SIZE_MAX)
    } else if got < current / 4 {
        (current / 2).max(READ_SIZE_MIN)
    } else {
        current
    }
}

/// The keep-alive of a client or route connection (nats-server's `ping_interval`
/// and `ping_max`): a PING every interval, and the connection is stale once
/// `ping_max` PINGs are out unanswered.
pub struct KeepAlive {
    last_ping: Cell<std::time::Instant>,
    pings_out: Cell<u32>,
}

/// What a keep-alive asks of its connection at a housekeeping turn.
pub enum KeepAliveStep {
    /// Nothing until then.
    WaitUntil(std::time::Instant),
    /// Send a PING; look again then.
    Ping(std::time::Instant),
    /// Too many PINGs unanswered: close the connection.
    Stale,
}

impl KeepAlive {
    pub fn new(now: std::time::Instant) -> KeepAlive {
        KeepAlive {
            last_ping: Cell::new(now),
            pings_out: Cell::new(0),
        }
    }

    /// A PONG came.
    pub fn answered(&self) {
        self.pings_out.set(0);
    }

    pub fn step(&self, now: std::time::Instant, interval_ms: u64, ping_max: u32) -> KeepAliveStep {
        let next = self.last_ping.get() + std::time::Duration::from_millis(interval_ms);
        if now < next {
            return KeepAliveStep::WaitUntil(next);
        }
        if self.pings_out.get() >= ping_max {
            return KeepAliveStep::Stale;
        }
        self.pings_out.set(self.pings_out.get() + 1);
        self.last_ping.set(now);
        KeepAliveStep::Ping(now + std::time::Duration::from_millis(interval_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that falls far behind: the backlog grows block by block, and what is
    /// queued stays where it was written (no buffer grows by copying itself).
    #[test]
    fn a_growing_backlog_never_moves_what_is_queued() {
        let out = Outbound::default();
        let piece = [7u8; 1000];
        let mut first_block = None;
        for _ in 0..2000 {
            let pending = out.append(piece.len(), |b| b.extend_from_slice(&piece));
            let blocks = out.blocks.borrow();
            let first = *first_block.get_or_insert(blocks[0].as_ptr());
            assert_eq!(blocks[0].as_ptr(), first, "queued bytes never move");
            assert_eq!(pending, blocks.iter().map(Vec::len).sum::<usize>());
        }
        assert_eq!(out.pending(), 2_000_000);
        let blocks = out.blocks.borrow();
        assert!(blocks.iter().all(|b| b.len() <= OUT_BLOCK_BYTES_MAX));
        assert!(blocks.len() <= 16, "{} blocks for 2 MB", blocks.len());
        assert!(blocks.iter().flatten().all(|b| *b == 7));
    }

    /// An idle connection's first small write takes the smallest block; one larger
    /// than the largest block gets a block of its own size.
    #[test]
    fn blocks_fit_what_is_written() {
        let out = Outbound::default();
        out.append(100, |b| b.extend_from_slice(&[1; 100]));
        assert_eq!(out.blocks.borrow()[0].capacity(), OUT_BLOCK_BYTES_MIN);
        let big = vec![2u8; OUT_BLOCK_BYTES_MAX + 1];
        out.append(big.len(), |b| b.extend_from_slice(&big));
        let blocks = out.blocks.borrow();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].len(), OUT_BLOCK_BYTES_MAX + 1);
        drop(blocks);
        out.discard();
        assert_eq!((out.pending(), out.blocks.borrow().len()), (0, 0));
    }
}
