//! JetStream at the server level: the store limits of the `jetstream` block, a
//! store directory that cannot be used, `/jsz` and `/varz`, and a config check.

mod common;

use async_nats::jetstream::{self, stream};
use common::TestServer;
use std::time::Duration;

fn js_config(store: &std::path::Path, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:{{port}}\nhttp: 127.0.0.1:{{http}}\njetstream {{\n  store_dir: \"{}\"\n{extra}\n}}\n",
        store.display()
    )
}

#[tokio::test]
async fn max_file_store_refuses_streams_and_publishes_beyond_it() {
    let store = tempfile::tempdir().unwrap();
    let server = TestServer::with_shards(2)
        .config(&js_config(store.path(), "  max_file_store: 64KB"))
        .start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(nc.clone());

    let too_big = js
        .create_stream(stream::Config {
            name: "BIG".into(),
            subjects: vec!["big".into()],
            max_bytes: 1 << 20,
            ..Default::default()
        })
        .await
        .expect_err("a stream larger than max_file_store");
    assert!(too_big.to_string().contains("10047"), "{too_big}");

    js.create_stream(stream::Config {
        name: "S".into(),
        subjects: vec!["s".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = vec![b'x'; 1024];
    let mut acked = 0u64;
    let refused = loop {
        match js.publish("s", payload.clone().into()).await.unwrap().await {
            Ok(ack) => {
                acked = ack.sequence;
                assert!(acked < 1000, "max_file_store never enforced");
            }
            Err(e) => break e,
        }
    };
    // nats-server answers 10023 once the server's store is past its limit.
    assert!(refused.to_string().contains("10023"), "{refused}");
    assert!(acked >= 32, "only {acked} messages before the limit");
    let mut s = js.get_stream("S").await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(info.state.messages, acked, "every acked message kept");
}

#[test]
fn a_store_dir_that_cannot_be_written_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natrix"))
        .args(["-js", "-sd", file.to_str().unwrap(), "-p", "-1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on an unusable store");
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("Can't start JetStream"), "{log}");
}

#[tokio::test]
async fn jsz_and_varz_report_streams_consumers_and_usage() {
    let store = tempfile::tempdir().unwrap();
    let server = TestServer::with_shards(2)
        .config(&js_config(store.path(), ""))
        .start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(nc.clone());
    for (name, storage) in [
        ("F", stream::StorageType::File),
        ("M", stream::StorageType::Memory),
    ] {
        let s = js
            .create_stream(stream::Config {
                name: name.into(),
                subjects: vec![name.to_lowercase()],
                storage,
                ..Default::default()
            })
            .await
            .unwrap();
        for _ in 0..5 {
            js.publish(name.to_lowercase(), vec![b'y'; 100].into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        s.create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("d".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let jsz = server.json("/jsz?consumers=1&config=1");
    assert_eq!(jsz["streams"], 2, "{jsz}");
    assert_eq!(jsz["consumers"], 2);
    assert_eq!(jsz["messages"], 10);
    assert!(jsz["memory"].as_u64().unwrap() >= 500, "{jsz}");
    assert!(jsz["storage"].as_u64().unwrap() >= 500, "{jsz}");
    let details = &jsz["account_details"][0];
    assert_eq!(details["name"], "$G");
    let streams = details["stream_detail"].as_array().unwrap();
    let names: Vec<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["F", "M"]);
    assert_eq!(streams[0]["state"]["messages"], 5);
    assert_eq!(streams[0]["config"]["storage"], "file");
    assert_eq!(streams[1]["consumer_detail"][0]["name"], "d");
    assert_eq!(streams[1]["consumer_detail"][0]["num_pending"], 5);

    let plain = server.json("/jsz");
    assert!(
        plain.get("account_details").is_none(),
        "details only when asked: {plain}"
    );

    let varz = server.json("/varz");
    let block = &varz["jetstream"];
    assert!(
        block["config"]["store_dir"]
            .as_str()
            .unwrap()
            .ends_with("jetstream"),
        "{block}"
    );
    assert!(
        block["stats"]["storage"].as_u64().unwrap() >= 500,
        "{block}"
    );
    assert!(
        block["stats"]["api"]["total"].as_u64().unwrap() >= 4,
        "{block}"
    );

    let health = server.json("/healthz");
    assert_eq!(health["status"], "ok");
}

/// A client logged in as `user`, whose password is its name.
async fn login(
    server: &TestServer,
    user: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
        .connect(server.url())
        .await
}

#[tokio::test]
async fn accounts_get_jetstream_when_enabled_and_within_their_limits() {
    let store = tempfile::tempdir().unwrap();
    let accounts = "accounts {\n  A { users: [{user: a, password: a}], jetstream: { max_streams: 1, max_consumers: 1 } }\n  B { users: [{user: b, password: b}] }\n}\n";
    let server = TestServer::with_shards(2)
        .config(&(js_config(store.path(), "") + accounts))
        .start();

    let a = login(&server, "a").await.unwrap();
    let js = jetstream::new(a.clone());
    let s = js
        .create_stream(stream::Config {
            name: "ONE".into(),
            subjects: vec!["one".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let second = js
        .create_stream(stream::Config {
            name: "TWO".into(),
            subjects: vec!["two".into()],
            ..Default::default()
        })
        .await
        .expect_err("max_streams 1");
    assert!(second.to_string().contains("10027"), "{second}");
    s.create_consumer(jetstream::consumer::pull::Config {
        durable_name: Some("c1".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let another = s
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("c2".into()),
            ..Default::default()
        })
        .await
        .expect_err("max_consumers 1");
    assert!(another.to_string().contains("10026"), "{another}");
    let info = js.query_account().await.unwrap();
    assert_eq!(info.limits.max_streams, Some(1));
    assert_eq!(info.streams, 1);

    let b = login(&server, "b").await.unwrap();
    let reply = b.request("$JS.API.INFO", "".into()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["error"]["err_code"], 10039, "{body}");
}

/// An account's `max_file` caps what its streams hold: a publish past it gets
/// 10002 (nats-server's code), and another account goes on publishing.
#[tokio::test]
async fn an_account_past_its_storage_limit_is_refused_alone() {
    let store = tempfile::tempdir().unwrap();
    let accounts = "accounts {\n  A { users: [{user: a, password: a}], jetstream: { max_file: 32KB } }\n  B { users: [{user: b, password: b}], jetstream: enabled }\n}\n";
    let server = TestServer::with_shards(2)
        .config(&(js_config(store.path(), "") + accounts))
        .start();
    let mut acked = Vec::new();
    for user in ["a", "b"] {
        let js = jetstream::new(login(&server, user).await.unwrap());
        js.create_stream(stream::Config {
            name: "S".into(),
            subjects: vec!["s".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut last = 0;
        for _ in 0..40 {
            match js
                .publish("s", vec![b'x'; 1024].into())
                .await
                .unwrap()
                .await
            {
                Ok(ack) => last = ack.sequence,
                Err(e) => {
                    assert_eq!(user, "a", "{e}");
                    assert!(e.to_string().contains("10002"), "{e}");
                    break;
                }
            }
        }
        let info = js
            .get_stream("S")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(info.state.messages, last, "every acked message kept");
        acked.push(last);
    }
    assert!(
        (28..32).contains(&acked[0]),
        "A stopped near 32 KB: {acked:?}"
    );
    assert_eq!(acked[1], 40, "B is not limited: {acked:?}");
}

/// DIRECT.GET batches (ADR-31): messages with `Nats-Num-Pending`, then `204 EOB`;
/// `multi_last` gives the newest message of each subject.
#[tokio::test]
async fn direct_get_batches_and_multi_last() {
    let store = tempfile::tempdir().unwrap();
    let server = TestServer::with_shards(2)
        .config(&js_config(store.path(), ""))
        .start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(nc.clone());
    js.create_stream(stream::Config {
        name: "D".into(),
        subjects: vec!["d.*".into()],
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 1..=6 {
        let subject = if i % 2 == 1 { "d.a" } else { "d.b" };
        js.publish(subject, format!("v{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let collect = |body: &'static str| {
        let nc = nc.clone();
        async move {
            let inbox = nc.new_inbox();
            let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
            nc.publish_with_reply("$JS.API.DIRECT.GET.D", inbox, body.into())
                .await
                .unwrap();
            let mut got = Vec::new();
            loop {
                let m = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    futures::StreamExt::next(&mut sub),
                )
                .await
                .expect("an answer")
                .unwrap();
                let status = m.status.map(|s| s.as_u16());
                let headers = m.headers.clone().unwrap_or_default();
                let seq = headers
                    .get(async_nats::header::NATS_SEQUENCE)
                    .map(|v| v.as_str().to_string());
                got.push((status, seq, String::from_utf8_lossy(&m.payload).to_string()));
                if status.is_some() {
                    return got;
                }
            }
        }
    };
    let batch = collect(r#"{"seq": 2, "batch": 3}"#).await;
    let seqs: Vec<_> = batch.iter().filter_map(|(_, s, _)| s.clone()).collect();
    assert_eq!(seqs, ["2", "3", "4"], "{batch:?}");
    assert_eq!(batch.last().unwrap().0, Some(204), "{batch:?}");

    let by_subject = collect(r#"{"seq": 1, "batch": 10, "next_by_subj": "d.b"}"#).await;
    let payloads: Vec<_> = by_subject
        .iter()
        .filter(|m| m.0.is_none())
        .map(|m| m.2.clone())
        .collect();
    assert_eq!(payloads, ["v2", "v4", "v6"]);

    let lasts = collect(r#"{"multi_last": ["d.a", "d.b"]}"#).await;
    let payloads: Vec<_> = lasts
        .iter()
        .filter(|m| m.0.is_none())
        .map(|m| m.2.clone())
        .collect();
    assert_eq!(payloads, ["v5", "v6"]);
    let upto = collect(r#"{"multi_last": ["d.*"], "up_to_seq": 3}"#).await;
    let payloads: Vec<_> = upto
        .iter()
        .filter(|m| m.0.is_none())
        .map(|m| m.2.clone())
        .collect();
    assert_eq!(payloads, ["v2", "v3"]);

    let none = collect(r#"{"seq": 50, "batch": 2}"#).await;
    assert_eq!(none, [(Some(404), None, String::new())]);
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk: publishes fail with 10047 and nothing acknowledged is lost; once
/// space returns the stream takes messages again. Needs root to mount a tmpfs;
/// skipped otherwise (as storage's ENOSPC test).
#[tokio::test]
async fn a_full_disk_fails_publishes_and_the_stream_recovers() {
    let base = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=150m", "tmpfs"])
        .arg(base.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let mount = Mount(base.path().to_path_buf());
    // The stream's first segment (64 MiB, preallocated) fits beside the filler;
    // the next one does not, until the filler goes.
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![1u8; 80 << 20]).unwrap();
    let server = TestServer::with_shards(2)
        .config(&js_config(&mount.0.join("store"), ""))
        .start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(nc.clone());
    js.create_stream(stream::Config {
        name: "FULL".into(),
        subjects: vec!["full".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = bytes::Bytes::from(vec![b'z'; 16 << 10]);
    let mut acked: Vec<u64> = Vec::new();
    let mut refused = None;
    'fill: for _round in 0..400 {
        let mut waits = Vec::new();
        for _ in 0..32 {
            waits.push(js.publish("full", payload.clone()).await.unwrap());
        }
        for w in waits {
            match w.await {
                Ok(ack) => acked.push(ack.sequence),
                Err(e) => refused = Some(e.to_string()),
            }
        }
        if refused.is_some() {
            break 'fill;
        }
    }
    let refused = refused.expect("the disk filled up");
    assert!(refused.contains("10047"), "{refused}");
    assert!(acked.len() > 1000, "only {} messages fit", acked.len());
    let last_acked = *acked.iter().max().unwrap();

    let mut s = js.get_stream("FULL").await.unwrap();
    let state = s.info().await.unwrap().state.clone();
    assert!(state.last_sequence >= last_acked, "{state:?}");
    for seq in [1, last_acked / 2, last_acked] {
        let m = s.get_raw_message(seq).await.expect("acked message kept");
        assert_eq!(m.payload.len(), payload.len());
    }

    std::fs::remove_file(&filler).unwrap();
    let again = std::cell::Cell::new(0);
    common::wait_until(
        "a publish once space returns",
        Duration::from_secs(20),
        || {
            let js = js.clone();
            let payload = payload.clone();
            let again = &again;
            async move {
                let Ok(pending) = js.publish("full", payload).await else {
                    return false;
                };
                match pending.await {
                    Ok(ack) => {
                        again.set(ack.sequence);
                        true
                    }
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    let again = again.get();
    assert!(again > last_acked);
    let state = s.info().await.unwrap().state.clone();
    assert_eq!(state.last_sequence, again);
}

/// `-sd ./natrix-data`, as the README runs it: a store folder relative to where
/// the server starts (io_uring's directory opens failed on one before).
#[tokio::test]
async fn a_relative_store_dir_works() {
    let start_in = tempfile::tempdir().unwrap();
    let server = TestServer::with_shards(2)
        .cwd(start_in.path())
        .args(&["-js", "-sd", "./natrix-data"])
        .start();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    js.create_stream(stream::Config {
        name: "REL".into(),
        subjects: vec!["rel".into()],
        ..Default::default()
    })
    .await
    .expect("a stream in a relative store");
    let ack = js.publish("rel", "x".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 1);
    assert!(start_in.path().join("natrix-data/jetstream").is_dir());
}
