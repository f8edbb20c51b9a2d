//! `tls { cert_file, key_file, ca_file, verify, verify_and_map, timeout, handshake_first }`,
//! at the top level (clients) and in `cluster` (routes). The files are read here, so
//! that a missing or bad certificate stops the server with the block's position.

use super::convert::{boolean, invalid, map, string, type_error, Notes, Result};
use crate::conf::{Item, Value};

/// nats-server's TLS handshake timeout when none is set.
pub const DEFAULT_TLS_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: String,
    pub key_file: String,
    pub ca_file: Option<String>,
    /// Clients must present a certificate signed by `ca_file`.
    pub verify: bool,
    /// `verify_and_map`: the client certificate names the user.
    pub map: bool,
    pub timeout_ms: u64,
    /// The handshake comes before INFO (nats-server 2.10's `handshake_first`).
    pub handshake_first: bool,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            cert_file: String::new(),
            key_file: String::new(),
            ca_file: None,
            verify: false,
            map: false,
            timeout_ms: DEFAULT_TLS_TIMEOUT_MS,
            handshake_first: false,
        }
    }
}

/// Options of nats-server's tls block that natrix does not have; each changes who
/// may connect or how, so a config that sets one is refused.
const REFUSED_KEYS: &[&str] = &[
    "insecure",
    "cipher_suites",
    "curve_preferences",
    "pinned_certs",
    "verify_cert_and_check_known_urls",
    "connection_rate_limit",
    "cert_store",
    "cert_match",
    "cert_match_by",
    "ca_certs_match",
    "ocsp_peer",
    "certs",
    "min_version",
];

/// Reads a tls block; `path` names it in messages (`tls`, `cluster.tls`).
pub(crate) fn parse_tls(
    path: &str,
    key: &str,
    item: &Item,
    notes: &mut Notes,
) -> Result<TlsConfig> {
    let mut tls = TlsConfig::default();
    for (k, v) in map(key, item)? {
        match k.to_ascii_lowercase().as_str() {
            "cert_file" => tls.cert_file = file(k, v)?,
            "key_file" => tls.key_file = file(k, v)?,
            "ca_file" => tls.ca_file = Some(file(k, v)?),
            "verify" => tls.verify = boolean(k, v)?,
            "verify_and_map" => {
                tls.map = boolean(k, v)?;
                tls.verify |= tls.map;
            }
            "timeout" => tls.timeout_ms = timeout_ms(v)?,
            "handshake_first" | "first" | "immediate" => {
                tls.handshake_first = handshake_first(path, k, v, notes)?
            }
            lower if REFUSED_KEYS.contains(&lower) => notes.unsupported(format!("{path}.{k}"), v),
            _ => notes.errors.push(invalid(
                v,
                format!("error parsing tls config, unknown field [{k:?}]"),
            )),
        }
    }
    crate::tls::config::check(&tls).map_err(|reason| invalid(item, reason))?;
    Ok(tls)
}

fn file(key: &str, item: &Item) -> Result<String> {
    string(key, item).map_err(|_| {
        invalid(
            item,
            format!("error parsing tls config, expected '{key}' to be filename"),
        )
    })
}

/// Seconds (an integer or a float) or a Go duration string.
fn timeout_ms(item: &Item) -> Result<u64> {
    let secs = match &item.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Str(s) => crate::conf::parse_duration(s)
            .map_err(|e| invalid(item, format!("error parsing tls config, 'timeout' {e}")))?
            .as_secs_f64(),
        _ => {
            return Err(invalid(
                item,
                "error parsing tls config, 'timeout' wrong type",
            ))
        }
    };
    Ok(match secs {
        s if s > 0.0 => (s * 1000.0).round() as u64,
        _ => DEFAULT_TLS_TIMEOUT_MS,
    })
}

/// A boolean; nats-server 2.11's fallback delay (a duration or "auto") is refused.
fn handshake_first(path: &str, key: &str, item: &Item, notes: &mut Notes) -> Result<bool> {
    match &item.value {
        Value::Bool(b) => Ok(*b),
        Value::Str(_) => {
            notes.unsupported(format!("{path}.{key} with a fallback delay"), item);
            Ok(false)
        }
        _ => Err(type_error(key, item, "a boolean")),
    }
}
