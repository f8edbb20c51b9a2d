//! Limits, bad input, accounts and the system account, with raw protocol clients
//! and async-nats, each with one shard and with four.

mod common;

use common::{Raw, TestServer};
use futures::StreamExt;
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn start(shards: usize, config: &str) -> TestServer {
    let base = "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n";
    TestServer::with_shards(shards)
        .config(&format!("{base}{config}"))
        .start()
}

fn roundtrip_still_works(port: u16) {
    let mut c = Raw::connect(port);
    c.send(b"CONNECT {\"verbose\":false}\r\nSUB ok 1\r\nPUB ok 2\r\nhi\r\nPING\r\n");
    assert_eq!(c.line(), "MSG ok 1 2");
    assert_eq!(c.bytes(4), b"hi\r\n");
    assert_eq!(c.line(), "PONG");
}

async fn payload_and_control_line_limits(shards: usize) {
    let server = start(shards, "max_payload: 1KB\nmax_control_line: 256\n");
    let mut ok = Raw::connect(server.port);
    assert_eq!(ok.info["max_payload"], 1024);
    ok.send(b"CONNECT {\"verbose\":false}\r\nSUB big 1\r\n");
    ok.send(format!("PUB big 1024\r\n{}\r\nPING\r\n", "x".repeat(1024)).as_bytes());
    assert_eq!(ok.line(), "MSG big 1 1024");
    ok.bytes(1026);
    assert_eq!(ok.line(), "PONG");

    let mut big = Raw::connect(server.port);
    big.send(b"CONNECT {\"verbose\":false}\r\nPUB big 1025\r\n");
    assert_eq!(big.line(), "-ERR 'Maximum Payload Violation'");
    assert!(big.closed_by_server());

    let mut long = Raw::connect(server.port);
    long.send(
        format!(
            "CONNECT {{\"verbose\":false}}\r\nSUB {} 1\r\n",
            "a".repeat(300)
        )
        .as_bytes(),
    );
    assert_eq!(long.line(), "-ERR 'Maximum Control Line Exceeded'");
    assert!(long.closed_by_server());

    ok.send(b"PING\r\n");
    assert_eq!(ok.line(), "PONG", "a bystander keeps working");
    roundtrip_still_works(server.port);
}
both_shard_counts!(payload_limits, payload_and_control_line_limits);

async fn garbage_and_bad_subjects(shards: usize) {
    let server = start(shards, "");
    let mut bystander = Raw::connect(server.port);
    bystander.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    assert_eq!(bystander.line(), "PONG");

    let mut bad = Raw::connect(server.port);
    bad.send(b"CONNECT {\"verbose\":false}\r\nSUB foo..bar 1\r\nPING\r\n");
    assert_eq!(bad.line(), "-ERR 'Invalid Subject'");
    assert_eq!(
        bad.line(),
        "PONG",
        "an invalid subject keeps the connection"
    );
    bad.send(b"THIS IS NOT NATS\r\n");
    assert_eq!(bad.line(), "-ERR 'Unknown Protocol Operation'");
    assert!(bad.closed_by_server());

    let mut junk = Raw::connect(server.port);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    junk.send(&bytes);
    assert!(junk.closed_by_server());

    let mut bad_pub = Raw::connect(server.port);
    bad_pub.send(b"CONNECT {\"verbose\":false}\r\nPUB foo 3\r\nabcdef\r\n");
    assert!(bad_pub.line().starts_with("-ERR"));
    assert!(bad_pub.closed_by_server());

    let mut pedantic = Raw::connect(server.port);
    pedantic.send(b"CONNECT {\"verbose\":false,\"pedantic\":true}\r\nPUB foo.* 1\r\nx\r\nPING\r\n");
    assert_eq!(pedantic.line(), "-ERR 'Invalid Publish Subject'");
    assert_eq!(pedantic.line(), "PONG");

    bystander.send(b"PING\r\n");
    assert_eq!(bystander.line(), "PONG");
    roundtrip_still_works(server.port);
}
both_shard_counts!(garbage, garbage_and_bad_subjects);

