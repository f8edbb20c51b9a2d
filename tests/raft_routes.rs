//! The JetStream meta group over the route connections: three natrix servers with
//! JetStream and a cluster agree on one meta leader (`/jsz`), elect another when it
//! is killed, and take the restarted one back from its store. In a cluster with a
//! stock nats-server, the natrix servers form their group without it, and core
//! messages still cross every route. Each with --shards 1 and --shards 2.

mod common;

use common::{free_port, wait_for, TestServer};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::time::timeout;

const FORM_WAIT: Duration = Duration::from_secs(20);
const FAILOVER_WAIT: Duration = Duration::from_secs(10);

/// One member's fixed identity: name, ports and store, the same across restarts.
struct Member {
    name: String,
    port: u16,
    http: u16,
    cluster_port: u16,
    store: PathBuf,
}

fn members(n: usize, store: &Path) -> Vec<Member> {
    (0..n)
        .map(|i| Member {
            name: format!("n{}", i + 1),
            port: free_port(),
            http: free_port(),
            cluster_port: free_port(),
            store: store.join(format!("n{}", i + 1)),
        })
        .collect()
}

/// A config as an operator writes it for a JetStream cluster: every member lists
/// the routes of all (its own included).
fn config(me: &Member, all: &[Member], jetstream: bool) -> String {
    let routes: Vec<String> = all
        .iter()
        .map(|m| format!("nats-route://127.0.0.1:{}", m.cluster_port))
        .collect();
    let js = if jetstream {
        format!(
            "jetstream {{ store_dir: {:?} }}\n",
            me.store.display().to_string()
        )
    } else {
        String::new()
    };
    format!(
        "server_name: {}\nlisten: 127.0.0.1:{{port}}\nhttp: 127.0.0.1:{{http}}\n{js}cluster {{\n  name: js-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
        me.name,
        me.cluster_port,
        routes.join(", ")
    )
}

fn start(shards: usize, me: &Member, all: &[Member]) -> TestServer {
    TestServer::with_shards(shards)
        .config(&config(me, all, true))
        .ports(me.port, me.http)
        .start()
}

/// The meta leader this server reports, if any.
fn meta_leader(s: &TestServer) -> Option<String> {
    let (status, body) = s.http_get("/jsz");
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["meta_cluster"]["leader"].as_str().map(str::to_string)
}

/// Waits until every server reports the same leader, one for which `ok` holds.
fn wait_agreed_leader(
    servers: &[&TestServer],
    timeout: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    let mut agreed = None;
    wait_for("an agreed meta leader", timeout, || {
        let leaders: Vec<Option<String>> = servers.iter().map(|s| meta_leader(s)).collect();
        agreed = leaders[0]
            .clone()
            .filter(|l| ok(l) && leaders.iter().all(|x| x.as_deref() == Some(l.as_str())));
        agreed.is_some()
    });
    agreed.unwrap()
}

async fn three_servers_elect_fail_over_and_rejoin(shards: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let m = members(3, tmp.path());
    let mut servers: Vec<Option<TestServer>> =
        m.iter().map(|me| Some(start(shards, me, &m))).collect();
    let refs: Vec<&TestServer> = servers.iter().flatten().collect();
    let begun = Instant::now();
    let leader = wait_agreed_leader(&refs, FORM_WAIT, |_| true);
    eprintln!("meta leader {leader} after {:?}", begun.elapsed());
    // A server can hear the leader before the group's configuration reaches it.
    wait_for(
        "every server knows the meta group's three voters",
        FORM_WAIT,
        || {
            refs.iter()
                .all(|s| s.json("/jsz")["meta_cluster"]["cluster_size"] == 3)
        },
    );

    let jsz = refs[0].json("/jsz");
    assert!(jsz["server_id"]
        .as_str()
        .is_some_and(|id| id.starts_with('N')));
    assert!(jsz["now"].as_str().is_some());
    assert_eq!(jsz["meta_cluster"]["name"], "js-test");
    assert_eq!(jsz["meta_cluster"]["cluster_size"], 3);
    assert_eq!(jsz["meta_cluster"]["peer"].as_str().map(str::len), Some(8));
    // A storage node offers JetStream to its clients.
    let raw = common::Raw::connect(refs[0].port);
    assert_eq!(raw.info.get("jetstream"), Some(&serde_json::json!(true)));
    drop(raw);

    // Kill the leader: the other two elect another.
    let dead = m.iter().position(|me| me.name == leader).unwrap();
    servers[dead].take().unwrap().kill();
    let killed_at = Instant::now();
    let refs: Vec<&TestServer> = servers.iter().flatten().collect();
    let new_leader = wait_agreed_leader(&refs, FAILOVER_WAIT, |l| l != leader);
    eprintln!(
        "new meta leader {new_leader} after {:?}",
        killed_at.elapsed()
    );

    // Restart it from its store: it rejoins and follows the new leader.
    servers[dead] = Some(start(shards, &m[dead], &m));
    let restarted = servers[dead].as_ref().unwrap();
    wait_for(
        "the restarted server to reopen its group",
        FAILOVER_WAIT,
        || restarted.log().contains("reopened the stored group"),
    );
    assert!(!restarted.log().contains("bootstrapped"));
    let refs: Vec<&TestServer> = servers.iter().flatten().collect();
    let back = wait_agreed_leader(&refs, FAILOVER_WAIT, |_| true);
    eprintln!("after the restart all agree on {back}");
    for s in &refs {
        assert_eq!(s.json("/jsz")["meta_cluster"]["cluster_size"], 3);
    }
}

