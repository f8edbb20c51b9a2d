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

/// 10,000 groups go quiet; their nodes' CPU is measured for 10 s. With
/// `RAFT_IDLE_HOGS=N` (and `RAFT_IDLE_HOG_SECS`, default 30), N threads then spin on
/// the 2 cores for that long, starving the nodes, which are measured again; after the
/// hogs stop every group must be quiet again within `WAIT` (an election storm fed by
/// stalls would keep them awake and climb the terms).
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
    wait_all_quiet(&c);
    measure_idle(&c, "idle", Duration::from_secs(10));
    let hogs: usize = env_or("RAFT_IDLE_HOGS", 0);
    if hogs == 0 {
        return;
    }
    let hog_time = Duration::from_secs(env_or("RAFT_IDLE_HOG_SECS", 30));
    let spinning = spin_threads(hogs, hog_time);
    measure_idle(&c, &format!("starved by {hogs} spinning threads"), hog_time);
    spinning.into_iter().for_each(|t| t.join().unwrap());
    let quiet_after = wait_all_quiet(&c);
    println!("all groups quiet {quiet_after:.1} s after the hogs stopped");
    measure_idle(&c, "idle again", Duration::from_secs(10));
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Waits until no node has an awake group; returns the seconds it took.
fn wait_all_quiet(c: &Cluster) -> f64 {
    let start = Instant::now();
    let mut last_print = Instant::now();
    while c.live().any(|h| h.info().unwrap().awake_groups > 0) {
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            c.live().for_each(|h| println!("{:?}", h.info()));
        }
        if start.elapsed() > WAIT {
            c.live().for_each(|h| println!("{:?}", h.info()));
            panic!("groups stay awake");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed().as_secs_f64()
}

/// Threads that spin for `run` (a loaded machine, made on demand).
fn spin_threads(count: usize, run: Duration) -> Vec<std::thread::JoinHandle<()>> {
    (0..count)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < run {
                    std::hint::spin_loop();
                }
            })
        })
        .collect()
}

/// Prints each node's CPU, group ticks, wakes and highest term over `run`, and its
/// awake groups at the end.
fn measure_idle(c: &Cluster, label: &str, run: Duration) {
    let tids: Vec<i32> = c.live().map(|h| h.tid).collect();
    let before: Vec<u64> = tids.iter().map(|&t| thread_cpu_ticks(t)).collect();
    let info0: Vec<_> = c.live().map(|h| h.info().unwrap()).collect();
    // No queries meanwhile: one scans every group, which is what is being measured.
    let start = Instant::now();
    std::thread::sleep(run);
    let secs = start.elapsed().as_secs_f64();
    let hz = clock_ticks_per_second() as f64;
    println!("{label}, {secs:.1} s:");
    for (i, &t) in tids.iter().enumerate() {
        let used = (thread_cpu_ticks(t) - before[i]) as f64 / hz;
        let info = c.node(i).info().unwrap();
        println!(
            "  node {}: {} groups, {} awake at the end, {} group ticks, {} wakes, \
             term {} -> {}, CPU {:.3} % of one core",
            i + 1,
            info.groups,
            info.awake_groups,
            info.group_ticks - info0[i].group_ticks,
            info.wakes - info0[i].wakes,
            info0[i].max_term,
            info.max_term,
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
