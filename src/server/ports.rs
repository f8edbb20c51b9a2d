//! `ports_file_dir`: once listening, the server writes `<exe>_<pid>.ports` there, a
//! JSON object of the URLs it can be reached at, as nats-server does (test harnesses,
//! nats.js's among them, wait for it), and removes it on the way out.

use crate::server::Server;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use tracing::error;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nats: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitoring: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<String>,
}

/// `<dir>/<executable's file name>_<pid>.ports`, None without `ports_file_dir`.
pub fn path(server: &Server) -> Option<PathBuf> {
    let dir = server.opts.ports_file_dir.as_ref()?;
    let exe = std::env::args()
        .next()
        .and_then(|a| {
            PathBuf::from(a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "natrix".into());
    Some(PathBuf::from(dir).join(format!("{exe}_{}.ports", std::process::id())))
}

/// The URLs of every listener `server` has.
pub fn ports(server: &Server) -> Ports {
    let opts = &server.opts;
    let monitoring = match opts.http_port {
        Some(port) => urls(
            "http",
            opts.http_host.as_deref().unwrap_or(&opts.host),
            port,
        ),
        None => Vec::new(),
    };
    let cluster = match &opts.cluster {
        Some(c) => urls("nats", &c.host, c.port),
        None => Vec::new(),
    };
    Ports {
        nats: urls("nats", &opts.host, server.port),
        monitoring,
        cluster,
    }
}

pub fn write(server: &Server) {
    let Some(path) = path(server) else { return };
    let json = serde_json::to_vec(&ports(server)).expect("ports serialize");
    if let Err(e) = std::fs::write(&path, json) {
        error!("Error writing ports file ({}): {e}", path.display());
    }
}

pub fn remove(server: &Server) {
    let Some(path) = path(server) else { return };
    if let Err(e) = std::fs::remove_file(&path) {
        error!("Error cleaning up ports file {}: {e}", path.display());
    }
}

/// `scheme://ip:port` for `host`; a wildcard host stands for every address of
/// every interface the listener takes, as nats-server lists them.
fn urls(scheme: &str, host: &str, port: u16) -> Vec<String> {
    let ips = match crate::net::wildcard(host) {
        Some(dual_stack) => crate::net::interface_ips()
            .into_iter()
            .filter(|ip| dual_stack || ip.is_ipv4())
            .collect(),
        None => match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => return vec![format!("{scheme}://{host}:{port}")],
        },
    };
    ips.into_iter()
        .map(|ip| format!("{scheme}://{}", std::net::SocketAddr::new(ip, port)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_a_host_and_of_the_wildcard() {
        assert_eq!(urls("nats", "127.0.0.1", 4222), ["nats://127.0.0.1:4222"]);
        assert_eq!(urls("nats", "::1", 4222), ["nats://[::1]:4222"]);
        let all = urls("http", "0.0.0.0", 8222);
        assert!(
            all.contains(&"http://127.0.0.1:8222".to_string()),
            "{all:?}"
        );
    }

    #[test]
    fn empty_lists_are_left_out() {
        let ports = Ports {
            nats: vec!["nats://127.0.0.1:4222".into()],
            ..Ports::default()
        };
        assert_eq!(
            serde_json::to_string(&ports).unwrap(),
            r#"{"nats":["nats://127.0.0.1:4222"]}"#
        );
    }
}
