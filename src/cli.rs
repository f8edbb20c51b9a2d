//! The command line, read as nats-server reads it (Go's `flag` package): `-port 4222`,
//! `--port=4222`, bool flags as `-js` or `-T=false`, combined names such as `-DV`,
//! plus natrix's `--shards N`. Flags override the config file.
//!
//! Written by hand rather than with clap: Go's rules (one dash or two for any name,
//! `=value` on a bool, errors that name the flag as typed) and nats-server's help
//! layout are what operators' scripts rely on, and clap can give neither.

use crate::options::{ClusterConfig, JetStreamConfig, Options, TlsConfig};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cli {
    pub config: Option<String>,
    pub addr: Option<String>,
    /// `-1` is a random port.
    pub port: Option<i32>,
    pub name: Option<String>,
    /// `-1` is a random port.
    pub http_port: Option<i32>,
    pub https_port: Option<i32>,
    pub syslog: Option<bool>,
    pub remote_syslog: Option<String>,
    pub client_advertise: Option<String>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub auth: Option<String>,
    pub jetstream: Option<bool>,
    pub store_dir: Option<String>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    pub logtime: Option<bool>,
    pub log: Option<String>,
    pub pid: Option<String>,
    pub ports_file_dir: Option<String>,
    pub max_traced_msg_len: Option<usize>,
    pub version: bool,
    pub help: bool,
    pub help_tls: bool,
    /// `--tls`; `--tls=false` keeps the config file's tls block whatever else is given.
    pub tls: Option<bool>,
    pub tls_verify: bool,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_ca_cert: Option<String>,
    /// `-t`: check the configuration and exit.
    pub test_config: bool,
    pub shards: Option<usize>,
    /// `--spin_us`: how long an idle shard polls before it sleeps.
    pub spin_us: Option<u64>,
    pub cluster: Option<String>,
    pub routes: Option<String>,
    pub cluster_name: Option<String>,
    pub cluster_advertise: Option<String>,
    pub no_advertise: Option<bool>,
    pub connect_retries: Option<u32>,
    /// `ldm`, `reload`, ... optionally `=<pid>`.
    pub signal: Option<String>,
    /// Flags accepted but without effect here, each with why.
    pub warnings: Vec<String>,
}

/// How a flag reads its value.
#[derive(Clone, Copy)]
enum Kind {
    /// `-x` is true; `-x=false` (Go's bool syntax) sets it explicitly.
    Bool(fn(&mut Cli, bool)),
    /// `-x VALUE` or `-x=VALUE`; the setter gets the value and the flag as typed.
    Value(fn(&mut Cli, &str, &str) -> Result<(), String>),
}

struct Flag {
    names: &'static [&'static str],
    kind: Kind,
}

