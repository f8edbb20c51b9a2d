//! What each client measured, and the summaries across clients: rates (aggregate over
//! the common span, and min/avg/max/stddev across clients) and latency percentiles.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::OnceLock;
use std::time::Instant;

/// The clock every client of this process stamps with (nanoseconds since the first use).
pub fn now_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A latency histogram in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Pub,
    Sub,
    Req,
    Rep,
    Idle,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Pub => "pub",
            Role::Sub => "sub",
            Role::Req => "req",
            Role::Rep => "rep",
            Role::Idle => "idle",
        }
    }
}

/// One client's measurement. Times are nanoseconds on `now_nanos`'s clock.
#[derive(Debug)]
pub struct ClientResult {
    pub role: Role,
    pub index: usize,
    pub server: String,
    pub msgs: u64,
    /// Payload bytes.
    pub bytes: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    /// Messages this client should have counted, when that is known per client.
    pub expected: Option<u64>,
    pub latency: Option<Histogram<u64>>,
    pub error: Option<String>,
}

impl ClientResult {
    pub fn new(role: Role, index: usize, server: &str) -> ClientResult {
        ClientResult {
            role,
            index,
            server: server.to_string(),
            msgs: 0,
            bytes: 0,
            first_ns: None,
            last_ns: None,
            expected: None,
            latency: None,
            error: None,
        }
    }

    pub fn seconds(&self) -> f64 {
        match (self.first_ns, self.last_ns) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    pub fn msgs_per_sec(&self) -> f64 {
        rate(self.msgs as f64, self.seconds())
    }

    pub fn mb_per_sec(&self) -> f64 {
        rate(self.bytes as f64, self.seconds()) / 1e6
    }
}

fn rate(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

/// A group of clients of one role.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupSummary {
    pub clients: usize,
    pub msgs: u64,
    pub bytes: u64,
    /// From the first client's start to the last client's end.
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    /// Across clients, msgs/s.
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub stddev: f64,
}

impl GroupSummary {
    pub fn of<'a>(clients: impl IntoIterator<Item = &'a ClientResult>) -> GroupSummary {
        let clients: Vec<&ClientResult> = clients.into_iter().collect();
        let mut s = GroupSummary {
            clients: clients.len(),
            ..Default::default()
        };
        if clients.is_empty() {
            return s;
        }
        s.msgs = clients.iter().map(|c| c.msgs).sum();
        s.bytes = clients.iter().map(|c| c.bytes).sum();
        let first = clients.iter().filter_map(|c| c.first_ns).min();
        let last = clients.iter().filter_map(|c| c.last_ns).max();
        if let (Some(a), Some(b)) = (first, last) {
            s.seconds = b.saturating_sub(a) as f64 / 1e9;
        }
        s.msgs_per_sec = rate(s.msgs as f64, s.seconds);
        s.mb_per_sec = rate(s.bytes as f64, s.seconds) / 1e6;
        let rates: Vec<f64> = clients.iter().map(|c| c.msgs_per_sec()).collect();
        s.min = rates.iter().copied().fold(f64::INFINITY, f64::min);
        s.max = rates.iter().copied().fold(0.0, f64::max);
        s.avg = rates.iter().sum::<f64>() / rates.len() as f64;
        let var = rates.iter().map(|r| (r - s.avg).powi(2)).sum::<f64>() / rates.len() as f64;
        s.stddev = var.sqrt();
        s
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// Merges the clients' histograms; None when no client recorded latency.
    pub fn of<'a>(clients: impl IntoIterator<Item = &'a ClientResult>) -> Option<LatencySummary> {
        let mut all = new_histogram();
        let mut any = false;
        for h in clients.into_iter().filter_map(|c| c.latency.as_ref()) {
            all.add(h).expect("same bounds");
            any = true;
        }
        if !any || all.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Some(LatencySummary {
            count: all.len(),
            min_us: us(all.min()),
            mean_us: all.mean() / 1e3,
            p50_us: us(all.value_at_quantile(0.50)),
            p90_us: us(all.value_at_quantile(0.90)),
            p99_us: us(all.value_at_quantile(0.99)),
            p999_us: us(all.value_at_quantile(0.999)),
            max_us: us(all.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(msgs: u64, first: u64, last: u64) -> ClientResult {
        let mut c = ClientResult::new(Role::Sub, 0, "x");
        c.msgs = msgs;
        c.bytes = msgs * 10;
        c.first_ns = Some(first);
        c.last_ns = Some(last);
        c
    }

    #[test]
    fn group_rates() {
        let a = client(1000, 0, 1_000_000_000);
        let b = client(3000, 500_000_000, 2_000_000_000);
        let g = GroupSummary::of([&a, &b]);
        assert_eq!(g.msgs, 4000);
        assert!((g.seconds - 2.0).abs() < 1e-9);
        assert!((g.msgs_per_sec - 2000.0).abs() < 1e-6);
        assert!((g.min - 1000.0).abs() < 1e-6 && (g.max - 2000.0).abs() < 1e-6);
        assert!((g.avg - 1500.0).abs() < 1e-6 && (g.stddev - 500.0).abs() < 1e-6);
        assert!((g.mb_per_sec - 0.02).abs() < 1e-9);
    }

    #[test]
    fn latency_percentiles() {
        let mut c = client(0, 0, 0);
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        c.latency = Some(h);
        let l = LatencySummary::of([&c]).unwrap();
        assert_eq!(l.count, 1000);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{}", l.p50_us);
        assert!((l.p99_us - 990.0).abs() < 1.0);
        assert!((l.max_us - 1000.0).abs() < 1.0);
        assert!(LatencySummary::of([&client(1, 0, 1)]).is_none());
    }
}
