//! A server that discards everything: it sends INFO, answers PING with PONG and drops
//! every other operation. Publishing into it measures natrix-bench's own ceiling.

use crate::engine;
use crate::flags::Flags;
use glommio::net::{TcpListener, TcpStream};
use natrix::proto::{parse, ClientOp, Limits, ParseError};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const READ_BUFFER: usize = 256 * 1024;
const LIMITS: Limits = Limits {
    control_line_max: 64 * 1024,
    payload_max: 64 << 20,
};

/// Serves until --duration is over (or forever); returns the messages discarded.
pub fn run(flags: &Flags) -> Result<u64, String> {
    let port = flags.port;
    std::net::TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let threads = flags
        .threads
        .unwrap_or_else(natrix_shards::runtime::available_cores)
        .max(1);
    let discarded = Arc::new(AtomicU64::new(0));
    let until = flags.duration.map(|d| Instant::now() + d);
    let counter = discarded.clone();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let executors = engine::start(threads, flags.pin, move |_| {
        let counter = counter.clone();
        let bound = bound_tx.clone();
        async move {
            let listener = TcpListener::bind(("127.0.0.1", port));
            let _ = bound.send(listener.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            let Ok(listener) = listener else {
                return Vec::new();
            };
            let accept = async {
                while let Ok(stream) = listener.accept().await {
                    glommio::spawn_local(discard(stream, counter.clone())).detach();
                }
            };
            match until {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    let _ = glommio::timer::timeout(wait, async {
                        accept.await;
                        Ok(())
                    })
                    .await;
                }
                None => accept.await,
            }
            Vec::new()
        }
    })?;
    for _ in 0..threads {
        bound_rx
            .recv()
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    }
    eprintln!("natrix-bench sink: discarding on 127.0.0.1:{port}");
    executors.join()?;
    Ok(discarded.load(Ordering::Acquire))
}

async fn discard(stream: TcpStream, counter: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(RefCell::new(natrix::tls::Stream::Plain(stream)));
    let info = "INFO {\"server_id\":\"NATRIXBENCHSINK\",\"server_name\":\"natrix-bench-sink\",\
                \"version\":\"sink\",\"proto\":1,\"headers\":true,\"max_payload\":67108864}\r\n";
    if crate::conn::write_all(&stream, info.as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; READ_BUFFER];
    let (mut head, mut tail) = (0usize, 0usize);
    loop {
        if head == tail {
            (head, tail) = (0, 0);
        } else if tail == buf.len() {
            buf.copy_within(head..tail, 0);
            (head, tail) = (0, tail - head);
            if tail == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let free = &mut buf[tail..];
        let n = crate::conn::read_into(&stream, free).await;
        match n {
            Ok(0) | Err(_) => return,
            Ok(n) => tail += n,
        }
        let (mut pongs, mut msgs) = (0, 0);
        loop {
            match parse(&buf[head..tail], &LIMITS) {
                Ok((op, used)) => {
                    head += used;
                    match op {
                        ClientOp::Ping => pongs += 1,
                        ClientOp::Pub { .. } => msgs += 1,
                        _ => {}
                    }
                }
                Err(ParseError::Incomplete { .. }) => break,
                Err(_) => return,
            }
        }
        counter.fetch_add(msgs, Ordering::Relaxed);
        for _ in 0..pongs {
            if crate::conn::write_all(&stream, b"PONG\r\n").await.is_err() {
                return;
            }
        }
    }
}
