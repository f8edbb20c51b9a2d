//! Dialing a route as nats-server does: resolve the host, connect within a second,
//! and report a failure in its words (`Error trying to connect to route (attempt 3):
//! dial tcp 127.0.0.1:6222: connect: connection refused`), at the error level for the
//! first attempt and every Nth (`connect_error_reports`, `reconnect_error_reports`),
//! at the debug level otherwise.

use glommio::net::TcpStream;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;
use tracing::{debug, error};

/// nats-server's route dial timeout.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Connects to `host_port`; the error is nats-server's text for the failure.
pub async fn dial(host_port: &str) -> Result<TcpStream, String> {
    let addr = lookup(host_port)?;
    TcpStream::connect_timeout(addr, DIAL_TIMEOUT)
        .await
        .map_err(|e| dial_error(addr, &io::Error::from(e)))
}

/// Logs failed attempt number `attempt`; every `every`th (and the first) is an error.
pub fn report(attempt: u32, every: u32, why: &str) {
    if attempt == 1 || attempt.is_multiple_of(every.max(1)) {
        error!("Error trying to connect to route (attempt {attempt}): {why}");
    } else {
        debug!("Error trying to connect to route (attempt {attempt}): {why}");
    }
}

fn lookup(host_port: &str) -> Result<SocketAddr, String> {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let lookup_error = |why: String| format!("lookup for host {host:?}: {why}");
    host_port
        .to_socket_addrs()
        .map_err(|e| lookup_error(os_text(&e)))?
        .next()
        .ok_or_else(|| lookup_error("no such host".into()))
}

/// Go's `dial tcp ADDR: connect: connection refused`, `dial tcp ADDR: i/o timeout`.
fn dial_error(addr: SocketAddr, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::TimedOut => format!("dial tcp {addr}: i/o timeout"),
        _ => format!("dial tcp {addr}: connect: {}", os_text(e)),
    }
}

/// The system's words for `e`, lower case and without Rust's `(os error N)`.
pub(crate) fn os_text(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_nats_server_writes_them() {
        let addr: SocketAddr = "127.0.0.1:6222".parse().unwrap();
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            dial_error(addr, &refused),
            "dial tcp 127.0.0.1:6222: connect: connection refused"
        );
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            dial_error(addr, &timeout),
            "dial tcp 127.0.0.1:6222: i/o timeout"
        );
        let e = lookup("nosuchhost.invalid:6222").unwrap_err();
        assert!(
            e.starts_with("lookup for host \"nosuchhost.invalid\": "),
            "{e}"
        );
    }
}
