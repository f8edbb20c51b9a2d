//! Deterministic simulation of multi-Raft: real drivers, simulated time, network and
//! disks, invariants checked after every event.
//!
//! - `cargo test -p natrix --test raft_sim` runs the fixed seeds (2,000 of them).
//! - `RAFT_SIM_SEEDS=100000 RAFT_SIM_FIRST=1000000 cargo test --release -p natrix --test raft_sim many -- --nocapture`
//!   runs any number more.
//! - `RAFT_SIM_SEED=1234 cargo test -p natrix --test raft_sim replay -- --nocapture`
//!   replays one seed exactly (a failing seed prints this line).

#[path = "raft_sim/disk.rs"]
mod disk;
#[path = "raft_sim/world.rs"]
mod world;

use world::{run_params, Params, Summary};

const FIXED_SEEDS: u64 = 2_000;
const SHARDS: u64 = 8;

fn run_seed(seed: u64) -> Result<Summary, String> {
    run_params(Params::from_seed(seed))
}

fn run_range(first: u64, count: u64) -> Summary {
    let mut total = Summary::default();
    let mut failures = Vec::new();
    for seed in first..first + count {
        match run_seed(seed) {
            Ok(s) => {
                total.events += s.events;
                total.sim_us += s.sim_us;
                total.proposals += s.proposals;
                total.acked += s.acked;
                total.crashes += s.crashes;
                total.partitions += s.partitions;
                total.conf_changes += s.conf_changes;
                total.transfers += s.transfers;
                total.compactions += s.compactions;
                total.leaders += s.leaders;
                total.frames += s.frames;
                total.corrupted_frames += s.corrupted_frames;
            }
            Err(msg) => {
                eprintln!(
                    "raft_sim: seed {seed} FAILED: {msg}\n  replay: RAFT_SIM_SEED={seed} cargo test -p natrix --test raft_sim replay -- --nocapture"
                );
                failures.push(seed);
            }
        }
    }
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    total
}

fn fixed_shard(shard: u64) {
    let per = FIXED_SEEDS / SHARDS;
    let s = run_range(shard * per, per);
    eprintln!("raft_sim shard {shard}: {s:?}");
    assert!(s.acked > 0 && s.leaders > 0);
}

#[test]
fn seeds_0() {
    fixed_shard(0);
}
#[test]
fn seeds_1() {
    fixed_shard(1);
}
#[test]
fn seeds_2() {
    fixed_shard(2);
}
#[test]
fn seeds_3() {
    fixed_shard(3);
}
#[test]
fn seeds_4() {
    fixed_shard(4);
}
#[test]
fn seeds_5() {
    fixed_shard(5);
}
#[test]
fn seeds_6() {
    fixed_shard(6);
}
#[test]
fn seeds_7() {
    fixed_shard(7);
}

/// `RAFT_SIM_SEED=N`: replay one seed.
#[test]
fn replay() {
    let Ok(seed) = std::env::var("RAFT_SIM_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("RAFT_SIM_SEED is a number");
    eprintln!("{:?}", Params::from_seed(seed));
    match run_seed(seed) {
        Ok(s) => eprintln!("seed {seed} ok: {s:?}"),
        Err(e) => panic!("seed {seed} failed: {e}"),
    }
}

/// `RAFT_SIM_SEEDS=N [RAFT_SIM_FIRST=F]`: run N more seeds.
#[test]
fn many() {
    let Ok(n) = std::env::var("RAFT_SIM_SEEDS") else {
        return;
    };
    let n: u64 = n.parse().expect("RAFT_SIM_SEEDS is a number");
    let first: u64 = std::env::var("RAFT_SIM_FIRST")
        .ok()
        .map(|f| f.parse().expect("RAFT_SIM_FIRST is a number"))
        .unwrap_or(1_000_000);
    let s = run_range(first, n);
    eprintln!("raft_sim: {n} seeds from {first}: {s:?}");
}

/// The checker must be able to fail: with a disk whose fsync makes nothing durable,
/// crashes lose acknowledged votes and entries, and some seeds must be caught.
#[test]
fn checker_catches_a_lying_disk() {
    let mut caught = Vec::new();
    for seed in 0..200u64 {
        let mut p = Params::from_seed(seed);
        p.faults.lying_fsync = true;
        p.faults.crashes = true;
        if let Err(msg) = world::run_params(p) {
            caught.push(msg);
        }
    }
    eprintln!("lying disk: {} of 200 seeds caught", caught.len());
    for m in caught.iter().take(5) {
        eprintln!("  {}", m.lines().next().unwrap_or(""));
    }
    assert!(
        caught.len() >= 5,
        "the simulator did not notice a disk that loses synced data"
    );
}
