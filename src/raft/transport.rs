//! TCP transport: carries the driver's frames between nodes. A thin task layer; the
//! protocol (framing, checksums, who is alive) lives in [`super::frame`] and
//! [`super::multi`].
//!
//! A shard keeps one outgoing connection per peer node and writes its frames there, in
//! order; it reads the frames peers send on the connections they opened to it. A frame
//! queued while a peer is unreachable is dropped (Raft retransmits); a writer
//! reconnects with exponential backoff. A reader that sees a bad frame (checksum,
//! size, a sender that changes) drops the connection, and the peer reconnects.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_channel::mpsc;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::task::JoinHandle;

use super::frame::{self, FrameError};
use super::NodeId;

/// Limits and timings of the transport.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Frames waiting for one peer's connection; more are dropped.
    pub max_queued_frames: usize,
    /// Bytes written at once (frames queued together are coalesced up to this).
    pub max_write_bytes: usize,
    pub read_chunk_bytes: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_queued_frames: 1024,
            max_write_bytes: 1 << 20,
            read_chunk_bytes: 64 << 10,
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
        }
    }
}

/// Counters, shared with the tasks.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub frames_queued: Cell<u64>,
    pub frames_dropped: Cell<u64>,
    pub connects: Cell<u64>,
    pub bad_frames: Cell<u64>,
}

struct PeerLink {
    addr: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
    _writer: JoinHandle<()>,
}

/// The outgoing side: one writer task per peer node.
pub struct Transport {
    cfg: TransportConfig,
    peers: BTreeMap<NodeId, PeerLink>,
    pub stats: Rc<TransportStats>,
}

impl Transport {
    pub fn new(cfg: TransportConfig) -> Self {
        assert!(cfg.max_queued_frames > 0 && cfg.backoff_min <= cfg.backoff_max);
        Self {
            cfg,
            peers: BTreeMap::new(),
            stats: Rc::default(),
        }
    }

    /// Sets (or changes) where peer `node` listens.
    pub fn set_peer(&mut self, node: NodeId, addr: SocketAddr) {
        if self.peers.get(&node).is_some_and(|p| p.addr == addr) {
            return;
        }
        let (tx, rx) = mpsc::channel(self.cfg.max_queued_frames);
        let task = glommio::spawn_local(write_loop(addr, rx, self.cfg.clone(), self.stats.clone()))
            .detach();
        // Replacing a link drops its sender: the old writer ends.
        self.peers.insert(
            node,
            PeerLink {
                addr,
                tx,
                _writer: task,
            },
        );
    }

    /// Queues `frame` for `node`; false if it was dropped (unknown peer, queue full).
    pub fn send(&mut self, node: NodeId, frame: Vec<u8>) -> bool {
        let ok = self
            .peers
            .get_mut(&node)
            .is_some_and(|p| p.tx.try_send(frame).is_ok());
        let counter = if ok {
            &self.stats.frames_queued
        } else {
            &self.stats.frames_dropped
        };
        counter.set(counter.get() + 1);
        ok
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for p in self.peers.values() {
            p._writer.cancel();
        }
    }
}

async fn write_loop(
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    cfg: TransportConfig,
    stats: Rc<TransportStats>,
) {
    let mut delay = cfg.backoff_min;
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(addr, cfg.connect_timeout).await {
            stats.connects.set(stats.connects.get() + 1);
            let _ = s.set_nodelay(true);
            delay = cfg.backoff_min;
            loop {
                let Some(mut batch) = rx.next().await else {
                    return;
                };
                while batch.len() < cfg.max_write_bytes {
                    match rx.try_recv() {
                        Ok(f) => batch.extend_from_slice(&f),
                        Err(e) if e.is_closed() => return,
                        Err(_) => break,
                    }
                }
                if s.write_all(&batch).await.is_err() {
                    break;
                }
            }
        }
        // What queued while the peer was unreachable is stale: drop it.
        loop {
            match rx.try_recv() {
                Ok(_) => stats.frames_dropped.set(stats.frames_dropped.get() + 1),
                Err(e) if e.is_closed() => return,
                Err(_) => break,
            }
        }
        glommio::timer::sleep(delay).await;
        delay = (delay * 2).min(cfg.backoff_max);
    }
}

/// Accepts peers' connections on `listener` and hands every frame they send, with its
/// sending node, to `on_frame`.
pub fn spawn_acceptor(
    listener: TcpListener,
    cfg: TransportConfig,
    stats: Rc<TransportStats>,
    on_frame: Rc<dyn Fn(NodeId, Vec<u8>)>,
) -> JoinHandle<()> {
    glommio::spawn_local(async move {
        loop {
            let Ok(stream) = listener.accept().await else {
                // Out of descriptors, or the like: do not spin.
                glommio::timer::sleep(cfg.backoff_min).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            glommio::spawn_local(read_loop(
                stream,
                cfg.read_chunk_bytes,
                stats.clone(),
                on_frame.clone(),
            ))
            .detach();
        }
    })
    .detach()
}

async fn read_loop(
    mut stream: TcpStream,
    chunk_bytes: usize,
    stats: Rc<TransportStats>,
    on_frame: Rc<dyn Fn(NodeId, Vec<u8>)>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes);
    let mut chunk = vec![0u8; chunk_bytes];
    let mut peer: Option<NodeId> = None;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            match frame::check(&buf[at..]) {
                Ok(len) => {
                    let f = buf[at..at + len].to_vec();
                    at += len;
                    let from = match frame::from_node(&f) {
                        Ok(from) if peer.is_none_or(|p| p == from) => from,
                        _ => return bad(&stats),
                    };
                    peer = Some(from);
                    on_frame(from, f);
                }
                Err(FrameError::Incomplete) => break,
                Err(_) => return bad(&stats),
            }
        }
        buf.drain(..at);
    }
}

fn bad(stats: &TransportStats) {
    stats.bad_frames.set(stats.bad_frames.get() + 1);
}
