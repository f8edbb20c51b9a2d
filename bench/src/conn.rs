//! One NATS client connection on a glommio executor: the handshake (INFO, CONNECT,
//! PING/PONG), a read buffer that yields every complete server operation, and writes.

use crate::url::ServerUrl;
use glommio::net::TcpStream;
use natrix::proto::server_parser::{self, ParseError, ServerOp};
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

/// How long the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream that a reading task and a writing task of the same executor share (the
/// server's own socket plumbing).
pub use natrix::net::{read_into, write_all, SharedStream as Stream};

/// What the server said about itself in INFO.
#[derive(Clone, Debug, Default)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub jetstream: bool,
    pub headers: bool,
    pub max_payload: usize,
}

impl ServerInfo {
    pub fn from_json(json: &[u8]) -> Result<ServerInfo, String> {
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("bad INFO from server: {e}"))?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        Ok(ServerInfo {
            server_id: text("server_id"),
            server_name: text("server_name"),
            version: text("version"),
            jetstream: v.get("jetstream").and_then(|x| x.as_bool()) == Some(true),
            headers: v.get("headers").and_then(|x| x.as_bool()) == Some(true),
            max_payload: v
                .get("max_payload")
                .and_then(|x| x.as_u64())
                .unwrap_or(1 << 20) as usize,
        })
    }
}

/// Bytes read from the server and not yet parsed.
pub struct Reader {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    /// Total size of the operation at `head` when the parser knows it.
    need: usize,
}

/// What a handler of server operations wants next.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

impl Reader {
    pub fn new(capacity: usize) -> Reader {
        Reader {
            buf: vec![0; capacity.max(512)],
            head: 0,
            tail: 0,
            need: 0,
        }
    }

    /// Reads once (as much as the socket has, up to the free space); 0 means the
    /// server closed the connection.
    pub async fn fill(&mut self, stream: &Stream) -> io::Result<usize> {
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        let pending = self.tail - self.head;
        let wanted = self.need.max(pending + 1);
        if wanted > self.buf.len() {
            self.buf.resize(wanted.next_power_of_two(), 0);
        }
        if self.buf.len() - self.tail < self.buf.len() / 4
            || self.tail + (wanted - pending) > self.buf.len()
        {
            self.buf.copy_within(self.head..self.tail, 0);
            self.head = 0;
            self.tail = pending;
        }
        let free = &mut self.buf[self.tail..];
        let n = read_into(stream, free).await?;
        self.tail += n;
        Ok(n)
    }

    /// Calls `handle` for every complete operation buffered, in order, until it says
    /// Stop (the rest stays buffered).
    pub fn drain(&mut self, mut handle: impl FnMut(ServerOp<'_>) -> Flow) -> Result<(), String> {
        while self.head < self.tail {
            match server_parser::parse(&self.buf[self.head..self.tail]) {
                Ok((op, n)) => {
                    self.head += n;
                    self.need = 0;
                    if handle(op) == Flow::Stop {
                        return Ok(());
                    }
                }
                Err(ParseError::Incomplete { need }) => {
                    self.need = need.unwrap_or(0);
                    return Ok(());
                }
                Err(e) => return Err(format!("protocol error from server: {e:?}")),
            }
        }
        Ok(())
    }
}

pub struct Conn {
    pub stream: Stream,
    pub reader: Reader,
    pub info: ServerInfo,
}

impl Conn {
    /// Connects and completes the handshake: INFO, CONNECT, then a PING answered by
    /// PONG (so that the server has accepted the connection).
    pub async fn connect(url: &ServerUrl, name: &str, read_buffer: usize) -> Result<Conn, String> {
        let address = url.address();
        let stream = TcpStream::connect(address.as_str())
            .await
            .map_err(|e| format!("connect to {address}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut conn = Conn {
            stream: Rc::new(RefCell::new(natrix::tls::Stream::Plain(stream))),
            reader: Reader::new(read_buffer),
            info: ServerInfo::default(),
        };
        let mut info = None;
        conn.read_until(|op| match op {
            ServerOp::Info(json) => {
                info = Some(ServerInfo::from_json(json));
                Ok(Flow::Stop)
            }
            _ => Ok(Flow::Continue),
        })
        .await
        .map_err(|e| format!("{address}: {e}"))?;
        conn.info = info.expect("read_until stops only on INFO")?;
        let mut connect = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "tls_required": false,
            "name": name,
            "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1,
            "echo": true,
            "headers": conn.info.headers,
            "no_responders": conn.info.headers,
        });
        for (key, value) in [
            ("user", &url.user),
            ("pass", &url.pass),
            ("auth_token", &url.token),
        ] {
            if let Some(value) = value {
                connect[key] = serde_json::Value::String(value.clone());
            }
        }
        let hello = format!("CONNECT {connect}\r\nPING\r\n").into_bytes();
        conn.write(&hello).await?;
        conn.wait_pong()
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        conn.set_read_timeout(None)?;
        Ok(conn)
    }

    pub async fn write(&self, bytes: &[u8]) -> Result<(), String> {
        write_all(&self.stream, bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), String> {
        self.stream
            .borrow()
            .set_read_timeout(timeout)
            .map_err(|e| e.to_string())
    }

    /// Reads until the handler says Stop; -ERR and a closed connection are errors, and
    /// the server's PINGs are answered.
    pub async fn read_until(
        &mut self,
        mut handle: impl FnMut(ServerOp<'_>) -> Result<Flow, String>,
    ) -> Result<(), String> {
        loop {
            let mut outcome: Result<Flow, String> = Ok(Flow::Continue);
            let mut pongs = 0;
            self.reader.drain(|op| {
                outcome = match op {
                    ServerOp::Err(text) => {
                        Err(format!("server error: {}", String::from_utf8_lossy(text)))
                    }
                    ServerOp::Ping => {
                        pongs += 1;
                        Ok(Flow::Continue)
                    }
                    op => handle(op),
                };
                match outcome {
                    Ok(Flow::Continue) => Flow::Continue,
                    _ => Flow::Stop,
                }
            })?;
            for _ in 0..pongs {
                self.write(b"PONG\r\n").await?;
            }
            if outcome? == Flow::Stop {
                return Ok(());
            }
            match self.reader.fill(&self.stream).await {
                Ok(0) => return Err("connection closed by the server".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    pub async fn wait_pong(&mut self) -> Result<(), String> {
        self.read_until(|op| {
            Ok(match op {
                ServerOp::Pong => Flow::Stop,
                _ => Flow::Continue,
            })
        })
        .await
    }
}
