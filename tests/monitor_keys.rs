//! The monitoring documents' key sets against nats-server 2.9.10: natrix and
//! nats-server run in the same configuration with the same clients, every endpoint
//! is fetched from both (with its main query variants), and every key nats-server
//! shows must be in natrix's document too, at the same place, unless `ALLOWED`
//! says why it does not apply. Lists are compared by the union of their elements'
//! keys. Skips (and says so) when `nats-server` is not installed.

mod common;

use async_nats::jetstream::{self, consumer, stream};
use common::{wait_for, TestServer};
use serde_json::{Map, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Keys nats-server has and natrix does not, as (endpoint, key path, why it does
/// not apply), e.g. `("/varz", ".cluster.tls_required", "natrix has no TLS")`.
/// Empty today: for these configurations natrix shows every key nats-server shows.
const ALLOWED: &[(&str, &str, &str)] = &[];

fn nats_server() -> Option<String> {
    let candidates = [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ];
    let found = candidates.iter().find(|bin| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
    }
    found.map(|s| s.to_string())
}

/// Every list replaced by one object holding the union of its elements' keys.
fn union(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), union(x))).collect()),
        Value::Array(items) => {
            let mut merged = Map::new();
            for item in items.iter().map(union) {
                if let Value::Object(m) = item {
                    for (k, x) in m {
                        let slot = merged.entry(k).or_insert(Value::Null);
                        *slot = merge(slot.take(), x);
                    }
                }
            }
            if merged.is_empty() {
                Value::Array(Vec::new())
            } else {
                Value::Array(vec![Value::Object(merged)])
            }
        }
        other => other.clone(),
    }
}

fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, x) in b {
                let slot = a.entry(k).or_insert(Value::Null);
                *slot = merge(slot.take(), x);
            }
            Value::Object(a)
        }
        // Lists are already unions: one object each, merged in turn.
        (Value::Array(a), Value::Array(b)) => match (a.into_iter().next(), b.into_iter().next()) {
            (Some(x), Some(y)) => Value::Array(vec![merge(x, y)]),
            (x, y) => Value::Array(x.or(y).into_iter().collect()),
        },
        (a, Value::Null) => a,
        (_, b) => b,
    }
}

