//! Raft over loopback TCP (ignored by default; figures in perf/RESULTS.md):
//! `cargo test --release -p natrix --test raft_tcp_bench -- --ignored --nocapture --test-threads 1`
//!
//! Three nodes in one process, each on its own executor thread, talking over loopback
//! TCP; storage is real (natrix-storage in a temporary directory, durable: every
//! acknowledgement follows an fdatasync) except for the 10,000 idle groups (memory logs:
//! idle groups do no I/O, and 30,000 segment logs would not fit the descriptor limit).

#[path = "raft_net/mod.rs"]
mod raft_net;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use natrix::raft::GroupId;
use raft_net::{clock_ticks_per_second, thread_cpu_ticks, Cluster, Storage};

const PAYLOAD_BYTES: usize = 128;
const WAIT: Duration = Duration::from_secs(60);

fn wait_all_leaders(c: &Cluster, groups: u64) -> BTreeMap<GroupId, usize> {
    let deadline = Instant::now() + WAIT;
    loop {
        let l = c.leaders_by_group();
        if l.len() as u64 == groups {
            return l;
        }
        assert!(Instant::now() < deadline, "{} of {groups} leaders", l.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Keeps `window` proposals in flight per group for `run`; returns acknowledged/s.
fn load(c: &Cluster, leaders: &BTreeMap<GroupId, usize>, window: usize, run: Duration) -> f64 {
    let (tx, rx) = mpsc::channel();
    let payload = vec![7u8; PAYLOAD_BYTES];
    let propose = |g: GroupId| {
        c.node(leaders[&g])
            .propose_to(g, payload.clone(), tx.clone())
    };
    // Replies do not say which group: keep the window per group through a counter of
    // replies per group reconstructed from the proposal ids is not needed; refill
    // round-robin instead.
    let groups: Vec<GroupId> = leaders.keys().copied().collect();
    for _ in 0..window {
        for &g in &groups {
            propose(g);
        }
    }
    let start = Instant::now();
    let (mut acked, mut failed, mut next) = (0u64, 0u64, 0usize);
    while start.elapsed() < run {
        match rx
            .recv_timeout(Duration::from_secs(5))
            .expect("replies keep coming")
        {
            Ok(_) => acked += 1,
            Err(_) => failed += 1,
        }
        propose(groups[next % groups.len()]);
        next += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(failed * 100 <= acked, "{failed} failed proposals");
    acked as f64 / secs
}

fn throughput(groups: u64, window: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start(3, Storage::Files(tmp.path().to_path_buf()), false);
    for g in 1..=groups {
        c.create_group(g);
    }
    let leaders = wait_all_leaders(&c, groups);
    let rate = load(&c, &leaders, window, Duration::from_secs(5));
    println!(
        "{groups} group(s) of 3, loopback TCP, durable storage, {PAYLOAD_BYTES} B entries, \
         {window} in flight per group: {rate:.0} committed entries/s"
    );
}

#[test]
#[ignore]
fn tcp_one_group_throughput() {
    throughput(1, 1024);
}

#[test]
#[ignore]
fn tcp_1000_groups_throughput() {
    throughput(1000, 4);
}

#[test]
#[ignore]
fn tcp_idle_10000_groups_cpu() {
    const GROUPS: u64 = 10_000;
    let c = Cluster::start(3, Storage::Memory, false);
    for g in 1..=GROUPS {
        c.create_group(g);
    }
    let leaders = wait_all_leaders(&c, GROUPS);
    // One entry per group, then let every group go quiet.
    let (tx, rx) = mpsc::channel();
    for (&g, &n) in &leaders {
        c.node(n).propose_to(g, vec![1], tx.clone());
    }
    drop(tx);
    let acked = rx.iter().filter(|r| r.is_ok()).count();
    println!("{acked} of {GROUPS} groups committed an entry");
    let deadline = Instant::now() + WAIT;
    let mut last_print = Instant::now();
    while c.live().any(|h| h.info().unwrap().awake_groups > 0) {
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            for h in c.live() {
                println!("{:?}", h.info());
            }
        }
        if Instant::now() > deadline {
            for h in c.live() {
                println!("{:?}", h.info());
            }
            panic!("groups stay awake");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tids: Vec<i32> = c.live().map(|h| h.tid).collect();
    let before: Vec<u64> = tids.iter().map(|&t| thread_cpu_ticks(t)).collect();
    let ticks0: Vec<u64> = c.live().map(|h| h.info().unwrap().group_ticks).collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let secs = start.elapsed().as_secs_f64();
    let hz = clock_ticks_per_second() as f64;
    for (i, &t) in tids.iter().enumerate() {
        let used = (thread_cpu_ticks(t) - before[i]) as f64 / hz;
        let info = c.node(i).info().unwrap();
        println!(
            "node {}: {} groups, {} awake, {} group ticks in {secs:.1} s, CPU {:.3} % of one core",
            i + 1,
            info.groups,
            info.awake_groups,
            info.group_ticks - ticks0[i],
            100.0 * used / secs
        );
    }
}

#[test]
#[ignore]
fn tcp_failover() {
    const GROUPS: u64 = 100;
    const ROUNDS: usize = 6;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(3, Storage::Files(tmp.path().to_path_buf()), false);
    for g in 1..=GROUPS {
        c.create_group(g);
    }
    let mut samples_ms: Vec<f64> = Vec::new();
    for round in 0..ROUNDS {
        let leaders = wait_all_leaders(&c, GROUPS);
        // Some traffic, so that the groups are active (half of the rounds) or quiet.
        if round % 2 == 0 {
            let _ = load(&c, &leaders, 1, Duration::from_millis(200));
        } else {
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut per_node = [0usize; 3];
        for &n in leaders.values() {
            per_node[n] += 1;
        }
        let victim = (0..3).max_by_key(|&n| per_node[n]).unwrap();
        let led: Vec<GroupId> = leaders
            .iter()
            .filter(|(_, &n)| n == victim)
            .map(|(&g, _)| g)
            .collect();
        let killed_at = Instant::now();
        c.stop(victim);
        let mut waiting: BTreeMap<GroupId, ()> = led.iter().map(|&g| (g, ())).collect();
        while !waiting.is_empty() {
            assert!(killed_at.elapsed() < WAIT, "no new leaders");
            let now = c.leaders_by_group();
            let at = killed_at.elapsed().as_secs_f64() * 1000.0;
            waiting.retain(|g, _| {
                let done = now.contains_key(g);
                if done {
                    samples_ms.push(at);
                }
                !done
            });
            std::thread::sleep(Duration::from_millis(2));
        }
        c.start_node(victim);
        c.connect();
    }
    samples_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = samples_ms.len();
    println!(
        "fail-over, {GROUPS} groups, {ROUNDS} leader nodes killed, {n} groups re-elected: \
         median {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples_ms[n / 2],
        samples_ms[(n * 99 / 100).min(n - 1)],
        samples_ms[n - 1]
    );
}
