//! rustls configurations from a tls block: the server side for clients and routes,
//! the client side for the routes this server dials. Errors read as nats-server's.

use crate::options::TlsConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// Checks that the block names a usable certificate, key and CA, as a server
/// started with it would need.
pub fn check(tls: &TlsConfig) -> Result<(), String> {
    let (certs, key) = load_pair(tls)?;
    if let Some(ca) = &tls.ca_file {
        load_roots(ca)?;
    } else if tls.verify {
        return Err("'verify' requires a 'ca_file' to check client certificates".into());
    }
    drop((certs, key));
    Ok(())
}

/// The server side. `require_client_cert` holds for routes whatever `verify` says,
/// as nats-server forces it there.
pub fn server(tls: &TlsConfig, require_client_cert: bool) -> Result<Arc<ServerConfig>, String> {
    let (certs, key) = load_pair(tls)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.verify || require_client_cert {
        let ca = tls
            .ca_file
            .as_deref()
            .ok_or("verifying client certificates requires a 'ca_file'")?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                .build()
                .map_err(|e| e.to_string())?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {e}"))?;
    Ok(Arc::new(config))
}

/// The client side of routes: the peer is checked against `ca_file`, and this
/// server presents its own certificate.
pub fn route_client(tls: &TlsConfig) -> Result<Arc<ClientConfig>, String> {
    let (certs, key) = load_pair(tls)?;
    let ca = tls
        .ca_file
        .as_deref()
        .ok_or("cluster tls requires a 'ca_file' to verify routes")?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(load_roots(ca)?)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {e}"))?;
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_pair(tls: &TlsConfig) -> Result<Pair, String> {
    match (tls.cert_file.is_empty(), tls.key_file.is_empty()) {
        (false, true) => return Err("missing 'key_file' in TLS configuration".into()),
        (true, _) => return Err("missing 'cert_file' in TLS configuration".into()),
        _ => {}
    }
    let pair_error = |e: String| format!("error parsing X509 certificate/key pair: {e}");
    let certs = load_certs(&tls.cert_file).map_err(pair_error)?;
    let key = load_key(&tls.key_file).map_err(pair_error)?;
    Ok((certs, key))
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("open {path}: {}", crate::route::dial::os_text(&e)))
}

fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "tls: failed to find any PEM data in certificate input ({path})"
        ));
    }
    Ok(certs)
}

fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{path}: {e}"))?
        .ok_or_else(|| format!("tls: failed to find any PEM data in key input ({path})"))
}

fn load_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path).map_err(|_| "failed to parse root ca certificate".to_string())? {
        roots
            .add(cert)
            .map_err(|_| "failed to parse root ca certificate".to_string())?;
    }
    Ok(roots)
}
