//! An in-process cluster of drivers over in-memory stores, with instant delivery: for
//! unit tests and in-process benchmarks. Time advances only through [`LocalCluster::tick`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::log_store::{GroupId, LogStore, MemStore};
use super::multi::{Applied, Config, MultiRaft};
use super::{replica_id, NodeId, StateRole};

/// Nodes 1..=n, each one shard with one driver.
pub struct LocalCluster {
    pub drivers: Vec<MultiRaft<MemStore>>,
    /// Nodes whose frames are dropped both ways (a dead node).
    pub down: Vec<bool>,
    /// Nodes that run but whose frames are dropped both ways (cut off by a partition).
    pub isolated: Vec<bool>,
    queue: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    /// Normal entries applied, per node.
    pub applied_entries: Vec<u64>,
    pub frames_delivered: u64,
    pub bytes_delivered: u64,
}

impl LocalCluster {
    pub fn new(nodes: usize) -> Self {
        let drivers = (1..=nodes as NodeId)
            .map(|id| MultiRaft::new(Config::new(id, 1), Rc::new(RefCell::new(MemStore::new()))))
            .collect();
        Self {
            drivers,
            down: vec![false; nodes],
            isolated: vec![false; nodes],
            queue: VecDeque::new(),
            applied_entries: vec![0; nodes],
            frames_delivered: 0,
            bytes_delivered: 0,
        }
    }

    /// Creates group `g` with a replica on every node.
    pub fn create_group(&mut self, g: GroupId) {
        let voters: Vec<u64> = (1..=self.drivers.len() as u64)
            .map(|n| replica_id(n, 1))
            .collect();
        for (i, d) in self.drivers.iter_mut().enumerate() {
            d.create_group(g, replica_id(i as u64 + 1, 1), &voters)
                .expect("new group");
        }
    }

    fn drain_ready(&mut self, i: usize) {
        loop {
            let rd = self.drivers[i].ready();
            if rd.is_empty() {
                return;
            }
            for (to, bytes) in rd.frames {
                self.queue.push_back((i as NodeId + 1, to, bytes));
            }
            for a in rd.applied {
                if let Applied::Entry { data, .. } = a {
                    if !data.is_empty() {
                        self.applied_entries[i] += 1;
                    }
                }
            }
            for g in rd.snapshot_wanted {
                self.drivers[i]
                    .compact(g, Vec::new())
                    .expect("group exists");
            }
            if let Some(t) = rd.sync {
                self.drivers[i]
                    .store()
                    .borrow_mut()
                    .sync()
                    .expect("memory sync");
                self.drivers[i].on_persisted(t);
            }
        }
    }

    /// Delivers frames until nothing is left to send.
    pub fn settle(&mut self) {
        for i in 0..self.drivers.len() {
            if !self.down[i] {
                self.drain_ready(i);
            }
        }
        while let Some((from, to, bytes)) = self.queue.pop_front() {
            let (f, t) = (from as usize - 1, to as usize - 1);
            // A node that is not in the cluster (a crafted configuration named it).
            if t >= self.drivers.len()
                || self.down[f]
                || self.down[t]
                || self.isolated[f]
                || self.isolated[t]
            {
                continue;
            }
            self.frames_delivered += 1;
            self.bytes_delivered += bytes.len() as u64;
            self.drivers[t].step(from, &bytes).expect("valid frame");
            self.drain_ready(t);
        }
    }

    /// One tick on every live node, then settle.
    pub fn tick(&mut self) {
        for i in 0..self.drivers.len() {
            if !self.down[i] {
                self.drivers[i].tick();
            }
        }
        self.settle();
    }

