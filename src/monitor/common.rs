//! Pieces several monitoring documents share: a subscription's detail, process
//! figures (memory, CPU) and the server block of `$SYS` answers.

use crate::server::stats::SubInfo;
use crate::server::{Server, COMPAT_VERSION};
use crate::timefmt::rfc3339;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One subscription as `subscriptions_list_detail` and `/subsz` show it
/// (nats-server's `SubDetail`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubDetail {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account: String,
    pub subject: String,
    #[serde(default, rename = "qgroup", skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    pub sid: String,
    pub msgs: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub cid: u64,
}

impl From<&SubInfo> for SubDetail {
    fn from(s: &SubInfo) -> Self {
        SubDetail {
            account: s.account.clone(),
            subject: s.subject.clone(),
            queue: s.queue.clone(),
            sid: s.sid.clone(),
            msgs: s.msgs,
            max: s.max,
            cid: s.cid,
        }
    }
}

/// `subscriptions_list` (subjects) or `subscriptions_list_detail` of `subs`,
/// as `mode` asks; both empty (and so left out) when it asks for neither.
pub fn subs_lists(
    subs: &[SubInfo],
    mode: crate::monitor::params::SubsMode,
) -> (Vec<String>, Vec<SubDetail>) {
    use crate::monitor::params::SubsMode;
    match mode {
        SubsMode::Off => (Vec::new(), Vec::new()),
        SubsMode::List => (subs.iter().map(|s| s.subject.clone()).collect(), Vec::new()),
        SubsMode::Detail => (Vec::new(), subs.iter().map(SubDetail::from).collect()),
    }
}

/// Memory and CPU of this process, from /proc.
pub struct Process {
    pub rss_bytes: u64,
    pub cpu_percent: f64,
}

const PAGE_BYTES: u64 = 4096;
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

pub fn process(server: &Server) -> Process {
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE_BYTES);
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    let uptime_secs = server.start_instant.elapsed().as_secs_f64().max(0.001);
    Process {
        rss_bytes,
        cpu_percent: ((ticks as f64 / CLOCK_TICKS_PER_SEC) / uptime_secs * 1000.0).round() / 10.0,
    }
}

/// The `server` block of system messages (nats-server's `ServerInfo` of events).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ServerBlock {
    pub name: String,
    pub host: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub ver: String,
    pub seq: u64,
    pub jetstream: bool,
    pub time: String,
}

pub fn server_block(server: &Server, cluster: Option<String>) -> ServerBlock {
    ServerBlock {
        name: server.name.clone(),
        host: server.opts.host.clone(),
        id: server.id.clone(),
        cluster,
        ver: COMPAT_VERSION.to_string(),
        seq: 0,
        jetstream: server.opts.jetstream.is_some(),
        time: rfc3339(SystemTime::now()),
    }
}

/// Message and byte counts (nats-server's `DataStats`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default)]
pub struct DataStats {
    pub msgs: u64,
    pub bytes: u64,
}
