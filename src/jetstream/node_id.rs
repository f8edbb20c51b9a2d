//! A server's Raft node id, derived from its `server_name` so that it is the same on
//! every start and every peer can tell who is who. FNV-1a (stable across builds and
//! platforms, unlike the hasher of a hash map), folded to the 40 bits a node id has
//! (`raft::replica_id` keeps 24 bits for the generation).

use crate::raft::NodeId;

const NODE_ID_BITS: u32 = 40;

pub fn node_id(server_name: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in server_name.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let folded = (h ^ (h >> NODE_ID_BITS)) & ((1 << NODE_ID_BITS) - 1);
    folded.max(1)
}

/// A short printable form of a node id (8 characters), for `/jsz`'s `peer`.
pub fn peer_label(node: NodeId) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // mixed first: ids of similar names differ in few bits
    let mixed = node.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..8)
        .map(|i| ALPHABET[((mixed >> (64 - 6 * (i + 1))) & 63) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_distinct_and_in_range() {
        assert_eq!(node_id("n1"), node_id("n1"));
        assert_ne!(node_id("n1"), node_id("n2"));
        // pinned: a stored meta group names its voters by these ids
        assert_eq!(node_id("n1-c1"), 618_935_232_527);
        for name in ["", "a", "server-with-a-very-long-name", "n3"] {
            let id = node_id(name);
            assert!(id > 0 && id < (1 << NODE_ID_BITS));
            crate::raft::replica_id(id, 1);
        }
        assert_eq!(peer_label(node_id("n1")).len(), 8);
        assert_ne!(
            peer_label(node_id("n1"))[..4],
            peer_label(node_id("n2"))[..4]
        );
    }
}
