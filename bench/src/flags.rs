//! The command line: which scenario, against which servers, with how many clients and
//! messages, and where the machine-readable results go.

use clap::{Parser, ValueEnum};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Publishers only, no subscribers: the server discards everything.
    Pub,
    /// N publishers to M subscribers on one subject; every subscriber gets every message.
    Pubsub,
    /// One publisher to M subscribers (pubsub with --pub 1; --sub defaults to 4).
    Fanout,
    /// N publishers to M subscribers in one queue group; each message reaches one of them.
    Queue,
    /// N requesters, one request in flight each, answered by M responders in a queue
    /// group; reports round-trip latency.
    Reqrep,
    /// Opens --conns connections that stay idle: connection cost (time, and server
    /// memory per connection with --server-pid).
    Idle,
    /// With --js and --pull or --push: consume a stored stream (filled first).
    Consume,
    /// Runs a server that discards everything (answers PING, drops the rest), to measure
    /// natrix-bench's own ceiling with `pub` against it.
    Sink,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Storage {
    File,
    Memory,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "natrix-bench",
    about = "A NATS load generator for natrix, nats-server or any NATS server",
    version
)]
pub struct Flags {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Server URLs, comma separated; clients are spread over them in turn.
    #[arg(
        short,
        long,
        default_value = "nats://127.0.0.1:4222",
        value_delimiter = ','
    )]
    pub server: Vec<String>,
    /// Servers for the publishers (and requesters) only, taken in turn; overrides
    /// --server for them.
    #[arg(long, value_delimiter = ',')]
    pub pub_server: Vec<String>,
    /// Servers for the subscribers (responders, consumers) only, taken in turn;
    /// overrides --server for them.
    #[arg(long, value_delimiter = ',')]
    pub sub_server: Vec<String>,
    /// Publishers (or requesters).
    #[arg(long = "pub", default_value_t = 1)]
    pub pubs: usize,
    /// Subscribers (or responders); default 0 for pub, 4 for fanout, 1 otherwise.
    #[arg(long = "sub")]
    pub subs: Option<usize>,
    /// Messages to publish in all (split over the publishers); ignored with --duration.
    #[arg(long, default_value_t = 100_000)]
    pub msgs: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Subject to publish on.
    #[arg(long, default_value = "natrix.bench")]
    pub subject: String,
    /// Publish for this long instead of a fixed count (e.g. 5s, 500ms, 1m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Idle connections to open (idle scenario).
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Queue group name (queue and reqrep scenarios).
    #[arg(long, default_value = "natrix-bench")]
    pub queue: String,
    /// Executors (threads) the clients run on; default: the number of cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pin each executor to a core.
    #[arg(long)]
    pub pin: bool,
    /// Bytes of PUBs gathered into one write.
    #[arg(long, default_value_t = 64 * 1024)]
    pub batch: usize,
    /// A publisher sends PING after this many bytes and keeps at most 4 unanswered, so
    /// that the server's backlog stays bounded.
    #[arg(long, default_value_t = 1 << 20)]
    pub flush_bytes: usize,
    /// Publishers pause while more than this many bytes (payload plus 48 B of framing per
    /// message) are published but not yet received by every subscriber, so that no
    /// server is pushed past its slow-consumer limit (64 MiB by default); 0: no limit.
    #[arg(long, default_value_t = 32 << 20)]
    pub inflight: u64,
    /// How long subscribers wait for missing messages once publishers are done.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub grace: Duration,
    /// Process id of a server on this machine: report its memory (VmRSS) per idle
    /// connection.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Port the sink scenario listens on (127.0.0.1).
    #[arg(long, default_value_t = 4222)]
    pub port: u16,
    /// Write per-client and aggregate results as CSV.
    #[arg(long)]
    pub csv: Option<String>,
    /// Write the full report as JSON.
    #[arg(long)]
    pub json: Option<String>,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// JetStream: publish into (or consume from) a stream that natrix-bench creates.
    #[arg(long)]
    pub js: bool,
    /// JetStream: the stream's replicas.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// JetStream: the stream's storage.
    #[arg(long, value_enum, default_value_t = Storage::Memory)]
    pub storage: Storage,
    /// JetStream: the stream's name.
    #[arg(long, default_value = "NATRIXBENCH")]
    pub stream: String,
    /// JetStream: publish acks in flight per publisher (1 = synchronous publish).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// JetStream: consume with a pull consumer.
    #[arg(long, conflicts_with = "push")]
    pub pull: bool,
    /// JetStream: consume with a push consumer.
    #[arg(long)]
    pub push: bool,
}

