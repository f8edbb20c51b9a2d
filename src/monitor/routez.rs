//! `/routez`: this server's routes to the others of its cluster (nats-server's
//! `Routez`).

use crate::monitor::common::{subs_lists, SubDetail};
use crate::monitor::params::ListParams;
use crate::route::conn::Route;
use crate::server::stats::SubInfo;
use crate::server::Server;
use crate::timefmt::{go_duration, rfc3339};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// One route (nats-server's `RouteInfo`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RoutezEntry {
    pub rid: u64,
    pub remote_id: String,
    pub remote_name: String,
    pub did_solicit: bool,
    pub is_configured: bool,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    pub pending_size: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list_detail: Vec<SubDetail>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Routez {
    pub server_id: String,
    pub server_name: String,
    pub now: String,
    pub num_routes: usize,
    pub routes: Vec<RoutezEntry>,
}

/// The remote's subscriptions on this route, sorted by account and subject.
fn route_subs(server: &Server, route: &Route) -> Vec<SubInfo> {
    let mut keys = route.subscription_keys();
    keys.sort();
    keys.into_iter()
        .map(|(account, subject, queue)| {
            let account = server.accounts.name(account).to_string();
            let subject = String::from_utf8_lossy(&subject).into_owned();
            SubInfo {
                // A route subscription's sid is its account and subject, as on nats-server.
                sid: format!("{account} {subject}"),
                account,
                subject,
                queue: queue.map(|q| String::from_utf8_lossy(&q).into_owned()),
                cid: route.rid,
                msgs: 0,
                max: 0,
            }
        })
        .collect()
}

fn entry(server: &Server, route: &Route, params: &ListParams, now: SystemTime) -> RoutezEntry {
    let remote = route.remote().unwrap_or_default();
    let subs = if params.subs.any() {
        route_subs(server, route)
    } else {
        Vec::new()
    };
    let (subscriptions_list, subscriptions_list_detail) = subs_lists(&subs, params.subs);
    RoutezEntry {
        rid: route.rid,
        remote_id: remote.id,
        remote_name: remote.name,
        did_solicit: route.solicited,
        is_configured: route.configured,
        ip: route.addr.ip().to_string(),
        port: route.addr.port(),
        start: rfc3339(route.start),
        last_activity: rfc3339(route.last_activity.get()),
        rtt: "0s".into(),
        uptime: go_duration(now.duration_since(route.start).unwrap_or_default()),
        idle: go_duration(
            now.duration_since(route.last_activity.get())
                .unwrap_or_default(),
        ),
        pending_size: route.pending_bytes(),
        in_msgs: route.in_msgs.get(),
        out_msgs: route.out_msgs.get(),
        in_bytes: route.in_bytes.get(),
        out_bytes: route.out_bytes.get(),
        subscriptions: route.subscription_count(),
        subscriptions_list,
        subscriptions_list_detail,
    }
}

pub fn routez(
    server: &Server,
    routes: Option<&crate::route::Routes>,
    params: &ListParams,
) -> Routez {
    let now = SystemTime::now();
    let routes: Vec<RoutezEntry> = routes
        .map(|r| r.registered())
        .unwrap_or_default()
        .iter()
        .map(|route| entry(server, route, params, now))
        .collect();
    Routez {
        server_id: server.id.clone(),
        server_name: server.name.clone(),
        now: rfc3339(now),
        num_routes: routes.len(),
        routes,
    }
}