async fn verbose_mode(shards: usize) {
    let server = start(shards, "");
    let mut c = Raw::connect(server.port);
    c.send(b"CONNECT {\"verbose\":true}\r\n");
    assert_eq!(c.line(), "+OK");
    c.send(b"SUB v 1\r\n");
    assert_eq!(c.line(), "+OK");
    c.send(b"UNSUB 1\r\n");
    assert_eq!(c.line(), "+OK");
}
both_shard_counts!(verbose, verbose_mode);

/// nats-server 2.9.10 reads a CONNECT without `verbose` or `pedantic` as both on:
/// `+OK` after each operation, and a wildcard publish reported (then acknowledged,
/// byte for byte as nats-server answers).
async fn connect_defaults_to_verbose_and_pedantic(shards: usize) {
    let server = start(shards, "");
    let mut c = Raw::connect(server.port);
    c.send(b"CONNECT {}\r\nPUB foo 1\r\nx\r\nPUB foo.* 1\r\nx\r\nPING\r\n");
    assert_eq!(c.line(), "+OK");
    assert_eq!(c.line(), "+OK");
    assert_eq!(c.line(), "-ERR 'Invalid Publish Subject'");
    assert_eq!(c.line(), "+OK");
    assert_eq!(c.line(), "PONG");
}
both_shard_counts!(connect_defaults, connect_defaults_to_verbose_and_pedantic);

