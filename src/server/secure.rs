//! The TLS step of a client connection, as nats-server takes it: INFO in plain text
//! (saying `tls_required`), then the client's handshake, bounded by the tls block's
//! timeout; or, with `handshake_first`, the handshake before anything is sent. A
//! client that fails is closed without a word, as nats-server 2.9 does (its
//! `-ERR 'Secure Connection - TLS Required'` never reaches a client that is not
//! speaking TLS).

use crate::tls::map::CertNames;
use crate::tls::{ClientTls, HandshakeError, Stream};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use std::net::SocketAddr;
use tracing::{debug, error};

/// A secured connection, and whether INFO went out before the handshake.
pub struct Secured {
    pub stream: Stream,
    pub info_sent: bool,
    /// `verify_and_map`: what the certificate offers as a user name.
    pub cert_names: Option<CertNames>,
}

/// TLS records of a handshake start with 0x16. Anything else (a plain CONNECT) is
/// refused before rustls sees it, so that the client gets no TLS alert, only the
/// close, as from Go's TLS.
async fn first_record_is_handshake(tcp: &TcpStream) -> std::io::Result<()> {
    const HANDSHAKE_RECORD: u8 = 0x16;
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await.map_err(std::io::Error::from)? {
        1 if first[0] == HANDSHAKE_RECORD => Ok(()),
        1 => Err(std::io::Error::other(
            "tls: first record does not look like a TLS handshake",
        )),
        _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
    }
}

pub async fn secure(
    mut tcp: TcpStream,
    tls: &ClientTls,
    info: &[u8],
    addr: SocketAddr,
    cid: u64,
) -> Option<Secured> {
    if !tls.handshake_first && tcp.write_all(info).await.is_err() {
        return None;
    }
    debug!("{addr} - cid:{cid} - Starting TLS client connection handshake");
    let started = std::time::Instant::now();
    let handshake = async {
        crate::tls::stream::bounded(tls.timeout, first_record_is_handshake(&tcp)).await?;
        let left = tls.timeout.saturating_sub(started.elapsed());
        crate::tls::stream::accept(tcp, &tls.acceptor, left).await
    };
    let stream = match handshake.await {
        Ok(s) => s,
        Err(e) => {
            if matches!(e, HandshakeError::Timeout) {
                error!("{addr} - cid:{cid} - TLS handshake timeout");
            } else {
                error!("{addr} - cid:{cid} - TLS handshake error: {e}");
            }
            debug!("{addr} - cid:{cid} - Client connection closed: TLS Handshake Failure");
            return None;
        }
    };
    debug!("{addr} - cid:{cid} - TLS handshake complete");
    let cert_names = tls.map.then(|| {
        stream
            .peer_certificate()
            .and_then(|der| crate::tls::map::cert_names(der))
            .unwrap_or_default()
    });
    Some(Secured {
        stream,
        info_sent: !tls.handshake_first,
        cert_names,
    })
}
