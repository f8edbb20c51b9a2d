//! TLS on routes, as nats-server does it: the handshake comes right after connect,
//! before INFO; the dialing side is the TLS client and checks the peer's
//! certificate against the host it dialed, the accepting side requires one.

use crate::server::Server;
use crate::tls::map::CertNames;
use crate::tls::Stream;
use glommio::net::TcpStream;
use std::net::SocketAddr;
use tracing::{debug, error};

/// `tcp` as the route will use it: plain without cluster TLS, secured with it;
/// None when the handshake failed (logged). `dialed` is the `host:port` we dialed.
/// With `verify_and_map`, an accepted route also brings the names its certificate
/// offers (none parsed: no name).
pub async fn secure(
    server: &Server,
    tcp: TcpStream,
    dialed: Option<&str>,
    addr: SocketAddr,
) -> Option<(Stream, Option<CertNames>)> {
    let Some(tls) = server.tls().route.clone() else {
        return Some((Stream::Plain(tcp), None));
    };
    let side = if dialed.is_some() { "client" } else { "server" };
    debug!("{addr} - Starting TLS route {side} handshake");
    let result = match dialed {
        Some(host_port) => {
            let host = host_of(host_port);
            crate::tls::stream::connect(tcp, &tls.connector, host, tls.timeout).await
        }
        None => crate::tls::stream::accept(tcp, &tls.acceptor, tls.timeout).await,
    };
    match result {
        Ok(stream) => {
            debug!("{addr} - TLS route handshake complete");
            let names = (tls.map && dialed.is_none()).then(|| {
                stream
                    .peer_certificate()
                    .and_then(|der| crate::tls::map::cert_names(der))
                    .unwrap_or_default()
            });
            Some((stream, names))
        }
        Err(e) => {
            error!("{addr} - TLS route handshake error: {e}");
            None
        }
    }
}

/// The host of `host:port`, without an IPv6 address's brackets.
fn host_of(host_port: &str) -> &str {
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(super::host_of("127.0.0.1:6222"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:6222"), "::1");
        assert_eq!(super::host_of("example.com:6222"), "example.com");
    }
}
