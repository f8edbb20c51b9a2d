//! Core clustering: the seed document's walkthrough, full mesh by gossip, one-hop
//! forwarding, queue groups and request/reply across servers, failover, faults, and
//! mixed clusters with nats-server. Each with --shards 1 and --shards 2.

mod common;

use async_nats::Subscriber;
use common::TestServer;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

struct Node {
    server: TestServer,
    cluster_port: u16,
}

impl Node {
    fn start(shards: usize, name: &str, seed: Option<u16>) -> Node {
        Self::start_with(shards, name, seed, None)
    }

    fn start_with(shards: usize, name: &str, seed: Option<u16>, binary: Option<&str>) -> Node {
        Self::start_in(shards, name, seed, binary, Some("test-cluster"))
    }

    /// `cluster_name: None`: no name given; servers settle on one among themselves.
    fn start_in(
        shards: usize,
        name: &str,
        seed: Option<u16>,
        binary: Option<&str>,
        cluster_name: Option<&str>,
    ) -> Node {
        let mut b = TestServer::with_shards(shards)
            .arg("-n")
            .arg(name)
            .arg("-cluster")
            .arg("nats://127.0.0.1:{cluster}");
        if let Some(cluster) = cluster_name {
            b = b.arg("--cluster_name").arg(cluster);
        }
        if let Some(seed) = seed {
            b = b.arg("-routes").arg(&format!("nats://127.0.0.1:{seed}"));
        }
        if let Some(bin) = binary {
            b = b.binary(bin);
        }
        let server = b.start();
        Node {
            cluster_port: server.cluster_port,
            server,
        }
    }

    fn routes(&self) -> u64 {
        self.server.json("/routez")["num_routes"].as_u64().unwrap()
    }
}

/// Three servers as in the seed document: A is the seed, B and C point at it.
fn seed_cluster(shards: usize) -> Vec<Node> {
    let a = Node::start(shards, "A", None);
    let seed = a.cluster_port;
    vec![
        a,
        Node::start(shards, "B", Some(seed)),
        Node::start(shards, "C", Some(seed)),
    ]
}

async fn wait_mesh(nodes: &[&Node]) {
    let want = nodes.len() as u64 - 1;
    let what = format!("a full mesh of {} servers", nodes.len());
    common::wait_until(&what, WAIT, || async move {
        nodes.iter().all(|n| n.routes() == want)
    })
    .await;
}

async fn connect(node: &Node) -> async_nats::Client {
    async_nats::connect(node.server.url()).await.unwrap()
}

/// Publishes probes on `subject` until `sub` sees one: interest has crossed the
/// routes. Other messages `sub` gets meanwhile are dropped; later probes may still
/// arrive, so callers count other subjects.
async fn probe(publisher: &async_nats::Client, sub: &mut Subscriber, subject: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        publisher
            .publish(subject.to_string(), "probe".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        // Only a probe shows the interest: a late message on another subject the
        // subscription matches (sent before a route broke) does not.
        let window = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(Some(m)) = tokio::time::timeout_at(window, sub.next()).await {
            if m.subject.as_str() == subject {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "interest in {subject} never arrived"
        );
    }
}

/// Collects payloads on `data_subject` until `count` arrived, then a little more
/// to let duplicates show.
async fn collect(sub: &mut Subscriber, data_subject: &str, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < count {
        let left = deadline - tokio::time::Instant::now();
        let m = timeout(left, sub.next())
            .await
            .expect("messages in time")
            .unwrap();
        if m.subject.as_str() == data_subject {
            got.push(String::from_utf8(m.payload.to_vec()).unwrap());
        }
    }
    while let Ok(Some(m)) = timeout(Duration::from_millis(300), sub.next()).await {
        if m.subject.as_str() == data_subject {
            got.push(String::from_utf8(m.payload.to_vec()).unwrap());
        }
    }
    got
}

/// Each publisher sends `n` messages `{tag}-{i}` on `subject` and flushes; returns
/// every payload sent.
async fn publish_tagged<'a>(
    publishers: impl IntoIterator<Item = (String, &'a async_nats::Client)>,
    subject: &str,
    n: usize,
) -> HashSet<String> {
    let mut expected = HashSet::new();
    for (tag, p) in publishers {
        for i in 0..n {
            p.publish(subject.to_string(), format!("{tag}-{i}").into())
                .await
                .unwrap();
            expected.insert(format!("{tag}-{i}"));
        }
        p.flush().await.unwrap();
    }
    expected
}

fn assert_exactly_once(got: &[String], expected: &HashSet<String>) {
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "duplicates delivered");
    assert_eq!(&unique, expected);
}

