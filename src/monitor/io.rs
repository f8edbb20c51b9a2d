//! The monitoring socket as hyper sees it, with the deadlines that keep a slow or
//! silent client from holding a task: a request's head must arrive within
//! `HEADER_READ_TIMEOUT_MS` of its first byte (of the accept, for a connection's
//! first request), the whole request (head, handling, response written) within
//! `REQUEST_TIMEOUT_MS`, and a kept-alive connection may wait idle between
//! requests for `KEEP_ALIVE_IDLE_MS`. Past its deadline every read and write fails
//! with `TimedOut`, and hyper drops the connection.

use crate::tls::Stream;
use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// nats-server's monitoring `ReadHeaderTimeout` is 5 s.
pub const HEADER_READ_TIMEOUT_MS: u64 = 5_000;
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
pub const KEEP_ALIVE_IDLE_MS: u64 = 30_000;
/// Bytes read from the socket at once.
const READ_CHUNK_BYTES: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between requests of a kept-alive connection.
    Idle,
    /// Reading a request's head.
    Head,
    /// Head read; handling it and writing the response.
    Handling,
}

/// Where the connection's current request stands, shared by the socket adapter
/// (which sees bytes move) and the service (which sees requests and responses).
#[derive(Debug)]
pub struct Clock {
    phase: Cell<Phase>,
    request_start: Cell<Instant>,
    deadline: Cell<Instant>,
    /// The service has produced the response (it is being written).
    responded: Cell<bool>,
    /// Bytes of the response went out since.
    wrote: Cell<bool>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Clock {
    /// A fresh connection: its first request's head is due at once.
    pub fn new(now: Instant) -> Rc<Clock> {
        Rc::new(Clock {
            phase: Cell::new(Phase::Head),
            request_start: Cell::new(now),
            deadline: Cell::new(now + ms(HEADER_READ_TIMEOUT_MS)),
            responded: Cell::new(false),
            wrote: Cell::new(false),
        })
    }

    pub fn deadline(&self) -> Instant {
        self.deadline.get()
    }

    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline.get()
    }

    fn bytes_read(&self, now: Instant) {
        if self.phase.get() == Phase::Idle {
            self.phase.set(Phase::Head);
            self.request_start.set(now);
            self.deadline.set(now + ms(HEADER_READ_TIMEOUT_MS));
        }
    }

    /// hyper has read a whole head and calls the service.
    pub fn request(&self) {
        self.phase.set(Phase::Handling);
        self.responded.set(false);
        self.wrote.set(false);
        self.deadline
            .set(self.request_start.get() + ms(REQUEST_TIMEOUT_MS));
    }

    /// The service returned its response.
    pub fn responded(&self) {
        self.responded.set(true);
    }

    fn bytes_written(&self) {
        if self.phase.get() == Phase::Handling && self.responded.get() {
            self.wrote.set(true);
        }
    }

    /// hyper flushed: once the response is out, the connection waits idle.
    fn flushed(&self, now: Instant) {
        if self.phase.get() == Phase::Handling && self.wrote.get() {
            self.phase.set(Phase::Idle);
            self.deadline.set(now + ms(KEEP_ALIVE_IDLE_MS));
        }
    }
}

/// A socket (plain, or TLS for https) under `Clock`'s deadlines, as hyper's
/// `Read` and `Write`.
pub struct TimedIo {
    stream: Stream,
    clock: Rc<Clock>,
    /// The timer for the deadline it was armed for.
    timer: Option<(Instant, Pin<Box<glommio::timer::Timer>>)>,
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "monitoring request deadline passed",
    )
}

impl TimedIo {
    pub fn new(stream: Stream, clock: Rc<Clock>) -> TimedIo {
        TimedIo {
            stream,
            clock,
            timer: None,
        }
    }

    /// The socket is not ready: wakes the task at the deadline, or fails past it.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let now = Instant::now();
        if self.clock.expired(now) {
            return Poll::Ready(timed_out());
        }
        let deadline = self.clock.deadline();
        if self.timer.as_ref().map(|(d, _)| *d) != Some(deadline) {
            let timer = glommio::timer::Timer::new(deadline - now);
            self.timer = Some((deadline, Box::pin(timer)));
        }
        let (_, timer) = self.timer.as_mut().expect("armed above");
        match timer.as_mut().poll(cx) {
            Poll::Ready(_) => Poll::Ready(timed_out()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn pending_or_timeout<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.poll_deadline(cx) {
            Poll::Ready(e) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Read for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.clock.expired(Instant::now()) {
            return Poll::Ready(Err(timed_out()));
        }
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        let want = buf.remaining().min(READ_CHUNK_BYTES);
        match Pin::new(&mut this.stream).poll_read(cx, &mut chunk[..want]) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.clock.bytes_read(Instant::now());
                }
                buf.put_slice(&chunk[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending_or_timeout(cx),
        }
    }
}

impl hyper::rt::Write for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.clock.expired(Instant::now()) {
            return Poll::Ready(Err(timed_out()));
        }
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.clock.bytes_written();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending_or_timeout(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                this.clock.flushed(Instant::now());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending_or_timeout(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_runs_under_its_deadlines() {
        let t0 = Instant::now();
        let c = Clock::new(t0);
        assert_eq!(c.deadline(), t0 + ms(HEADER_READ_TIMEOUT_MS));
        c.bytes_read(t0 + ms(10));
        // Still the first head: its clock started at the accept.
        assert_eq!(c.deadline(), t0 + ms(HEADER_READ_TIMEOUT_MS));
        c.request();
        assert_eq!(c.deadline(), t0 + ms(REQUEST_TIMEOUT_MS));
        // A flush before the response is written keeps the request's deadline.
        c.flushed(t0 + ms(20));
        assert_eq!(c.deadline(), t0 + ms(REQUEST_TIMEOUT_MS));
        c.responded();
        c.bytes_written();
        c.flushed(t0 + ms(30));
        assert_eq!(c.deadline(), t0 + ms(30 + KEEP_ALIVE_IDLE_MS));
        // The next request's head starts its own clock.
        c.bytes_read(t0 + ms(40));
        assert_eq!(c.deadline(), t0 + ms(40 + HEADER_READ_TIMEOUT_MS));
        assert!(!c.expired(t0 + ms(41)));
        assert!(c.expired(t0 + ms(40 + HEADER_READ_TIMEOUT_MS)));
    }
}
