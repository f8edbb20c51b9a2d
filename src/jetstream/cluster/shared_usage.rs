//! What each storage server holds per account, told to the others every second
//! (when it changed, and every 10 s regardless): `$JS.API.INFO` in a cluster
//! reports what every server holds for the account, each replica counted, and an
//! account's `max_file`/`max_mem` limit is checked against that total, as
//! nats-server does. A server's report is forgotten 30 s after it was sent.
//!
//! Subject, in the system account: `$NRX.US.<node>`, a JSON `Report`.

use crate::jetstream::usage::Medium;
use crate::raft::NodeId;
use crate::server::accounts::AccountId;
use crate::server::shard::{Msg, Shard};
use ahash::AHashMap;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Intervals between two reports at most, changed or not.
const UNCHANGED_REPORTS_MAX: u32 = 10;
/// A report older than this is forgotten (its server is gone or cut off).
const REPORT_STALE: Duration = Duration::from_secs(30);
/// Servers remembered at most.
const SERVERS_MAX: usize = 1024;

pub fn subscription() -> &'static str {
    "$NRX.US.*"
}

fn subject(node: NodeId) -> String {
    format!("$NRX.US.{node}")
}

/// One server's bytes per account (accounts holding none are left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub accounts: Vec<AccountUsage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUsage {
    pub account: String,
    pub memory: u64,
    pub storage: u64,
}

/// The other servers' last reports.
#[derive(Debug, Default)]
pub struct Others {
    reports: RefCell<AHashMap<NodeId, (Instant, Report)>>,
}

impl Others {
    pub fn on_report(&self, node: NodeId, report: Report, now: Instant) {
        let mut reports = self.reports.borrow_mut();
        reports.retain(|_, (at, _)| now.duration_since(*at) < REPORT_STALE);
        if reports.len() >= SERVERS_MAX && !reports.contains_key(&node) {
            return;
        }
        reports.insert(node, (now, report));
    }

    /// What the other servers hold for `account`: (memory, storage).
    pub fn of_account(&self, account: &str, now: Instant) -> (u64, u64) {
        self.reports
            .borrow()
            .values()
            .filter(|(at, _)| now.duration_since(*at) < REPORT_STALE)
            .flat_map(|(_, r)| r.accounts.iter().filter(|a| a.account == account))
            .fold((0, 0), |(m, s), a| (m + a.memory, s + a.storage))
    }
}

/// This server's report: what its shards hold per account.
fn own_report(shard: &Shard) -> Report {
    let accounts = &shard.server.accounts;
    let usage = &shard.server.js_usage;
    let accounts = (0..accounts.len())
        .map(|i| AccountId(i as u32))
        .filter_map(|a| {
            let memory = usage.of_account(a, Medium::Memory);
            let storage = usage.of_account(a, Medium::File);
            (memory + storage > 0).then(|| AccountUsage {
                account: accounts.name(a).to_string(),
                memory,
                storage,
            })
        })
        .collect();
    Report { accounts }
}

/// Sends this server's report every second while it changes (every 10 s
/// otherwise), for as long as the server runs JetStream in a cluster.
pub async fn report_forever(shard: Rc<Shard>, node: NodeId) {
    let (mut last, mut unchanged) = (None, 0u32);
    loop {
        glommio::timer::sleep(REPORT_INTERVAL).await;
        let report = own_report(&shard);
        unchanged += 1;
        if last.as_ref() == Some(&report) && unchanged < UNCHANGED_REPORTS_MAX {
            continue;
        }
        let body = serde_json::to_vec(&report).expect("serializable");
        let system = shard.server.accounts.system();
        crate::jetstream::send(&shard, system, subject(node).as_bytes(), None, b"", &body);
        (last, unchanged) = (Some(report), 0);
    }
}

/// Another server's report reached this one: kept, and the totals that account
/// limits are checked against follow it.
pub fn on_report(shard: &Shard, msg: &Msg) {
    let Some(cl) = shard.cluster.get() else {
        return;
    };
    let subject = String::from_utf8_lossy(msg.subject);
    let Some(node) = subject
        .rsplit('.')
        .next()
        .and_then(|n| n.parse::<NodeId>().ok())
    else {
        return;
    };
    if node == cl.node {
        return;
    }
    let Ok(report) = serde_json::from_slice::<Report>(msg.payload) else {
        return;
    };
    let now = Instant::now();
    cl.others_usage.on_report(node, report, now);
    let accounts = &shard.server.accounts;
    for i in 0..accounts.len() {
        let account = AccountId(i as u32);
        let (memory, storage) = cl.others_usage.of_account(accounts.name(account), now);
        let usage = &shard.server.js_usage;
        usage.set_others(account, Medium::Memory, memory);
        usage.set_others(account, Medium::File, storage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(account: &str, memory: u64, storage: u64) -> Report {
        Report {
            accounts: vec![AccountUsage {
                account: account.into(),
                memory,
                storage,
            }],
        }
    }

    #[test]
    fn the_others_sum_per_account_and_stale_reports_go() {
        let o = Others::default();
        let t = Instant::now();
        o.on_report(2, report("APP", 1, 100), t);
        o.on_report(3, report("APP", 0, 50), t);
        o.on_report(3, report("APP", 0, 60), t);
        o.on_report(4, report("OTHER", 7, 7), t);
        assert_eq!(o.of_account("APP", t), (1, 160));
        assert_eq!(o.of_account("NONE", t), (0, 0));
        let later = t + REPORT_STALE;
        assert_eq!(o.of_account("APP", later), (0, 0), "stale");
        o.on_report(2, report("APP", 0, 1), later);
        assert_eq!(o.reports.borrow().len(), 1, "the stale ones went");
    }

    #[test]
    fn a_report_round_trips_as_json() {
        let r = report("APP", 3, 4);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"accounts":[{"account":"APP","memory":3,"storage":4}]}"#
        );
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }
}