async fn seed_walkthrough_each_message_once(shards: usize) {
    let nodes = seed_cluster(shards);
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let sub_client = connect(&nodes[0]).await;
    let mut sub = sub_client.subscribe("a1.>").await.unwrap();
    common::sync(&sub_client).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.server.url()).collect();
    let mut pubs = HashMap::new();
    for (tag, node) in ["A", "B", "C"].iter().zip(&nodes) {
        pubs.insert(tag.to_string(), connect(node).await);
    }
    let all: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    pubs.insert("ALL".into(), async_nats::connect(all).await.unwrap());
    for p in pubs.values() {
        probe(p, &mut sub, "a1.probe").await;
    }
    let expected = publish_tagged(pubs.iter().map(|(t, p)| (t.clone(), p)), "a1.data", 200).await;
    let got = collect(&mut sub, "a1.data", expected.len()).await;
    assert_exactly_once(&got, &expected);
    // the connect URLs of all three servers reach the clients
    let info = pubs["B"].server_info();
    assert_eq!(info.connect_urls.len(), 3, "{:?}", info.connect_urls);
}
both_cluster_shard_counts!(seed_walkthrough, seed_walkthrough_each_message_once);

async fn seed_is_not_special_once_meshed(shards: usize) {
    let mut nodes = seed_cluster(shards);
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    nodes[0].server.kill();
    let b = connect(&nodes[1]).await;
    let c = connect(&nodes[2]).await;
    let mut sub = b.subscribe("after.>").await.unwrap();
    common::sync(&b).await;
    probe(&c, &mut sub, "after.probe").await;
    for i in 0..50 {
        c.publish("after.data", i.to_string().into()).await.unwrap();
    }
    c.flush().await.unwrap();
    let got = collect(&mut sub, "after.data", 50).await;
    assert_eq!(got, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(nodes[1].routes(), 1);
}
both_cluster_shard_counts!(seed_death, seed_is_not_special_once_meshed);

async fn queue_group_across_servers(shards: usize) {
    let nodes = seed_cluster(shards);
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut members = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let c = connect(node).await;
        let mut sub = c.queue_subscribe("work.>", "workers".into()).await.unwrap();
        common::sync(&c).await;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let _ = tx.send((i, m.subject.to_string(), m.payload));
            }
        });
        members.push(c);
    }
    // each server must know about every member before counting
    let publishers: Vec<_> = futures::future::join_all(nodes.iter().map(connect)).await;
    let mut seen_members = HashSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen_members.len() < 3 {
        for p in &publishers {
            p.publish("work.probe", "p".into()).await.unwrap();
            p.flush().await.unwrap();
        }
        while let Ok(Some((i, _, _))) = timeout(Duration::from_millis(50), rx.recv()).await {
            seen_members.insert(i);
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
    const N: usize = 150;
    for (s, p) in publishers.iter().enumerate() {
        for i in 0..N {
            p.publish("work.data", format!("{s}-{i}").into())
                .await
                .unwrap();
        }
        p.flush().await.unwrap();
    }
    let mut got = Vec::new();
    let mut by_member = HashMap::new();
    while got.len() < 3 * N {
        let (member, subject, payload) = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        if subject == "work.data" {
            got.push(String::from_utf8(payload.to_vec()).unwrap());
            *by_member.entry(member).or_insert(0) += 1;
        }
    }
    while let Ok(Some((_, subject, payload))) = timeout(Duration::from_millis(300), rx.recv()).await
    {
        if subject == "work.data" {
            got.push(String::from_utf8(payload.to_vec()).unwrap());
        }
    }
    let expected: HashSet<String> = (0..3)
        .flat_map(|s| (0..N).map(move |i| format!("{s}-{i}")))
        .collect();
    assert_exactly_once(&got, &expected);
    assert_eq!(by_member.len(), 3, "every member got work: {by_member:?}");
    drop(members);
}
both_cluster_shard_counts!(queue_groups, queue_group_across_servers);

/// Answers every request on `subject` with its own payload, once the server has the
/// subscription.
async fn echo(responder: &async_nats::Client, subject: &str) -> tokio::task::JoinHandle<()> {
    let mut service = responder.subscribe(subject.to_string()).await.unwrap();
    common::sync(responder).await;
    let r = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            r.publish(m.reply.unwrap(), m.payload).await.unwrap();
        }
    })
}