const FLAGS: &[Flag] = &[
    Flag {
        names: &["c", "config"],
        kind: Kind::Value(|c, v, _| {
            c.config = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["a", "addr", "net"],
        kind: Kind::Value(|c, v, _| {
            c.addr = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["p", "port"],
        kind: Kind::Value(|c, v, f| {
            c.port = Some(number(v, f)?);
            Ok(())
        }),
    },
    Flag {
        names: &["n", "name", "server_name"],
        kind: Kind::Value(|c, v, _| {
            c.name = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["P", "pid"],
        kind: Kind::Value(|c, v, _| {
            c.pid = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["m", "http_port"],
        kind: Kind::Value(|c, v, f| {
            c.http_port = Some(number(v, f)?);
            Ok(())
        }),
    },
    Flag {
        names: &["ms", "https_port"],
        kind: Kind::Value(|c, v, f| {
            c.https_port = Some(number(v, f)?);
            Ok(())
        }),
    },
    Flag {
        names: &["t"],
        kind: Kind::Bool(|c, b| c.test_config = b),
    },
    Flag {
        names: &["sl", "signal"],
        kind: Kind::Value(|c, v, _| {
            c.signal = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["client_advertise"],
        kind: Kind::Value(|c, v, _| {
            c.client_advertise = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["ports_file_dir"],
        kind: Kind::Value(|c, v, _| {
            c.ports_file_dir = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["shards"],
        kind: Kind::Value(|c, v, f| {
            c.shards = Some(number(v, f)?);
            Ok(())
        }),
    },
    Flag {
        names: &["spin_us"],
        kind: Kind::Value(|c, v, f| {
            c.spin_us = Some(number(v, f)?);
            Ok(())
        }),
    },
    Flag {
        names: &["l", "log"],
        kind: Kind::Value(|c, v, _| {
            c.log = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["T", "logtime"],
        kind: Kind::Bool(|c, b| c.logtime = Some(b)),
    },
    Flag {
        names: &["s", "syslog"],
        kind: Kind::Bool(|c, b| c.syslog = Some(b)),
    },
    Flag {
        names: &["r", "remote_syslog"],
        kind: Kind::Value(|c, v, _| {
            c.remote_syslog = Some(v.to_string());
            Ok(())
        }),
    },
    Flag {
        names: &["D", "debug"],
        kind: Kind::Bool(|c, b| c.debug = Some(b)),
    },
    Flag {
        names: &["V", "trace", "VV"],
        kind: Kind::Bool(|c, b| c.trace = Some(b)),
    },
    Flag {
        names: &["DV", "DVV"],
        kind: Kind::Bool(|c, b| {
            c.debug = Some(b);
            c.trace = Some(b);
        }),
    },
    Flag {
        names: &["log_size_limit"],
        kind: Kind::Value(|c, v, f| {
            number::<i64>(v, f)?;
            c.warnings.push(format!(
                "{f} is not supported by natrix yet; the log file is not rotated"
            ));
            Ok(())
        }),
    },
    Flag {
        names: &["max_traced_msg_len"],
        kind: Kind::Value(|c, v, f| {
            c.max_traced_msg_len = Some(number::<i64>(v, f)?.max(0) as usize);
            Ok(())
        }),
    },
    Flag {
        names: &["js", "jetstream"],
        kind: Kind::Bool(|c, b| c.jetstream = Some(b)),
    },
    Flag {
        names: &["sd", "store_dir"],
        kind: Kind::Value(|c, v, _| {
            c.store_dir = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["user"],
        kind: Kind::Value(|c, v, _| {
            c.user = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["pass"],
        kind: Kind::Value(|c, v, _| {
            c.pass = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["auth"],
        kind: Kind::Value(|c, v, _| {
            c.auth = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["tls"],
        kind: Kind::Bool(|c, b| c.tls = Some(b)),
    },
    Flag {
        names: &["tlsverify"],
        kind: Kind::Bool(|c, b| c.tls_verify = b),
    },
    Flag {
        names: &["tlscert"],
        kind: Kind::Value(|c, v, _| {
            c.tls_cert = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["tlskey"],
        kind: Kind::Value(|c, v, _| {
            c.tls_key = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["tlscacert"],
        kind: Kind::Value(|c, v, _| {
            c.tls_ca_cert = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["routes"],
        kind: Kind::Value(|c, v, _| {
            c.routes = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["cluster", "cluster_listen"],
        kind: Kind::Value(|c, v, _| {
            c.cluster = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["cluster_name"],
        kind: Kind::Value(|c, v, _| {
            c.cluster_name = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["no_advertise"],
        kind: Kind::Bool(|c, b| c.no_advertise = Some(b)),
    },
    Flag {
        names: &["cluster_advertise"],
        kind: Kind::Value(|c, v, _| {
            c.cluster_advertise = Some(v.into());
            Ok(())
        }),
    },
    Flag {
        names: &["connect_retries"],
        kind: Kind::Value(|c, v, f| {
            c.connect_retries = Some(number(v, f)?);
            Ok(())
        }),
    },
    Flag {
        names: &["profile"],
        kind: Kind::Value(|c, v, f| {
            number::<i64>(v, f)?;
            c.warnings
                .push(format!("{f} is not supported by natrix yet; ignored"));
            Ok(())
        }),
    },
    Flag {
        names: &["h", "help"],
        kind: Kind::Bool(|c, b| c.help = b),
    },
    Flag {
        names: &["help_tls"],
        kind: Kind::Bool(|c, b| c.help_tls = b),
    },
    Flag {
        names: &["v", "version"],
        kind: Kind::Bool(|c, b| c.version = b),
    },
];

pub const USAGE: &str = "\
Usage: natrix [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0 and ::)
    -p, --port <port>                Use port for clients (default: 4222; -1 for random)
    -n, --name
        --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring (-1 for random)
    -ms,--https_port <port>          Use port for https monitoring (-1 for random)
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to natrix process (ldm, stop, quit, term, reopen, reload)
                                     <pid> can be either a PID (e.g. 1) or the path to a PID file (e.g. /var/run/natrix.pid)
        --client_advertise <string>  Client URL to advertise to other servers
        --ports_file_dir <dir>       Creates a ports file in the specified directory (<executable_name>_<pid>.ports).
        --shards <n>                 Executors, one pinned per core (default: the number of cores)
        --spin_us <n>                Microseconds an idle shard polls before it sleeps (default 0);
                                     saves a wake-up per message between shards, costs a core per
                                     spinning shard: for machines whose cores the server has alone

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
    -s, --syslog                     Log to syslog or windows event log
    -r, --remote_syslog <addr>       Syslog server addr (udp://127.0.0.1:514)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -VV                              Verbose trace (same as -V here)
    -DV                              Debug and trace
    -DVV                             Debug and verbose trace (same as -DV here)
        --log_size_limit <limit>     Logfile size limit (accepted; no rotation yet)
        --max_traced_msg_len <len>   Maximum printable length for traced messages (default: unlimited)

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Cluster Options:
        --routes <rurl-1, rurl-2>    Routes to solicit and connect
        --cluster <cluster-url>      Cluster URL for solicited routes
        --cluster_name <string>      Cluster Name, if not set one will be dynamically generated
        --no_advertise <bool>        Do not advertise known cluster information to clients
        --cluster_advertise <string> Cluster URL to advertise to other servers
        --connect_retries <number>   For implicit routes, number of connect retries
        --cluster_listen <url>       Cluster url from which members can solicit routes

Profiling Options:
        --profile <port>             Profiling HTTP port (accepted; ignored)

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
        --help_tls                   TLS help
";

pub const TLS_USAGE: &str = "\
TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Any of these flags (unless --tls=false) replaces the configuration file's tls block;
--tlscert and --tlskey are then required. The tls block also takes verify_and_map,
timeout (seconds) and handshake_first, and cluster { tls { ... } } secures routes.
";

/// Reads `args` (the program name first) as nats-server would.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Cli, String> {
    let mut cli = Cli::default();
    let mut args = args.into_iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unrecognized command: {arg:?}"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let typed = &arg[..arg.len() - body.len() + name.len()];
        let flag = FLAGS
            .iter()
            .find(|f| !name.is_empty() && f.names.contains(&name))
            .ok_or_else(|| format!("flag provided but not defined: {typed}"))?;
        match flag.kind {
            Kind::Bool(set) => set(&mut cli, inline.map_or(Ok(true), |v| go_bool(v, typed))?),
            Kind::Value(set) => {
                let value = match inline {
                    Some(v) => v.to_string(),
                    None => args
                        .next()
                        .ok_or_else(|| format!("flag needs an argument: {typed}"))?,
                };
                set(&mut cli, &value, typed)?;
            }
        }
    }
    if let Some(rest) = args.next() {
        return Err(format!("unrecognized command: {rest:?}"));
    }
    Ok(cli)
}

/// Go's `strconv.ParseBool`.
fn go_bool(value: &str, typed: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean value {value:?} for {typed}: parse error"
        )),
    }
}

fn number<T: std::str::FromStr>(value: &str, typed: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for flag {typed}: parse error"))
}

/// A port flag: `0..=65535`, or `-1` for a random one (kept as 0).
fn port(value: i32, flag: &str) -> Result<u16, String> {
    match value {
        -1 => Ok(0),
        0..=65535 => Ok(value as u16),
        _ => Err(format!("invalid port {value} for {flag}")),
    }
}

impl Cli {
    /// Applies the flags given on top of `opts` (from a config file or defaults).
    pub fn apply(&self, opts: &mut Options) -> Result<(), String> {
        if let Some(a) = &self.addr {
            opts.host = a.clone();
        }
        if let Some(p) = self.port {
            opts.port = port(p, "-p")?;
        }
        if let Some(n) = &self.name {
            opts.server_name = Some(n.clone());
        }
        if let Some(m) = self.http_port {
            opts.http_port = Some(port(m, "-m")?);
        }
        if let Some(m) = self.https_port {
            opts.https_port = Some(port(m, "-ms")?);
        }
        if let Some(a) = &self.client_advertise {
            opts.client_advertise = Some(a.clone());
        }
        self.apply_auth(opts);
        self.apply_tls(opts)?;
        self.apply_jetstream(opts);
        self.apply_cluster(opts)?;
        self.apply_logging(opts);
        if let Some(p) = &self.pid {
            opts.pid_file = Some(p.clone());
        }
        if let Some(dir) = &self.ports_file_dir {
            opts.ports_file_dir = Some(dir.clone());
        }
        opts.warnings.extend(self.warnings.iter().cloned());
        Ok(())
    }

    fn apply_logging(&self, opts: &mut Options) {
        if let Some(d) = self.debug {
            opts.debug = d;
        }
        if let Some(t) = self.trace {
            opts.trace = t;
        }
        if let Some(t) = self.logtime {
            opts.logtime = t;
        }
        if let Some(l) = &self.log {
            opts.log_file = Some(l.clone());
        }
        if let Some(s) = self.syslog {
            opts.syslog = s;
        }
        if let Some(r) = &self.remote_syslog {
            opts.remote_syslog = Some(r.clone());
        }
        if let Some(n) = self.max_traced_msg_len {
            opts.max_traced_msg_len = n;
        }
    }

    fn apply_jetstream(&self, opts: &mut Options) {
        match self.jetstream {
            Some(false) => opts.jetstream = None,
            Some(true) => {
                opts.jetstream.get_or_insert_with(JetStreamConfig::default);
            }
            None if self.store_dir.is_some() => {
                opts.jetstream.get_or_insert_with(JetStreamConfig::default);
            }
            None => {}
        }
        if let (Some(js), Some(dir)) = (opts.jetstream.as_mut(), &self.store_dir) {
            js.store_dir = Some(dir.clone());
        }
    }

    /// Any TLS flag (unless `--tls=false`) replaces the config's tls block, and then
    /// a certificate and key must be given, as nats-server has it.
    fn apply_tls(&self, opts: &mut Options) -> Result<(), String> {
        let any = self.tls.is_some()
            || self.tls_verify
            || self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_ca_cert.is_some();
        if !any || self.tls == Some(false) {
            return Ok(());
        }
        let cert_file = self
            .tls_cert
            .clone()
            .ok_or("TLS Server certificate must be present and valid")?;
        let key_file = self
            .tls_key
            .clone()
            .ok_or("TLS Server private key must be present and valid")?;
        let previous = opts.tls.take().unwrap_or_default();
        let tls = TlsConfig {
            cert_file,
            key_file,
            ca_file: self.tls_ca_cert.clone(),
            verify: self.tls_verify,
            map: false,
            timeout_ms: previous.timeout_ms,
            handshake_first: false,
        };
        crate::tls::config::check(&tls)?;
        opts.tls = Some(tls);
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
        if !any && opts.cluster.is_none() {
            return Ok(());
        }
        let cluster = opts.cluster.get_or_insert_with(ClusterConfig::default);
        if let Some(url) = &self.cluster {
            apply_cluster_url(cluster, url)?;
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
        if let Some(n) = self.no_advertise {
            cluster.no_advertise = n;
        }
        if let Some(n) = self.connect_retries {
            cluster.connect_retries = n;
        }
        Ok(())
    }
}

/// `--cluster nats://[user:pass@]host:port`.
fn apply_cluster_url(cluster: &mut ClusterConfig, url: &str) -> Result<(), String> {
    let target = crate::route::urls::route_target(url)
        .ok_or_else(|| format!("invalid cluster URL {url:?}"))?;
    let (host, port) = target.host_port.rsplit_once(':').expect("checked");
    cluster.host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    cluster.port = port
        .parse()
        .map_err(|_| format!("invalid cluster port in {url:?}"))?;
    if target.user.is_some() {
        let auth = cluster.authorization.get_or_insert_with(Default::default);
        auth.user = target.user.clone();
        auth.password = target.pass.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_parse(args: &[&str]) -> Result<Cli, String> {
        parse(
            std::iter::once("natrix")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    fn parse_ok(args: &[&str]) -> Cli {
        try_parse(args).unwrap()
    }

    #[test]
    fn go_style_flags() {
        let cli = parse_ok(&[
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
        assert_eq!(
            (cli.jetstream, cli.debug, cli.trace),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(cli.store_dir.as_deref(), Some("/tmp/x"));
        assert_eq!(cli.http_port, Some(8222));
        let cli = parse_ok(&[
            "-port=4333",
            "--server_name",
            "a",
            "-net",
            "0.0.0.0",
            "--shards",
            "4",
            "--spin_us",
            "50",
        ]);
        assert_eq!(cli.port, Some(4333));
        assert_eq!(cli.name.as_deref(), Some("a"));
        assert_eq!(cli.shards, Some(4));
        assert_eq!(cli.spin_us, Some(50));
    }

    #[test]
    fn bools_take_go_values() {
        assert_eq!(parse_ok(&["-T=false"]).logtime, Some(false));
        assert_eq!(parse_ok(&["--logtime"]).logtime, Some(true));
        assert_eq!(parse_ok(&["--no_advertise=true"]).no_advertise, Some(true));
        assert_eq!(parse_ok(&["-js=0"]).jetstream, Some(false));
        assert!(parse_ok(&["-t", "-c", "x.conf"]).test_config);
    }

    #[test]
    fn errors_name_the_flag_as_typed() {
        assert_eq!(
            try_parse(&["-T=maybe"]).unwrap_err(),
            "invalid boolean value \"maybe\" for -T: parse error"
        );
        assert_eq!(
            try_parse(&["--bogus=1"]).unwrap_err(),
            "flag provided but not defined: --bogus"
        );
        assert_eq!(
            try_parse(&["-p"]).unwrap_err(),
            "flag needs an argument: -p"
        );
        assert_eq!(
            try_parse(&["--port", "x"]).unwrap_err(),
            "invalid value \"x\" for flag --port: parse error"
        );
        assert_eq!(
            try_parse(&["foo"]).unwrap_err(),
            "unrecognized command: \"foo\""
        );
        assert_eq!(try_parse(&["-ms", "8443"]).unwrap().https_port, Some(8443));
        assert_eq!(try_parse(&["-s"]).unwrap().syslog, Some(true));
    }

    #[test]
    fn help_lists_every_flag() {
        for name in FLAGS.iter().flat_map(|f| f.names) {
            let listed = [" ", ",", "\n"]
                .iter()
                .any(|end| USAGE.contains(&format!("-{name}{end}")));
            assert!(listed, "{name} is missing from the help");
        }
    }

    #[test]
    fn flags_override_config() {
        let mut opts = Options {
            port: 1234,
            ..Default::default()
        };
        parse_ok(&["-p", "5555", "--user", "u", "--pass", "p", "-T=false"])
            .apply(&mut opts)
            .unwrap();
        assert_eq!(opts.port, 5555);
        assert!(!opts.logtime);
        assert_eq!(opts.authorization.unwrap().user.as_deref(), Some("u"));
        let mut opts = Options::default();
        parse_ok(&[
            "-m",
            "-1",
            "--connect_retries",
            "3",
            "-routes",
            "nats://a:1",
        ])
        .apply(&mut opts)
        .unwrap();
        assert_eq!(opts.http_port, Some(0));
        assert_eq!(opts.cluster.unwrap().connect_retries, 3);
    }
}