/// Paths of keys `theirs` has and `ours` lacks.
fn missing(theirs: &Value, ours: &Value, at: &str, out: &mut Vec<String>) {
    match (theirs, ours) {
        (Value::Object(t), Value::Object(o)) => {
            for (k, x) in t {
                let path = format!("{at}.{k}");
                match o.get(k) {
                    None => out.push(path),
                    Some(y) => missing(x, y, &path, out),
                }
            }
        }
        (Value::Array(t), Value::Array(o)) => {
            if let (Some(x), Some(y)) = (t.first(), o.first()) {
                missing(x, y, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

/// GET `path` as JSON over HTTP/1.0, so that nats-server (Go) sends the body
/// plain rather than chunked.
fn fetch(server: &TestServer, path: &str) -> Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{path}: {head}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn allowed(endpoint: &str, path: &str) -> bool {
    ALLOWED.iter().any(|(e, p, _)| *e == endpoint && *p == path)
}

/// Fetches each of `paths` from both and lists what natrix lacks.
fn compare(theirs: &TestServer, ours: &TestServer, paths: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for path in paths {
        let endpoint = path.split('?').next().unwrap();
        let (t, o) = (union(&fetch(theirs, path)), union(&fetch(ours, path)));
        let mut lacking = Vec::new();
        missing(&t, &o, "", &mut lacking);
        out.extend(
            lacking
                .into_iter()
                .filter(|p| !allowed(endpoint, p))
                .map(|p| format!("{path}: {p}")),
        );
    }
    out
}

/// A client that stays (subscriptions, one of them in a queue group), one that
/// subscribed and left (a closed connection), and with JetStream a stream with a
/// message and a durable consumer.
async fn populate(server: &TestServer, with_jetstream: bool) -> async_nats::Client {
    let url = server.url();
    let keep = async_nats::ConnectOptions::new()
        .name("keep")
        .connect(&url)
        .await
        .unwrap();
    let _foo = keep.subscribe("foo.>").await.unwrap();
    let _bar = keep.queue_subscribe("bar", "q".into()).await.unwrap();
    std::mem::forget((_foo, _bar));
    let gone = async_nats::ConnectOptions::new()
        .name("gone")
        .connect(&url)
        .await
        .unwrap();
    let _baz = gone.subscribe("baz").await.unwrap();
    gone.flush().await.unwrap();
    drop(_baz);
    drop(gone);
    if with_jetstream {
        let js = jetstream::new(keep.clone());
        let s = js
            .create_stream(stream::Config {
                name: "S".into(),
                subjects: vec!["s.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        js.publish("s.1", "x".into()).await.unwrap().await.unwrap();
        s.create_consumer(consumer::pull::Config {
            durable_name: Some("D".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    keep.publish("foo.a", "hi".into()).await.unwrap();
    keep.flush().await.unwrap();
    wait_for("the closed connection in /connz", WAIT, || {
        fetch(server, "/connz?state=closed")["total"].as_u64() >= Some(1)
    });
    keep
}

fn start(bin: Option<&str>, config: &str) -> TestServer {
    let b = TestServer::with_shards(2).config(config);
    match bin {
        Some(bin) => b.binary(bin).start(),
        None => b.start(),
    }
}

fn jetstream_config(name: &str, dir: &std::path::Path) -> String {
    format!(
        "server_name: {name}\nlisten: 127.0.0.1:{{port}}\nhttp: 127.0.0.1:{{http}}\n\
         jetstream {{ store_dir: \"{}\" }}\n",
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_with_jetstream() {
    let Some(bin) = nats_server() else { return };
    let (dir_t, dir_o) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let theirs = start(Some(&bin), &jetstream_config("ks", dir_t.path()));
    let ours = start(None, &jetstream_config("ks", dir_o.path()));
    let _t = populate(&theirs, true).await;
    let _o = populate(&ours, true).await;
    let lacking = compare(
        &theirs,
        &ours,
        &[
            "/varz",
            "/connz",
            // These two before `subs=detail`: nats-server 2.9.10 keeps the detail
            // it made for a closed connection and shows it in every later answer.
            "/connz?state=closed",
            "/connz?subs=1&state=all",
            "/connz?subs=detail&state=all",
            "/routez",
            "/subsz?subs=1",
            "/healthz",
            "/jsz",
            "/jsz?accounts=1&streams=1&consumers=1&config=1",
            "/accountz",
            "/accstatz",
            "/leafz",
            "/gatewayz",
            // Last, so that it has counted every path above.
            "/varz",
        ],
    );
    assert!(lacking.is_empty(), "natrix lacks: {lacking:#?}");
}

fn cluster_config(name: &str, seed: Option<u16>) -> String {
    let routes = seed.map_or(String::new(), |p| {
        format!("routes: [\"nats-route://127.0.0.1:{p}\"]")
    });
    format!(
        "server_name: {name}\nlisten: 127.0.0.1:{{port}}\nhttp: 127.0.0.1:{{http}}\n\
         cluster {{ name: K, listen: 127.0.0.1:{{cluster}}\n {routes} }}\n"
    )
}

/// Two servers routed together; the second's monitoring is compared.
async fn pair(bin: Option<&str>) -> (TestServer, TestServer, async_nats::Client) {
    let a = start(bin, &cluster_config("ka", None));
    let b = start(bin, &cluster_config("kb", Some(a.cluster_port)));
    wait_for("the route", WAIT, || {
        fetch(&b, "/routez")["num_routes"].as_u64() >= Some(1)
    });
    let on_a = async_nats::connect(a.url()).await.unwrap();
    std::mem::forget(on_a.subscribe("routed.>").await.unwrap());
    on_a.flush().await.unwrap();
    wait_for("the remote subscription on the route", WAIT, || {
        fetch(&b, "/routez")["routes"][0]["subscriptions"].as_u64() >= Some(1)
    });
    let client = populate(&b, false).await;
    std::mem::forget(on_a);
    (a, b, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routed_servers() {
    let Some(bin) = nats_server() else { return };
    let (_ta, theirs, _tc) = pair(Some(&bin)).await;
    let (_oa, ours, _oc) = pair(None).await;
    let lacking = compare(
        &theirs,
        &ours,
        &[
            "/varz",
            "/routez",
            "/routez?subs=1",
            "/routez?subs=detail",
            "/connz?subs=detail",
            "/subsz?subs=1",
        ],
    );
    assert!(lacking.is_empty(), "natrix lacks: {lacking:#?}");
}

#[test]
fn the_diff_sees_a_missing_key_in_any_list_element() {
    let theirs = serde_json::json!({"a": 1, "l": [{"x": 1}, {"y": {"z": 1}}]});
    let ours = serde_json::json!({"a": 1, "l": [{"x": 1, "y": {}}]});
    let mut out = Vec::new();
    missing(&union(&theirs), &union(&ours), "", &mut out);
    assert_eq!(out, vec![".l[].y.z".to_string()]);
}