both_cluster_shard_counts!(meta_group, three_servers_elect_fail_over_and_rejoin);

#[test]
fn a_clustered_jetstream_server_needs_a_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natrix"))
        .args(["-p", &free_port().to_string(), "-js", "-sd"])
        .arg(tmp.path())
        .args(["-cluster", &format!("nats://127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jetstream cluster requires `server_name` to be set"),
        "{err}"
    );
    let named = std::process::Command::new(env!("CARGO_BIN_EXE_natrix"))
        .args(["-p", &free_port().to_string(), "-js", "-n", "A", "-sd"])
        .arg(tmp.path())
        .args(["-cluster", &format!("nats://127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!named.status.success());
    let err = String::from_utf8_lossy(&named.stderr);
    assert!(
        err.contains("jetstream cluster requires `cluster.name` to be set"),
        "{err}"
    );
}

// ----- with a stock nats-server in the cluster ---------------------------------------

async fn core_message_crosses(from: &TestServer, to: &TestServer, subject: &str) {
    let publisher = async_nats::connect(from.url()).await.unwrap();
    let subscriber = async_nats::connect(to.url()).await.unwrap();
    let mut sub = subscriber.subscribe(subject.to_string()).await.unwrap();
    common::sync(&subscriber).await;
    let deadline = Instant::now() + FORM_WAIT;
    loop {
        publisher
            .publish(subject.to_string(), "hi".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(m)) = timeout(Duration::from_millis(100), sub.next()).await {
            assert_eq!(m.payload, "hi");
            return;
        }
        assert!(Instant::now() < deadline, "{subject} never crossed");
    }
}

async fn natrix_meta_group_beside_nats_server(shards: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let m = members(3, tmp.path());
    let a = start(shards, &m[0], &m);
    let b = start(shards, &m[1], &m);
    let stock = TestServer::with_shards(1)
        .binary("nats-server")
        .config(&config(&m[2], &m, false))
        .ports(m[2].port, m[2].http)
        .start();
    let leader = wait_agreed_leader(&[&a, &b], FORM_WAIT, |_| true);
    assert!(leader == "n1" || leader == "n2", "{leader}");
    assert_eq!(a.json("/jsz")["meta_cluster"]["cluster_size"], 2);
    wait_for("a full mesh", FORM_WAIT, || {
        [&a, &b, &stock]
            .iter()
            .all(|s| s.json("/routez")["num_routes"] == 2)
    });
    for (from, to) in [(&a, &stock), (&stock, &b), (&b, &a)] {
        core_message_crosses(from, to, "mixed.core").await;
    }
    // nats-server never saw an operation it does not know
    assert!(!stock.log().contains("Unknown Protocol"), "{}", stock.log());
    assert_eq!(stock.json("/routez")["num_routes"], 2);
}

both_cluster_shard_counts!(with_nats_server, natrix_meta_group_beside_nats_server);

// ----- bad frames ----------------------------------------------------------------------

/// A fake natrix peer on the route port: a frame with a bad checksum and an
/// oversized RAFT operation are dropped with a log line, and the route stays up.
#[test]
fn bad_raft_frames_are_dropped_and_the_route_stays_up() {
    use std::io::{BufRead, BufReader, Write};
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::with_shards(1)
        .config(&format!(
            "server_name: solo\nlisten: 127.0.0.1:{{port}}\nhttp: 127.0.0.1:{{http}}\njetstream {{ store_dir: {:?} }}\ncluster {{\n  name: js-test\n  listen: 127.0.0.1:{{cluster}}\n}}\n",
            tmp.path().display().to_string()
        ))
        .start();
    wait_agreed_leader(&[&server], FORM_WAIT, |l| l == "solo");
    let mut peer = std::net::TcpStream::connect(("127.0.0.1", server.cluster_port)).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let info = serde_json::json!({
        "server_id": "NFAKEPEER", "server_name": "fake", "cluster": "js-test",
        "natrix_raft": true, "natrix_node": 77,
    });
    write!(
        peer,
        "CONNECT {{\"cluster\":\"js-test\"}}\r\nINFO {info}\r\n"
    )
    .unwrap();
    let mut bad = natrix::raft::frame::encode(&natrix::raft::frame::Frame {
        from_node: 77,
        to_node: natrix::jetstream::node_id::node_id("solo"),
        incarnation: 1,
        items: vec![],
    });
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut out = Vec::new();
    natrix::route::proto::encode_raft(&mut out, &bad);
    let size = natrix::route::proto::RAFT_FRAME_MAX_BYTES + 1;
    out.extend_from_slice(format!("RAFT {size}\r\n").as_bytes());
    out.resize(out.len() + size, b'R');
    out.extend_from_slice(b"\r\nPING\r\n");
    peer.write_all(&out).unwrap();
    // The server may send this peer Raft frames (binary) too: it offers to add a
    // JetStream server without a meta group as a learner.
    let mut reader = BufReader::new(peer);
    let mut line = Vec::new();
    loop {
        line.clear();
        assert!(
            reader.read_until(b'\n', &mut line).unwrap() > 0,
            "route closed"
        );
        if line == b"PONG\r\n" {
            break;
        }
    }
    wait_for("both drops logged", FORM_WAIT, || {
        let log = server.log();
        log.contains("Dropping a bad Raft frame from node 77")
            && log.contains("Raft frame: too large")
    });
    assert_eq!(server.json("/routez")["num_routes"], 1);
}
