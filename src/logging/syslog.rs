//! Log lines to syslog, as nats-server's `syslog: true` (`-s`, the local syslog
//! at `/dev/log`) and `remote_syslog: "udp://host:514"` (`-r`) do: one datagram
//! per line, `<PRI>Mmm dd hh:mm:ss natrix[pid]: [INF] text` (RFC 3164), facility
//! daemon; a remote line also names this host.

use std::io::{self, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::SystemTime;
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

const FACILITY_DAEMON: u8 = 3;
const LOCAL_SOCKET: &str = "/dev/log";
/// A syslog datagram is cut here (RFC 5426 asks receivers for at least 480 bytes
/// over IPv4; common daemons take much more).
const LINE_MAX_BYTES: usize = 8192;

enum Socket {
    Local(UnixDatagram),
    Remote(UdpSocket),
}

/// Where the log goes.
pub struct Syslog {
    socket: Socket,
    hostname: Option<String>,
    pid: u32,
}

impl Syslog {
    /// The local syslog daemon's socket.
    pub fn local() -> io::Result<Syslog> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(LOCAL_SOCKET)?;
        Ok(Syslog {
            socket: Socket::Local(socket),
            hostname: None,
            pid: std::process::id(),
        })
    }

    /// A remote daemon: `udp://host:port`, or `host:port` (UDP, as nats-server
    /// reads an address without a scheme).
    pub fn remote(url: &str) -> io::Result<Syslog> {
        let addr = match url.split_once("://") {
            Some(("udp", addr)) => addr,
            Some((scheme, _)) => {
                return Err(io::Error::other(format!(
                    "remote syslog over {scheme} is not supported by natrix yet (use udp://)"
                )))
            }
            None => url,
        };
        let socket = UdpSocket::bind(("0.0.0.0", 0))?;
        socket.connect(addr)?;
        Ok(Syslog {
            socket: Socket::Remote(socket),
            hostname: Some(hostname()),
            pid: std::process::id(),
        })
    }

    fn send(&self, severity: u8, text: &[u8]) {
        let mut line = header(
            FACILITY_DAEMON * 8 + severity,
            self.hostname.as_deref(),
            self.pid,
        );
        line.extend_from_slice(text.strip_suffix(b"\n").unwrap_or(text));
        line.truncate(LINE_MAX_BYTES);
        // A log line that cannot be sent is dropped: logging must not stop the server.
        let _ = match &self.socket {
            Socket::Local(s) => s.send(&line),
            Socket::Remote(s) => s.send(&line),
        };
    }
}

fn header(priority: u8, hostname: Option<&str>, pid: u32) -> Vec<u8> {
    let stamp = crate::timefmt::syslog_stamp(SystemTime::now());
    let host = hostname.map(|h| format!("{h} ")).unwrap_or_default();
    format!("<{priority}>{stamp} {host}natrix[{pid}]: ").into_bytes()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// nats-server's mapping: its [INF] lines are notices.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 5,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Makes one writer per log line, which sends the line when dropped.
#[derive(Clone)]
pub struct SyslogWriter {
    target: Arc<Syslog>,
}

impl SyslogWriter {
    pub fn new(target: Syslog) -> SyslogWriter {
        SyslogWriter {
            target: Arc::new(target),
        }
    }
}

pub struct Line {
    target: Arc<Syslog>,
    severity: u8,
    text: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.text.is_empty() {
            self.target.send(self.severity, &self.text);
        }
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        self.line(5)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        self.line(severity(meta.level()))
    }
}

impl SyslogWriter {
    fn line(&self, severity: u8) -> Line {
        Line {
            target: self.target.clone(),
            severity,
            text: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_line_is_one_datagram_with_priority_host_and_tag() {
        let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = daemon.local_addr().unwrap();
        let writer = SyslogWriter::new(Syslog::remote(&format!("udp://{addr}")).unwrap());
        {
            let mut line = writer.line(4);
            line.write_all(b"[WRN] careful\n").unwrap();
        }
        let mut buf = [0u8; 512];
        let n = daemon.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(got.starts_with("<28>"), "{got}");
        assert!(
            got.ends_with(&format!("natrix[{}]: [WRN] careful", std::process::id())),
            "{got}"
        );
        assert!(Syslog::remote("tcp://127.0.0.1:1").is_err());
    }
}