impl Flags {
    pub fn subscribers(&self) -> usize {
        self.subs.unwrap_or(match self.scenario {
            Scenario::Pub | Scenario::Idle | Scenario::Sink => 0,
            Scenario::Fanout => 4,
            _ => 1,
        })
    }

    pub fn publishers(&self) -> usize {
        match self.scenario {
            Scenario::Fanout => 1,
            _ => self.pubs,
        }
    }

    /// Checks the combinations that clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        let s = self.scenario;
        if self.js && !matches!(s, Scenario::Pub | Scenario::Consume) {
            return Err("--js goes with the pub or consume scenario".into());
        }
        if s == Scenario::Consume && !(self.js && (self.pull || self.push)) {
            return Err("consume needs --js and one of --pull, --push".into());
        }
        if (self.pull || self.push) && s != Scenario::Consume {
            return Err("--pull and --push go with the consume scenario".into());
        }
        if self.window == 0 || self.replicas == 0 {
            return Err("--window and --replicas must be at least 1".into());
        }
        if matches!(
            s,
            Scenario::Pub | Scenario::Pubsub | Scenario::Queue | Scenario::Reqrep
        ) && self.publishers() == 0
        {
            return Err("--pub must be at least 1".into());
        }
        if matches!(
            s,
            Scenario::Pubsub | Scenario::Queue | Scenario::Reqrep | Scenario::Fanout
        ) && self.subscribers() == 0
        {
            return Err("--sub must be at least 1 for this scenario".into());
        }
        if self.duration.is_none() && self.msgs == 0 && s != Scenario::Idle && s != Scenario::Sink {
            return Err("--msgs must be at least 1".into());
        }
        if self.server.is_empty() {
            return Err("--server needs at least one URL".into());
        }
        if self.batch == 0 || self.flush_bytes == 0 {
            return Err("--batch and --flush-bytes must be positive".into());
        }
        Ok(())
    }
}

/// Parses `1500ms`, `5s`, `2m`, `1h` or a plain number of seconds (`2.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?}")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("bad duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Flags, String> {
        let f = Flags::try_parse_from(std::iter::once("natrix-bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        f.validate()?;
        Ok(f)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_per_scenario() {
        let f = flags(&["fanout", "--pub", "3"]).unwrap();
        assert_eq!((f.publishers(), f.subscribers()), (1, 4));
        let f = flags(&["pub"]).unwrap();
        assert_eq!(f.subscribers(), 0);
        let f = flags(&["pubsub", "--server", "a:1,b:2", "--sub", "3"]).unwrap();
        assert_eq!(f.server, vec!["a:1", "b:2"]);
        assert_eq!(f.subscribers(), 3);
        assert!(f.pub_server.is_empty() && f.sub_server.is_empty());
        let f = flags(&["pubsub", "--pub-server", "a:1", "--sub-server", "b:2,c:3"]).unwrap();
        assert_eq!(f.pub_server, vec!["a:1"]);
        assert_eq!(f.sub_server, vec!["b:2", "c:3"]);
    }

    #[test]
    fn jetstream_flag_combinations() {
        assert!(flags(&["pub", "--js", "--window", "64", "--storage", "file"]).is_ok());
        assert!(flags(&["consume", "--js", "--pull"]).is_ok());
        assert!(flags(&["consume", "--js"]).is_err());
        assert!(flags(&["consume", "--pull"]).is_err());
        assert!(flags(&["pubsub", "--js"]).is_err());
        assert!(flags(&["consume", "--js", "--pull", "--push"]).is_err());
        assert!(flags(&["pub", "--js", "--window", "0"]).is_err());
    }
}
