//! `/jsz`: JetStream's monitoring document, in nats-server's shape (`JSInfo`). There
//! are no streams yet, so the counters are zero; `meta_cluster` shows the meta
//! group as this server sees it (leader by server name).

use crate::jetstream::node_id::peer_label;
use crate::server::shard::Shard;
use crate::timefmt::rfc3339;
use serde_json::{json, Value};
use std::time::SystemTime;

pub fn document(shard: &Shard) -> Value {
    let server = &shard.server;
    let now = rfc3339(SystemTime::now());
    let Some(js) = server.opts.jetstream.as_ref() else {
        return json!({"server_id": server.id, "now": now, "disabled": true, "config": {}});
    };
    let store_dir = js
        .store_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("nats").display().to_string());
    let mut doc = json!({
        "server_id": server.id,
        "now": now,
        "config": {
            "max_memory": js.max_memory_store.unwrap_or(-1),
            "max_storage": js.max_file_store.unwrap_or(-1),
            "store_dir": store_dir,
            "sync_interval": js.sync_interval_ms.unwrap_or(0) * 1_000_000,
        },
        "memory": 0,
        "storage": 0,
        "reserved_memory": 0,
        "reserved_storage": 0,
        "accounts": 0,
        "ha_assets": 0,
        "api": {"total": 0, "errors": 0},
        "streams": 0,
        "consumers": 0,
        "messages": 0,
        "bytes": 0,
    });
    if let Some(domain) = &js.domain {
        doc["config"]["domain"] = domain.clone().into();
    }
    if let Some(host) = shard.meta.get() {
        let status = host.status();
        let mut meta = json!({
            "name": shard.routes.as_ref().map(|r| r.cluster_name.borrow().clone()),
            "cluster_size": status.cluster_size,
            "pending": 0,
        });
        if let Some(leader) = status.leader {
            meta["leader"] = host.name_of(leader).into();
            meta["peer"] = peer_label(leader).into();
        }
        doc["meta_cluster"] = meta;
    }
    doc
}
