//! The report of one run: what was asked, what each group of clients measured, what
//! was lost, and the text a person reads.

use crate::conn::ServerInfo;
use crate::flags::{Flags, Scenario};
use crate::stats::{ClientResult, GroupSummary, LatencySummary, Role};
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
pub struct IdleSummary {
    pub conns: usize,
    pub connect_seconds: f64,
    pub conns_per_sec: f64,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    /// Server memory per idle connection, bytes (from VmRSS before and after).
    pub server_bytes_per_conn: Option<f64>,
}

impl IdleSummary {
    pub fn new(conns: usize, secs: f64, before: Option<u64>, after: Option<u64>) -> IdleSummary {
        IdleSummary {
            conns,
            connect_seconds: secs,
            conns_per_sec: if secs > 0.0 { conns as f64 / secs } else { 0.0 },
            server_rss_before_kib: before,
            server_rss_after_kib: after,
            server_bytes_per_conn: match (before, after) {
                (Some(b), Some(a)) if conns > 0 => {
                    Some((a as f64 - b as f64) * 1024.0 / conns as f64)
                }
                _ => None,
            },
        }
    }
}

/// VmRSS of a process, KiB.
pub fn server_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[derive(Clone, Debug, Serialize)]
pub struct ClientRow {
    pub role: Role,
    pub index: usize,
    pub server: String,
    pub msgs: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub expected: Option<u64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub servers: Vec<String>,
    pub server_name: String,
    pub server_version: String,
    pub server_id: String,
    pub bench_version: String,
    pub pubs: usize,
    pub subs: usize,
    pub msgs: Option<u64>,
    pub size: usize,
    pub subject: String,
    pub seconds: f64,
    pub publish: Option<GroupSummary>,
    pub subscribe: Option<GroupSummary>,
    pub latency: Option<LatencySummary>,
    pub idle: Option<IdleSummary>,
    /// Messages published (or requests answered).
    pub published: u64,
    /// Messages subscribers should have counted, all together.
    pub expected_received: u64,
    pub received: u64,
    pub lost: u64,
    pub errors: Vec<String>,
    pub clients: Vec<ClientRow>,
}

