//! The meta group's outgoing frames: each goes as one RAFT operation on the route to
//! its node, found in the routes' registry by the node id the peer advertised. A frame
//! for a node with no route now is dropped (Raft retransmits).

use crate::raft::node::FrameSink;
use crate::raft::NodeId;
use crate::server::shard::Shard;
use std::rc::Rc;

pub struct RouteSink {
    shard: Rc<Shard>,
    dropped: u64,
}

impl RouteSink {
    pub fn new(shard: Rc<Shard>) -> RouteSink {
        RouteSink { shard, dropped: 0 }
    }
}

impl FrameSink for RouteSink {
    fn send(&mut self, node: NodeId, frame: Vec<u8>) -> bool {
        let route = self
            .shard
            .routes
            .as_ref()
            .and_then(|routes| routes.raft_route(node));
        match route {
            Some(route) => {
                route.send_raft(&frame);
                true
            }
            None => {
                self.dropped += 1;
                false
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}
