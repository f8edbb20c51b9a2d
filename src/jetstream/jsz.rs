//! `/jsz` and the `jetstream` block of `/varz`, in nats-server's shapes (`JSInfo`).
//! Usage and details are gathered from every shard; `meta_cluster` shows the
//! meta group of a clustered server as this server sees it.

use crate::jetstream::api::types::{
    ApiStats, ClusterInfo, ConsumerInfo, StreamConfig, StreamState,
};
use crate::jetstream::catalog;
use crate::jetstream::node_id::peer_label;
use crate::server::accounts::AccountId;
use crate::server::shard::Shard;
use crate::timefmt::rfc3339;
use serde::{Deserialize, Serialize};
use std::rc::Rc;
use std::time::SystemTime;

/// What `/jsz?...` (or a `$SYS` JSZ request's body) asks for.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct JszQuery {
    pub accounts: bool,
    pub streams: bool,
    pub consumers: bool,
    pub config: bool,
}

impl JszQuery {
    pub fn from_query(query: &str) -> JszQuery {
        let mut q = JszQuery::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let on = matches!(v, "true" | "1" | "");
            match k {
                "accounts" | "acc" => q.accounts = on,
                "streams" => q.streams = on,
                "consumers" => q.consumers = on,
                "config" => q.config = on,
                _ => {}
            }
        }
        q.implied()
    }

    /// From a `$SYS` request body (`{"accounts":true,...}`); defaults when unreadable.
    pub fn from_json(body: &[u8]) -> JszQuery {
        serde_json::from_slice::<JszQuery>(body)
            .unwrap_or_default()
            .implied()
    }

    /// Streams imply accounts, consumers imply streams (as nats-server).
    fn implied(mut self) -> JszQuery {
        self.streams |= self.consumers;
        self.accounts |= self.streams;
        self
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct JsConfig {
    pub max_memory: i64,
    pub max_storage: i64,
    pub store_dir: String,
    pub sync_interval: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct JsStats {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: ApiStats,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct MetaCluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub cluster_size: usize,
    pub pending: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct StreamDetail {
    #[serde(skip)]
    pub in_memory: bool,
    pub name: String,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<StreamConfig>,
    pub state: StreamState,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumer_detail: Vec<ConsumerInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct AccountDetail {
    pub name: String,
    pub id: String,
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: ApiStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stream_detail: Vec<StreamDetail>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct JsInfo {
    pub server_id: String,
    pub now: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    pub config: Option<JsConfig>,
    #[serde(flatten)]
    pub stats: JsStats,
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_cluster: Option<MetaCluster>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_details: Vec<AccountDetail>,
}

/// The `jetstream` block of `/varz`; `{}` when JetStream is off.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct VarzJetStream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<JsConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<JsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaCluster>,
}

fn config(shard: &Shard) -> Option<JsConfig> {
    let js = shard.server.opts.jetstream.as_ref()?;
    Some(JsConfig {
        max_memory: js.max_memory_store.unwrap_or(-1),
        max_storage: js.max_file_store.unwrap_or(-1),
        store_dir: catalog::store_dir(&shard.server)
            .join("jetstream")
            .display()
            .to_string(),
        sync_interval: js.sync_interval_ms.unwrap_or(0) * 1_000_000,
        domain: js.domain.clone(),
    })
}

fn meta_cluster(shard: &Shard) -> Option<MetaCluster> {
    let host = shard.meta.get()?;
    let status = host.status();
    Some(MetaCluster {
        name: shard
            .routes
            .as_ref()
            .map(|r| r.cluster_name.borrow().clone()),
        leader: status.leader.map(|l| host.name_of(l)),
        peer: status.leader.map(peer_label),
        cluster_size: status.cluster_size,
        pending: 0,
    })
}

/// A clustered stream replica's group as this server sees it.
fn clustered(shard: &Shard, stream: &crate::jetstream::stream::Stream) -> Option<ClusterInfo> {
    let r = stream.cluster.get()?;
    let cl = shard.cluster.get()?;
    let view = cl.view(r.group);
    Some(ClusterInfo {
        name: shard.server.opts.cluster_name(),
        leader: (view.leader != 0).then(|| cl.name_of(view.leader)),
        replicas: Vec::new(),
    })
}

/// The streams (and consumers) one shard owns, per account name.
fn shard_details(shard: &Shard, q: JszQuery) -> Vec<(AccountId, StreamDetail)> {
    let mut out: Vec<(AccountId, StreamDetail)> = shard
        .js
        .all()
        .iter()
        .map(|s| {
            let info = s.info(None, false);
            let consumer_detail = if q.consumers {
                s.consumers.borrow().values().map(|c| c.info(s)).collect()
            } else {
                Vec::new()
            };
            (
                s.account,
                StreamDetail {
                    in_memory: crate::jetstream::stream::is_memory(&s.config.borrow()),
                    name: s.name.clone(),
                    created: info.created,
                    // A single server leads its streams, as nats-server shows it.
                    cluster: clustered(shard, s).or(info.cluster).or_else(|| {
                        shard.server.jetstream_api().then(|| ClusterInfo {
                            name: None,
                            leader: Some(shard.server.name.clone()),
                            replicas: Vec::new(),
                        })
                    }),
                    config: q.config.then_some(info.config),
                    state: info.state,
                    consumer_detail,
                },
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    out
}

pub async fn document(shard: &Rc<Shard>, q: JszQuery) -> JsInfo {
    let server = &shard.server;
    let now = rfc3339(SystemTime::now());
    let Some(cfg) = config(shard) else {
        return JsInfo {
            server_id: server.id.clone(),
            now,
            disabled: true,
            config: None,
            stats: JsStats::default(),
            streams: 0,
            consumers: 0,
            messages: 0,
            bytes: 0,
            meta_cluster: None,
            account_details: Vec::new(),
        };
    };
    let usage = catalog::account_usage(shard, None).await;
    let stats = stats(shard, usage.memory, usage.storage);
    let account_details = if q.accounts {
        account_details(shard, q, &stats).await
    } else {
        Vec::new()
    };
    JsInfo {
        server_id: server.id.clone(),
        now,
        disabled: false,
        config: Some(cfg),
        stats,
        streams: usage.streams,
        consumers: usage.consumers,
        messages: usage.messages,
        bytes: usage.memory + usage.storage,
        meta_cluster: meta_cluster(shard),
        account_details,
    }
}

fn stats(shard: &Shard, memory: u64, storage: u64) -> JsStats {
    JsStats {
        memory,
        storage,
        reserved_memory: 0,
        reserved_storage: 0,
        accounts: (shard.server.accounts.len() as u64)
            .saturating_sub(1)
            .max(1),
        ha_assets: 0,
        api: shard.catalog.api_stats(None),
    }
}

async fn account_details(shard: &Rc<Shard>, q: JszQuery, _stats: &JsStats) -> Vec<AccountDetail> {
    let mut details = Vec::new();
    for peer in 0..shard.count {
        if let Some(part) = shard
            .call(peer, move |s| Box::pin(async move { shard_details(&s, q) }))
            .await
        {
            details.extend(part);
        }
    }
    let accounts = &shard.server.accounts;
    let mut out = Vec::new();
    for index in 0..accounts.len() {
        let account = AccountId(index as u32);
        if account == accounts.system() {
            continue;
        }
        let streams: Vec<StreamDetail> = details
            .iter()
            .filter(|(a, _)| *a == account)
            .map(|(_, d)| d.clone())
            .collect();
        let (memory, storage) = streams.iter().fold((0, 0), |(m, s), d| {
            let bytes = d.state.bytes;
            if d.in_memory {
                (m + bytes, s)
            } else {
                (m, s + bytes)
            }
        });
        let name = accounts.name(account).to_string();
        out.push(AccountDetail {
            id: name.clone(),
            name,
            memory,
            storage,
            reserved_memory: 0,
            reserved_storage: 0,
            accounts: 0,
            ha_assets: 0,
            api: shard.catalog.api_stats(Some(account)),
            stream_detail: if q.streams { streams } else { Vec::new() },
        });
    }
    out
}

/// `/varz`'s `jetstream` block; empty when JetStream is off.
pub async fn varz_block(shard: &Rc<Shard>) -> VarzJetStream {
    let Some(cfg) = config(shard) else {
        return VarzJetStream::default();
    };
    let usage = catalog::account_usage(shard, None).await;
    VarzJetStream {
        config: Some(cfg),
        stats: Some(stats(shard, usage.memory, usage.storage)),
        meta: meta_cluster(shard),
    }
}