impl Report {
    pub fn build(
        flags: &Flags,
        info: &ServerInfo,
        mut results: Vec<ClientResult>,
        idle: Option<IdleSummary>,
        wall: Duration,
    ) -> Report {
        results.sort_by_key(|r| (r.role as u8, r.index));
        let of = |roles: &[Role]| {
            let group: Vec<&ClientResult> =
                results.iter().filter(|r| roles.contains(&r.role)).collect();
            (!group.is_empty()).then(|| GroupSummary::of(group))
        };
        let publish = of(&[Role::Pub, Role::Req]);
        let subscribe = of(&[Role::Sub, Role::Rep]);
        let latency_roles = match flags.scenario {
            Scenario::Reqrep => [Role::Req],
            Scenario::Pub if flags.js => [Role::Pub],
            _ => [Role::Sub],
        };
        let latency =
            LatencySummary::of(results.iter().filter(|r| latency_roles.contains(&r.role)));
        let published = publish.as_ref().map_or(0, |g| g.msgs);
        let (expected_received, received) = match flags.scenario {
            Scenario::Queue => (published, subscribe.as_ref().map_or(0, |g| g.msgs)),
            Scenario::Pub if flags.js => {
                (results.iter().filter_map(|r| r.expected).sum(), published)
            }
            Scenario::Consume => (
                results
                    .iter()
                    .filter(|r| r.role == Role::Sub)
                    .map(|r| r.expected.unwrap_or(0))
                    .max()
                    .unwrap_or(0),
                subscribe.as_ref().map_or(0, |g| g.msgs),
            ),
            Scenario::Pubsub | Scenario::Fanout => (
                results
                    .iter()
                    .filter(|r| r.role == Role::Sub)
                    .map(|r| r.expected.unwrap_or(published))
                    .sum(),
                subscribe.as_ref().map_or(0, |g| g.msgs),
            ),
            Scenario::Reqrep => (
                results
                    .iter()
                    .filter(|r| r.role == Role::Req)
                    .map(|r| r.expected.unwrap_or(r.msgs))
                    .sum(),
                published,
            ),
            _ => (0, 0),
        };
        let errors = results
            .iter()
            .filter_map(|r| {
                r.error
                    .as_ref()
                    .map(|e| format!("{} {}: {e}", r.role.name(), r.index))
            })
            .collect();
        let clients = results
            .iter()
            .map(|r| ClientRow {
                role: r.role,
                index: r.index,
                server: r.server.clone(),
                msgs: r.msgs,
                bytes: r.bytes,
                seconds: r.seconds(),
                msgs_per_sec: r.msgs_per_sec(),
                mb_per_sec: r.mb_per_sec(),
                expected: r.expected,
                error: r.error.clone(),
            })
            .collect();
        Report {
            scenario: format!("{:?}", flags.scenario).to_lowercase(),
            servers: flags.server.clone(),
            server_name: info.server_name.clone(),
            server_version: info.version.clone(),
            server_id: info.server_id.clone(),
            bench_version: env!("CARGO_PKG_VERSION").to_string(),
            pubs: results
                .iter()
                .filter(|r| matches!(r.role, Role::Pub | Role::Req))
                .count(),
            subs: results
                .iter()
                .filter(|r| matches!(r.role, Role::Sub | Role::Rep))
                .count(),
            msgs: flags.duration.is_none().then_some(flags.msgs),
            size: flags.size,
            subject: flags.subject.clone(),
            seconds: wall.as_secs_f64(),
            publish,
            subscribe,
            latency,
            idle,
            published,
            expected_received,
            received,
            lost: expected_received.saturating_sub(received),
            errors,
            clients,
        }
    }

    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.lost == 0
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "natrix-bench idle: {} connections",
                thousands(i.conns as u64)
            );
        } else {
            let _ = writeln!(
                s,
                "natrix-bench {}: {} pub, {} sub, {} x {} B on {:?}",
                self.scenario,
                self.pubs,
                self.subs,
                self.msgs.map_or("timed".to_string(), thousands),
                self.size,
                self.subject
            );
        }
        let _ = writeln!(
            s,
            "server: {} ({} {})",
            self.servers.join(","),
            if self.server_name.is_empty() {
                "?"
            } else {
                &self.server_name
            },
            self.server_version
        );
        let groups = [
            ("Pub", &self.publish, "pub"),
            ("Sub", &self.subscribe, "sub"),
        ];
        for (title, group, role) in groups {
            let Some(g) = group else { continue };
            if g.msgs == 0 && self.scenario == "idle" {
                continue;
            }
            let _ = writeln!(
                s,
                "{title} stats: {} msgs/sec ~ {:.2} MB/sec ({} msgs in {:.3} s)",
                thousands(g.msgs_per_sec as u64),
                g.mb_per_sec,
                thousands(g.msgs),
                g.seconds
            );
            let rows = self.clients.iter().filter(|c| {
                c.role.name() == role
                    || (role == "pub" && c.role == Role::Req)
                    || (role == "sub" && c.role == Role::Rep)
            });
            for c in rows.take(32) {
                let _ = writeln!(
                    s,
                    "  [{}] {} msgs/sec ~ {:.2} MB/sec ({} msgs)",
                    c.index + 1,
                    thousands(c.msgs_per_sec as u64),
                    c.mb_per_sec,
                    thousands(c.msgs)
                );
            }
            if g.clients > 1 {
                let _ = writeln!(
                    s,
                    "  min {} | avg {} | max {} | stddev {} msgs/sec",
                    thousands(g.min as u64),
                    thousands(g.avg as u64),
                    thousands(g.max as u64),
                    thousands(g.stddev as u64)
                );
            }
        }
        if let Some(l) = &self.latency {
            let what = if self.scenario == "reqrep" {
                "round trip"
            } else if self.scenario == "pub" {
                "publish to ack"
            } else {
                "publish to receive, under load"
            };
            let _ = writeln!(
                s,
                "Latency ({what}, µs, {} samples): p50 {:.1} | p90 {:.1} | p99 {:.1} | p99.9 {:.1} | max {:.1}",
                thousands(l.count),
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p999_us,
                l.max_us
            );
        }
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "Idle: {} connections open in {:.3} s ({} conns/sec)",
                thousands(i.conns as u64),
                i.connect_seconds,
                thousands(i.conns_per_sec as u64)
            );
            if let (Some(b), Some(a), Some(per)) = (
                i.server_rss_before_kib,
                i.server_rss_after_kib,
                i.server_bytes_per_conn,
            ) {
                let _ = writeln!(
                    s,
                    "  server VmRSS {b} KiB -> {a} KiB: {:.0} bytes per connection",
                    per
                );
            }
        }
        if self.expected_received > 0 {
            let _ = writeln!(
                s,
                "Received {} of {} ({})",
                thousands(self.received),
                thousands(self.expected_received),
                if self.lost == 0 {
                    "no loss".to_string()
                } else {
                    format!("{} LOST", thousands(self.lost))
                }
            );
        }
        for e in &self.errors {
            let _ = writeln!(s, "error: {e}");
        }
        let _ = writeln!(s, "Duration: {:.3} s", self.seconds);
        s
    }
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn idle_memory_per_connection() {
        let i = IdleSummary::new(1000, 0.5, Some(10_000), Some(20_000));
        assert_eq!(i.server_bytes_per_conn, Some(10_240.0));
        assert_eq!(i.conns_per_sec, 2000.0);
        assert!(IdleSummary::new(10, 1.0, None, Some(1))
            .server_bytes_per_conn
            .is_none());
    }
}
