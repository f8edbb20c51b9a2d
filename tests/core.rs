//! Core NATS behaviour through a real client (async-nats) against real servers,
//! each with one shard and with four.

mod common;

use async_nats::HeaderMap;
use common::TestServer;
use futures::StreamExt;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(server: &TestServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.expect("connect")
}

/// Connections spread over the shards by the kernel; several make sure that
/// publishers and subscribers land on different shards.
async fn connections(server: &TestServer, n: usize) -> Vec<async_nats::Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(connect(server).await);
    }
    out
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    timeout(WAIT, sub.next())
        .await
        .expect("message in time")
        .expect("subscription open")
}

async fn pub_sub_and_wildcards(shards: usize) {
    let server = TestServer::start(shards);
    let clients = connections(&server, 6).await;
    let mut exact = clients[0].subscribe("orders.new").await.unwrap();
    let mut star = clients[1].subscribe("orders.*").await.unwrap();
    let mut gt = clients[2].subscribe("orders.>").await.unwrap();
    for c in &clients[..3] {
        common::sync(c).await;
    }
    let publisher = &clients[5];
    publisher.publish("orders.new", "1".into()).await.unwrap();
    publisher
        .publish("orders.eu.new", "2".into())
        .await
        .unwrap();
    publisher.publish("orders.old", "3".into()).await.unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(next(&mut exact).await.payload, "1");
    assert_eq!(next(&mut star).await.payload, "1");
    assert_eq!(next(&mut star).await.payload, "3");
    let got: Vec<_> = [
        next(&mut gt).await,
        next(&mut gt).await,
        next(&mut gt).await,
    ]
    .into_iter()
    .map(|m| m.payload)
    .collect();
    assert_eq!(got, vec!["1", "2", "3"], "order of one publisher is kept");
    // nothing else arrives: a marker after the messages is the next thing seen
    publisher.publish("orders.new", "end".into()).await.unwrap();
    assert_eq!(next(&mut exact).await.payload, "end");
}
both_shard_counts!(pub_sub, pub_sub_and_wildcards);

async fn many_messages_in_order_across_shards(shards: usize) {
    let server = TestServer::start(shards);
    let clients = connections(&server, 8).await;
    let mut subs = Vec::new();
    for c in &clients[..4] {
        subs.push(c.subscribe("stream.x").await.unwrap());
        common::sync(c).await;
    }
    const N: usize = 5000;
    for i in 0..N {
        clients[7]
            .publish("stream.x", i.to_string().into())
            .await
            .unwrap();
    }
    clients[7].flush().await.unwrap();
    for sub in &mut subs {
        for i in 0..N {
            assert_eq!(next(sub).await.payload, i.to_string());
        }
    }
}
both_shard_counts!(ordering, many_messages_in_order_across_shards);

