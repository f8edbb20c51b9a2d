//! `cluster { name, listen, routes, ... }`.

use super::auth::{parse_authorization, parse_permissions, Authorization};
use super::convert::{
    boolean, bounded, duration_ms, integer, invalid, map, port, string, string_list, Notes, Result,
};
use super::listen::host_port;
use super::tls::{parse_tls, TlsConfig};
use crate::conf::Item;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: Option<String>,
    /// "0.0.0.0" unless `host` or `listen` says otherwise.
    pub host: String,
    /// 0 when absent or `-1` (a random port).
    pub port: u16,
    /// Route URLs as written, duplicates removed.
    pub routes: Vec<String>,
    /// None: the default pool; `Some(0)`: pooling disabled (`pool_size: -1`).
    pub pool_size: Option<u32>,
    pub advertise: Option<String>,
    pub no_advertise: bool,
    pub connect_retries: u32,
    pub authorization: Option<Authorization>,
    pub tls: Option<TlsConfig>,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            name: None,
            host: super::DEFAULT_HOST.to_string(),
            port: 0,
            routes: Vec::new(),
            pool_size: None,
            advertise: None,
            no_advertise: false,
            connect_retries: 0,
            authorization: None,
            tls: None,
        }
    }
}

pub(crate) fn parse_cluster(key: &str, item: &Item, notes: &mut Notes) -> Result<ClusterConfig> {
    let mut cluster = ClusterConfig::default();
    for (k, v) in map(key, item)? {
        match k.to_ascii_lowercase().as_str() {
            "name" => cluster.name = Some(name_without_spaces(k, v)?),
            "listen" => {
                let hp = host_port(k, v)?;
                cluster.port = hp.port;
                if let Some(host) = hp.host {
                    cluster.host = host;
                }
            }
            "port" => cluster.port = port(k, v)?,
            "host" | "net" => cluster.host = string(k, v)?,
            "routes" => cluster.routes = routes(k, v, notes)?,
            "cluster_advertise" | "advertise" => cluster.advertise = Some(string(k, v)?),
            "no_advertise" => cluster.no_advertise = boolean(k, v)?,
            "connect_retries" => cluster.connect_retries = bounded(k, v, u32::MAX.into())? as u32,
            "pool_size" => cluster.pool_size = pool_size(k, v)?,
            "authorization" => cluster.authorization = Some(cluster_authorization(k, v, notes)?),
            "permissions" => {
                parse_permissions(k, v, notes)?;
                notes.unsupported("cluster.permissions", v);
            }
            "ping_interval" | "write_deadline" => {
                duration_ms(k, v, &mut notes.warnings)?;
                notes.ignored(format!("cluster.{k}"), v);
            }
            "tls" => cluster.tls = Some(route_tls(k, v, notes)?),
            "connect_backoff" | "accounts" | "compression" | "ping_max" | "write_timeout" => {
                notes.ignored(format!("cluster.{k}"), v)
            }
            _ => notes.unknown(k, v),
        }
    }
    Ok(cluster)
}

/// Server and cluster names may not contain spaces.
pub(crate) fn name_without_spaces(key: &str, item: &Item) -> Result<String> {
    let name = string(key, item)?;
    if name.contains(' ') {
        return Err(invalid(
            item,
            format!("{key:?} cannot contain spaces: {name:?}"),
        ));
    }
    Ok(name)
}

fn routes(key: &str, item: &Item, notes: &mut Notes) -> Result<Vec<String>> {
    let mut routes: Vec<String> = Vec::new();
    for url in string_list(key, item)? {
        let url = url.trim().to_string();
        if routes.contains(&url) {
            notes.warn(item, format!("duplicate route {url:?} ignored"));
        } else {
            routes.push(url);
        }
    }
    Ok(routes)
}

fn pool_size(key: &str, item: &Item) -> Result<Option<u32>> {
    match integer(key, item)? {
        0 => Ok(None),
        n if n < 0 => Ok(Some(0)),
        n => u32::try_from(n)
            .map(Some)
            .map_err(|_| invalid(item, format!("{key:?} is too large: {n}"))),
    }
}

/// Routes authenticate with a single user or none: no users array, no token.
fn cluster_authorization(key: &str, item: &Item, notes: &mut Notes) -> Result<Authorization> {
    let auth = parse_authorization(key, item, notes)?;
    if !auth.users.is_empty() {
        return Err(invalid(
            item,
            "cluster authorization does not allow multiple users",
        ));
    }
    if auth.token.is_some() {
        return Err(invalid(
            item,
            "cluster authorization does not support tokens",
        ));
    }
    Ok(auth)
}

/// Routes always check each other's certificates, so the CA must be given.
fn route_tls(key: &str, item: &Item, notes: &mut Notes) -> Result<TlsConfig> {
    let tls = parse_tls("cluster.tls", key, item, notes)?;
    if tls.ca_file.is_none() {
        return Err(invalid(
            item,
            "cluster tls requires a 'ca_file': routes verify each other's certificates",
        ));
    }
    Ok(tls)
}
