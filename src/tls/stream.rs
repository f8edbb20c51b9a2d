//! The one stream type that client and route connections read and write: plain TCP,
//! or TCP under TLS. A plain connection costs a match per read or write, no more.

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::TlsStream;
use glommio::net::TcpStream;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp().peer_addr().ok()
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> glommio::Result<(), ()> {
        self.tcp().set_read_timeout(timeout)
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> glommio::Result<(), ()> {
        self.tcp().set_write_timeout(timeout)
    }

    /// The certificate the peer presented, first of its chain.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.get_ref().1.peer_certificates()?.first(),
        }
    }

    /// The TLS version and cipher suite, named as nats-server's `/connz` names them
    /// (`1.3`, `TLS_AES_128_GCM_SHA256`); None on plain TCP.
    pub fn tls_details(&self) -> Option<(String, String)> {
        let Stream::Tls(s) = self else { return None };
        let conn = s.get_ref().1;
        let version = match conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "1.2".to_string(),
            other => format!("{other:?}"),
        };
        let suite = format!("{:?}", conn.negotiated_cipher_suite()?.suite());
        let suite = suite.replacen("TLS13_", "TLS_", 1);
        Some((version, suite))
    }

    /// Pushes out what TLS holds back after a write; nothing to do on plain TCP.
    pub fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(_) => Poll::Ready(Ok(())),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}

/// Why a handshake failed, worded as nats-server logs it.
#[derive(Debug)]
pub enum HandshakeError {
    Timeout,
    Failed(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Timeout => f.write_str("i/o timeout"),
            HandshakeError::Failed(e) => f.write_str(e),
        }
    }
}

/// The server side of a handshake on `tcp`, given `timeout` to finish.
pub async fn accept(
    tcp: TcpStream,
    acceptor: &futures_rustls::TlsAcceptor,
    timeout: Duration,
) -> Result<Stream, HandshakeError> {
    let handshake = acceptor.accept(tcp);
    let tls = bounded(timeout, handshake).await?;
    Ok(Stream::Tls(Box::new(TlsStream::Server(tls))))
}

/// The client side of a handshake on `tcp` (a route we dial), checking that the
/// peer's certificate is valid for `host`.
pub async fn connect(
    tcp: TcpStream,
    connector: &futures_rustls::TlsConnector,
    host: &str,
    timeout: Duration,
) -> Result<Stream, HandshakeError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| HandshakeError::Failed(format!("invalid server name {host:?}: {e}")))?;
    let tls = bounded(timeout, connector.connect(name, tcp)).await?;
    Ok(Stream::Tls(Box::new(TlsStream::Client(tls))))
}

/// `handshake`, or `HandshakeError::Timeout` once `timeout` has passed.
pub async fn bounded<T>(
    timeout: Duration,
    handshake: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, HandshakeError> {
    let expired = async {
        glommio::timer::sleep(timeout).await;
        Err(HandshakeError::Timeout)
    };
    let done = async {
        handshake
            .await
            .map_err(|e| HandshakeError::Failed(e.to_string()))
    };
    futures_lite::future::or(done, expired).await
}
