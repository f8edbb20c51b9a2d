//! HTTP monitoring and the `$SYS` request services' documents, in nats-server's
//! shapes (field names, nesting, which fields are left out when empty).
//!
//! Module map:
//! - `http`: the monitoring port (hyper on the shard-0 executor): paths, limits.
//! - `io`: the socket adapter that enforces the per-request deadlines.
//! - `params`: what a request asks for (query string or `$SYS` JSON body).
//! - `common`: subscription detail, process figures, the `$SYS` server block.
//! - `varz`, `connz`, `routez`, `subsz`: one document each.
//! - `others`: healthz, idz, accountz, accstatz, leafz, gatewayz, stacksz.
//! - `statsz`: `$SYS.REQ.SERVER.PING` answers and the `$SYS` envelope.
//! - `/jsz` and the `jetstream` block of `/varz` are `crate::jetstream::jsz`.

pub mod common;
pub mod connz;
pub mod http;
pub mod io;
pub mod others;
pub mod params;
pub mod routez;
pub mod statsz;
pub mod subsz;
pub mod varz;

use crate::jetstream::jsz::{JsInfo, JszQuery};
use crate::server::shard::Shard;
use crate::server::stats::{gather, ShardQuery};
use params::{ListParams, SubsMode};
use serde::Serialize;
use std::rc::Rc;

/// A monitoring document, by what HTTP and `$SYS` call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Varz,
    Connz,
    Subsz,
    Routez,
    Healthz,
    Idz,
    Jsz,
    Accountz,
    Accstatz,
    Leafz,
    Gatewayz,
}

/// What one request asks of any endpoint.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub list: ListParams,
    pub jsz: JszQuery,
    /// `/accstatz?unused=1`: accounts without connections too.
    pub include_unused: bool,
}

impl Request {
    pub fn from_query(query: &str) -> Request {
        Request {
            list: ListParams::from_query(query),
            jsz: JszQuery::from_query(query),
            include_unused: query
                .split('&')
                .any(|p| matches!(p, "unused=1" | "unused=true" | "include_unused=true")),
        }
    }

    pub fn from_json(body: &[u8]) -> Request {
        Request {
            list: ListParams::from_json(body),
            jsz: JszQuery::from_json(body),
            include_unused: false,
        }
    }
}

/// Any endpoint's document, serialized as the document itself.
#[derive(Serialize, Clone, Debug)]
#[serde(untagged)]
pub enum Document {
    Varz(Box<varz::Varz>),
    Connz(connz::Connz),
    Subsz(subsz::Subsz),
    Routez(routez::Routez),
    Healthz(others::Healthz),
    Idz(others::Idz),
    Jsz(Box<JsInfo>),
    Accountz(others::Accountz),
    Accstatz(others::Accstatz),
    Leafz(others::Leafz),
    Gatewayz(others::Gatewayz),
}

/// What the shards must report for `e`.
fn shard_query(e: Endpoint, list: &ListParams) -> Option<ShardQuery> {
    let subs = list.subs.any();
    match e {
        Endpoint::Varz => Some(ShardQuery::default()),
        Endpoint::Connz => Some(ShardQuery {
            connections: list.state.open(),
            subscriptions: subs,
            closed: list.state.closed(),
        }),
        Endpoint::Subsz => Some(ShardQuery {
            subscriptions: list.subs != SubsMode::Off,
            ..Default::default()
        }),
        Endpoint::Accstatz => Some(ShardQuery {
            connections: true,
            ..Default::default()
        }),
        _ => None,
    }
}

/// Builds `e`'s document on `shard` (the monitoring shard, 0), gathering what the
/// other shards know first.
pub async fn document(shard: &Rc<Shard>, e: Endpoint, req: &Request) -> Document {
    let reports = match shard_query(e, &req.list) {
        Some(q) => gather(shard, q).await,
        None => Vec::new(),
    };
    let server = &shard.server;
    let list = &req.list;
    match e {
        Endpoint::Varz => {
            let extras = varz::VarzExtras {
                jetstream: crate::jetstream::jsz::varz_block(shard).await,
                http_req_stats: http::req_stats(),
                http_refused_connections: http::refused_connections(),
            };
            Document::Varz(Box::new(varz::varz(shard, &reports, extras)))
        }
        Endpoint::Connz => Document::Connz(connz::connz(server, &reports, list)),
        Endpoint::Subsz => Document::Subsz(subsz::subsz(server, &reports, list)),
        Endpoint::Routez => Document::Routez(routez::routez(server, shard.routes.as_ref(), list)),
        Endpoint::Healthz => Document::Healthz(others::healthz()),
        Endpoint::Idz => Document::Idz(others::idz(server)),
        Endpoint::Jsz => Document::Jsz(Box::new(
            crate::jetstream::jsz::document(shard, req.jsz).await,
        )),
        Endpoint::Accountz => Document::Accountz(others::accountz(server)),
        Endpoint::Accstatz => {
            Document::Accstatz(others::accstatz(server, &reports, req.include_unused))
        }
        Endpoint::Leafz => Document::Leafz(others::leafz(server)),
        Endpoint::Gatewayz => Document::Gatewayz(others::gatewayz(server)),
    }
}
