//! Typed server options, read from a parsed config file the way nats-server reads them.
//!
//! Keys are matched case-insensitively. A known key with a value of the wrong type is
//! an error at the key's position; so is an unknown key (as in nats-server) and an
//! option for a feature natrix does not have yet. Tuning knobs natrix lacks are
//! warnings.

mod accounts;
mod auth;
mod cluster;
mod convert;
mod jetstream;
mod listen;
mod tls;

use std::path::Path;

pub use accounts::{AccountConfig, AccountJsLimits};
pub use auth::{Authorization, Permissions, ResponsePermission, SubjectPermission, UserConfig};
pub use cluster::ClusterConfig;
pub use jetstream::JetStreamConfig;
pub use tls::{TlsConfig, DEFAULT_TLS_TIMEOUT_MS};

use crate::conf::{self, ConfError, Item, Map};
use convert::{
    boolean, bounded, bounded_size, duration_ms, integer, invalid, port, string, Notes, Result,
};
use listen::host_port;

pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 4222;
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 64 * 1024;
pub const DEFAULT_PING_INTERVAL_MS: u64 = 120_000;
pub const DEFAULT_PING_MAX: u32 = 2;
pub const DEFAULT_WRITE_DEADLINE_MS: u64 = 10_000;
pub const DEFAULT_AUTH_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_LAME_DUCK_DURATION_MS: u64 = 120_000;
pub const DEFAULT_LAME_DUCK_GRACE_PERIOD_MS: u64 = 10_000;
/// A route never reached is reported once an hour at nats-server's 1 s retry pace.
pub const DEFAULT_CONNECT_ERROR_REPORTS: u32 = 3600;
pub const DEFAULT_RECONNECT_ERROR_REPORTS: u32 = 1;
/// The system account's conventional name.
pub const SYSTEM_ACCOUNT: &str = "$SYS";

/// nats-server refuses a lame duck duration shorter than this.
const MIN_LAME_DUCK_DURATION_MS: u64 = 30_000;
/// Largest `max_payload` and `max_control_line` nats-server accepts (a 32-bit size).
const MAX_PROTOCOL_SIZE: u64 = i32::MAX as u64;

/// Top-level nats-server options for features natrix does not have: a config that
/// names one is refused, since the server would not be what the file describes.
const REFUSED_TOP_LEVEL: &[&str] = &[
    "gateway",
    "leaf",
    "leafnodes",
    "websocket",
    "ws",
    "mqtt",
    "http_base_path",
    "mappings",
    "maps",
    "default_sentinel",
    "proxy_protocol",
    "ocsp",
    "ocsp_cache",
    "allow_non_tls",
    "operator",
    "operators",
    "roots",
    "root",
    "root_operators",
    "root_operator",
    "resolver",
    "account_resolver",
    "accounts_resolver",
    "resolver_tls",
    "resolver_preload",
    "resolver_pinned_accounts",
    "no_header_support",
    "trusted",
    "trusted_keys",
    "proxies",
];

