//! Nodes on loopback TCP, each on its own executor thread, for the TCP tests and
//! benchmarks.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use natrix::raft::multi::Config;
use natrix::raft::node::{NodeConfig, NodeHandle, ProposeFailed};
use natrix::raft::Proposal;
use natrix::raft::{replica_id, CacheConfig, FileLogStore, GroupId, MemStore, NodeId, StateRole};
use natrix_storage::LogConfig;

/// Small segments: many groups share a disk.
pub fn log_config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 1 << 20,
        record_max_bytes: 256 << 10,
        ..LogConfig::default()
    }
}

pub enum Storage {
    /// Real storage under this directory (one subdirectory per node).
    Files(PathBuf),
    Memory,
}

pub struct Cluster {
    pub nodes: Vec<Option<NodeHandle>>,
    storage: Storage,
    pub keep_applied: bool,
    /// The entry cache of each node's store (real storage only).
    pub cache: CacheConfig,
    incarnations: Vec<u64>,
}

impl Cluster {
    pub fn start(n: usize, storage: Storage, keep_applied: bool) -> Cluster {
        Self::start_with_cache(n, storage, keep_applied, CacheConfig::default())
    }

    pub fn start_with_cache(
        n: usize,
        storage: Storage,
        keep_applied: bool,
        cache: CacheConfig,
    ) -> Cluster {
        let mut c = Cluster {
            nodes: (0..n).map(|_| None).collect(),
            storage,
            keep_applied,
            cache,
            incarnations: vec![0; n],
        };
        for i in 0..n {
            c.start_node(i);
        }
        c.connect();
        c
    }

    pub fn node_dir(&self, i: usize) -> Option<PathBuf> {
        match &self.storage {
            Storage::Files(d) => Some(d.join(format!("node{}", i + 1))),
            Storage::Memory => None,
        }
    }

    /// Starts (or restarts, with a new incarnation) node `i`.
    pub fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none());
        self.incarnations[i] += 1;
        let id = i as NodeId + 1;
        let mut cfg = NodeConfig::new(Config::new(id, self.incarnations[i]));
        cfg.keep_applied = self.keep_applied;
        let h = match self.node_dir(i) {
            Some(dir) => {
                let cache = self.cache.clone();
                NodeHandle::start(cfg, move || open_files(dir, cache))
            }
            None => NodeHandle::start(cfg, || async { Ok(MemStore::new()) }),
        }
        .expect("node starts");
        self.nodes[i] = Some(h);
    }

    /// Tells every live node where the others listen.
    pub fn connect(&self) {
        let peers: Vec<_> = self.live().map(|h| (h.node, h.addr)).collect();
        for h in self.live() {
            h.set_peers(peers.clone());
        }
    }

    pub fn live(&self) -> impl Iterator<Item = &NodeHandle> {
        self.nodes.iter().flatten()
    }

    pub fn node(&self, i: usize) -> &NodeHandle {
        self.nodes[i].as_ref().expect("live node")
    }

    pub fn stop(&mut self, i: usize) {
        self.nodes[i]
            .take()
            .expect("live node")
            .stop()
            .expect("node stops");
    }

    /// Creates group `g` with a replica on every node.
    pub fn create_group(&self, g: GroupId) {
        let n = self.nodes.len() as u64;
        let voters: Vec<u64> = (1..=n).map(|id| replica_id(id, 1)).collect();
        for h in self.live() {
            h.create_group(g, replica_id(h.node, 1), voters.clone());
        }
    }

    /// The live node leading `g` at the highest term, if any.
    pub fn leader(&self, g: GroupId) -> Option<(usize, u64)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, h.as_ref()?.status(g)?)))
            .filter(|(_, s)| s.role == StateRole::Leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(i, s)| (i, s.term))
    }

    /// Waits for a leader of `g` at a term above `above_term`.
    /// Proposes `data` to whichever node leads `g`, as a client would: again
    /// when it surely did not land (refused by a node that is no longer leader,
    /// or lost to a leader change), never after an unknown outcome.
    #[allow(dead_code)]
    pub fn propose_committed(&self, g: GroupId, data: Vec<u8>, timeout: Duration) -> Proposal {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (leader, _) = self.wait_leader(g, 0, left);
            match self.node(leader).propose(g, data.clone()) {
                Ok(p) => return p,
                Err(ProposeFailed::Refused(_) | ProposeFailed::Lost) => {
                    assert!(Instant::now() < deadline, "group {g} commits nothing");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("proposal to group {g} failed: {e:?}"),
            }
        }
    }

    pub fn wait_leader(&self, g: GroupId, above_term: u64, timeout: Duration) -> (usize, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((i, t)) = self.leader(g) {
                if t > above_term {
                    return (i, t);
                }
            }
            assert!(Instant::now() < deadline, "no leader for group {g}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Per node, every group it leads.
    pub fn leaders_by_group(&self) -> std::collections::BTreeMap<GroupId, usize> {
        let mut out = std::collections::BTreeMap::new();
        for (i, h) in self.nodes.iter().enumerate() {
            let Some(h) = h else { continue };
            for (g, leads, _) in h.leaders() {
                if leads {
                    out.insert(g, i);
                }
            }
        }
        out
    }

    /// Waits until node `i` has applied at least `count` entries of `g`.
    pub fn wait_applied(&self, i: usize, g: GroupId, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let a = self.node(i).applied(g);
            if a.count >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} applied {} of {count} in group {g}",
                i + 1,
                a.count
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

async fn open_files(dir: PathBuf, cache: CacheConfig) -> std::io::Result<FileLogStore> {
    FileLogStore::open_with(&dir, log_config(), cache).await
}

/// utime + stime of thread `tid` of this process, in clock ticks.
pub fn thread_cpu_ticks(tid: i32) -> u64 {
    let stat = std::fs::read_to_string(
        Path::new("/proc/self/task")
            .join(tid.to_string())
            .join("stat"),
    )
    .expect("thread stat");
    // Fields after the command (which ends with ')'): state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as u64 }
}
