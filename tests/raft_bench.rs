//! In-process Raft benchmarks (ignored by default; figures in perf/RESULTS.md):
//! `cargo test --release -p natrix --test raft_bench -- --ignored --nocapture --test-threads 1`
//!
//! Three nodes in one thread, in-memory stores, instant delivery of the encoded frames:
//! this measures the consensus layer (raft-rs, the driver, frame encoding and parsing),
//! not TCP or disks.

use std::time::{Duration, Instant};

use natrix::raft::local::LocalCluster;
use natrix::raft::multi::DEFAULT_TICK_INTERVAL_MS;

const PAYLOAD_BYTES: usize = 128;
const BATCH: usize = 64;

fn elect(c: &mut LocalCluster, groups: u64) {
    for _ in 0..400 {
        c.tick();
        if (1..=groups).all(|g| c.leader(g).is_some()) {
            return;
        }
    }
    panic!("groups did not elect leaders");
}

fn throughput(groups: u64, run: Duration) -> f64 {
    let mut c = LocalCluster::new(3);
    for g in 1..=groups {
        c.create_group(g);
    }
    elect(&mut c, groups);
    let leaders: Vec<usize> = (1..=groups).map(|g| c.leader(g).unwrap()).collect();
    let start = Instant::now();
    let before = c.applied_entries[0];
    let mut turns = 0u64;
    while start.elapsed() < run {
        for g in 1..=groups {
            let l = leaders[g as usize - 1];
            let per_group = (BATCH as u64 / groups).max(1);
            for _ in 0..per_group {
                c.drivers[l]
                    .propose(g, vec![7u8; PAYLOAD_BYTES])
                    .expect("leader accepts");
            }
        }
        c.settle();
        turns += 1;
        if turns.is_multiple_of(20) {
            c.tick();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let committed = c.applied_entries[0] - before;
    assert_eq!(c.applied_entries[0], c.applied_entries[1]);
    committed as f64 / secs
}

#[test]
#[ignore]
fn bench_one_group_of_3() {
    let rate = throughput(1, Duration::from_secs(3));
    println!("raft: 1 group of 3, {PAYLOAD_BYTES} B entries, batches of {BATCH}: {rate:.0} committed entries/s");
}

#[test]
#[ignore]
fn bench_1000_active_groups() {
    let rate = throughput(1000, Duration::from_secs(3));
    println!("raft: 1000 groups of 3, {PAYLOAD_BYTES} B entries: {rate:.0} committed entries/s (all groups)");
}

#[test]
#[ignore]
fn bench_10000_idle_groups_cpu() {
    let groups = 10_000;
    let mut c = LocalCluster::new(3);
    for g in 1..=groups {
        c.create_group(g);
    }
    elect(&mut c, groups);
    for _ in 0..40 {
        c.tick();
    }
    let awake: usize = c.drivers.iter().map(|d| d.awake_groups()).sum();
    assert_eq!(awake, 0, "all idle groups are quiet");
    let ticks = 1000u32;
    let start = Instant::now();
    for _ in 0..ticks {
        c.tick();
    }
    let busy = start.elapsed();
    let per_node = busy / 3;
    let wall = Duration::from_millis(DEFAULT_TICK_INTERVAL_MS) * ticks;
    let pct = 100.0 * per_node.as_secs_f64() / wall.as_secs_f64();
    println!(
        "raft: 10000 idle groups per node: {:.1} us of CPU per node per {DEFAULT_TICK_INTERVAL_MS} ms tick = {pct:.4}% of one core",
        per_node.as_secs_f64() * 1e6 / ticks as f64
    );
    assert!(pct < 2.0);
}

#[test]
#[ignore]
fn bench_failover_time() {
    for (label, quiet) in [("active", false), ("quiet", true)] {
        let groups = 300;
        let mut c = LocalCluster::new(3);
        for g in 1..=groups {
            c.create_group(g);
        }
        elect(&mut c, groups);
        // Put every group's leadership on node 0, by transfer.
        for g in 1..=groups {
            let l = c.leader(g).unwrap();
            if l != 0 {
                c.drivers[l]
                    .transfer_leader(g, natrix::raft::replica_id(1, 1))
                    .unwrap();
            }
        }
        for _ in 0..40 {
            c.tick();
            if !quiet {
                for g in 1..=groups {
                    if let Some(l) = c.leader(g) {
                        let _ = c.drivers[l].propose(g, vec![1]);
                    }
                }
            }
        }
        let led: Vec<u64> = (1..=groups).filter(|&g| c.leader(g) == Some(0)).collect();
        c.down[0] = true;
        let mut elected_after_ticks = vec![None; led.len()];
        for t in 1..=200u64 {
            c.tick();
            for (i, &g) in led.iter().enumerate() {
                if elected_after_ticks[i].is_none() && c.leader(g).is_some() {
                    elected_after_ticks[i] = Some(t);
                }
            }
            if elected_after_ticks.iter().all(|e| e.is_some()) {
                break;
            }
        }
        let mut ms: Vec<u64> = elected_after_ticks
            .iter()
            .map(|e| e.expect("elected") * DEFAULT_TICK_INTERVAL_MS)
            .collect();
        ms.sort_unstable();
        println!(
            "raft: fail-over of {} {label} groups after their leader node died: median {} ms, max {} ms (tick {DEFAULT_TICK_INTERVAL_MS} ms)",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    }
}
