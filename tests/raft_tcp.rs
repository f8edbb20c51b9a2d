//! Three nodes on loopback TCP with real storage: election, commits, a node killed,
//! a new leader, no acknowledged proposal lost, the killed node back from its disk.

#[path = "raft_net/mod.rs"]
mod raft_net;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use natrix::raft::node::ProposeFailed;
use raft_net::{Cluster, Storage};

const G: u64 = 1;
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn three_nodes_survive_the_leader_dying() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(3, Storage::Files(tmp.path().to_path_buf()), true);
    c.create_group(G);
    let (leader, term) = c.wait_leader(G, 0, WAIT);

    let mut acked: BTreeSet<Bytes> = BTreeSet::new();
    for i in 0..100 {
        let data = format!("a{i}").into_bytes();
        c.node(leader)
            .propose(G, data.clone())
            .expect("leader commits");
        acked.insert(data.into());
    }
    for i in 0..3 {
        c.wait_applied(i, G, 100, WAIT);
    }

    // Proposals in flight when the leader dies: some may be acknowledged.
    let (tx, rx) = mpsc::channel();
    for i in 0..200 {
        c.node(leader)
            .propose_to(G, format!("b{i}").into_bytes(), tx.clone());
    }
    drop(tx);
    // Kill it once the first of them is acknowledged: the rest are mid-way.
    let first = rx.recv().expect("a reply");
    let killed_at = Instant::now();
    c.stop(leader);
    let mut in_flight_acked = 0;
    for p in std::iter::once(first).chain(rx.iter()).flatten() {
        in_flight_acked += 1;
        assert!(p.term >= term);
    }
    // The replies carry no data: re-derive which ones were acknowledged from the
    // survivors below (every acknowledged one must be there).
    let (new_leader, new_term) = c.wait_leader(G, term, WAIT);
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    eprintln!("failover {failover:?}, {in_flight_acked} in-flight proposals acknowledged");

    for i in 0..50 {
        let data = format!("c{i}").into_bytes();
        match c.node(new_leader).propose(G, data.clone()) {
            Ok(p) => assert!(p.term >= new_term),
            Err(ProposeFailed::Refused(e)) => panic!("new leader refused: {e:?}"),
            Err(e) => panic!("proposal failed: {e:?}"),
        }
        acked.insert(data.into());
    }
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let expected = 150 + in_flight_acked;
    for &i in &survivors {
        c.wait_applied(i, G, expected, WAIT);
    }
    let logs: Vec<_> = survivors.iter().map(|&i| c.node(i).applied(G)).collect();
    assert_eq!(
        logs[0].data, logs[1].data,
        "survivors applied the same entries"
    );
    let applied: BTreeSet<Bytes> = logs[0].data.iter().cloned().collect();
    assert_eq!(applied.len(), logs[0].data.len(), "nothing applied twice");
    assert!(
        acked.is_subset(&applied),
        "an acknowledged proposal is missing"
    );
    let b_applied = applied.iter().filter(|d| d.starts_with(b"b")).count() as u64;
    assert!(b_applied >= in_flight_acked);

    // The dead node comes back from its disk and catches up.
    c.start_node(leader);
    c.connect();
    c.wait_applied(leader, G, logs[0].count, WAIT);
    assert_eq!(
        c.node(leader).applied(G).data[..logs[0].data.len()],
        logs[0].data[..]
    );
}

#[test]
fn many_groups_elect_and_commit_over_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start(3, Storage::Files(tmp.path().to_path_buf()), true);
    for g in 1..=20 {
        c.create_group(g);
    }
    for g in 1..=20 {
        let (l, _) = c.wait_leader(g, 0, WAIT);
        c.node(l).propose(g, vec![g as u8]).expect("commit");
    }
    for g in 1..=20 {
        for i in 0..3 {
            c.wait_applied(i, g, 1, WAIT);
        }
    }
}
