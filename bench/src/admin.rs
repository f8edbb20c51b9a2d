//! A small blocking client for setup and teardown outside the executors: JetStream API
//! requests, and filling a stream before a consume run.

use crate::conn::ServerInfo;
use crate::url::ServerUrl;
use natrix::proto::encode;
use natrix::proto::server_parser::{self, ParseError, ServerOp};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Admin {
    stream: TcpStream,
    buf: Vec<u8>,
    len: usize,
    pub info: ServerInfo,
    inbox: String,
}

/// A message the server delivered: its payload (headers included) and header length.
pub struct Reply {
    pub header_len: usize,
    pub payload: Vec<u8>,
}

impl Admin {
    pub fn connect(url: &ServerUrl, run_id: &str) -> Result<Admin, String> {
        let address = url.address();
        let stream =
            TcpStream::connect(address.as_str()).map_err(|e| format!("connect {address}: {e}"))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut admin = Admin {
            stream,
            buf: vec![0; 64 * 1024],
            len: 0,
            info: ServerInfo::default(),
            inbox: format!("_INBOX.{run_id}.admin"),
        };
        let mut info = None;
        admin.read_until(|op| match op {
            ServerOp::Info(json) => {
                info = Some(ServerInfo::from_json(json));
                true
            }
            _ => false,
        })?;
        admin.info = info.expect("stopped on INFO")?;
        let mut connect = serde_json::json!({"verbose": false, "pedantic": false, "lang": "rust",
            "name": "natrix-bench-admin", "protocol": 1, "headers": true, "no_responders": true});
        for (key, value) in [
            ("user", &url.user),
            ("pass", &url.pass),
            ("auth_token", &url.token),
        ] {
            if let Some(value) = value {
                connect[key] = serde_json::Value::String(value.clone());
            }
        }
        let mut hello = format!("CONNECT {connect}\r\n").into_bytes();
        encode::subscribe(
            &mut hello,
            format!("{}.*", admin.inbox).as_bytes(),
            None,
            b"1",
        );
        hello.extend_from_slice(b"PING\r\n");
        admin.send(&hello)?;
        admin.read_until(|op| op == ServerOp::Pong)?;
        Ok(admin)
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads operations until `stop` returns true for one; -ERR is an error.
    fn read_until(&mut self, mut stop: impl FnMut(ServerOp<'_>) -> bool) -> Result<(), String> {
        loop {
            let mut at = 0;
            let mut done = false;
            while at < self.len && !done {
                match server_parser::parse(&self.buf[at..self.len]) {
                    Ok((op, n)) => {
                        at += n;
                        match op {
                            ServerOp::Err(text) => {
                                return Err(format!(
                                    "server error: {}",
                                    String::from_utf8_lossy(text)
                                ))
                            }
                            ServerOp::Ping => self
                                .stream
                                .write_all(b"PONG\r\n")
                                .map_err(|e| e.to_string())?,
                            op => done = stop(op),
                        }
                    }
                    Err(ParseError::Incomplete { need }) => {
                        if let Some(need) = need {
                            if need > self.buf.len() {
                                self.buf.resize(need.next_power_of_two(), 0);
                            }
                        }
                        break;
                    }
                    Err(e) => return Err(format!("protocol error from server: {e:?}")),
                }
            }
            self.buf.copy_within(at..self.len, 0);
            self.len -= at;
            if done {
                return Ok(());
            }
            if self.len == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self
                .stream
                .read(&mut self.buf[self.len..])
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed by the server".into());
            }
            self.len += n;
        }
    }

    /// Sends a request and waits for its reply.
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> Result<Reply, String> {
        let reply_to = format!("{}.r", self.inbox);
        let mut out = Vec::new();
        encode::publish(
            &mut out,
            subject.as_bytes(),
            Some(reply_to.as_bytes()),
            payload,
        );
        self.send(&out)?;
        let mut reply = None;
        self.read_until(|op| match op {
            ServerOp::Msg {
                payload,
                header_len,
                ..
            } => {
                reply = Some(Reply {
                    header_len,
                    payload: payload.to_vec(),
                });
                true
            }
            _ => false,
        })?;
        let reply = reply.expect("stopped on MSG");
        if reply.header_len > 0 && reply.payload.starts_with(b"NATS/1.0 503") {
            return Err(format!("no responders for {subject}"));
        }
        Ok(reply)
    }

    /// A JetStream API request whose JSON reply must not carry an error.
    pub fn api(
        &mut self,
        subject: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let reply = self.request(subject, body.to_string().as_bytes())?;
        let json: serde_json::Value = serde_json::from_slice(&reply.payload[reply.header_len..])
            .map_err(|e| format!("{subject}: bad reply: {e}"))?;
        match json.get("error") {
            Some(e) => Err(format!("{subject}: {e}")),
            None => Ok(json),
        }
    }

    /// Publishes `count` messages with acks, `window` acks in flight; returns the acks
    /// that were not errors.
    pub fn publish_acked(
        &mut self,
        subject: &str,
        payload: &[u8],
        count: u64,
        window: u64,
    ) -> Result<u64, String> {
        let reply_to = format!("{}.p", self.inbox);
        let mut one = Vec::new();
        encode::publish(
            &mut one,
            subject.as_bytes(),
            Some(reply_to.as_bytes()),
            payload,
        );
        let (mut sent, mut acked, mut good) = (0u64, 0u64, 0u64);
        let mut out = Vec::new();
        while acked < count {
            out.clear();
            while sent < count && sent - acked < window {
                out.extend_from_slice(&one);
                sent += 1;
            }
            if !out.is_empty() {
                self.send(&out)?;
            }
            let mut got = 0;
            self.read_until(|op| {
                if let ServerOp::Msg { payload, .. } = op {
                    got += 1;
                    if !payload.windows(7).any(|w| w == b"\"error\"") {
                        good += 1;
                    }
                }
                got > 0
            })?;
            acked += got;
        }
        Ok(good)
    }
}
