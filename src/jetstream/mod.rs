//! JetStream: streams and consumers on the shards, the `$JS.API` they answer, and
//! (clustered servers, preview) the meta group.
//!
//! A stream belongs to one shard for its life. It subscribes internally to its
//! subjects there, so publishes reach it through ordinary routing; its PubAcks
//! and deliveries are ordinary publishes. Shard 0 serves `$JS.API.>`: it keeps the
//! catalogue (which stream lives where) and asks the owning shard through the
//! shard queues (`Shard::call`) for anything about one stream.
//!
//! - `api`: the API's JSON documents, errors, request decoding, and its handler.
//! - `catalog`: shard 0's map of streams to shards; start-up recovery.
//! - `registry`: the streams a shard owns, and what it does for the API.
//! - `stream`, `publish`, `dedupe`: a stream, its publish path and Msg-Id window.
//! - `direct`: DIRECT.GET (single, batch, multi_last).
//! - `consumer`: consumers, their state machine and delivery task.
//! - `headers`: NATS header blocks; `transform`: subject transforms.
//! - `persist`: stream and consumer metadata files.
//! - `node_id`, `meta`, `route_sink`: the meta group's host on shard 0.
//! - `cluster`: clustered JetStream (assignments, stream and consumer groups, the
//!   API as a cluster answers it).
//! - `jsz`: the `/jsz` document; `usage`: stored bytes against storage limits.

pub mod api;
pub mod catalog;
pub mod cluster;
pub mod consumer;
pub mod dedupe;
pub mod direct;
pub mod headers;
pub mod jsz;
pub mod meta;
pub mod node_id;
pub mod persist;
pub mod publish;
pub mod registry;
pub mod route_sink;
pub mod stream;
pub mod transform;
pub mod usage;

use crate::options::Options;
use crate::server::accounts::AccountId;
use crate::server::shard::{Msg, Shard};
use std::rc::Weak;
use std::time::SystemTime;

/// Why a JetStream server cannot start clustered, as nats-server words it.
pub fn check_cluster_options(opts: &Options) -> Result<(), String> {
    if opts.jetstream.is_none() || opts.cluster.is_none() {
        return Ok(());
    }
    if opts.server_name.as_deref().is_none_or(str::is_empty) {
        return Err("jetstream cluster requires `server_name` to be set".into());
    }
    let cluster_name = opts.cluster.as_ref().and_then(|c| c.name.as_deref());
    if cluster_name.is_none_or(str::is_empty) {
        return Err("jetstream cluster requires `cluster.name` to be set".into());
    }
    Ok(())
}

/// What a JetStream internal subscription serves.
pub enum Service {
    /// `$JS.API.>` on shard 0.
    Api,
    /// A stream's subjects, on its shard.
    Publish(Weak<stream::Stream>),
    /// A stream's ack subjects, on its shard.
    Ack(Weak<stream::Stream>),
    /// Flow-control answers for the stream's push consumers, on its shard.
    FlowControl(Weak<stream::Stream>),
    /// Stream catch-up requests and answers between servers, on shard 0.
    CatchUp,
    /// Answers to the stream infos this server asked of others, on shard 0.
    Gather,
    /// The other servers' usage reports, on shard 0.
    Usage,
}

/// A message reached a JetStream internal subscription.
pub fn on_internal(shard: &Shard, service: &Service, account: AccountId, msg: &Msg) {
    match service {
        Service::Api => api::on_request(shard, account, msg),
        Service::CatchUp => cluster::catchup::on_message(shard, msg),
        Service::Gather => cluster::gather::on_answer(shard, msg),
        Service::Usage => cluster::shared_usage::on_report(shard, msg),
        Service::Publish(stream) => {
            if let Some(stream) = stream.upgrade() {
                publish::on_publish(shard, &stream, msg);
            }
        }
        Service::Ack(stream) => {
            if let Some(stream) = stream.upgrade() {
                registry::on_ack(shard, &stream, msg);
            }
        }
        Service::FlowControl(stream) => {
            if let Some(stream) = stream.upgrade() {
                registry::on_flow_control(&stream, msg);
            }
        }
    }
}

/// Publishes a message from the server (PubAcks, API answers, status messages).
pub fn send(
    shard: &Shard,
    account: AccountId,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    send_as(shard, account, subject, subject, reply, headers, payload);
}

/// Publishes on `to`, shown to subscribers as `subject` (JetStream deliveries).
pub fn send_as(
    shard: &Shard,
    account: AccountId,
    to: &[u8],
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    // One buffer holds every part, so that a hop to another shard shares it
    // instead of copying each part again.
    let shown = (to != subject).then_some(subject);
    let reply_len = reply.map_or(0, <[u8]>::len);
    let shown_len = shown.map_or(0, <[u8]>::len);
    let mut buf =
        Vec::with_capacity(to.len() + reply_len + shown_len + headers.len() + payload.len());
    for part in [
        to,
        reply.unwrap_or(b""),
        shown.unwrap_or(b""),
        headers,
        payload,
    ] {
        buf.extend_from_slice(part);
    }
    let buf = bytes::Bytes::from(buf);
    let (to_end, reply_end) = (to.len(), to.len() + reply_len);
    let shown_end = reply_end + shown_len;
    let msg = Msg {
        subject: &buf[..to_end],
        reply: reply.map(|_| &buf[to_end..reply_end]),
        header_len: headers.len(),
        payload: &buf[shown_end..],
        backing: Some(&buf),
        shown: shown.map(|_| &buf[reply_end..shown_end]),
    };
    shard.route(None, account, &msg);
}

pub fn now_ns() -> u64 {
    persist::to_ns(SystemTime::now())
}

/// How nats-server writes a time that is not set (Go's zero time); clients parse it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// nats-server's timestamp format in API documents.
pub fn time_string(t: SystemTime) -> String {
    crate::timefmt::rfc3339_nanos(t)
}

/// A random token of 22 characters (ephemeral consumer names, advisory ids).
pub fn random_id() -> String {
    random_token(22)
}

/// `len` random letters and digits.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

/// Whether two subject filters can match a common subject.
pub fn subjects_overlap(a: &str, b: &str) -> bool {
    let ta: Vec<&str> = a.split('.').collect();
    let tb: Vec<&str> = b.split('.').collect();
    let mut i = 0;
    loop {
        match (ta.get(i), tb.get(i)) {
            (Some(&">"), _) | (_, Some(&">")) => return true,
            (None, None) => return true,
            (None, _) | (_, None) => return false,
            (Some(x), Some(y)) => {
                if *x != "*" && *y != "*" && x != y {
                    return false;
                }
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::subjects_overlap;

    #[test]
    fn overlap_of_filters() {
        assert!(subjects_overlap("orders.*", "orders.new"));
        assert!(subjects_overlap("orders.>", "orders.a.b"));
        assert!(subjects_overlap(">", "x"));
        assert!(!subjects_overlap("orders.*", "orders.a.b"));
        assert!(!subjects_overlap("a.b", "a.c"));
        assert!(subjects_overlap("*.b", "a.*"));
        assert!(!subjects_overlap("a", "a.b"));
    }
}
