//! `$JS.API.>`: served on shard 0. Requests about the account or every stream are
//! answered here from the catalogue (gathering from each shard where needed);
//! requests about one stream run on the shard that owns it.
//!
//! - `types`: the JSON documents.
//! - `errors`: nats-server's error codes and words.
//! - `request`: decoding a request's subject.

pub mod errors;
pub mod request;
pub mod types;

use crate::jetstream::catalog;
use crate::jetstream::headers;
use crate::server::accounts::AccountId;
use crate::server::shard::{Msg, Shard};
use bytes::Bytes;
use request::ApiOp;
use std::rc::Rc;
use types::*;

/// Requests in flight on shard 0 at most; beyond it a request gets a 503.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 4096;

/// An answer: a header block (maybe empty) and a body.
pub struct Reply {
    pub headers: Vec<u8>,
    pub body: Vec<u8>,
    /// An API error (counted in the account's `api.errors`).
    pub failed: bool,
}

impl Reply {
    pub fn json<T: serde::Serialize>(doc: &T) -> Reply {
        Reply {
            headers: Vec::new(),
            body: serde_json::to_vec(doc).expect("serializable"),
            failed: false,
        }
    }

    pub fn status(code: u16, text: &str) -> Reply {
        Reply {
            headers: headers::status(code, text, &[]),
            body: Vec::new(),
            failed: false,
        }
    }

    pub fn error(kind: &'static str, error: ApiError) -> Reply {
        Reply {
            failed: true,
            ..Reply::json(&Response {
                kind,
                body: ErrorBody { error },
            })
        }
    }
}

/// A request reached `$JS.API.>` (shard 0).
pub fn on_request(shard: &Shard, account: AccountId, msg: &Msg) {
    let Some(shard) = shard.this() else { return };
    let Some(reply) = msg.reply else { return };
    let catalog = &shard.catalog;
    let subject = String::from_utf8_lossy(msg.subject).into_owned();
    let reply = Bytes::copy_from_slice(reply);
    let body = msg.payload[msg.header_len..].to_vec();
    if catalog.in_flight.get() >= REQUESTS_IN_FLIGHT_MAX {
        let r = Reply::error(kind::ERROR, errors::general("JetStream API is busy"));
        answer(&shard, account, &reply, r);
        return;
    }
    catalog.in_flight.set(catalog.in_flight.get() + 1);
    glommio::spawn_local(async move {
        let out = handle(&shard, account, &subject, reply.clone(), body).await;
        shard
            .catalog
            .in_flight
            .set(shard.catalog.in_flight.get() - 1);
        shard
            .catalog
            .count(account, out.as_ref().is_some_and(|r| r.failed));
        if let Some(r) = out {
            answer(&shard, account, &reply, r);
        }
    })
    .detach();
}

fn answer(shard: &Shard, account: AccountId, reply: &[u8], r: Reply) {
    crate::jetstream::send(shard, account, reply, None, &r.headers, &r.body);
}

async fn handle(
    shard: &Rc<Shard>,
    account: AccountId,
    subject: &str,
    reply: Bytes,
    body: Vec<u8>,
) -> Option<Reply> {
    let Some(op) = request::decode(subject) else {
        return Some(Reply::error(kind::ERROR, errors::bad_request()));
    };
    let kind = op.response_kind();
    let system_wide = matches!(op, ApiOp::MetaLeaderStepdown | ApiOp::ServerRemove);
    if !system_wide && !catalog::enabled_for(&shard.server, account) {
        return Some(Reply::error(kind, errors::not_enabled_for_account()));
    }
    if let Some(cl) = shard.cluster.get().cloned() {
        return crate::jetstream::cluster::api::handle(shard, &cl, account, op, reply, body).await;
    }
    if let ApiOp::ConsumerCreate { .. } = &op {
        let max = catalog::limits(&shard.server, account).max_consumers;
        if max >= 0 && catalog::account_usage(shard, Some(account)).await.consumers as i64 >= max {
            return Some(Reply::error(kind, errors::maximum_consumers()));
        }
    }
    match &op {
        ApiOp::AccountInfo => Some(catalog::account_info(shard, account).await),
        ApiOp::StreamNames => Some(catalog::names(shard, account, &body)),
        ApiOp::StreamList => Some(catalog::list(shard, account, &body).await),
        ApiOp::StreamCreate(name) => {
            Some(catalog::create(shard, account, name.clone(), &body).await)
        }
        ApiOp::StreamUpdate(name) => {
            Some(catalog::update(shard, account, name.clone(), &body).await)
        }
        ApiOp::StreamDelete(name) => Some(catalog::delete(shard, account, name.clone()).await),
        ApiOp::MetaLeaderStepdown | ApiOp::ServerRemove => {
            Some(Reply::error(kind, errors::cluster_required()))
        }
        _ => {
            let name = op.stream().expect("a stream request").to_string();
            let Some(owner) = catalog::owner(shard, account, &name) else {
                return match op {
                    ApiOp::ConsumerNext(..) => {
                        let r = Reply::status(404, "Stream Not Found");
                        answer(shard, account, &reply, r);
                        None
                    }
                    _ => Some(Reply::error(kind, errors::stream_not_found())),
                };
            };
            let reply = Some(reply);
            shard
                .call(owner, move |s| {
                    Box::pin(crate::jetstream::registry::execute(
                        s, account, op, reply, body,
                    ))
                })
                .await
                .flatten()
        }
    }
}