async fn request_reply_across_servers(shards: usize) {
    let nodes = seed_cluster(shards);
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let responder = connect(&nodes[0]).await;
    let _serving = echo(&responder, "svc.echo").await;
    for node in &nodes[1..] {
        let c = connect(node).await;
        let client = &c;
        common::wait_until("the responder", WAIT, || async move {
            client.request("svc.echo", "ready?".into()).await.is_ok()
        })
        .await;
        let answers = futures::future::join_all(
            (0..50).map(|i| c.request("svc.echo", format!("{i}").into())),
        )
        .await;
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a.unwrap().payload, format!("{i}"));
        }
    }
}
both_cluster_shard_counts!(request_reply, request_reply_across_servers);

async fn client_fails_over_and_resubscribes(shards: usize) {
    let mut nodes = seed_cluster(shards);
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nodes[1].server.url())
        .await
        .unwrap();
    let mut sub = client.subscribe("fo.>").await.unwrap();
    common::sync(&client).await;
    assert_eq!(client.server_info().connect_urls.len(), 3);
    nodes[1].server.kill();
    let publisher = connect(&nodes[2]).await;
    // the client reconnects to A or C by itself and subscribes again
    probe(&publisher, &mut sub, "fo.probe").await;
    publisher
        .publish("fo.data", "after failover".into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let got = collect(&mut sub, "fo.data", 1).await;
    assert_eq!(got, vec!["after failover"]);
}
both_cluster_shard_counts!(failover, client_fails_over_and_resubscribes);

async fn five_servers_from_one_seed(shards: usize) {
    let seed = Node::start(shards, "S1", None);
    let port = seed.cluster_port;
    let mut nodes = vec![seed];
    for i in 2..=5 {
        nodes.push(Node::start(shards, &format!("S{i}"), Some(port)));
    }
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let last = connect(&nodes[4]).await;
    let mut sub = last.subscribe("five.>").await.unwrap();
    common::sync(&last).await;
    for node in &nodes[..4] {
        let p = connect(node).await;
        probe(&p, &mut sub, "five.probe").await;
    }
}
both_cluster_shard_counts!(five_servers, five_servers_from_one_seed);