    /// The node leading `g` (highest term), if any live node leads it.
    pub fn leader(&self, g: GroupId) -> Option<usize> {
        (0..self.drivers.len())
            .filter(|&i| !self.down[i])
            .filter_map(|i| self.drivers[i].status(g).map(|s| (i, s)))
            .filter(|(_, s)| s.role == StateRole::Leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elect_all(c: &mut LocalCluster, groups: u64) -> usize {
        for t in 0..200 {
            c.tick();
            if (1..=groups).all(|g| c.leader(g).is_some()) {
                return t;
            }
        }
        panic!("no leaders after 200 ticks");
    }

    /// Three nodes with 20 groups, leaders elected, every group quiet.
    fn quiet_cluster() -> LocalCluster {
        let mut c = LocalCluster::new(3);
        for g in 1..=20 {
            c.create_group(g);
        }
        elect_all(&mut c, 20);
        for _ in 0..20 {
            c.tick();
        }
        assert!(c.drivers.iter().all(|d| d.awake_groups() == 0));
        c
    }

    fn led_by(c: &LocalCluster, node: usize) -> Vec<u64> {
        (1..=20).filter(|&g| c.leader(g) == Some(node)).collect()
    }

    #[test]
    fn elects_commits_and_goes_quiet() {
        let mut c = LocalCluster::new(3);
        for g in 1..=50 {
            c.create_group(g);
        }
        elect_all(&mut c, 50);
        for g in 1..=50 {
            let l = c.leader(g).unwrap();
            c.drivers[l].propose(g, vec![1, 2, 3]).unwrap();
        }
        c.settle();
        for _ in 0..20 {
            c.tick();
        }
        assert_eq!(c.applied_entries, vec![50, 50, 50]);
        for d in &c.drivers {
            assert_eq!(d.awake_groups(), 0, "every idle group is quiet");
        }
        // Quiet: per tick, only node heartbeats (empty frames) flow.
        let items_before: u64 = c.drivers.iter().map(|d| d.stats().items_sent).sum();
        let frames_before = c.frames_delivered;
        for _ in 0..100 {
            c.tick();
        }
        let items_after: u64 = c.drivers.iter().map(|d| d.stats().items_sent).sum();
        assert_eq!(items_after, items_before, "no per-group traffic when idle");
        // 3 nodes x 2 peers, one heartbeat every 2 ticks.
        assert_eq!(c.frames_delivered - frames_before, 100 / 2 * 6);
        // One frame per peer per turn, whatever the number of groups.
        for g in 1..=50 {
            let l = c.leader(g).unwrap();
            c.drivers[l].propose(g, vec![4]).unwrap();
        }
        let frames_before = c.frames_delivered;
        c.settle();
        assert!(c.frames_delivered - frames_before <= 6 * 4);
    }

    #[test]
    fn quiet_groups_fail_over_when_the_leader_node_dies() {
        let mut c = quiet_cluster();
        let victim = c.leader(1).unwrap();
        let led = led_by(&c, victim);
        c.down[victim] = true;
        let cfg = c.drivers[0].config().clone();
        let bound = cfg.node_dead_ticks as usize + 2 * cfg.election_ticks + 2;
        let mut elected_at = None;
        for t in 1..=bound {
            c.tick();
            if led.iter().all(|&g| c.leader(g).is_some()) {
                elected_at = Some(t);
                break;
            }
        }
        let t = elected_at.expect("new leaders within the bound");
        assert!(t <= bound);
        for &g in &led {
            let l = c.leader(g).unwrap();
            assert_ne!(l, victim);
            c.drivers[l].propose(g, vec![9]).unwrap();
        }
        c.settle();
        let live: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
        for &i in &live {
            assert_eq!(c.applied_entries[i], led.len() as u64);
        }
    }

    /// A leader cut off from every follower while its groups are quiet steps down
    /// within an election timeout of noticing (it does not keep claiming leadership),
    /// the majority elects new leaders, and after the partition heals the group
    /// has one leader and takes proposals again.
    #[test]
    fn quiet_leader_cut_off_from_its_followers_steps_down() {
        let mut c = quiet_cluster();
        let cut = c.leader(1).unwrap();
        let led = led_by(&c, cut);
        c.isolated[cut] = true;
        let cfg = c.drivers[0].config().clone();
        let bound = cfg.node_dead_ticks as usize + 3 * cfg.election_ticks + 2;
        let leads_any = |c: &LocalCluster| {
            led.iter().any(|&g| {
                c.drivers[cut]
                    .status(g)
                    .is_some_and(|s| s.role == StateRole::Leader)
            })
        };
        let stepped_down_at = (1..=bound).find(|_| {
            c.tick();
            !leads_any(&c)
        });
        assert!(stepped_down_at.is_some(), "still leads after {bound} ticks");
        for _ in 0..bound {
            c.tick();
        }
        for &g in &led {
            let l = c.leader(g).expect("the majority elected a leader");
            assert_ne!(l, cut);
        }
        c.isolated[cut] = false;
        for _ in 0..bound {
            c.tick();
        }
        for &g in &led {
            let l = c.leader(g).unwrap();
            assert_ne!(l, cut);
            c.drivers[l].propose(g, vec![7]).unwrap();
        }
        c.settle();
        for _ in 0..5 {
            c.tick();
        }
        assert_eq!(c.applied_entries, vec![led.len() as u64; 3]);
    }

    #[test]
    fn leader_transfer_moves_leadership() {
        let mut c = LocalCluster::new(3);
        c.create_group(1);
        elect_all(&mut c, 1);
        let l = c.leader(1).unwrap();
        let target = (l + 1) % 3;
        c.drivers[l]
            .transfer_leader(1, replica_id(target as u64 + 1, 1))
            .unwrap();
        c.settle();
        for _ in 0..5 {
            c.tick();
        }
        assert_eq!(c.leader(1), Some(target));
        assert!(matches!(
            c.drivers[l].propose(1, vec![1]),
            Err(super::super::ProposeError::NotLeader { .. })
        ));
    }

    /// A peer's crafted frames (valid checksum, hostile content) neither panic a
    /// replica nor stop the group: a heartbeat committing past the log, an ack of
    /// entries the leader never had, entries that do not follow on, a message
    /// naming another node's replica.
    #[test]
    fn hostile_messages_from_a_peer_harm_nobody() {
        use super::super::eraftpb::{Entry, Message, MessageType};
        use super::super::frame::{encode, Frame, Item};
        let mut c = LocalCluster::new(3);
        c.create_group(1);
        elect_all(&mut c, 1);
        let leader = c.leader(1).unwrap();
        let follower = (leader + 1) % 3;
        let stranger = (leader + 2) % 3;
        let replica = |i: usize| replica_id(i as u64 + 1, 1);
        let term = c.drivers[leader].status(1).unwrap().term;
        let msg = |ty: MessageType, from: usize, to: usize| {
            let mut m = Message::default();
            m.set_msg_type(ty);
            m.from = replica(from);
            m.to = replica(to);
            m.term = term;
            m
        };
        let mut heartbeat = msg(MessageType::MsgHeartbeat, leader, follower);
        heartbeat.commit = 1 << 40;
        let mut ack = msg(MessageType::MsgAppendResponse, follower, leader);
        ack.index = 1 << 40;
        let mut append = msg(MessageType::MsgAppend, leader, follower);
        append.index = c.drivers[follower].status(1).unwrap().last_index;
        append.log_term = term;
        append.entries = vec![Entry {
            index: append.index + 7,
            term,
            ..Default::default()
        }]
        .into();
        let mut spoofed = msg(MessageType::MsgHeartbeat, leader, follower);
        spoofed.commit = 1 << 40;
        let hostile = [
            (leader, follower, heartbeat),
            (follower, leader, ack),
            (leader, follower, append),
            (stranger, follower, spoofed),
        ];
        for (from, to, m) in hostile {
            let frame = encode(&Frame {
                from_node: from as u64 + 1,
                to_node: to as u64 + 1,
                incarnation: 1,
                items: vec![Item::Raft { group: 1, msg: m }],
            });
            c.drivers[to].step(from as u64 + 1, &frame).unwrap();
            c.settle();
        }
        let refused: u64 = c.drivers.iter().map(|d| d.stats().refused).sum();
        assert_eq!(refused, 3, "the clamped heartbeat goes through");
        let leader = c.leader(1).expect("still led");
        c.drivers[leader].propose(1, vec![7]).unwrap();
        c.settle();
        assert_eq!(c.applied_entries, vec![1, 1, 1], "the group still commits");
    }
}
