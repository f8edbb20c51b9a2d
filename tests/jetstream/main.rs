//! JetStream on one server through async-nats: publishing, streams, retention,
//! consumers, persistence across restarts and crashes, KV and object store, and
//! a store damaged on disk. Most scenarios run with one shard and with two (streams
//! are spread over shards, so two streams on a two-shard server cross shards).

#[path = "../common/mod.rs"]
mod common;

/// Runs a scenario with one shard and with two.
macro_rules! one_and_two_shards {
    ($name:ident, $body:ident) => {
        $crate::with_shards!($name, $body, one_shard = 1, two_shards = 2);
    };
}

mod consumers;
mod corrupt;
mod kv;
mod persistence;
mod publish;
mod retention;
mod streams;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use common::TestServer;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(10);

/// A JetStream server on a store directory that outlives it (for restarts).
/// `NATRIX_JS_REFERENCE=/path/to/nats-server` runs the scenarios against
/// nats-server instead, to check what the tests expect.
pub fn start_on(shards: usize, store: &Path) -> TestServer {
    let mut builder = TestServer::with_shards(shards);
    if let Ok(reference) = std::env::var("NATRIX_JS_REFERENCE") {
        builder = builder.binary(&reference);
    }
    builder
        .arg("-js")
        .arg("-sd")
        .arg(store.to_str().unwrap())
        .start()
}

/// A JetStream server and the store directory it owns.
pub fn start(shards: usize) -> (TestServer, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    (start_on(shards, store.path()), store)
}

pub async fn connect(server: &TestServer) -> (async_nats::Client, jetstream::Context) {
    let nc = async_nats::connect(server.url()).await.expect("connect");
    (nc.clone(), jetstream::new(nc))
}

pub async fn create(js: &jetstream::Context, config: stream::Config) -> stream::Stream {
    js.create_stream(config).await.expect("create stream")
}

/// A stream named `name` on `subjects`, everything else default.
pub fn config(name: &str, subjects: &[&str]) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A raw `$JS.API.<subject>` request with a JSON body as written.
pub async fn api(nc: &async_nats::Client, subject: &str, body: &str) -> Value {
    let reply = tokio::time::timeout(
        WAIT,
        nc.request(format!("$JS.API.{subject}"), body.to_string().into()),
    )
    .await
    .expect("API answer in time")
    .expect("API request");
    serde_json::from_slice(&reply.payload).expect("JSON answer")
}

/// The `err_code` of an API error answer (0 when it is no error).
pub fn err_code(v: &Value) -> u64 {
    v["error"]["err_code"].as_u64().unwrap_or(0)
}

/// A publish as a request, headers as given; the PubAck or error as JSON.
pub async fn publish_raw(
    nc: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> Value {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, *v);
    }
    let reply = tokio::time::timeout(
        WAIT,
        nc.request_with_headers(subject.to_string(), h, payload.to_string().into()),
    )
    .await
    .expect("PubAck in time")
    .expect("publish request");
    serde_json::from_slice(&reply.payload).expect("JSON PubAck")
}

/// Publishes and waits for the PubAck; returns its sequence.
pub async fn publish(js: &jetstream::Context, subject: &str, payload: &str) -> u64 {
    js.publish(subject.to_string(), payload.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("PubAck")
        .sequence
}

pub fn json_of(v: impl serde::Serialize) -> String {
    serde_json::to_string(&v).unwrap()
}

#[allow(dead_code)]
pub fn ok(v: &Value) -> &Value {
    assert!(v.get("error").is_none(), "unexpected API error: {v}");
    v
}

pub fn empty() -> Value {
    json!({})
}