/// Top-level tuning knobs natrix does not have: ignored with a warning, as the server
/// behaves as the file asks in every other respect.
const IGNORED_TOP_LEVEL: &[&str] = &[
    "logtime_utc",
    "disable_sublist_cache",
    "no_sublist_cache",
    "logfile_size_limit",
    "log_size_limit",
    "logfile_max_num",
    "log_max_num",
    "prof_port",
    "prof_block_rate",
    "max_sub_tokens",
    "max_subscription_tokens",
    "write_timeout",
    "no_system_account",
    "no_system",
    "no_sys_acc",
    "server_metadata",
    "feature_flags",
    "default_js_domain",
    "no_fast_producer_stall",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub server_name: Option<String>,
    /// `server_tags`: matched by a stream's `placement { tags }` (lower case).
    pub server_tags: Vec<String>,
    /// Client listen host: `listen: host:port`, `host` or `net`.
    pub host: String,
    /// Client port; `-1` in the config (a random port) is stored as 0.
    pub port: u16,
    pub client_advertise: Option<String>,
    /// Monitoring host; defaults to `host` when a monitoring port is set.
    pub http_host: Option<String>,
    /// Monitoring port: `http: port`, `http: host:port`, `http_port` or `monitor_port`.
    pub http_port: Option<u16>,
    /// Monitoring over TLS (the `tls` block's certificate), on `http_host`.
    pub https_port: Option<u16>,
    pub max_payload: usize,
    pub max_control_line: usize,
    pub max_pending: usize,
    /// 0 refuses every client (nats-server's `max_connections: 0`).
    pub max_connections: usize,
    /// Closed connections kept for `/connz?state=closed` (per shard, and in total).
    pub max_closed_clients: usize,
    /// 0 is unlimited.
    pub max_subscriptions: usize,
    pub ping_interval_ms: u64,
    pub ping_max: u32,
    pub write_deadline_ms: u64,
    pub auth_timeout_ms: u64,
    pub lame_duck_duration_ms: u64,
    pub lame_duck_grace_period_ms: u64,
    pub debug: bool,
    pub trace: bool,
    pub logtime: bool,
    pub log_file: Option<String>,
    /// Log to the local syslog (`syslog: true`) or a remote one (`remote_syslog`).
    pub syslog: bool,
    pub remote_syslog: Option<String>,
    pub pid_file: Option<String>,
    pub authorization: Option<Authorization>,
    pub accounts: Vec<AccountConfig>,
    /// `system_account`; if absent and an account named `$SYS` is configured, that one.
    pub system_account: Option<String>,
    pub no_auth_user: Option<String>,
    /// The top-level tls block: TLS for clients (and HTTPS monitoring).
    pub tls: Option<TlsConfig>,
    pub cluster: Option<ClusterConfig>,
    pub jetstream: Option<JetStreamConfig>,
    /// `ports_file_dir`: where to write `<exe>_<pid>.ports` once listening.
    pub ports_file_dir: Option<String>,
    /// `max_traced_msg_len`: trace lines are cut to this many bytes; 0: unlimited.
    pub max_traced_msg_len: usize,
    /// Failed first connects to a route logged as errors: the first and every Nth.
    pub connect_error_reports: u32,
    /// Failed reconnects to a route logged as errors: the first and every Nth.
    pub reconnect_error_reports: u32,
    /// `file:line:col: reason` for dubious values and ignored tuning knobs.
    pub warnings: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            server_name: None,
            server_tags: Vec::new(),
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            client_advertise: None,
            http_host: None,
            http_port: None,
            https_port: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_pending: DEFAULT_MAX_PENDING,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_closed_clients: crate::server::stats::CLOSED_CONNECTIONS_DEFAULT,
            max_subscriptions: 0,
            ping_interval_ms: DEFAULT_PING_INTERVAL_MS,
            ping_max: DEFAULT_PING_MAX,
            write_deadline_ms: DEFAULT_WRITE_DEADLINE_MS,
            auth_timeout_ms: DEFAULT_AUTH_TIMEOUT_MS,
            lame_duck_duration_ms: DEFAULT_LAME_DUCK_DURATION_MS,
            lame_duck_grace_period_ms: DEFAULT_LAME_DUCK_GRACE_PERIOD_MS,
            debug: false,
            trace: false,
            logtime: true,
            syslog: false,
            remote_syslog: None,
            log_file: None,
            pid_file: None,
            authorization: None,
            accounts: Vec::new(),
            system_account: None,
            no_auth_user: None,
            tls: None,
            cluster: None,
            jetstream: None,
            ports_file_dir: None,
            max_traced_msg_len: 0,
            connect_error_reports: DEFAULT_CONNECT_ERROR_REPORTS,
            reconnect_error_reports: DEFAULT_RECONNECT_ERROR_REPORTS,
            warnings: Vec::new(),
        }
    }
}

impl Options {
    /// The `cluster { name }`, if set.
    pub fn cluster_name(&self) -> Option<String> {
        self.cluster.as_ref().and_then(|c| c.name.clone())
    }

    /// Reads the config file at `path` (with its includes) into options.
    pub fn load(path: &Path) -> std::result::Result<Options, ConfError> {
        Options::from_config(&conf::parse_file(path)?)
    }

    /// Options from a parsed config: nats-server defaults, overridden by `map`.
    pub fn from_config(map: &Map) -> std::result::Result<Options, ConfError> {
        let mut reader = Reader::default();
        for (key, item) in map {
            reader.top_level(key, item)?;
        }
        reader.finish()
    }
}

/// Items whose meaning depends on other keys, checked once every key is read.
#[derive(Debug, Default)]
struct Deferred<'a> {
    store_dir: Option<(String, &'a Item)>,
    max_payload: Option<&'a Item>,
    authorization: Option<&'a Item>,
    accounts: Option<&'a Item>,
}

#[derive(Debug, Default)]
struct Reader<'a> {
    opts: Options,
    notes: Notes,
    deferred: Deferred<'a>,
}

impl<'a> Reader<'a> {
    fn top_level(&mut self, key: &str, item: &'a Item) -> Result<()> {
        let lower = key.to_ascii_lowercase();
        let handled = self.network(&lower, key, item)?
            || self.limits(&lower, key, item)?
            || self.timing(&lower, key, item)?
            || self.logging(&lower, key, item)?
            || self.security(&lower, key, item)?
            || self.subsystems(&lower, key, item)?;
        if !handled {
            if REFUSED_TOP_LEVEL.contains(&lower.as_str()) {
                self.notes.unsupported(key, item);
            } else if IGNORED_TOP_LEVEL.contains(&lower.as_str()) {
                self.notes.ignored(key, item);
            } else {
                self.notes.unknown(key, item);
            }
        }
        Ok(())
    }