async fn queue_group_delivers_each_message_once(shards: usize) {
    let server = TestServer::start(shards);
    let clients = connections(&server, 9).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut plain = clients[8].subscribe("work").await.unwrap();
    for (member, c) in clients[..6].iter().enumerate() {
        let work = c.queue_subscribe("work", "workers".into()).await.unwrap();
        let marker = c.subscribe(format!("done.{member}")).await.unwrap();
        common::sync(c).await;
        let tx = tx.clone();
        let mut both = futures::stream::select(work, marker);
        tokio::spawn(async move {
            while let Some(m) = both.next().await {
                let _ = tx.send((member, m.payload));
            }
        });
    }
    common::sync(&clients[8]).await;
    const N: usize = 600;
    let publisher = &clients[7];
    for i in 0..N {
        publisher
            .publish("work", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let members = each_once(&mut rx, N).await;
    assert!(members > 1, "work is spread over members");
    for _ in 0..N {
        next(&mut plain).await;
    }
    // No late duplicates: a marker to each member comes after everything the
    // publisher sent that member before it, so nothing but markers is left.
    for member in 0..6 {
        let subject = format!("done.{member}");
        publisher.publish(subject, "marker".into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    only_markers(&mut rx, 6).await;
}

type Deliveries = tokio::sync::mpsc::UnboundedReceiver<(usize, bytes::Bytes)>;

/// Takes `n` deliveries, each payload once; how many members took part.
async fn each_once(rx: &mut Deliveries, n: usize) -> usize {
    let mut seen = HashSet::new();
    let mut members = HashSet::new();
    for _ in 0..n {
        let (member, payload) = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        assert!(
            seen.insert(payload.clone()),
            "message {payload:?} delivered twice"
        );
        members.insert(member);
    }
    members.len()
}

/// Takes deliveries until every one of `members` has had its marker; anything
/// else is a message that came twice.
async fn only_markers(rx: &mut Deliveries, members: usize) {
    let mut marked = HashSet::new();
    while marked.len() < members {
        let (member, payload) = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        assert_eq!(payload, "marker", "a queue message arrived twice");
        marked.insert(member);
    }
}

/// The checks above catch a late duplicate (one that arrives after all the
/// messages were seen once).
#[tokio::test]
#[should_panic(expected = "a queue message arrived twice")]
async fn a_late_duplicate_is_caught() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (member, payload) in [(0, "1"), (1, "2"), (1, "1"), (0, "marker"), (1, "marker")] {
        tx.send((member, bytes::Bytes::from(payload))).unwrap();
    }
    each_once(&mut rx, 2).await;
    only_markers(&mut rx, 2).await;
}

both_shard_counts!(queue_groups, queue_group_delivers_each_message_once);

async fn request_reply_across_shards(shards: usize) {
    let server = TestServer::start(shards);
    let clients = connections(&server, 4).await;
    let mut service = clients[0].subscribe("svc.echo").await.unwrap();
    common::sync(&clients[0]).await;
    let responder = clients[0].clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            let reply = m.reply.unwrap();
            responder.publish(reply, m.payload).await.unwrap();
        }
    });
    for (i, c) in clients[1..].iter().enumerate() {
        let answer = timeout(WAIT, c.request("svc.echo", format!("hi {i}").into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.payload, format!("hi {i}"));
    }
}
both_shard_counts!(request_reply, request_reply_across_shards);

async fn no_responders_for_requests_nobody_serves(shards: usize) {
    let server = TestServer::start(shards);
    let client = connect(&server).await;
    let err = timeout(WAIT, client.request("nobody.home", "x".into()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}
both_shard_counts!(no_responders, no_responders_for_requests_nobody_serves);

async fn headers_travel_with_messages(shards: usize) {
    let server = TestServer::start(shards);
    let clients = connections(&server, 4).await;
    let mut sub = clients[0].subscribe("h").await.unwrap();
    common::sync(&clients[0]).await;
    let mut headers = HeaderMap::new();
    headers.insert("X-Trace", "abc");
    headers.insert("Nats-Msg-Id", "42");
    clients[3]
        .publish_with_headers("h", headers, "body".into())
        .await
        .unwrap();
    clients[3].flush().await.unwrap();
    let m = next(&mut sub).await;
    assert_eq!(m.payload, "body");
    let h = m.headers.expect("headers");
    assert_eq!(h.get("X-Trace").unwrap().as_str(), "abc");
    assert_eq!(
        h.get(async_nats::header::NATS_MESSAGE_ID).unwrap().as_str(),
        "42"
    );
}
both_shard_counts!(headers, headers_travel_with_messages);

async fn unsubscribe_and_auto_unsubscribe(shards: usize) {
    let server = TestServer::start(shards);
    let clients = connections(&server, 3).await;
    let mut sub = clients[0].subscribe("auto").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    common::sync(&clients[0]).await;
    for i in 0..5 {
        clients[2]
            .publish("auto", i.to_string().into())
            .await
            .unwrap();
    }
    clients[2].flush().await.unwrap();
    for i in 0..3 {
        assert_eq!(next(&mut sub).await.payload, i.to_string());
    }
    assert!(
        timeout(WAIT, sub.next()).await.unwrap().is_none(),
        "subscription ends after 3"
    );
    let listed = server.json("/subsz?subs=1");
    let subjects: Vec<&str> = listed["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.iter().any(|s| s.starts_with("$SYS.")),
        "{subjects:?}"
    );
    assert!(
        !subjects.contains(&"auto"),
        "the subscription ended: {subjects:?}"
    );
}
both_shard_counts!(unsubscribe, unsubscribe_and_auto_unsubscribe);

async fn echo_off_skips_own_messages(shards: usize) {
    let server = TestServer::start(shards);
    let quiet = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(server.url())
        .await
        .unwrap();
    let other = connect(&server).await;
    let mut mine = quiet.subscribe("e").await.unwrap();
    common::sync(&quiet).await;
    quiet.publish("e", "self".into()).await.unwrap();
    common::sync(&quiet).await;
    other.publish("e", "other".into()).await.unwrap();
    other.flush().await.unwrap();
    assert_eq!(next(&mut mine).await.payload, "other");
}
both_shard_counts!(echo, echo_off_skips_own_messages);

async fn user_and_password_from_flags(shards: usize) {
    let server = TestServer::with_shards(shards)
        .arg("--user")
        .arg("alice")
        .arg("--pass")
        .arg("s3cret")
        .start();
    let ok = async_nats::ConnectOptions::new()
        .user_and_password("alice".into(), "s3cret".into())
        .connect(server.url())
        .await;
    assert!(ok.is_ok());
    let bad = async_nats::ConnectOptions::new()
        .user_and_password("alice".into(), "wrong".into())
        .connect(server.url());
    let err = timeout(WAIT, bad)
        .await
        .unwrap()
        .expect_err("a wrong password must not connect");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
    let mut raw = common::Raw::connect(server.port);
    assert_eq!(raw.info["auth_required"], true);
    raw.send(b"CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"nope\"}\r\nPING\r\n");
    assert_eq!(raw.line(), "-ERR 'Authorization Violation'");
    assert!(raw.closed_by_server());
}
both_shard_counts!(auth_flags, user_and_password_from_flags);

/// A PONG is a barrier, as on nats-server: once a publisher has its PONG, the
/// subscriber's socket already holds what it published before the PING, wherever
/// the two connections sit. Eight publishers on two shards: nearly surely some sit
/// on the other shard than the subscriber.
#[test]
fn pong_comes_after_every_subscriber_has_the_messages() {
    pong_is_a_barrier(TestServer::start(2));
}

/// The same with shards that spin before they park (`--spin_us`), which changes
/// how a message crossing shards is picked up.
#[test]
fn pong_is_a_barrier_with_spinning_shards() {
    pong_is_a_barrier(
        TestServer::with_shards(2)
            .args(&["--spin_us", "100"])
            .start(),
    );
}

fn pong_is_a_barrier(server: TestServer) {
    use std::io::Read;
    const TRIES: usize = 1000;
    let mut sub = common::Raw::connect(server.port);
    sub.send(b"CONNECT {\"verbose\":false}\r\nSUB t 1\r\nPING\r\n");
    assert_eq!(sub.line(), "PONG");
    let mut pubs: Vec<common::Raw> = (0..8).map(|_| common::Raw::connect(server.port)).collect();
    for p in &mut pubs {
        p.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
        assert_eq!(p.line(), "PONG");
    }
    let expected = b"MSG t 1 2\r\nhi\r\n";
    sub.stream.set_nonblocking(true).unwrap();
    let mut late = 0;
    for i in 0..TRIES {
        let count = pubs.len();
        let p = &mut pubs[i % count];
        p.send(b"PUB t 2\r\nhi\r\nPING\r\n");
        assert_eq!(p.line(), "PONG");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = sub.stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got != expected {
            late += 1;
            // Take the late message before the next try.
            sub.stream.set_nonblocking(false).unwrap();
            let mut rest = vec![0u8; expected.len() - got.len()];
            sub.stream.read_exact(&mut rest).unwrap();
            sub.stream.set_nonblocking(true).unwrap();
        }
    }
    assert_eq!(late, 0, "{late} of {TRIES} messages came after the PONG");
}
