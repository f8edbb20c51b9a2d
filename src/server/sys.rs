//! The system account's request services, answered as nats-server answers them:
//! `$SYS.REQ.SERVER.PING[.<ENDPOINT>]` and `$SYS.REQ.SERVER.<id>.<ENDPOINT>`.
//! They are internal subscriptions on shard 0, reached through ordinary routing, so
//! only clients of the system account can reach them.

use crate::monitor::statsz::{statsz_message, ServerApiResponse};
use crate::monitor::{common::server_block, document, Endpoint, Request};
use crate::server::accounts::AccountId;
use crate::server::interest::InternalSub;
use crate::server::shard::{Msg, Shard};
use crate::server::stats::{gather, ShardQuery};
use bytes::Bytes;
use std::rc::Rc;

#[derive(Clone, Copy, Debug)]
pub enum SysService {
    /// `$SYS.REQ.SERVER.PING`: the server block and statsz.
    Ping,
    Endpoint(Endpoint),
}

const ENDPOINTS: [(&str, Endpoint); 11] = [
    ("VARZ", Endpoint::Varz),
    ("CONNZ", Endpoint::Connz),
    ("SUBSZ", Endpoint::Subsz),
    ("ROUTEZ", Endpoint::Routez),
    ("HEALTHZ", Endpoint::Healthz),
    ("IDZ", Endpoint::Idz),
    ("JSZ", Endpoint::Jsz),
    ("ACCOUNTZ", Endpoint::Accountz),
    ("ACCSTATZ", Endpoint::Accstatz),
    ("LEAFZ", Endpoint::Leafz),
    ("GATEWAYZ", Endpoint::Gatewayz),
];

/// Registers the services on `shard` (shard 0).
pub fn register(shard: &Shard) {
    let sys = shard.server.accounts.system();
    let id = shard.server.id.clone();
    shard.add_internal(
        sys,
        "$SYS.REQ.SERVER.PING",
        InternalSub::Sys(SysService::Ping),
    );
    for subject in [
        "$SYS.REQ.SERVER.PING.STATSZ".to_string(),
        format!("$SYS.REQ.SERVER.{id}.STATSZ"),
    ] {
        shard.add_internal(sys, &subject, InternalSub::Sys(SysService::Ping));
    }
    for (name, endpoint) in ENDPOINTS {
        let service = SysService::Endpoint(endpoint);
        shard.add_internal(
            sys,
            &format!("$SYS.REQ.SERVER.PING.{name}"),
            InternalSub::Sys(service),
        );
        shard.add_internal(
            sys,
            &format!("$SYS.REQ.SERVER.{id}.{name}"),
            InternalSub::Sys(service),
        );
    }
}

/// A request reached a service: answer on its reply subject, after gathering.
pub fn handle(shard: &Shard, service: SysService, account: AccountId, msg: &Msg) {
    let Some(reply) = msg.reply else { return };
    let Some(shard) = shard.this() else { return };
    let reply = Bytes::copy_from_slice(reply);
    let request = Request::from_json(msg.payload);
    glommio::spawn_local(answer(shard, service, account, reply, request)).detach();
}

async fn answer(
    shard: Rc<Shard>,
    service: SysService,
    account: AccountId,
    reply: Bytes,
    request: Request,
) {
    let server = &shard.server;
    let routes = shard.routes.as_ref();
    let body = match service {
        SysService::Ping => {
            let reports = gather(&shard, ShardQuery::default()).await;
            serde_json::to_string(&statsz_message(server, routes, &reports))
        }
        SysService::Endpoint(e) => {
            let data = document(&shard, e, &request).await;
            let cluster = routes.map(|r| r.cluster_name.borrow().clone());
            serde_json::to_string(&ServerApiResponse {
                server: server_block(server, cluster),
                data,
            })
        }
    };
    let payload = body.unwrap_or_default();
    let msg = Msg {
        subject: &reply,
        reply: None,
        header_len: 0,
        payload: payload.as_bytes(),
        backing: None,
        shown: None,
    };
    shard.route(None, account, &msg);
}