    fn network(&mut self, lower: &str, key: &str, item: &Item) -> Result<bool> {
        let o = &mut self.opts;
        match lower {
            "listen" => {
                let hp = host_port(key, item)?;
                o.port = hp.port;
                if let Some(host) = hp.host {
                    o.host = host;
                }
            }
            "port" => o.port = port(key, item)?,
            "host" | "net" => o.host = string(key, item)?,
            "client_advertise" => o.client_advertise = Some(string(key, item)?),
            "server_name" => o.server_name = Some(cluster::name_without_spaces(key, item)?),
            "server_tags" => {
                o.server_tags = convert::string_list(key, item)?
                    .iter()
                    .flat_map(|t| t.split(','))
                    .map(|t| t.trim().to_lowercase())
                    .filter(|t| !t.is_empty())
                    .collect()
            }
            "http" => {
                let hp = host_port(key, item)?;
                o.http_port = Some(hp.port);
                o.http_host = hp.host.or(o.http_host.take());
            }
            "http_port" | "monitor_port" => o.http_port = Some(port(key, item)?),
            "https" => {
                let hp = host_port(key, item)?;
                o.https_port = Some(hp.port);
                o.http_host = hp.host.or(o.http_host.take());
            }
            "https_port" => o.https_port = Some(port(key, item)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn limits(&mut self, lower: &str, key: &str, item: &'a Item) -> Result<bool> {
        let o = &mut self.opts;
        match lower {
            "max_payload" => {
                o.max_payload = as_usize(bounded_size(key, item, MAX_PROTOCOL_SIZE)?);
                self.deferred.max_payload = Some(item);
            }
            "max_control_line" => {
                o.max_control_line = as_usize(bounded_size(key, item, MAX_PROTOCOL_SIZE)?)
            }
            "max_pending" => o.max_pending = as_usize(bounded_size(key, item, u64::MAX)?),
            "max_connections" | "max_conn" => {
                o.max_connections = as_usize(integer(key, item)?.max(0) as u64)
            }
            "max_closed_clients" => {
                // 0 or less: the default, as on nats-server.
                o.max_closed_clients = match integer(key, item)? {
                    n if n > 0 => as_usize(n as u64),
                    _ => crate::server::stats::CLOSED_CONNECTIONS_DEFAULT,
                }
            }
            "max_subscriptions" | "max_subs" => {
                o.max_subscriptions = as_usize(bounded(key, item, u64::MAX)?)
            }
            "ping_max" => o.ping_max = bounded(key, item, u32::MAX.into())? as u32,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn timing(&mut self, lower: &str, key: &str, item: &Item) -> Result<bool> {
        let (o, warnings) = (&mut self.opts, &mut self.notes.warnings);
        match lower {
            "ping_interval" => o.ping_interval_ms = duration_ms(key, item, warnings)?,
            "write_deadline" => o.write_deadline_ms = duration_ms(key, item, warnings)?,
            "lame_duck_duration" => {
                let ms = duration_ms(key, item, warnings)?;
                if ms < MIN_LAME_DUCK_DURATION_MS {
                    return Err(invalid(
                        item,
                        format!("invalid {key:?} of {ms}ms, the minimum is 30s"),
                    ));
                }
                o.lame_duck_duration_ms = ms;
            }
            "lame_duck_grace_period" => {
                o.lame_duck_grace_period_ms = duration_ms(key, item, warnings)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn logging(&mut self, lower: &str, key: &str, item: &Item) -> Result<bool> {
        let o = &mut self.opts;
        match lower {
            "debug" => o.debug = boolean(key, item)?,
            "trace" | "trace_verbose" | "trace_headers" => o.trace = boolean(key, item)?,
            "logtime" => o.logtime = boolean(key, item)?,
            "syslog" => o.syslog = boolean(key, item)?,
            "remote_syslog" => o.remote_syslog = Some(string(key, item)?),
            "logfile" | "log_file" => o.log_file = Some(string(key, item)?),
            "pidfile" | "pid_file" => o.pid_file = Some(string(key, item)?),
            "ports_file_dir" => o.ports_file_dir = Some(string(key, item)?),
            "max_traced_msg_len" => {
                o.max_traced_msg_len = as_usize(integer(key, item)?.max(0) as u64)
            }
            "connect_error_reports" => {
                o.connect_error_reports = error_reports(key, item, DEFAULT_CONNECT_ERROR_REPORTS)?
            }
            "reconnect_error_reports" => {
                o.reconnect_error_reports =
                    error_reports(key, item, DEFAULT_RECONNECT_ERROR_REPORTS)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn security(&mut self, lower: &str, key: &str, item: &'a Item) -> Result<bool> {
        match lower {
            "authorization" => {
                let auth = auth::parse_authorization(key, item, &mut self.notes)?;
                if let Some(ms) = auth.timeout_ms {
                    self.opts.auth_timeout_ms = ms;
                }
                self.opts.authorization = Some(auth);
                self.deferred.authorization = Some(item);
            }
            "accounts" => {
                self.opts.accounts = accounts::parse_accounts(key, item, &mut self.notes)?;
                self.deferred.accounts = Some(item);
            }
            "system_account" | "system" => self.opts.system_account = Some(string(key, item)?),
            "no_auth_user" => self.opts.no_auth_user = Some(string(key, item)?),
            "tls" => self.opts.tls = Some(tls::parse_tls("tls", key, item, &mut self.notes)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn subsystems(&mut self, lower: &str, key: &str, item: &'a Item) -> Result<bool> {
        match lower {
            "cluster" => {
                self.opts.cluster = Some(cluster::parse_cluster(key, item, &mut self.notes)?)
            }
            "jetstream" => {
                self.opts.jetstream = jetstream::parse_jetstream(key, item, &mut self.notes)?
            }
            "store_dir" | "storedir" => self.deferred.store_dir = Some((string(key, item)?, item)),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Applies what depends on several keys, then checks them against each other.
    fn finish(mut self) -> std::result::Result<Options, ConfError> {
        self.apply_store_dir()?;
        let o = &mut self.opts;
        if o.http_port.is_some() && o.http_host.is_none() {
            o.http_host = Some(o.host.clone());
        }
        if o.system_account.is_none() && o.accounts.iter().any(|a| a.name == SYSTEM_ACCOUNT) {
            o.system_account = Some(SYSTEM_ACCOUNT.to_string());
        }
        self.notes.check()?;
        self.check_payload()?;
        self.check_users()?;
        let mut opts = self.opts;
        opts.warnings = self.notes.warnings;
        Ok(opts)
    }

    /// A top-level `store_dir` belongs to JetStream, which must not set one as well.
    fn apply_store_dir(&mut self) -> Result<()> {
        let Some((dir, item)) = self.deferred.store_dir.take() else {
            return Ok(());
        };
        match self.opts.jetstream.as_mut() {
            Some(js) if js.store_dir.is_some() => Err(invalid(
                item,
                "duplicate \"store_dir\": also set in the jetstream block",
            )),
            Some(js) => {
                js.store_dir = Some(dir);
                Ok(())
            }
            None => {
                self.notes
                    .warn(item, "\"store_dir\" is set but JetStream is not enabled");
                Ok(())
            }
        }
    }

    fn check_payload(&self) -> Result<()> {
        let o = &self.opts;
        match self.deferred.max_payload {
            Some(item) if o.max_payload > o.max_pending => Err(invalid(
                item,
                format!(
                    "max_payload ({}) cannot be higher than max_pending ({})",
                    o.max_payload, o.max_pending
                ),
            )),
            _ => Ok(()),
        }
    }

    /// User names are unique across `authorization` and `accounts`, and a single
    /// authorization user or token excludes account users.
    fn check_users(&self) -> Result<()> {
        let Some(item) = self.deferred.authorization.or(self.deferred.accounts) else {
            return Ok(());
        };
        let auth = self.opts.authorization.as_ref();
        let account_users = self.opts.accounts.iter().flat_map(|a| &a.users);
        let mut names: Vec<&str> = auth
            .iter()
            .flat_map(|a| &a.users)
            .chain(account_users)
            .map(|u| u.user.as_str())
            .collect();
        let has_account_users = self.opts.accounts.iter().any(|a| !a.users.is_empty());
        if has_account_users && auth.is_some_and(|a| a.user.is_some() || a.token.is_some()) {
            return Err(invalid(
                item,
                "cannot have a single user/password or token and users in accounts",
            ));
        }
        names.sort_unstable();
        match names.windows(2).find(|w| w[0] == w[1]) {
            Some(dup) => Err(invalid(item, format!("duplicate user {:?}", dup[0]))),
            None => Ok(()),
        }
    }
}

/// A report interval: 0 or less means nats-server's default.
fn error_reports(key: &str, item: &Item, default: u32) -> Result<u32> {
    let n = integer(key, item)?;
    Ok(u32::try_from(n).ok().filter(|n| *n > 0).unwrap_or(default))
}

fn as_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests;
