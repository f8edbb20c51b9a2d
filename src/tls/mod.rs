//! TLS on rustls, as nats-server offers it: for clients (INFO in plain text, then
//! the handshake; or the handshake first) and for routes (the handshake right after
//! connect, certificates checked both ways).
//!
//! - `config`: rustls configurations from a tls block.
//! - `stream`: the plain-or-TLS stream connections use, and the handshakes.
//! - `map`: `verify_and_map`, user names from a client certificate.

pub mod config;
pub mod map;
pub mod stream;

pub use stream::{HandshakeError, Stream};

use crate::options::{Options, TlsConfig};
use std::time::Duration;

/// TLS for client connections.
#[derive(Clone)]
pub struct ClientTls {
    pub acceptor: futures_rustls::TlsAcceptor,
    pub timeout: Duration,
    pub verify: bool,
    pub map: bool,
    pub handshake_first: bool,
}

/// TLS for routes: accepted ones are the server side, dialed ones the client side.
#[derive(Clone)]
pub struct RouteTls {
    pub acceptor: futures_rustls::TlsAcceptor,
    pub connector: futures_rustls::TlsConnector,
    pub timeout: Duration,
    /// `verify_and_map`: an accepted route's certificate must name the cluster's
    /// `authorization { user }`.
    pub map: bool,
}

/// What new connections use; rebuilt on reload, so new connections get new
/// certificates while established ones keep theirs.
#[derive(Clone, Default)]
pub struct Contexts {
    pub client: Option<ClientTls>,
    pub route: Option<RouteTls>,
}

impl Contexts {
    pub fn from_options(opts: &Options) -> Result<Contexts, String> {
        let client = opts.tls.as_ref().map(client_tls).transpose()?;
        let route = opts
            .cluster
            .as_ref()
            .and_then(|c| c.tls.as_ref())
            .map(route_tls)
            .transpose()
            .map_err(|e| format!("cluster tls: {e}"))?;
        Ok(Contexts { client, route })
    }
}

fn client_tls(tls: &TlsConfig) -> Result<ClientTls, String> {
    Ok(ClientTls {
        acceptor: config::server(tls, false)?.into(),
        timeout: Duration::from_millis(tls.timeout_ms),
        verify: tls.verify,
        map: tls.map,
        handshake_first: tls.handshake_first,
    })
}

fn route_tls(tls: &TlsConfig) -> Result<RouteTls, String> {
    Ok(RouteTls {
        acceptor: config::server(tls, true)?.into(),
        connector: config::route_client(tls)?.into(),
        timeout: Duration::from_millis(tls.timeout_ms),
        map: tls.map,
    })
}
