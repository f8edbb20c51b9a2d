//! The command line, compatible with nats-server's flags (Go style: `-port 4222`,
//! `--port=4222`, `-js`, `-sd DIR`, `-DV`), plus `--shards N`. Flags override the
//! config file.

use crate::options::{ClusterConfig, JetStreamConfig, Options};
use clap::Parser;

#[derive(Parser, Debug, Default)]
#[command(
    name = "natrix",
    about = "A NATS server on a thread-per-core engine",
    disable_version_flag = true
)]
pub struct Cli {
    /// Configuration file
    #[arg(short = 'c', long = "config")]
    pub config: Option<String>,
    /// Bind to host address (default: 0.0.0.0)
    #[arg(short = 'a', long = "addr", visible_alias = "net")]
    pub addr: Option<String>,
    /// Use port for clients (default: 4222; -1 for random)
    #[arg(short = 'p', long = "port", allow_negative_numbers = true)]
    pub port: Option<i32>,
    /// Server name (default: the server id)
    #[arg(short = 'n', long = "name", visible_alias = "server_name")]
    pub name: Option<String>,
    /// HTTP port for monitoring
    #[arg(short = 'm', long = "http_port")]
    pub http_port: Option<u16>,
    /// Client address to advertise to other servers
    #[arg(long = "client_advertise")]
    pub client_advertise: Option<String>,
    /// User required for connections
    #[arg(long = "user")]
    pub user: Option<String>,
    /// Password required for connections
    #[arg(long = "pass")]
    pub pass: Option<String>,
    /// Authorization token required for connections
    #[arg(long = "auth")]
    pub auth: Option<String>,
    /// Enable JetStream
    #[arg(long = "jetstream")]
    pub jetstream: bool,
    /// Directory for JetStream storage
    #[arg(long = "store_dir")]
    pub store_dir: Option<String>,
    /// Enable debug output
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Enable protocol trace output
    #[arg(short = 'V', long = "trace")]
    pub trace: bool,
    /// File to redirect log output to
    #[arg(short = 'l', long = "log")]
    pub log: Option<String>,
    /// File to store the process id in
    #[arg(short = 'P', long = "pid")]
    pub pid: Option<String>,
    /// Show version
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// Number of shards (executors, one per core); default: the number of cores
    #[arg(long = "shards")]
    pub shards: Option<usize>,
    /// Cluster URL to listen on for routes (e.g. nats://0.0.0.0:6222)
    #[arg(long = "cluster", visible_alias = "cluster_listen")]
    pub cluster: Option<String>,
    /// Routes to solicit and connect, comma separated
    #[arg(long = "routes")]
    pub routes: Option<String>,
    /// Cluster name
    #[arg(long = "cluster_name")]
    pub cluster_name: Option<String>,
    /// Cluster URL to advertise to other servers
    #[arg(long = "cluster_advertise")]
    pub cluster_advertise: Option<String>,
    /// Do not advertise known cluster information to clients
    #[arg(long = "no_advertise")]
    pub no_advertise: bool,
    /// Send a signal to a running server: stop, quit, reload, ldm, reopen, term
    /// (`ldm=<pid>` names the process)
    #[arg(long = "signal")]
    pub signal: Option<String>,
}

/// Rewrites Go-style single-dash long flags into what clap reads.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || !arg.starts_with('-') || arg.starts_with("--") || arg.len() <= 2 {
            out.push(arg);
            continue;
        }
        if arg[1..].parse::<f64>().is_ok() {
            out.push(arg);
            continue;
        }
        let (name, value) = match arg[1..].split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg[1..].to_string(), None),
        };
        let long = match name.as_str() {
            "DV" | "VD" | "DVV" => {
                out.push("-D".into());
                out.push("-V".into());
                continue;
            }
            "VV" => "trace".to_string(),
            "js" => "jetstream".to_string(),
            "sd" => "store_dir".to_string(),
            "sl" => "signal".to_string(),
            _ => name,
        };
        match value {
            Some(v) => out.push(format!("--{long}={v}")),
            None => out.push(format!("--{long}")),
        }
    }
    out
}