async fn max_connections_and_subscriptions(shards: usize) {
    let server = start(shards, "max_connections: 2\nmax_subscriptions: 1\n");
    // the harness's readiness probe must be gone before counting
    common_wait(&server, |v| v["connections"] == 0).await;
    let mut a = Raw::connect(server.port);
    a.send(b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nSUB b 2\r\nPING\r\n");
    assert_eq!(a.line(), "-ERR 'Maximum Subscriptions Exceeded'");
    assert_eq!(a.line(), "PONG");
    let mut b = Raw::connect(server.port);
    b.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    assert_eq!(b.line(), "PONG");
    let mut third = Raw::connect(server.port);
    assert_eq!(third.line(), "-ERR 'maximum connections exceeded'");
    assert!(third.closed_by_server());
    drop(b);
    // the slot frees once the server has seen the close
    common::wait_until("the slot to free", WAIT, || async {
        let mut c = Raw::connect(server.port);
        c.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
        c.line() == "PONG"
    })
    .await;
}
both_shard_counts!(max_connections, max_connections_and_subscriptions);

async fn slow_consumer_is_dropped_not_waited_for(shards: usize) {
    let server = start(shards, "max_pending: 64KB\nwrite_deadline: \"2s\"\n");
    let mut slow = Raw::connect(server.port);
    slow.send(b"CONNECT {\"verbose\":false}\r\nSUB firehose 1\r\nPING\r\n");
    assert_eq!(slow.line(), "PONG");
    // the slow client never reads again; its socket buffers fill and then its
    // pending bytes pass max_pending. The publisher is never held up.
    let bystander = async_nats::connect(server.url()).await.unwrap();
    let mut other = bystander.subscribe("other").await.unwrap();
    common::sync(&bystander).await;
    let payload = bytes::Bytes::from(vec![b'x'; 16 * 1024]);
    const N: usize = 2000;
    let publisher = async_nats::connect(server.url()).await.unwrap();
    for _ in 0..N {
        publisher
            .publish("firehose", payload.clone())
            .await
            .unwrap();
    }
    publisher
        .publish("other", "still here".into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let got = timeout(WAIT, other.next())
        .await
        .expect("bystander served")
        .unwrap();
    assert_eq!(got.payload, "still here");
    let varz = common_wait(&server, |v| v["slow_consumers"].as_u64().unwrap() >= 1).await;
    assert_eq!(varz["connections"], 2, "the slow consumer was dropped");
    assert!(
        server
            .log()
            .contains("Slow Consumer Detected: MaxPending of 65536 Exceeded"),
        "nats-server's words in the log"
    );
    drop(slow);
}
both_shard_counts!(slow_consumer, slow_consumer_is_dropped_not_waited_for);

async fn common_wait(
    server: &TestServer,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = server.json("/varz");
        if f(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition never held: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stale_connection_and_auth_timeout(shards: usize) {
    let server = start(
        shards,
        "ping_interval: \"200ms\"\nping_max: 1\nauthorization { user: u, password: p, timeout: 0.3 }\n",
    );
    let mut silent = Raw::connect(server.port);
    assert_eq!(silent.line(), "-ERR 'Authentication Timeout'");
    assert!(silent.closed_by_server());

    let mut c = Raw::connect(server.port);
    c.send(b"CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"p\"}\r\n");
    assert_eq!(c.line(), "PING", "the server pings");
    assert_eq!(c.line(), "-ERR 'Stale Connection'");
    assert!(c.closed_by_server());

    let mut answering = Raw::connect(server.port);
    answering.send(b"CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"p\"}\r\n");
    for _ in 0..3 {
        assert_eq!(answering.line(), "PING");
        answering.send(b"PONG\r\n");
    }
}
both_shard_counts!(keepalive, stale_connection_and_auth_timeout);

const ACCOUNTS: &str = r#"
accounts: {
  $SYS: { users: [ {user: admin, password: "$2a$11$DRh4C0KNbNnD8K/hb/buWe1zPxEHrLEiDmuq1Mi0rRJiH/W25Qidm"} ] }
  A: { users: [ {user: a, password: a} ] }
  B: { users: [ {user: b, password: b} ] }
}
"#;

async fn login(server: &TestServer, user: &str, pass: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password(user.into(), pass.into())
        .connect(server.url())
        .await
        .unwrap()
}

async fn accounts_are_isolated(shards: usize) {
    let server = start(shards, ACCOUNTS);
    let a1 = login(&server, "a", "a").await;
    let a2 = login(&server, "a", "a").await;
    let b = login(&server, "b", "b").await;
    let mut a_sub = a1.subscribe("shared.subject").await.unwrap();
    let mut b_sub = b.subscribe("shared.subject").await.unwrap();
    common::sync(&a1).await;
    common::sync(&b).await;
    a2.publish("shared.subject", "for A".into()).await.unwrap();
    a2.flush().await.unwrap();
    b.publish("shared.subject", "for B".into()).await.unwrap();
    common::sync(&b).await;
    assert_eq!(
        timeout(WAIT, a_sub.next()).await.unwrap().unwrap().payload,
        "for A"
    );
    assert_eq!(
        timeout(WAIT, b_sub.next()).await.unwrap().unwrap().payload,
        "for B"
    );
    // A cannot reach the system services
    let err = a1
        .request("$SYS.REQ.SERVER.PING", "".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}
both_shard_counts!(accounts, accounts_are_isolated);

async fn system_account_services(shards: usize) {
    let server = start(shards, ACCOUNTS);
    let admin = login(&server, "admin", "a very long s3cr3t! password").await;
    let _others: Vec<_> = futures::future::join_all((0..3).map(|_| login(&server, "a", "a"))).await;
    let varz = server.json("/varz");
    let id = varz["server_id"].as_str().unwrap().to_string();
    let ping = admin
        .request("$SYS.REQ.SERVER.PING", "".into())
        .await
        .unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["server"]["id"], id);
    assert_eq!(ping["statsz"]["connections"], 4);
    for endpoint in ["VARZ", "CONNZ", "SUBSZ"] {
        let r = admin
            .request(format!("$SYS.REQ.SERVER.{id}.{endpoint}"), "".into())
            .await
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(r["server"]["id"], id, "{endpoint}");
        assert!(r["data"].is_object(), "{endpoint}: {r}");
    }
    let connz = admin
        .request(format!("$SYS.REQ.SERVER.{id}.CONNZ"), "".into())
        .await
        .unwrap();
    let connz: serde_json::Value = serde_json::from_slice(&connz.payload).unwrap();
    assert_eq!(connz["data"]["num_connections"], 4);
}
both_shard_counts!(system_account, system_account_services);

async fn monitoring_counts_across_shards(shards: usize) {
    let server = start(shards, "");
    let clients =
        futures::future::join_all((0..6).map(|_| async_nats::connect(server.url()))).await;
    let clients: Vec<_> = clients.into_iter().map(Result::unwrap).collect();
    let mut sub = clients[0].subscribe("m.x").await.unwrap();
    common::sync(&clients[0]).await;
    for _ in 0..10 {
        clients[5]
            .publish("m.x", "0123456789".into())
            .await
            .unwrap();
    }
    clients[5].flush().await.unwrap();
    for _ in 0..10 {
        timeout(WAIT, sub.next()).await.unwrap().unwrap();
    }
    let varz = common_wait(&server, |v| v["out_msgs"].as_u64().unwrap() >= 10).await;
    assert_eq!(varz["connections"], 6);
    assert_eq!(
        varz["in_msgs"], 11,
        "10 published and one round-trip request"
    );
    assert_eq!(varz["in_bytes"], 100);
    let connz = server.json("/connz?subs=1");
    assert_eq!(connz["num_connections"], 6);
    let with_sub: Vec<_> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            // Left out when empty, as on nats-server.
            c["subscriptions_list"]
                .as_array()
                .is_some_and(|l| l.iter().any(|s| s == "m.x"))
        })
        .collect();
    assert_eq!(with_sub.len(), 1);
    assert_eq!(with_sub[0]["subscriptions"], 2, "m.x and the request inbox");
    let (status, body) = server.http_get("/healthz");
    assert_eq!((status, body.contains("ok")), (200, true));
    let routez = server.json("/routez");
    assert_eq!(routez["num_routes"], 0);
}
both_shard_counts!(monitoring, monitoring_counts_across_shards);

/// Reads `total` bytes 64 KiB at a time with a 1 ms pause after each read (some
/// 40 MB/s here), a consumer slower than the server; false when the server closes
/// the connection first.
fn read_slowly(sub: &mut Raw, total: usize) -> bool {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < total {
        let want = buf.len().min(total - got);
        match sub.stream.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

async fn fast_producer_is_stalled_not_consumer_dropped(shards: usize) {
    // A stalled producer still moves one read (up to 64 KiB) per 5 ms, and the
    // kernel reports the consumer's progress in lumps of its socket buffer: the
    // consumer must be faster than that, and max_pending leave room for a lump.
    let server = start(shards, "max_pending: 1MB\n");
    const N: usize = 16 * 1024;
    let payload = vec![b'x'; 1024];
    let mut sub = Raw::connect(server.port);
    sub.send(b"CONNECT {\"verbose\":false}\r\nSUB stall 1\r\nPING\r\n");
    assert_eq!(sub.line(), "PONG");
    let mut publisher = Raw::connect(server.port);
    publisher.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    assert_eq!(publisher.line(), "PONG");
    let one = format!("MSG stall 1 1024\r\n{}\r\n", "x".repeat(1024)).len();
    let reader = std::thread::spawn(move || {
        let all = read_slowly(&mut sub, N * one);
        sub.send(b"PING\r\n");
        (all, sub.line())
    });
    let mut burst = Vec::with_capacity(N * (payload.len() + 20));
    for _ in 0..N {
        burst.extend_from_slice(b"PUB stall 1024\r\n");
        burst.extend_from_slice(&payload);
        burst.extend_from_slice(b"\r\n");
    }
    burst.extend_from_slice(b"PING\r\n");
    publisher.send(&burst);
    assert_eq!(publisher.line(), "PONG");
    let (all, after) = reader.join().unwrap();
    assert!(all, "the consumer was dropped: {}", server.json("/varz"));
    assert_eq!(after, "PONG", "the consumer is still connected");
    let varz = server.json("/varz");
    assert_eq!(varz["slow_consumers"], 0);
    assert!(varz["stalled_clients"].as_u64().unwrap_or(0) >= 1, "{varz}");
}
both_shard_counts!(fast_producer, fast_producer_is_stalled_not_consumer_dropped);
