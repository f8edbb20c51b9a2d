//! `/subsz`: the subscription table's statistics and, with `subs=1`, its entries
//! (nats-server's `Subsz`).

use crate::monitor::common::SubDetail;
use crate::monitor::params::{ListParams, SubsMode};
use crate::server::stats::ShardReport;
use crate::server::Server;
use crate::timefmt::rfc3339;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Subsz {
    pub server_id: String,
    pub now: String,
    pub num_subscriptions: u64,
    pub num_cache: u64,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    pub cache_hit_rate: f64,
    pub max_fanout: u64,
    pub avg_fanout: f64,
    pub total: u64,
    pub offset: usize,
    pub limit: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<SubDetail>,
}

pub fn subsz(server: &Server, reports: &[ShardReport], params: &ListParams) -> Subsz {
    let count: u64 = reports.iter().map(|r| r.num_subscriptions).sum();
    let (mut inserts, mut removes, mut matches, mut hits, mut cache) = (0, 0, 0, 0, 0);
    for r in reports {
        inserts += r.sublist.inserts;
        removes += r.sublist.removes;
        matches += r.sublist.matches;
        hits += r.sublist.cache_hits;
        cache += r.sublist.cache_entries;
    }
    let subscriptions_list = if params.subs == SubsMode::Off {
        Vec::new()
    } else {
        reports
            .iter()
            .flat_map(|r| r.subscriptions.iter())
            .skip(params.offset)
            .take(params.limit)
            .map(SubDetail::from)
            .collect()
    };
    Subsz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        num_subscriptions: count,
        num_cache: cache,
        num_inserts: inserts,
        num_removes: removes,
        num_matches: matches,
        cache_hit_rate: if matches > 0 {
            hits as f64 / matches as f64
        } else {
            0.0
        },
        max_fanout: 0,
        avg_fanout: 0.0,
        total: count,
        offset: params.offset,
        limit: params.limit,
        subscriptions_list,
    }
}