impl Cli {
    /// Applies the flags given on top of `opts` (from a config file or defaults).
    pub fn apply(&self, opts: &mut Options) -> Result<(), String> {
        if let Some(a) = &self.addr {
            opts.host = a.clone();
        }
        if let Some(p) = self.port {
            opts.port = match p {
                -1 => 0,
                0..=65535 => p as u16,
                _ => return Err(format!("invalid port {p}")),
            };
        }
        if let Some(n) = &self.name {
            opts.server_name = Some(n.clone());
        }
        if let Some(m) = self.http_port {
            opts.http_port = Some(m);
        }
        if let Some(a) = &self.client_advertise {
            opts.client_advertise = Some(a.clone());
        }
        self.apply_auth(opts);
        if self.jetstream || self.store_dir.is_some() {
            let js = opts.jetstream.get_or_insert_with(JetStreamConfig::default);
            if let Some(dir) = &self.store_dir {
                js.store_dir = Some(dir.clone());
            }
        }
        self.apply_cluster(opts)?;
        opts.debug |= self.debug;
        opts.trace |= self.trace;
        if let Some(l) = &self.log {
            opts.log_file = Some(l.clone());
        }
        if let Some(p) = &self.pid {
            opts.pid_file = Some(p.clone());
        }
        Ok(())
    }

    fn apply_auth(&self, opts: &mut Options) {
        if self.user.is_none() && self.pass.is_none() && self.auth.is_none() {
            return;
        }
        let auth = opts.authorization.get_or_insert_with(Default::default);
        if let Some(u) = &self.user {
            auth.user = Some(u.clone());
        }
        if let Some(p) = &self.pass {
            auth.password = Some(p.clone());
        }
        if let Some(t) = &self.auth {
            auth.token = Some(t.clone());
        }
    }

    fn apply_cluster(&self, opts: &mut Options) -> Result<(), String> {
        let any = self.cluster.is_some()
            || self.routes.is_some()
            || self.cluster_name.is_some()
            || self.cluster_advertise.is_some();
        if !any {
            return Ok(());
        }
        let cluster = opts.cluster.get_or_insert_with(ClusterConfig::default);
        if let Some(url) = &self.cluster {
            let target = crate::route::urls::route_target(url)
                .ok_or_else(|| format!("invalid cluster URL {url:?}"))?;
            let (host, port) = target.host_port.rsplit_once(':').expect("checked");
            cluster.host = host.to_string();
            cluster.port = port
                .parse()
                .map_err(|_| format!("invalid cluster port in {url:?}"))?;
            if target.user.is_some() {
                let auth = cluster.authorization.get_or_insert_with(Default::default);
                auth.user = target.user.clone();
                auth.password = target.pass.clone();
            }
        }
        if let Some(routes) = &self.routes {
            cluster.routes = routes
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(name) = &self.cluster_name {
            cluster.name = Some(name.clone());
        }
        if let Some(a) = &self.cluster_advertise {
            cluster.advertise = Some(a.clone());
        }
        cluster.no_advertise |= self.no_advertise;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let args = normalize_args(args.iter().map(|s| s.to_string()));
        Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn go_style_flags() {
        let cli = parse(&[
            "natrix",
            "-p",
            "-1",
            "-a",
            "127.0.0.1",
            "-js",
            "-sd",
            "/tmp/x",
            "-DV",
            "-m",
            "8222",
        ]);
        assert_eq!(cli.port, Some(-1));
        assert_eq!(cli.addr.as_deref(), Some("127.0.0.1"));
        assert!(cli.jetstream && cli.debug && cli.trace);
        assert_eq!(cli.store_dir.as_deref(), Some("/tmp/x"));
        assert_eq!(cli.http_port, Some(8222));
        let cli = parse(&[
            "natrix",
            "-port=4333",
            "--server_name",
            "a",
            "-net",
            "0.0.0.0",
            "--shards",
            "4",
        ]);
        assert_eq!(cli.port, Some(4333));
        assert_eq!(cli.name.as_deref(), Some("a"));
        assert_eq!(cli.shards, Some(4));
    }

    #[test]
    fn flags_override_config() {
        let mut opts = Options {
            port: 1234,
            ..Default::default()
        };
        parse(&["natrix", "-p", "5555", "--user", "u", "--pass", "p"])
            .apply(&mut opts)
            .unwrap();
        assert_eq!(opts.port, 5555);
        assert_eq!(opts.authorization.unwrap().user.as_deref(), Some("u"));
    }
}
