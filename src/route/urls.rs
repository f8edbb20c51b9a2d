//! Addresses: route URLs to dial, and the client URLs a server advertises.

use crate::server::Server;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Clone, Debug)]
pub struct RouteTarget {
    pub url: String,
    /// `host:port` to dial; also the key that keeps one dialer per address.
    pub host_port: String,
    pub user: Option<String>,
    pub pass: Option<String>,
}

/// Parses `nats-route://[user:pass@]host:port[/]` (or `nats://`, `tcp://`).
pub fn route_target(url: &str) -> Option<RouteTarget> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.trim_end_matches('/');
    let (userinfo, host_port) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = host_port.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    if host.is_empty() {
        return None;
    }
    let (user, pass) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
        None => (None, None),
    };
    Some(RouteTarget {
        url: url.to_string(),
        host_port: format!("{host}:{port}"),
        user,
        pass,
    })
}

/// A host others can dial: the unspecified address becomes this machine's first
/// non-loopback IPv4 address (loopback when it has none).
pub fn dialable_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => first_interface_ipv4()
            .unwrap_or(Ipv4Addr::LOCALHOST)
            .to_string(),
        _ => host.to_string(),
    }
}

/// This server's client URLs as `host:port`, as nats-server lists them in
/// `connect_urls`; none with `no_advertise`.
pub fn client_urls(server: &Server) -> Vec<String> {
    if server.opts.cluster.as_ref().is_some_and(|c| c.no_advertise) {
        return Vec::new();
    }
    if let Some(advertise) = &server.opts.client_advertise {
        return vec![advertise.clone()];
    }
    vec![format!(
        "{}:{}",
        dialable_host(&server.opts.host),
        server.port
    )]
}

fn first_interface_ipv4() -> Option<Ipv4Addr> {
    crate::net::interface_ips()
        .into_iter()
        .find_map(|ip| match ip {
            IpAddr::V4(v4) if !v4.is_loopback() => Some(v4),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_urls() {
        let t = route_target("nats-route://127.0.0.1:6222/").unwrap();
        assert_eq!(t.host_port, "127.0.0.1:6222");
        let t = route_target("nats://ruser:T0pS3cr3t@host-b:6222").unwrap();
        assert_eq!(t.host_port, "host-b:6222");
        assert_eq!(t.user.as_deref(), Some("ruser"));
        assert_eq!(t.pass.as_deref(), Some("T0pS3cr3t"));
        assert!(route_target("nats://nohost").is_none());
        assert!(route_target("nats://:1").is_none());
    }
}
