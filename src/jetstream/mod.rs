//! JetStream. For now (preview): the meta group, the one Raft group of a clustered
//! JetStream server's cluster, run on shard 0 over the route connections, and the
//! `/jsz` monitoring document. The JetStream API (`$JS.API.>`) is not served yet and
//! clients are not told that JetStream is available.
//!
//! - `node_id`: a server's Raft node id, derived from its `server_name`.
//! - `meta`: the meta group's host: store, driver loop, bootstrap, status.
//! - `route_sink`: the meta group's outgoing frames, on the routes.
//! - `jsz`: the `/jsz` document.

pub mod jsz;
pub mod meta;
pub mod node_id;
pub mod route_sink;

use crate::options::Options;

/// Why a JetStream server cannot start clustered, as nats-server words it.
pub fn check_cluster_options(opts: &Options) -> Result<(), String> {
    if opts.jetstream.is_none() || opts.cluster.is_none() {
        return Ok(());
    }
    if opts.server_name.as_deref().is_none_or(str::is_empty) {
        return Err("jetstream cluster requires `server_name` to be set".into());
    }
    Ok(())
}
