//! The small documents: `/healthz`, `/idz`, `/accountz`, `/accstatz`, and those of
//! features natrix does not have, `/leafz` and `/gatewayz`, in the shapes
//! nats-server gives when they are not configured; and `/stacksz` as text.

use crate::monitor::common::DataStats;
use crate::server::stats::ShardReport;
use crate::server::Server;
use crate::timefmt::rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::SystemTime;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Healthz {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn healthz() -> Healthz {
    Healthz {
        status: "ok".into(),
        error: None,
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Idz {
    pub server_id: String,
    pub server_name: String,
}

pub fn idz(server: &Server) -> Idz {
    Idz {
        server_id: server.id.clone(),
        server_name: server.name.clone(),
    }
}

/// `/accountz`: the accounts' names (nats-server's `Accountz` without `?acc=`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Accountz {
    pub server_id: String,
    pub now: String,
    pub system_account: String,
    pub accounts: Vec<String>,
}

pub fn accountz(server: &Server) -> Accountz {
    let a = &server.accounts;
    let mut accounts: Vec<String> = (0..a.len())
        .map(|i| {
            a.name(crate::server::accounts::AccountId(i as u32))
                .to_string()
        })
        .collect();
    accounts.sort();
    Accountz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        system_account: a.name(a.system()).to_string(),
        accounts,
    }
}

/// One account's connections and traffic (nats-server's `AccountStat`); the
/// traffic is that of its open connections.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct AccountStat {
    pub acc: String,
    pub conns: usize,
    pub leafnodes: usize,
    pub total_conns: usize,
    pub sent: DataStats,
    pub received: DataStats,
    pub slow_consumers: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Accstatz {
    pub server_id: String,
    pub now: String,
    pub account_statz: Vec<AccountStat>,
}

/// `include_unused` lists accounts without connections too.
pub fn accstatz(server: &Server, reports: &[ShardReport], include_unused: bool) -> Accstatz {
    let mut by_account: BTreeMap<String, AccountStat> = BTreeMap::new();
    if include_unused {
        for acc in accountz(server).accounts {
            let stat = AccountStat {
                acc: acc.clone(),
                ..Default::default()
            };
            by_account.insert(acc, stat);
        }
    }
    for c in reports.iter().flat_map(|r| r.connections.iter()) {
        let s = by_account.entry(c.account.clone()).or_default();
        s.acc = c.account.clone();
        s.conns += 1;
        s.total_conns += 1;
        // The server sent what the clients received, and the other way round.
        s.sent.msgs += c.out_msgs;
        s.sent.bytes += c.out_bytes;
        s.received.msgs += c.in_msgs;
        s.received.bytes += c.in_bytes;
    }
    Accstatz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        account_statz: by_account.into_values().collect(),
    }
}

/// `/leafz`: natrix has no leaf nodes.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Leafz {
    pub server_id: String,
    pub now: String,
    pub leafnodes: usize,
    pub leafs: Vec<serde_json::Map<String, serde_json::Value>>,
}

pub fn leafz(server: &Server) -> Leafz {
    Leafz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        leafnodes: 0,
        leafs: Vec::new(),
    }
}

/// `/gatewayz`: natrix has no gateways.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Gatewayz {
    pub server_id: String,
    pub now: String,
    pub outbound_gateways: BTreeMap<String, serde_json::Value>,
    pub inbound_gateways: BTreeMap<String, serde_json::Value>,
}

pub fn gatewayz(server: &Server) -> Gatewayz {
    Gatewayz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        outbound_gateways: BTreeMap::new(),
        inbound_gateways: BTreeMap::new(),
    }
}

/// `/stacksz`: nats-server dumps its goroutines' stacks; natrix lists its threads
/// (one line each: id, name, scheduler state from /proc), since Rust cannot walk
/// other threads' stacks safely.
pub fn stacksz() -> String {
    let mut out = String::from("natrix threads (tid name state):\n");
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    let mut tids: Vec<u64> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    for tid in tids {
        let base = format!("/proc/self/task/{tid}");
        let name = std::fs::read_to_string(format!("{base}/comm")).unwrap_or_default();
        let state = std::fs::read_to_string(format!("{base}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()?.to_string()))
            .unwrap_or_default();
        out.push_str(&format!("{tid} {} {state}\n", name.trim()));
    }
    out
}