/// A TCP proxy between two servers' route ports, which the test can cut.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<u32>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cuts) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    continue;
                };
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let (mut a, mut b) = (inbound, outbound);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }

    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn route_cut_mid_stream_reforms_without_dups_or_reorder(shards: usize) {
    let a = Node::start(shards, "A", None);
    let proxy = Proxy::start(a.cluster_port).await;
    let b = Node::start(shards, "B", Some(proxy.port));
    wait_mesh(&[&a, &b]).await;
    let sub_client = connect(&a).await;
    let mut sub = sub_client.subscribe("cut.>").await.unwrap();
    common::sync(&sub_client).await;
    let publisher = connect(&b).await;
    probe(&publisher, &mut sub, "cut.probe").await;
    let mut seq = 0u64;
    let mut got = Vec::new();
    for _ in 0..200 {
        seq += 1;
        publisher
            .publish("cut.data", seq.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    receive_until(&mut sub, seq, &mut got).await;
    assert_eq!(got, (1..=200).collect::<Vec<u64>>());
    proxy.cut();
    // what is in flight when the route breaks may be lost (at most once), but
    // nothing may come twice or out of order
    for _ in 0..200 {
        seq += 1;
        publisher
            .publish("cut.data", seq.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    wait_mesh(&[&a, &b]).await;
    probe(&publisher, &mut sub, "cut.probe").await;
    let last = seq + 1;
    publisher
        .publish("cut.data", last.to_string().into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    receive_until(&mut sub, last, &mut got).await;
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "duplicated or reordered: {got:?}"
    );
}

async fn receive_until(sub: &mut Subscriber, last: u64, got: &mut Vec<u64>) {
    loop {
        let m = timeout(WAIT, sub.next()).await.unwrap().unwrap();
        if m.subject.as_str() != "cut.data" {
            continue;
        }
        let n: u64 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        got.push(n);
        if n == last {
            return;
        }
    }
}
both_cluster_shard_counts!(
    route_cut,
    route_cut_mid_stream_reforms_without_dups_or_reorder
);

async fn garbage_on_the_route_port_is_dropped(shards: usize) {
    let nodes = seed_cluster(shards);
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let mut junk = std::net::TcpStream::connect(("127.0.0.1", nodes[0].cluster_port)).unwrap();
    junk.set_read_timeout(Some(WAIT)).unwrap();
    use std::io::{Read, Write};
    junk.write_all(b"HELLO THERE\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = junk.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains("-ERR"), "the route port answered {text:?}");
    common::wait_for("the log line", WAIT, || {
        nodes[0].server.log().contains("Route protocol error")
    });
    // the cluster carries on
    let a = connect(&nodes[0]).await;
    let mut sub = a.subscribe("still.>").await.unwrap();
    common::sync(&a).await;
    let c = connect(&nodes[2]).await;
    probe(&c, &mut sub, "still.probe").await;
    assert_eq!(nodes[0].routes(), 2);
}
both_cluster_shard_counts!(route_garbage, garbage_on_the_route_port_is_dropped);

// ----- mixed clusters with nats-server ---------------------------------------------

fn nats_server() -> &'static str {
    let path = "nats-server";
    let found = std::process::Command::new(path)
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found,
        "interop tests need Debian's nats-server on PATH (apt-get install nats-server)"
    );
    path
}

async fn exercise(nodes: &[Node]) {
    wait_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let clients: Vec<_> = futures::future::join_all(nodes.iter().map(connect)).await;
    // pub/sub: every server's publisher reaches every server's subscriber once
    let mut subs = Vec::new();
    for c in &clients {
        subs.push(c.subscribe("mix.>").await.unwrap());
        common::sync(c).await;
    }
    for p in &clients {
        for s in &mut subs {
            probe(p, s, "mix.probe").await;
        }
    }
    let tagged = clients.iter().enumerate().map(|(i, p)| (i.to_string(), p));
    let expected = publish_tagged(tagged, "mix.data", 50).await;
    for s in &mut subs {
        let got = collect(s, "mix.data", expected.len()).await;
        assert_exactly_once(&got, &expected);
    }
    // request/reply both ways
    let responder = clients[0].clone();
    let mut svc = responder.subscribe("mix.svc").await.unwrap();
    common::sync(&responder).await;
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            responder
                .publish(m.reply.unwrap(), m.payload)
                .await
                .unwrap();
        }
    });
    for c in &clients[1..] {
        common::wait_until("a reply across the mixed cluster", WAIT, || async move {
            let reply = c.request("mix.svc", "hi".into()).await;
            reply.map(|r| assert_eq!(r.payload, "hi")).is_ok()
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_natrix_seed_with_nats_server_members() {
    let bin = nats_server();
    let a = Node::start(2, "A", None);
    let seed = a.cluster_port;
    let b = Node::start_with(2, "B", Some(seed), Some(bin));
    let c = Node::start_with(2, "C", Some(seed), Some(bin));
    exercise(&[a, b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_nats_server_seed_with_natrix_members() {
    let bin = nats_server();
    let a = Node::start_with(2, "A", None, Some(bin));
    let seed = a.cluster_port;
    let b = Node::start(2, "B", Some(seed));
    let c = Node::start(1, "C", Some(seed));
    exercise(&[a, b, c]).await;
}

/// The cluster name each server reports.
fn cluster_name(node: &Node) -> String {
    let varz = node.server.json("/varz");
    varz["cluster"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Without a configured cluster name, natrix and nats-server settle on one (as
/// nats-server does: a dynamic name gives way to a configured or greater one)
/// and deliver everywhere.
async fn mixed_without_a_name(nats_server_seed: bool) {
    let bin = nats_server();
    let seed_bin = nats_server_seed.then_some(bin);
    let a = Node::start_in(2, "A", None, seed_bin, None);
    let seed = Some(a.cluster_port);
    let mut nodes = vec![a];
    for (name, binary) in [("B", None), ("C", None), ("D", Some(bin))] {
        let binary = if nats_server_seed { None } else { binary };
        nodes.push(Node::start_in(2, name, seed, binary, None));
    }
    let nodes_ref: Vec<&Node> = nodes.iter().collect();
    common::wait_until("one cluster name", WAIT, || {
        let nodes = &nodes_ref;
        async move {
            let names: HashSet<String> = nodes.iter().map(|n| cluster_name(n)).collect();
            names.len() == 1 && nodes.iter().all(|n| n.routes() == nodes.len() as u64 - 1)
        }
    })
    .await;
    exercise(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_without_a_cluster_name_natrix_seed() {
    mixed_without_a_name(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_without_a_cluster_name_nats_server_seed() {
    mixed_without_a_name(true).await;
}

#[test]
fn a_silent_route_connection_is_closed_after_the_auth_timeout() {
    let node = Node::start(1, "A", None);
    let stream = std::net::TcpStream::connect(("127.0.0.1", node.cluster_port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    assert!(lines[0].starts_with("INFO "), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "-ERR 'Authentication Timeout'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_cluster_name_is_refused_with_a_log_line() {
    let a = Node::start(1, "A", None);
    let b = TestServer::with_shards(1)
        .arg("-n")
        .arg("B")
        .arg("-cluster")
        .arg("nats://127.0.0.1:{cluster}")
        .arg("--cluster_name")
        .arg("other-cluster")
        .arg("-routes")
        .arg(&format!("nats://127.0.0.1:{}", a.cluster_port))
        .start();
    common::wait_for("the refusal in a log", WAIT, || {
        let both = a.server.log() + &b.log();
        both.contains("Rejecting connection, cluster name")
    });
    assert_eq!(a.routes(), 0);
    assert_eq!(b.json("/routez")["num_routes"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_advertise_is_what_other_servers_hand_out() {
    let a = Node::start(1, "A", None);
    let advertised = "natrix-b.example:4222";
    let b = TestServer::with_shards(1)
        .arg("-n")
        .arg("B")
        .arg("-cluster")
        .arg("nats://127.0.0.1:{cluster}")
        .arg("--cluster_name")
        .arg("test-cluster")
        .arg("--client_advertise")
        .arg(advertised)
        .arg("-routes")
        .arg(&format!("nats://127.0.0.1:{}", a.cluster_port))
        .start();
    common::wait_for("the route", WAIT, || b.json("/routez")["num_routes"] == 1);
    let client = connect(&a).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !client
        .server_info()
        .connect_urls
        .iter()
        .any(|u| u == advertised)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            client.server_info().connect_urls
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two servers of two shards each, meshed, with every shard's pool connection up.
async fn pooled_pair() -> (Node, Node) {
    let start = |seed: Option<u16>| {
        let mut b = TestServer::with_shards(2)
            .arg("-D")
            .arg("-cluster")
            .arg("nats://127.0.0.1:{cluster}")
            .arg("--cluster_name")
            .arg("pool");
        if let Some(seed) = seed {
            b = b.arg("-routes").arg(&format!("nats://127.0.0.1:{seed}"));
        }
        let server = b.start();
        Node {
            cluster_port: server.cluster_port,
            server,
        }
    };
    let a = start(None);
    let b = start(Some(a.cluster_port));
    wait_mesh(&[&a, &b]).await;
    for node in [&a, &b] {
        common::wait_for("a pool connection", WAIT, || {
            node.server.log().contains("pool connection to")
        });
        // The other server's shard 1 dialed it; our shard 1 reads it.
        common::wait_for("a pool connection read on its shard", WAIT, || {
            node.server.log().contains("shard 1 - pool connection from")
        });
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_dials_its_own_pool_connection_and_messages_arrive_once() {
    let (a, b) = pooled_pair().await;
    let sub_client = connect(&b).await;
    let mut sub = sub_client.subscribe("pool.>").await.unwrap();
    common::sync(&sub_client).await;
    // publishers spread over A's shards by the kernel
    let publishers: Vec<_> = futures::future::join_all((0..8).map(|_| connect(&a))).await;
    for p in &publishers {
        probe(p, &mut sub, "pool.probe").await;
    }
    let tagged = publishers
        .iter()
        .enumerate()
        .map(|(i, p)| (i.to_string(), p));
    let expected = publish_tagged(tagged, "pool.data", 100).await;
    let got = collect(&mut sub, "pool.data", expected.len()).await;
    assert_exactly_once(&got, &expected);
}

/// A client that subscribes to a fresh inbox and at once publishes a request with it
/// gets the reply from a responder on another server, every time: the inbox's
/// interest reaches that server before the request does, whichever shard the
/// client is on (its pool connection carries both, in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_inbox_gets_its_reply_across_servers_every_time() {
    let (a, b) = pooled_pair().await;
    let responder = connect(&b).await;
    let serving = echo(&responder, "svc.fresh").await;
    // The service's interest has reached A once a request gets an answer.
    let first = connect(&a).await;
    let client = &first;
    common::wait_until("the responder", WAIT, || async move {
        client.request("svc.fresh", "ready?".into()).await.is_ok()
    })
    .await;
    // Requesters spread over A's shards by the kernel.
    let requesters: Vec<_> = futures::future::join_all((0..8).map(|_| connect(&a))).await;
    let mut lost = Vec::new();
    for (i, c) in requesters.iter().enumerate() {
        for n in 0..50 {
            let inbox = c.new_inbox();
            let mut answer = c.subscribe(inbox.clone()).await.unwrap();
            let body = format!("{i}.{n}");
            c.publish_with_reply("svc.fresh", inbox, body.clone().into())
                .await
                .unwrap();
            match timeout(Duration::from_secs(5), answer.next()).await {
                Ok(Some(m)) => assert_eq!(m.payload, body),
                _ => lost.push(body),
            }
        }
    }
    serving.abort();
    assert!(
        lost.is_empty(),
        "{} of 400 replies lost: {lost:?}",
        lost.len()
    );
}
