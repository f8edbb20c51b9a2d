//! Clustered JetStream through async-nats on real servers: R3 streams on 3 and 5
//! storage nodes, every acknowledged message on every replica, fail-over after the
//! leader is killed, quorum loss (nothing acknowledged) and recovery, full restarts
//! after SIGTERM and SIGKILL, step-downs of each kind, and a mixed cluster with a
//! plain natrix router and a nats-server 2.9.10 core node whose clients use
//! JetStream.

mod common;

use async_nats::jetstream;
use async_nats::HeaderMap;
use common::{free_port, wait_for, TestServer};
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FORM_WAIT: Duration = Duration::from_secs(30);
/// An API answer or a PubAck; generous, as many clusters run at once on a small
/// machine while the tests run.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
const STREAM: &str = "ORDERS";

struct Member {
    name: String,
    port: u16,
    http: u16,
    cluster_port: u16,
    store: Option<PathBuf>,
    /// More config lines (`server_tags`).
    extra: String,
    /// The `accounts` block and `system_account`.
    accounts: String,
}

fn members(storage: usize, plain: usize, dir: &Path) -> Vec<Member> {
    (0..storage + plain)
        .map(|i| Member {
            name: if i < storage {
                format!("n{}-c1", i + 1)
            } else {
                format!("p{}-c1", i - storage + 1)
            },
            port: free_port(),
            http: free_port(),
            cluster_port: free_port(),
            store: (i < storage).then(|| dir.join(format!("n{}", i + 1))),
            extra: String::new(),
            accounts: ACCOUNTS.to_string(),
        })
        .collect()
}

const ACCOUNTS: &str = "accounts {\n  SYS: { users: [ { user: admin, password: s3cr3t } ] }\n  APP: { jetstream: enabled, users: [ { user: app, password: app } ] }\n}\nsystem_account: SYS\n";

/// The JetStream clustering docs' node config: every member lists every route.
fn config(me: &Member, all: &[Member]) -> String {
    config_with_routes(me, all)
}

/// The shortest lame duck nats-server allows, so a test's clients are closed and
/// the server exits within 30 s (the default is 2 minutes).
const LAME_DUCK: &str = "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n";

/// A node config listing the routes of `routed` only.
fn config_with_routes(me: &Member, routed: &[Member]) -> String {
    let routes: Vec<String> = routed
        .iter()
        .map(|m| format!("nats-route://127.0.0.1:{}", m.cluster_port))
        .collect();
    let js = match &me.store {
        Some(dir) => format!(
            "jetstream {{ store_dir: {:?} }}\n",
            dir.display().to_string()
        ),
        None => String::new(),
    };
    format!(
        "server_name: {}\n{}{LAME_DUCK}listen: 127.0.0.1:{{port}}\nhttp: 127.0.0.1:{{http}}\n{js}cluster {{\n  name: C1\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n{}",
        me.name,
        me.extra,
        me.cluster_port,
        routes.join(", "),
        me.accounts
    )
}

fn start(me: &Member, all: &[Member]) -> TestServer {
    TestServer::with_shards(2)
        .config(&config(me, all))
        .ports(me.port, me.http)
        .start()
}

struct Cluster {
    members: Vec<Member>,
    servers: Vec<Option<TestServer>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(storage: usize, plain: usize) -> Cluster {
        Cluster::start_tagged(storage, plain, &[])
    }

    /// Storage node i gets `server_tags: tags[i]` (where given).
    fn start_tagged(storage: usize, plain: usize, tags: &[&str]) -> Cluster {
        Cluster::start_with(storage, plain, |i, m| {
            if let Some(t) = tags.get(i) {
                m.extra = format!("server_tags: {t}\n");
            }
        })
    }

    /// Each member's config changed by `change(index, member)` first.
    fn start_with(storage: usize, plain: usize, change: impl Fn(usize, &mut Member)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut members = members(storage, plain, dir.path());
        for (i, m) in members.iter_mut().enumerate() {
            change(i, m);
        }
        let servers = members.iter().map(|m| Some(start(m, &members))).collect();
        Cluster {
            members,
            servers,
            _dir: dir,
        }
    }

    fn index_of(&self, name: &str) -> usize {
        self.members.iter().position(|m| m.name == name).unwrap()
    }

    fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.members[i].port)
    }

    fn kill(&mut self, i: usize) {
        self.servers[i].take().expect("running").kill();
    }

    fn terminate(&mut self, i: usize) {
        let mut s = self.servers[i].take().expect("running");
        s.terminate();
        assert!(
            s.wait_exit(Duration::from_secs(10)).is_some(),
            "exits on SIGTERM"
        );
    }

    fn restart(&mut self, i: usize) {
        assert!(self.servers[i].is_none());
        self.servers[i] = Some(start(&self.members[i], &self.members));
    }

    fn logs(&self) -> String {
        self.running()
            .map(|s| s.log())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn running(&self) -> impl Iterator<Item = &TestServer> {
        self.servers.iter().flatten()
    }

    /// The replica of the stream on server `i` as its `/jsz` shows it: (messages, last seq).
    fn replica_state(&self, i: usize) -> Option<(u64, u64)> {
        let s = self.servers[i].as_ref()?;
        let (status, body) = s.http_get("/jsz?accounts=1&streams=1");
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let accounts = v["account_details"].as_array()?;
        accounts
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|d| d["name"] == STREAM)
            .map(|d| {
                (
                    d["state"]["messages"].as_u64().unwrap_or(0),
                    d["state"]["last_seq"].as_u64().unwrap_or(0),
                )
            })
    }

    /// Waits until every running storage node holds the same `(messages, last_seq)`,
    /// with at least `last_seq`; returns it.
    fn wait_replicas_agree(&self, at_least: u64) -> (u64, u64) {
        let storage: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].store.is_some() && self.servers[*i].is_some())
            .collect();
        let mut agreed = None;
        wait_for("the replicas agree", FORM_WAIT, || {
            let states: Vec<_> = storage.iter().map(|i| self.replica_state(*i)).collect();
            agreed = states[0].filter(|s| s.1 >= at_least && states.iter().all(|x| *x == Some(*s)));
            agreed.is_some()
        });
        agreed.unwrap()
    }

    /// Waits until every running storage node holds `(messages, last_seq)`.
    fn wait_replicas(&self, messages: u64, last_seq: u64) {
        let storage: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].store.is_some() && self.servers[*i].is_some())
            .collect();
        wait_for(
            "every replica holds the acknowledged messages",
            FORM_WAIT,
            || {
                storage
                    .iter()
                    .all(|i| self.replica_state(*i) == Some((messages, last_seq)))
            },
        );
    }
}

async fn connect(url: &str) -> (async_nats::Client, jetstream::Context) {
    let nc = async_nats::ConnectOptions::with_user_and_password("app".into(), "app".into())
        .retry_on_initial_connect()
        .connect(url)
        .await
        .expect("connect");
    let mut js = jetstream::new(nc.clone());
    js.set_timeout(REQUEST_WAIT);
    (nc, js)
}

async fn api(nc: &async_nats::Client, subject: &str, body: &str) -> Option<Value> {
    let reply = tokio::time::timeout(
        REQUEST_WAIT,
        nc.request(format!("$JS.API.{subject}"), body.to_string().into()),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice(&reply.payload).ok()
}

/// Waits until `$JS.API.INFO` answers (a meta leader exists).
async fn wait_js(nc: &async_nats::Client) -> bool {
    let begun = Instant::now();
    while begun.elapsed() < FORM_WAIT {
        if let Some(v) = api(nc, "INFO", "").await {
            if v.get("error").is_none() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn create_r3(nc: &async_nats::Client) -> Value {
    let body = format!(r#"{{"name":"{STREAM}","subjects":["orders.>"],"num_replicas":3}}"#);
    let v = api(nc, &format!("STREAM.CREATE.{STREAM}"), &body)
        .await
        .expect("create answered");
    assert!(v.get("error").is_none(), "create: {v}");
    v
}

/// A cluster of `storage` nodes whose R3 stream is ready; a client of node 0, and
/// the stream's info.
async fn with_r3_stream(
    storage: usize,
) -> (Cluster, async_nats::Client, jetstream::Context, Value) {
    let cl = Cluster::start(storage, 0);
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    create_r3(&nc).await;
    let info = stream_ready(&nc, None).await;
    (cl, nc, js, info)
}

/// Stream info once it has a leader and every replica is current.
async fn stream_ready(nc: &async_nats::Client, not_leader: Option<&str>) -> Value {
    stream_ready_with(nc, not_leader, 0).await
}

/// Stream info once it has a leader other than `not_leader` and all replicas but
/// `may_lag` are current.
async fn stream_ready_with(
    nc: &async_nats::Client,
    not_leader: Option<&str>,
    may_lag: usize,
) -> Value {
    let begun = Instant::now();
    while begun.elapsed() < FORM_WAIT {
        if let Some(v) = api(nc, &format!("STREAM.INFO.{STREAM}"), "").await {
            let leader = v["cluster"]["leader"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let replicas = v["cluster"]["replicas"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let lagging = replicas.iter().filter(|r| r["current"] != true).count();
            let current = lagging <= may_lag;
            if !leader.is_empty() && Some(leader.as_str()) != not_leader && current {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {STREAM} has no current leader within {FORM_WAIT:?}");
}

/// Creates the durable pull consumer `w` (explicit acks) on the stream.
async fn create_durable_w(nc: &async_nats::Client) {
    let consumer =
        r#"{"stream_name":"ORDERS","config":{"durable_name":"w","ack_policy":"explicit"}}"#;
    let c = api(nc, &format!("CONSUMER.CREATE.{STREAM}.w"), consumer)
        .await
        .unwrap();
    assert!(c.get("error").is_none(), "{c}");
}

/// The leader consumer `w` reports, once it is not `not`.
async fn consumer_leader(nc: &async_nats::Client, not: Option<&str>) -> String {
    let begun = Instant::now();
    while begun.elapsed() < FORM_WAIT {
        if let Some(v) = api(nc, &format!("CONSUMER.INFO.{STREAM}.w"), "").await {
            let leader = v["cluster"]["leader"].as_str().unwrap_or_default();
            if !leader.is_empty() && Some(leader) != not {
                return leader.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("consumer w has no leader (other than {not:?})");
}

fn leader_of(info: &Value) -> String {
    info["cluster"]["leader"]
        .as_str()
        .expect("a leader")
        .to_string()
}

/// Publishes `n` messages `prefix-i`, each until acknowledged (a Msg-Id makes a
/// retry safe); returns the sequence each got.
async fn publish_acked(js: &jetstream::Context, prefix: &str, n: usize) -> BTreeMap<u64, String> {
    let mut acked = BTreeMap::new();
    for i in 0..n {
        let payload = format!("{prefix}-{i}");
        let begun = Instant::now();
        loop {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", payload.as_str());
            let sent = js
                .publish_with_headers("orders.new", headers, payload.clone().into())
                .await;
            let ack = match sent {
                Ok(f) => f.await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match ack {
                Ok(ack) => {
                    assert_eq!(ack.stream, STREAM);
                    let before = acked.insert(ack.sequence, payload.clone());
                    assert!(
                        before.is_none(),
                        "sequence {} acknowledged twice",
                        ack.sequence
                    );
                    break;
                }
                Err(e) => {
                    assert!(
                        begun.elapsed() < FORM_WAIT,
                        "{payload} never acknowledged: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    acked
}

/// Stops the three servers (SIGKILL or SIGTERM) and starts them again; returns
/// once the stream has a leader and every replica holds the `acked` messages.
async fn restart_all(
    cl: &mut Cluster,
    kill: bool,
    acked: &BTreeMap<u64, String>,
) -> (async_nats::Client, jetstream::Context) {
    for i in 0..3 {
        if kill {
            cl.kill(i);
        } else {
            cl.terminate(i);
        }
    }
    for i in 0..3 {
        cl.restart(i);
    }
    let (nc, js) = connect(&cl.url(1)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    stream_ready(&nc, None).await;
    let last = *acked.keys().last().unwrap();
    cl.wait_replicas(acked.len() as u64, last);
    (nc, js)
}

/// Reads the whole stream through an ordered pull of every message.
async fn read_all(js: &jetstream::Context) -> BTreeMap<u64, String> {
    let stream = js.get_stream(STREAM).await.expect("stream");
    let last = stream.cached_info().state.last_sequence;
    let mut out = BTreeMap::new();
    for seq in 1..=last {
        let begun = Instant::now();
        loop {
            match stream.get_raw_message(seq).await {
                Ok(m) => {
                    out.insert(seq, String::from_utf8(m.payload.to_vec()).unwrap());
                    break;
                }
                Err(e) => {
                    assert!(begun.elapsed() < FORM_WAIT, "message {seq}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_acknowledged_message_survives_leader_loss_on_every_replica() {
    let mut cl = Cluster::start(3, 0);
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    let created = create_r3(&nc).await;
    assert_eq!(created["config"]["num_replicas"], 3);
    let info = stream_ready(&nc, None).await;
    assert_eq!(info["cluster"]["name"], "C1");
    assert_eq!(info["cluster"]["replicas"].as_array().unwrap().len(), 2);

    let mut acked = publish_acked(&js, "a", 200).await;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    cl.wait_replicas(200, 200);

    // Kill the stream's leader: another takes over, and nothing acked is lost.
    let old = leader_of(&info);
    let dead = cl.index_of(&old);
    cl.kill(dead);
    let survivor = (0..3).find(|i| *i != dead).unwrap();
    let (nc, js) = connect(&cl.url(survivor)).await;
    let failover_begun = Instant::now();
    acked.extend(publish_acked(&js, "b", 1).await);
    eprintln!("fail-over took {:?}", failover_begun.elapsed());
    acked.extend(publish_acked(&js, "c", 100).await);
    let last = *acked.keys().last().unwrap();

    cl.restart(dead);
    cl.wait_replicas(acked.len() as u64, last);
    let info = stream_ready(&nc, None).await;
    assert_ne!(leader_of(&info), "");
    let stored = read_all(&js).await;
    assert_eq!(
        stored, acked,
        "the stream holds exactly what was acknowledged"
    );
    drop(nc);
}

#[tokio::test]
async fn without_a_quorum_nothing_is_acknowledged_and_it_recovers() {
    let mut cl = Cluster::start(3, 0);
    let (nc, _) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    // The server left alone is the meta leader: it must see itself cut off.
    let mut meta_leader = String::new();
    wait_for("server 0 knows the meta leader", FORM_WAIT, || {
        let jsz = cl.running().next().unwrap().json("/jsz");
        meta_leader = jsz["meta_cluster"]["leader"]
            .as_str()
            .unwrap_or_default()
            .into();
        !meta_leader.is_empty()
    });
    let kept = cl.index_of(&meta_leader);
    let (nc, js) = connect(&cl.url(kept)).await;
    create_r3(&nc).await;
    stream_ready(&nc, None).await;
    let mut acked = publish_acked(&js, "before", 20).await;

    let others: Vec<usize> = (0..3).filter(|i| *i != kept).collect();
    for i in &others {
        cl.kill(*i);
    }
    let mut unknown = Vec::new();
    let mut impatient = jetstream::new(nc.clone());
    impatient.set_timeout(Duration::from_secs(1));
    for i in 0..10 {
        let payload = format!("lost-{i}");
        if let Ok(f) = impatient
            .publish("orders.new", payload.clone().into())
            .await
        {
            let r = f.await;
            assert!(r.is_err(), "{payload} acknowledged without a quorum: {r:?}");
        }
        // Not acknowledged, so its outcome is unknown: a leader that still held it
        // in its log may commit it once the others are back.
        unknown.push(payload);
    }
    // Cut off from its quorum for 10 s, the meta leader left answers what only a
    // meta leader would with nats-server's 10008 (before, as if nothing happened).
    let begun = Instant::now();
    loop {
        let asked = nc.request("$JS.API.INFO", "".into());
        if let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(1), asked).await {
            let v: Value = serde_json::from_slice(&answer.payload).unwrap();
            if v["error"]["err_code"] == 10008 {
                assert_eq!(v["error"]["code"], 503, "{v}");
                break;
            }
        }
        assert!(
            begun.elapsed() < FORM_WAIT,
            "never unavailable:\n{}",
            cl.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in &others {
        cl.restart(*i);
    }
    stream_ready(&nc, None).await;
    acked.extend(publish_acked(&js, "after", 20).await);
    let (_, last) = cl.wait_replicas_agree(*acked.keys().last().unwrap());
    let stored = read_all(&js).await;
    assert_eq!(stored.len() as u64, last);
    for (seq, payload) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(payload),
            "acknowledged message {seq} lost"
        );
    }
    for (seq, payload) in &stored {
        if acked.get(seq) != Some(payload) {
            assert!(
                unknown.contains(payload),
                "{payload} at {seq} was never published"
            );
        }
    }
    let mut payloads: Vec<&String> = stored.values().collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), stored.len(), "a message stored twice");
}

#[tokio::test]
async fn a_whole_cluster_restarts_after_sigterm_and_after_sigkill() {
    let mut cl = Cluster::start(3, 0);
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    create_r3(&nc).await;
    stream_ready(&nc, None).await;
    let mut acked = publish_acked(&js, "one", 100).await;
    // More streams, so that a restart reopens several (each must come back beside
    // its group, once).
    for i in 1..=3 {
        let body = format!(r#"{{"name":"EXTRA{i}","subjects":["extra{i}.>"],"num_replicas":3}}"#);
        let v = api(&nc, &format!("STREAM.CREATE.EXTRA{i}"), &body)
            .await
            .expect("created");
        assert!(v.get("error").is_none(), "{v}");
    }
    drop(nc);

    for how in ["SIGTERM", "SIGKILL"] {
        let (_nc, js) = restart_all(&mut cl, how == "SIGKILL", &acked).await;
        assert_eq!(read_all(&js).await, acked, "after {how}");
        for s in cl.running() {
            assert_eq!(
                s.json("/jsz")["streams"],
                4,
                "each replica reopened once after {how}"
            );
        }
        acked.extend(publish_acked(&js, how, 50).await);
    }
}

#[tokio::test]
async fn stream_consumer_and_meta_leaders_step_down() {
    let (mut cl, nc, js, info) = with_r3_stream(3).await;
    let old = leader_of(&info);
    let r = api(&nc, &format!("STREAM.LEADER.STEPDOWN.{STREAM}"), "")
        .await
        .unwrap();
    assert_eq!(r["success"], true, "{r}");
    let info = stream_ready(&nc, Some(&old)).await;
    assert_ne!(leader_of(&info), old);
    publish_acked(&js, "s", 10).await;

    create_durable_w(&nc).await;
    let before = consumer_leader(&nc, None).await;
    let r = api(&nc, &format!("CONSUMER.LEADER.STEPDOWN.{STREAM}.w"), "")
        .await
        .unwrap();
    assert_eq!(r["success"], true, "{r}");
    let mut after = consumer_leader(&nc, Some(&before)).await;
    assert_ne!(after, before);

    // A consumer led by a replica that does not lead the stream hears of new
    // messages: a waiting pull request gets one published after it.
    let stream_leader = leader_of(&stream_ready(&nc, None).await);
    while after == stream_leader {
        let r = api(&nc, &format!("CONSUMER.LEADER.STEPDOWN.{STREAM}.w"), "")
            .await
            .unwrap();
        assert_eq!(r["success"], true, "{r}");
        after = consumer_leader(&nc, Some(&after)).await;
    }
    let inbox = nc.new_inbox();
    let mut pulled = nc.subscribe(inbox.clone()).await.unwrap();
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.w");
    nc.publish_with_reply(next.clone(), inbox.clone(), r#"{"batch":10}"#.into())
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::timeout(REQUEST_WAIT, pulled.next())
            .await
            .expect("the stored ten")
            .unwrap();
    }
    let waiting = r#"{"batch":1,"expires":15000000000}"#;
    nc.publish_with_reply(next, inbox, waiting.into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    publish_acked(&js, "late", 1).await;
    let late = tokio::time::timeout(REQUEST_WAIT, pulled.next())
        .await
        .expect("the late one")
        .unwrap();
    assert_eq!(&late.payload[..], b"late-0");

    // The meta leader steps down for the system account only.
    let denied = api(&nc, "META.LEADER.STEPDOWN", "").await.unwrap();
    assert!(denied.get("error").is_some(), "{denied}");
    let meta_of = |s: &TestServer| {
        s.json("/jsz")["meta_cluster"]["leader"]
            .as_str()
            .map(str::to_string)
    };
    let old_meta = meta_of(cl.running().next().unwrap()).unwrap();
    let sys = async_nats::ConnectOptions::with_user_and_password("admin".into(), "s3cr3t".into())
        .connect(cl.url(0))
        .await
        .unwrap();
    // The new connection's reply subject may not have reached the meta leader's
    // server yet (interest travels on the routes): ask again until answered.
    let mut answer = None;
    for _ in 0..5 {
        answer = api(&sys, "META.LEADER.STEPDOWN", "").await;
        if answer.is_some() {
            break;
        }
    }
    let r = answer.expect("the meta leader answers the system account");
    assert_eq!(r["success"], true, "{r}");
    wait_for("another meta leader", FORM_WAIT, || {
        cl.running()
            .all(|s| meta_of(s).is_some_and(|l| l != old_meta))
    });

    // Lame duck mode (SIGUSR2) on the stream's leader: it hands the stream to
    // another replica before it exits.
    let info = stream_ready(&nc, None).await;
    let ldm = cl.index_of(&leader_of(&info));
    let pid = cl.servers[ldm].as_ref().unwrap().pid();
    // A client of the lame duck server is closed and reconnects to another one.
    let (on_ldm, _) = connect(&cl.url(ldm)).await;
    // Connected (it learns the other servers' URLs then) before lame duck mode
    // stops the server accepting.
    on_ldm.flush().await.unwrap();
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGUSR2) };
    let client = (0..3).find(|i| *i != ldm).unwrap();
    let (other, js) = connect(&cl.url(client)).await;
    let info = stream_ready_with(&other, Some(&cl.members[ldm].name), 2).await;
    assert_ne!(leader_of(&info), cl.members[ldm].name);
    publish_acked(&js, "after-ldm", 5).await;
    let mut gone = cl.servers[ldm].take().unwrap();
    assert!(
        gone.wait_exit(Duration::from_secs(60)).is_some(),
        "lame duck closes its clients and exits"
    );
    tokio::time::timeout(REQUEST_WAIT, on_ldm.flush())
        .await
        .expect("the lame duck's client reconnects elsewhere")
        .unwrap();
}

#[tokio::test]
async fn five_nodes_place_three_replicas_and_any_node_serves_clients() {
    let cl = Cluster::start(5, 0);
    let (nc, _) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    create_r3(&nc).await;
    let info = stream_ready(&nc, None).await;
    let mut peers: Vec<String> = info["cluster"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    peers.push(leader_of(&info));
    peers.sort();
    peers.dedup();
    assert_eq!(peers.len(), 3, "three distinct replicas: {peers:?}");
    // A client on a server without a replica publishes and reads.
    let outside = (0..5)
        .find(|i| !peers.contains(&cl.members[*i].name))
        .unwrap();
    let (_, js) = connect(&cl.url(outside)).await;
    let acked = publish_acked(&js, "five", 50).await;
    assert_eq!(read_all(&js).await, acked);
}

#[tokio::test]
async fn a_plain_router_and_a_nats_server_node_forward_jetstream() {
    let reference = "nats-server";
    if std::process::Command::new(reference)
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("nats-server 2.9.10 is needed (apt-get install nats-server)");
    }
    let mut cl = Cluster::start(3, 1);
    // A stock nats-server joins the same cluster as a core node.
    let port = free_port();
    let cport = free_port();
    let routes: Vec<String> = cl
        .members
        .iter()
        .map(|m| format!("nats-route://127.0.0.1:{}", m.cluster_port))
        .collect();
    let conf = format!(
        "server_name: g1-c1\nlisten: 127.0.0.1:{port}\ncluster {{\n  name: C1\n  listen: 127.0.0.1:{cport}\n  routes: [{}]\n}}\n{ACCOUNTS}",
        routes.join(", ")
    );
    let go = TestServer::with_shards(1)
        .binary(reference)
        .config(&conf)
        .ports(port, free_port())
        .start();
    for url in [cl.url(3), format!("nats://127.0.0.1:{port}")] {
        let (nc, js) = connect(&url).await;
        assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
        if api(&nc, &format!("STREAM.INFO.{STREAM}"), "")
            .await
            .is_none_or(|v| v.get("error").is_some())
        {
            create_r3(&nc).await;
        }
        let info = stream_ready(&nc, None).await;
        let leader = leader_of(&info);
        assert!(leader.starts_with('n'), "a storage node leads: {leader}");
        eprintln!("publishing through {url}");
        publish_acked(&js, &url, 20).await;
    }
    let varz = cl.servers[3].as_ref().unwrap().json("/varz");
    assert!(
        varz["jetstream"]["config"].is_null(),
        "the plain node claims JetStream: {varz}"
    );
    cl.kill(3);
    drop(go);
}

/// Publishes `n` messages `prefix-i` pipelined (up to 256 acks outstanding);
/// every one must be acknowledged.
async fn publish_pipelined(
    js: &jetstream::Context,
    prefix: &str,
    n: usize,
) -> BTreeMap<u64, String> {
    publish_pipelined_to(js, prefix, n, |_| "orders.new".to_string()).await
}

/// Publishes `n` messages, message `i` to `subject(i)`, 256 in flight at a time;
/// the acknowledged ones by sequence.
async fn publish_pipelined_to(
    js: &jetstream::Context,
    prefix: &str,
    n: usize,
    subject: impl Fn(usize) -> String,
) -> BTreeMap<u64, String> {
    let mut acked = BTreeMap::new();
    let mut i = 0;
    while i < n {
        let mut waiting = Vec::new();
        for _ in 0..256.min(n - i) {
            let payload = format!("{prefix}-{i}");
            let ack = js
                .publish(subject(i), payload.clone().into())
                .await
                .expect("sent");
            waiting.push((payload, ack));
            i += 1;
        }
        for (payload, ack) in waiting {
            let ack = ack.await.unwrap_or_else(|e| panic!("{payload}: {e}"));
            assert!(acked.insert(ack.sequence, payload).is_none(), "acked twice");
        }
    }
    acked
}

#[tokio::test]
async fn a_compacted_group_log_catches_a_replica_up_and_restarts_whole() {
    let (mut cl, _nc, js, info) = with_r3_stream(3).await;
    // Past the compaction interval (8,192 entries) with every replica up.
    let mut acked = publish_pipelined(&js, "x", 9_000).await;
    let follower = (0..3)
        .find(|i| cl.members[*i].name != leader_of(&info))
        .unwrap();
    cl.kill(follower);
    let client = (0..3).find(|i| *i != follower).unwrap();
    let (nc, js) = connect(&cl.url(client)).await;
    acked.extend(publish_pipelined(&js, "y", 1_000).await);
    // The leader reports when it last heard from each replica (`active`, in ns):
    // the stopped one falls silent and is offline, the live one is neither.
    let dead = cl.members[follower].name.clone();
    let silent_ns = |info: &Value, name: &str| {
        info["cluster"]["replicas"]
            .as_array()
            .and_then(|r| r.iter().find(|p| p["name"] == name))
            .filter(|p| (p["offline"] == true) == (name == dead))
            .and_then(|p| p["active"].as_u64())
    };
    let begun = Instant::now();
    loop {
        let info = stream_ready_with(&nc, None, 1).await;
        let live = replica_names(&info)
            .into_iter()
            .find(|n| *n != dead && *n != leader_of(&info));
        let quiet = silent_ns(&info, &dead).is_some_and(|ns| ns >= 2_000_000_000);
        let heard = live.is_some_and(|n| silent_ns(&info, &n).is_some_and(|ns| ns < 2_000_000_000));
        if quiet && heard {
            break;
        }
        assert!(begun.elapsed() < FORM_WAIT, "{info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cl.restart(follower);
    cl.wait_replicas(10_000, 10_000);
    for i in 0..3 {
        cl.kill(i);
    }
    for i in 0..3 {
        cl.restart(i);
    }
    let (nc2, js) = connect(&cl.url(follower)).await;
    assert!(wait_js(&nc2).await, "no meta leader:\n{}", cl.logs());
    stream_ready(&nc2, None).await;
    cl.wait_replicas(10_000, 10_000);
    assert_eq!(read_all(&js).await, acked);
    drop(nc);
}

#[tokio::test]
async fn an_inactive_ephemeral_consumer_goes_from_every_replica() {
    let cl = Cluster::start(3, 0);
    let (nc, _) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    create_r3(&nc).await;
    stream_ready(&nc, None).await;
    let body = r#"{"stream_name":"ORDERS","config":{"ack_policy":"explicit","inactive_threshold":3000000000}}"#;
    let c = api(&nc, &format!("CONSUMER.CREATE.{STREAM}"), body)
        .await
        .unwrap();
    assert!(c.get("error").is_none(), "{c}");
    let names = || async {
        api(&nc, &format!("CONSUMER.NAMES.{STREAM}"), "")
            .await
            .map(|v| v["consumers"].as_array().map_or(0, Vec::len))
    };
    // The stream's leader lists it once it applied the creation (a moment later than
    // the meta leader's answer on a busy machine).
    let begun = Instant::now();
    while names().await != Some(1) {
        assert!(
            begun.elapsed() < Duration::from_secs(3),
            "the new consumer is not listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let begun = Instant::now();
    while names().await != Some(0) {
        assert!(begun.elapsed() < FORM_WAIT, "the inactive consumer stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = |s: &TestServer| s.json("/jsz")["consumers"].as_u64();
    wait_for("no replica keeps the consumer", FORM_WAIT, || {
        cl.running().all(|s| count(s) == Some(0))
    });
}

#[tokio::test]
async fn servers_given_only_a_seed_join_its_meta_group_as_voters() {
    let dir = tempfile::tempdir().unwrap();
    let m = members(3, 0, dir.path());
    // Seed 004's layout: the seed lists no route, the others only the seed's.
    let start_with = |me: &Member, routed: &[Member]| {
        TestServer::with_shards(2)
            .config(&config_with_routes(me, routed))
            .ports(me.port, me.http)
            .start()
    };
    let seed = start_with(&m[0], &[]);
    let others: Vec<TestServer> = m[1..].iter().map(|me| start_with(me, &m[..1])).collect();
    let all: Vec<&TestServer> = std::iter::once(&seed).chain(&others).collect();
    let meta = |s: &TestServer| s.json("/jsz")["meta_cluster"].clone();
    wait_for("one meta group of three voters", FORM_WAIT, || {
        let views: Vec<Value> = all.iter().map(|s| meta(s)).collect();
        views
            .iter()
            .all(|v| v["cluster_size"] == 3 && v["leader"].is_string())
            && views.iter().all(|v| v["leader"] == views[0]["leader"])
    });
    let logs = || all.iter().map(|s| s.log()).collect::<Vec<_>>().join("\n");
    assert!(
        !logs().contains("not in this server's meta group"),
        "{}",
        logs()
    );
    let (nc, js) = connect(&format!("nats://127.0.0.1:{}", m[2].port)).await;
    assert!(wait_js(&nc).await);
    create_r3(&nc).await;
    stream_ready(&nc, None).await;
    let acked = publish_acked(&js, "seeded", 20).await;
    assert_eq!(read_all(&js).await, acked);
}

#[tokio::test]
async fn expectations_and_msg_ids_count_what_is_being_replicated() {
    let cl = Cluster::start(3, 0);
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    create_r3(&nc).await;
    stream_ready(&nc, None).await;
    // Twenty copies of one Msg-Id in flight at once: one message stored, and every
    // acknowledgement names it.
    let mut pending = Vec::new();
    for _ in 0..20 {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", "once");
        pending.push(
            js.publish_with_headers("orders.new", h, "once".into())
                .await
                .unwrap(),
        );
    }
    let mut seqs = Vec::new();
    for p in pending {
        if let Ok(ack) = p.await {
            seqs.push(ack.sequence);
        }
    }
    assert!(!seqs.is_empty() && seqs.iter().all(|s| *s == 1), "{seqs:?}");
    // Twenty publishes expecting the stream's last sequence to be 1: one wins.
    let mut pending = Vec::new();
    for i in 0..20 {
        let mut h = HeaderMap::new();
        h.insert("Nats-Expected-Last-Sequence", "1");
        let p = js.publish_with_headers("orders.cas", h, format!("cas-{i}").into());
        pending.push(p.await.unwrap());
    }
    let mut won = 0;
    for p in pending {
        won += usize::from(p.await.is_ok());
    }
    assert_eq!(won, 1, "exactly one compare-and-set wins");
    let info = stream_ready(&nc, None).await;
    assert_eq!(info["state"]["messages"], 2);
}

/// The segment files of stream `STREAM` under a storage node's store directory.
fn stream_segments(store: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![store.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "seg")
                && path.to_string_lossy().contains(&format!("/{STREAM}/"))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Where the payload `payload` is in the stream's segment files: the file, and
/// its offset there.
fn find_payload(store: &Path, payload: &str) -> (PathBuf, u64) {
    for seg in stream_segments(store) {
        let bytes = std::fs::read(&seg).unwrap();
        if let Some(at) = bytes
            .windows(payload.len())
            .position(|w| w == payload.as_bytes())
        {
            return (seg, at as u64);
        }
    }
    panic!("no segment holds {payload}");
}

/// Flips one byte of the payload `payload` in the stream's segment files, in place
/// (the file stays as it is otherwise, so a running server may hold it open).
fn corrupt_a_record(store: &Path, payload: &str) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let (seg, at) = find_payload(store, payload);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[byte[0] ^ 0x5a]).unwrap();
    f.sync_all().unwrap();
}

/// A consumer's leader that reads a damaged record while it runs neither serves
/// nor skips it: it hands its leaderships on, cuts its store there and gets the
/// rest again from a peer; the consumer delivers every acknowledged message. A
/// message get on the stream's leader does the same.
#[tokio::test]
async fn a_record_found_damaged_on_read_is_delivered_from_another_replica() {
    let (cl, nc, js, _info) = with_r3_stream(3).await;
    let acked = publish_acked(&js, "a", 100).await;
    cl.wait_replicas(100, 100);
    create_durable_w(&nc).await;
    let reader = cl.index_of(&consumer_leader(&nc, None).await);
    corrupt_a_record(cl.members[reader].store.as_ref().unwrap(), "a-20");

    let pull: jetstream::consumer::PullConsumer = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_consumer("w")
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    let begun = Instant::now();
    while got.len() < acked.len() {
        assert!(
            begun.elapsed() < FORM_WAIT,
            "delivered {} of {}: missing {:?}\n{}",
            got.len(),
            acked.len(),
            acked
                .keys()
                .filter(|s| !got.contains_key(*s))
                .collect::<Vec<_>>(),
            cl.logs()
        );
        let fetched = pull
            .fetch()
            .max_messages(100)
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let Ok(mut batch) = fetched else { continue };
        while let Some(Ok(m)) = batch.next().await {
            let seq = m.info().unwrap().stream_sequence;
            got.insert(seq, String::from_utf8(m.payload.to_vec()).unwrap());
            let _ = m.ack().await;
        }
    }
    assert_eq!(got, acked);
    let log = cl.servers[reader].as_ref().unwrap().log();
    assert!(
        log.contains("damaged record at sequence 21 found on read"),
        "{log}"
    );
    // The damaged replica holds every message again.
    cl.wait_replicas(100, 100);
    wait_for("the damaged replica caught up", FORM_WAIT, || {
        let log = cl.servers[reader].as_ref().unwrap().log();
        log.contains("caught up through sequence")
    });

    // A message get that reads a damaged record on the stream's leader answers "no
    // message" (never the damaged bytes); that replica hands on and repairs, and the
    // next leader serves the message.
    let fresh = publish_acked(&js, "b", 10).await;
    // Later ones push these out of the store's unwritten tail, to be read from disk.
    publish_acked(&js, "c", 200).await;
    cl.wait_replicas(310, 310);
    let leader = cl.index_of(&leader_of(&stream_ready(&nc, None).await));
    let (&seq, payload) = fresh.iter().nth(5).unwrap();
    corrupt_a_record(cl.members[leader].store.as_ref().unwrap(), payload);
    let stream = js.get_stream(STREAM).await.unwrap();
    let begun = Instant::now();
    loop {
        match stream.get_raw_message(seq).await {
            Ok(m) => {
                assert_eq!(String::from_utf8(m.payload.to_vec()).unwrap(), *payload);
                break;
            }
            Err(e) => assert!(begun.elapsed() < FORM_WAIT, "message {seq}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = cl.servers[leader].as_ref().unwrap().log();
    let found = format!("damaged record at sequence {seq} found on read");
    assert!(log.contains(&found), "{log}");
    cl.wait_replicas(310, 310);
    drop(nc);
}

#[tokio::test]
async fn replicas_with_corrupt_records_are_repaired_from_the_group_log() {
    let (mut cl, nc, js, info) = with_r3_stream(3).await;
    let mut acked = publish_acked(&js, "a", 100).await;
    cl.wait_replicas(100, 100);
    let leader = cl.index_of(&leader_of(&info));
    // A record in the middle (the store is cut there), then the very first one (the
    // store starts again): each time every message comes back from the log.
    let followers = (0..3).filter(|i| *i != leader);
    for (round, (follower, damaged)) in followers.zip(["a-50", "a-0"]).enumerate() {
        cl.kill(follower);
        corrupt_a_record(cl.members[follower].store.as_ref().unwrap(), damaged);
        cl.restart(follower);
        let client = if follower == 0 { leader } else { 0 };
        let (_nc, js) = connect(&cl.url(client)).await;
        acked.extend(publish_acked(&js, &format!("r{round}"), 10).await);
        // Without the repair the damaged replica would hold one message less.
        let n = acked.len() as u64;
        cl.wait_replicas(n, n);
        assert!(
            cl.servers[follower]
                .as_ref()
                .unwrap()
                .log()
                .contains("to get them again from its group's log"),
            "the damage was found and repaired"
        );
    }
    let (_nc, js) = connect(&cl.url(leader)).await;
    assert_eq!(read_all(&js).await, acked);
    drop(nc);
}

#[tokio::test]
async fn a_corrupt_record_the_log_no_longer_holds_comes_from_a_peer() {
    let (mut cl, nc, js, info) = with_r3_stream(3).await;
    // Past the compaction interval: the group's log no longer holds the first ones.
    let mut acked = publish_pipelined(&js, "x", 9_000).await;
    cl.wait_replicas(9_000, 9_000);
    let leader = cl.index_of(&leader_of(&info));
    let mut followers = (0..3).filter(|i| *i != leader);
    let (damaged, other) = (followers.next().unwrap(), followers.next().unwrap());
    cl.kill(damaged);
    corrupt_a_record(cl.members[damaged].store.as_ref().unwrap(), "x-10");
    cl.restart(damaged);
    let (lnc, ljs) = connect(&cl.url(leader)).await;
    acked.extend(publish_acked(&ljs, "y", 10).await);
    cl.wait_replicas(9_010, 9_010);
    let log = cl.servers[damaged].as_ref().unwrap().log();
    assert!(log.contains("to get them again from a peer"), "{log}");
    assert!(log.contains("caught up through sequence"), "{log}");
    // Read through the repaired replica: the other follower goes, the leader hands
    // leadership to the only voter left.
    cl.kill(other);
    let (dnc, djs) = connect(&cl.url(damaged)).await;
    step_down_until(&lnc, &dnc, &cl.members[damaged].name).await;
    assert_eq!(read_all(&djs).await, acked);
    drop((nc, lnc, dnc));
}

/// Steps the stream's leader down (asked through `ask`) until `want` leads, as
/// `watch` sees it: a step-down right after a replica died may pick it (its
/// route not closed yet), and is asked again.
async fn step_down_until(ask: &async_nats::Client, watch: &async_nats::Client, want: &str) {
    let begun = Instant::now();
    loop {
        // Answered by whichever server leads, or not at all between two leaders.
        let _ = api(ask, &format!("STREAM.LEADER.STEPDOWN.{STREAM}"), "").await;
        let info = stream_ready_with(watch, None, 1).await;
        if leader_of(&info) == want {
            return;
        }
        assert!(begun.elapsed() < FORM_WAIT, "{want} never leads");
    }
}

/// The servers holding the stream's replicas, as its info names them.
fn replica_names(info: &Value) -> Vec<String> {
    let mut names: Vec<String> = info["cluster"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    names.push(leader_of(info));
    names.sort();
    names
}

impl Cluster {
    fn wait_replica_on(&self, i: usize, messages: u64, last_seq: u64) {
        wait_for("the replica holds the messages", FORM_WAIT, || {
            self.replica_state(i) == Some((messages, last_seq))
        });
    }
}

#[tokio::test]
async fn a_removed_peer_is_replaced_by_a_caught_up_server() {
    let (mut cl, nc, js, info) = with_r3_stream(5).await;
    // Past the compaction interval: the new replica needs a snapshot and a peer's store.
    let mut acked = publish_pipelined(&js, "x", 9_000).await;
    let before = replica_names(&info);
    let leader = leader_of(&info);
    let gone = before.iter().find(|n| **n != leader).unwrap().clone();

    let refused = api(
        &nc,
        &format!("STREAM.PEER.REMOVE.{STREAM}"),
        r#"{"peer":"nobody"}"#,
    )
    .await
    .unwrap();
    assert_eq!(refused["error"]["err_code"], 10040, "{refused}");
    let removed = api(
        &nc,
        &format!("STREAM.PEER.REMOVE.{STREAM}"),
        &format!(r#"{{"peer":"{gone}"}}"#),
    )
    .await
    .unwrap();
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(
        removed["type"],
        "io.nats.jetstream.api.v1.stream_remove_peer_response"
    );

    // The group has three members again, the removed server not among them (it is
    // listed while the group's leader has not yet removed it).
    let begun = Instant::now();
    let after = loop {
        let info = stream_ready(&nc, None).await;
        let names = replica_names(&info);
        if names.len() == 3 && !names.contains(&gone) {
            break names;
        }
        assert!(begun.elapsed() < FORM_WAIT, "still {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let added = after.iter().find(|n| !before.contains(n)).unwrap().clone();
    acked.extend(publish_acked(&js, "y", 10).await);
    let added_i = cl.index_of(&added);
    cl.wait_replica_on(added_i, 9_010, 9_010);
    wait_for("the removed server drops its replica", FORM_WAIT, || {
        cl.replica_state(cl.index_of(&gone)).is_none()
    });

    // Read through the new replica: the third one goes, the leader hands over.
    let third = after
        .iter()
        .find(|n| **n != leader && **n != added)
        .unwrap();
    let third_i = cl.index_of(third);
    cl.kill(third_i);
    let leader_i = cl.index_of(&leader);
    let (lnc, _) = connect(&cl.url(leader_i)).await;
    let (anc, ajs) = connect(&cl.url(added_i)).await;
    step_down_until(&lnc, &anc, &added).await;
    assert_eq!(read_all(&ajs).await, acked);
    drop((nc, lnc, anc));
}

#[tokio::test]
async fn a_stream_grows_from_one_replica_to_three_and_back() {
    let cl = Cluster::start(3, 0);
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    let body = format!(r#"{{"name":"{STREAM}","subjects":["orders.>"],"num_replicas":1}}"#);
    let v = api(&nc, &format!("STREAM.CREATE.{STREAM}"), &body)
        .await
        .unwrap();
    assert!(v.get("error").is_none(), "{v}");
    let mut acked = publish_acked(&js, "a", 100).await;
    let grow = format!(r#"{{"name":"{STREAM}","subjects":["orders.>"],"num_replicas":3}}"#);
    let v = api(&nc, &format!("STREAM.UPDATE.{STREAM}"), &grow)
        .await
        .unwrap();
    assert_eq!(v["config"]["num_replicas"], 3, "{v}");
    acked.extend(publish_acked(&js, "b", 10).await);
    cl.wait_replicas(110, 110);
    let info = stream_ready(&nc, None).await;
    assert_eq!(replica_names(&info).len(), 3);

    let shrink = format!(r#"{{"name":"{STREAM}","subjects":["orders.>"],"num_replicas":1}}"#);
    // Refused while the growth is still settling (its groups' leaders report).
    let begun = Instant::now();
    loop {
        let v = api(&nc, &format!("STREAM.UPDATE.{STREAM}"), &shrink)
            .await
            .unwrap();
        if v["config"]["num_replicas"] == 1 {
            break;
        }
        assert_eq!(v["error"]["err_code"], 10069, "{v}");
        assert!(begun.elapsed() < FORM_WAIT, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The two leaving servers stay voters until the leader removed them, then go.
    wait_for("two servers drop their replicas", FORM_WAIT, || {
        (0..3).filter(|i| cl.replica_state(*i).is_some()).count() == 1
    });
    let info = stream_ready(&nc, None).await;
    assert_eq!(replica_names(&info).len(), 1, "{info}");
    acked.extend(publish_acked(&js, "c", 10).await);
    assert_eq!(read_all(&js).await, acked);
}

/// A key-value-like stream (one message per subject) with more runs of deleted
/// messages than one catch-up batch or snapshot names (`catchup::RUNS_MAX`,
/// 16,384) grows from one replica to three. The new replicas are told of the
/// deletions in batches, and every replica ends with the same messages (one that
/// missed a deletion would hold one more); meanwhile the leader reports them not
/// current.
#[tokio::test]
async fn new_replicas_learn_more_deletions_than_one_batch_names() {
    const KEYS: usize = 34_000;
    let cl = Cluster::start(3, 0);
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    let config = |replicas: u32| {
        format!(
            r#"{{"name":"{STREAM}","subjects":["orders.>"],"max_msgs_per_subject":1,"num_replicas":{replicas}}}"#
        )
    };
    let v = api(&nc, &format!("STREAM.CREATE.{STREAM}"), &config(1))
        .await
        .unwrap();
    assert!(v.get("error").is_none(), "{v}");
    publish_pipelined_to(&js, "v1", KEYS, |i| format!("orders.k{i}")).await;
    // Every odd key again: its first message goes, between two kept ones.
    publish_pipelined_to(&js, "v2", KEYS / 2, |i| format!("orders.k{}", 2 * i + 1)).await;
    let last_seq = (KEYS + KEYS / 2) as u64;
    let v = api(&nc, &format!("STREAM.UPDATE.{STREAM}"), &config(3))
        .await
        .unwrap();
    assert_eq!(v["config"]["num_replicas"], 3, "{v}");
    // The leader reports a replica catching up from its store (its log is matched)
    // not current, with the messages it lacks; about 40 batches each.
    let begun = Instant::now();
    let catching_up = |r: &Value| {
        let lag = r["lag"].as_u64().unwrap_or(0);
        r["current"] == false && r["offline"] != true && lag > 0 && lag < last_seq
    };
    loop {
        let info = api(&nc, &format!("STREAM.INFO.{STREAM}"), "").await;
        let replicas = info.as_ref().map(|v| v["cluster"]["replicas"].clone());
        if replicas
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(catching_up))
        {
            break;
        }
        assert!(
            begun.elapsed() < FORM_WAIT,
            "never seen catching up: {replicas:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = leader_of(&stream_ready(&nc, None).await);
    cl.wait_replicas(KEYS as u64, last_seq);
    // A replica whose catch-up has not finished hands any leadership on: each new
    // one leads in turn once it has.
    for member in &cl.members {
        if member.name != first {
            step_down_until(&nc, &nc, &member.name).await;
        }
    }
    publish_pipelined_to(&js, "v3", 10, |i| format!("orders.new{i}")).await;
    cl.wait_replicas(KEYS as u64 + 10, last_seq + 10);
    let info = stream_ready(&nc, None).await;
    assert_eq!(info["state"]["num_deleted"], KEYS / 2, "{info}");
}

/// A consumer created on a stream the meta leader holds no replica of is answered
/// with its leader's counts: nats.go's KV history reads `num_pending` from the
/// create's answer, and took 0 for "no values". Its delete, and the stream's, are
/// answered once the replica's server let them go (nats.go's KV test found a
/// deleted bucket still there).
#[tokio::test]
async fn a_consumer_create_away_from_the_meta_leader_counts_what_is_pending() {
    let cl = Cluster::start_tagged(3, 0, &["[t1]", "[t2]", "[t3]"]);
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    let meta_leader = cl.running().next().unwrap().json("/jsz")["meta_cluster"]["leader"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let away = (0..3).find(|i| cl.members[*i].name != meta_leader).unwrap();
    let body = format!(
        r#"{{"name":"{STREAM}","subjects":["orders.>"],"num_replicas":1,"placement":{{"tags":["t{}"]}}}}"#,
        away + 1
    );
    let created = api(&nc, &format!("STREAM.CREATE.{STREAM}"), &body)
        .await
        .unwrap();
    assert!(created.get("error").is_none(), "{created}");
    let info = stream_ready(&nc, None).await;
    assert_eq!(
        replica_names(&info),
        [cl.members[away].name.clone()],
        "{info}"
    );
    publish_acked(&js, "p", 5).await;
    let consumer =
        r#"{"stream_name":"ORDERS","config":{"durable_name":"C","ack_policy":"explicit"}}"#;
    let answer = api(&nc, &format!("CONSUMER.CREATE.{STREAM}.C"), consumer)
        .await
        .expect("create answered");
    assert_eq!(
        answer["num_pending"], 5,
        "meta leader {meta_leader}: {answer}"
    );
    assert_eq!(
        answer["cluster"]["leader"],
        cl.members[away].name.as_str(),
        "{answer}"
    );

    // Deletes are answered once the server holding the replica let it go: asked
    // there at once, it no longer knows them.
    let (there, _) = connect(&cl.url(away)).await;
    let removals = [
        (
            format!("CONSUMER.DELETE.{STREAM}.C"),
            format!("CONSUMER.INFO.{STREAM}.C"),
            10014,
        ),
        (
            format!("STREAM.DELETE.{STREAM}"),
            format!("STREAM.INFO.{STREAM}"),
            10059,
        ),
    ];
    for (delete, info, not_found) in removals {
        let deleted = api(&there, &delete, "").await;
        assert_eq!(
            deleted.as_ref().map(|d| d["success"] == true),
            Some(true),
            "{deleted:?}"
        );
        let info = api(&there, &info, "").await.unwrap();
        assert_eq!(info["error"]["err_code"], not_found, "{info}");
    }
}

/// A push consumer's deliveries show the stored message's subject on every server,
/// the consumer's leader or not: across a route the subject rides on the ack
/// reply after an `@`, as nats-server carries it (a KV watch on another server
/// than its leader read its keys out of the delivery inbox).
#[tokio::test]
async fn push_deliveries_keep_their_subject_across_routes() {
    let (cl, nc, js, _) = with_r3_stream(3).await;
    publish_acked(&js, "pushed", 1).await;
    for i in 0..3 {
        let (client, _) = connect(&cl.url(i)).await;
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await.unwrap();
        client.flush().await.unwrap();
        let body = format!(
            r#"{{"stream_name":"{STREAM}","config":{{"deliver_subject":"{inbox}","ack_policy":"explicit"}}}}"#
        );
        let created = api(&client, &format!("CONSUMER.CREATE.{STREAM}"), &body)
            .await
            .expect("create answered");
        assert!(created.get("error").is_none(), "{created}");
        let msg = tokio::time::timeout(REQUEST_WAIT, sub.next())
            .await
            .expect("delivered")
            .unwrap();
        assert_eq!(msg.subject.as_str(), "orders.new", "on server {i}");
        let reply = msg.reply.expect("an ack reply");
        assert!(reply.starts_with("$JS.ACK.ORDERS."), "{reply}");
        assert!(!reply.contains('@'), "{reply}");
        assert_eq!(&msg.payload[..], b"pushed-0");
    }
    drop(nc);
}

/// `$JS.API.INFO` in a cluster counts what every server holds for the account,
/// each replica's bytes, as nats-server does (the servers report their usage to
/// each other every second).
#[tokio::test]
async fn account_info_counts_every_replica_in_the_cluster() {
    let (cl, nc, js, _) = with_r3_stream(3).await;
    publish_acked(&js, "usage", 20).await;
    cl.wait_replicas(20, 20);
    let info = stream_ready(&nc, None).await;
    let bytes = info["state"]["bytes"].as_u64().expect("stream bytes");
    assert!(bytes > 0, "{info}");
    let begun = Instant::now();
    loop {
        let account = api(&nc, "INFO", "").await.expect("account info");
        if account["storage"].as_u64() == Some(3 * bytes) {
            assert_eq!(account["streams"], 1, "{account}");
            assert_eq!(account["memory"], 0, "{account}");
            break;
        }
        assert!(
            begun.elapsed() < FORM_WAIT,
            "storage never {}: {account}",
            3 * bytes
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An account's `max_file` holds for what every server stores for it: an R3
/// stream's messages count three times, and a publish past the limit is refused
/// with nats-server's error, long before one server alone holds the limit.
#[tokio::test]
async fn an_account_limit_counts_every_replica_in_the_cluster() {
    const MAX_FILE: u64 = 6_000;
    const BATCH: u64 = 5;
    let cl = Cluster::start_with(3, 0, |_, m| {
        m.accounts = ACCOUNTS.replace(
            "APP: { jetstream: enabled,",
            &format!("APP: {{ jetstream: {{ max_file: {MAX_FILE} }},"),
        );
    });
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    create_r3(&nc).await;
    stream_ready(&nc, None).await;
    let mut refused = None;
    for batch in 0..100 {
        for i in 0..BATCH {
            match js
                .publish("orders.new", format!("{batch}-{i}").into())
                .await
            {
                Ok(ack) => match ack.await {
                    Ok(_) => continue,
                    Err(e) => refused = Some(e.to_string()),
                },
                Err(e) => refused = Some(e.to_string()),
            }
            break;
        }
        if refused.is_some() {
            break;
        }
        // Until every server's report of the batch has reached the leader.
        let bytes = stream_ready(&nc, None).await["state"]["bytes"]
            .as_u64()
            .unwrap();
        let begun = Instant::now();
        while api(&nc, "INFO", "")
            .await
            .and_then(|a| a["storage"].as_u64())
            != Some(3 * bytes)
        {
            assert!(
                begun.elapsed() < FORM_WAIT,
                "the usage reports never arrive"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let refused = refused.expect("never refused");
    assert!(
        refused.contains("10002") || refused.contains("resource limits exceeded"),
        "{refused}"
    );
    let info = stream_ready(&nc, None).await;
    let bytes = info["state"]["bytes"].as_u64().unwrap();
    let batch_bytes = BATCH * bytes / info["state"]["messages"].as_u64().unwrap();
    // Counted on one server alone, the limit would let 3 * MAX_FILE be stored in
    // all; the other servers' reports reach the stream's leader a batch or two late.
    assert!(
        3 * bytes < 2 * MAX_FILE && 3 * bytes + 3 * batch_bytes > MAX_FILE,
        "stored {bytes} bytes of a {MAX_FILE} limit for 3 replicas: {info}"
    );
}

#[tokio::test]
async fn a_removed_server_leaves_the_meta_group_and_its_replicas_move() {
    let (mut cl, nc, js, info) = with_r3_stream(4).await;
    let mut acked = publish_acked(&js, "a", 50).await;
    let before = replica_names(&info);
    let gone = before
        .iter()
        .find(|n| **n != leader_of(&info) && **n != cl.members[0].name)
        .unwrap()
        .clone();
    let gone_i = cl.index_of(&gone);
    cl.kill(gone_i);

    let denied = api(&nc, "SERVER.REMOVE", &format!(r#"{{"peer":"{gone}"}}"#)).await;
    assert!(
        denied.as_ref().is_none_or(|v| v.get("error").is_some()),
        "{denied:?}"
    );
    let sys = async_nats::ConnectOptions::with_user_and_password("admin".into(), "s3cr3t".into())
        .connect(cl.url(0))
        .await
        .unwrap();
    let ask = |body: String| {
        let sys = sys.clone();
        async move {
            // Asked again until the meta leader's server knows the reply subject.
            for _ in 0..5 {
                if let Some(v) = api(&sys, "SERVER.REMOVE", &body).await {
                    return v;
                }
            }
            panic!("SERVER.REMOVE not answered");
        }
    };
    let unknown = ask(r#"{"peer":"nobody"}"#.to_string()).await;
    assert_eq!(unknown["error"]["err_code"], 10044, "{unknown}");
    let removed = ask(format!(r#"{{"peer":"{gone}"}}"#)).await;
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(
        removed["type"],
        "io.nats.jetstream.api.v1.meta_server_remove_response"
    );

    // The meta group has three members; the stream's replicas are on the others.
    wait_for("the meta group shrinks", FORM_WAIT, || {
        cl.running()
            .all(|s| s.json("/jsz")["meta_cluster"]["cluster_size"] == 3)
    });
    let begun = Instant::now();
    let after = loop {
        let names = replica_names(&stream_ready_with(&nc, None, 0).await);
        if names.len() == 3 && !names.contains(&gone) {
            break names;
        }
        assert!(begun.elapsed() < FORM_WAIT, "still {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    acked.extend(publish_acked(&js, "b", 10).await);
    for name in &after {
        cl.wait_replica_on(cl.index_of(name), 60, 60);
    }
    assert_eq!(read_all(&js).await, acked);
    drop((nc, sys));
}

#[tokio::test]
async fn placement_tags_choose_the_servers() {
    let cl = Cluster::start_tagged(4, 0, &["[ssd, az1]", "[ssd]", "\"SSD,az2\"", "[hdd]"]);
    let (nc, _) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    let create = |name: &str, replicas: u32, placement: &str| {
        let nc = nc.clone();
        let body = format!(
            r#"{{"name":"{name}","subjects":["{name}.>"],"num_replicas":{replicas},"placement":{placement}}}"#
        );
        let name = name.to_string();
        async move {
            let created = api(&nc, &format!("STREAM.CREATE.{name}"), &body)
                .await
                .unwrap();
            if created.get("error").is_some() {
                return created;
            }
            // The info once the stream's leader is known.
            let begun = Instant::now();
            loop {
                let info = api(&nc, &format!("STREAM.INFO.{name}"), "").await;
                if let Some(info) = info.filter(|i| i["cluster"]["leader"].is_string()) {
                    return info;
                }
                assert!(begun.elapsed() < FORM_WAIT, "{name} has no leader");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let fast = create("FAST", 3, r#"{"tags":["ssd"]}"#).await;
    assert!(fast.get("error").is_none(), "{fast}");
    let mut names = replica_names(&fast);
    names.sort();
    assert_eq!(names, ["n1-c1", "n2-c1", "n3-c1"]);
    let slow = create("SLOW", 1, r#"{"tags":["hdd"]}"#).await;
    assert_eq!(replica_names(&slow), ["n4-c1"], "{slow}");
    let az = create("AZ", 2, r#"{"tags":["ssd","az1"]}"#).await;
    assert_eq!(az["error"]["err_code"], 10005, "one server has both: {az}");
    let elsewhere = create("ELSE", 1, r#"{"cluster":"C2"}"#).await;
    assert_eq!(elsewhere["error"]["err_code"], 10005, "{elsewhere}");
    let here = create("HERE", 1, r#"{"cluster":"C1","tags":["az2"]}"#).await;
    assert_eq!(replica_names(&here), ["n3-c1"], "{here}");
}

/// A restart replays the group's log from its last compaction: a purge or a delete
/// in it must not take away what was stored after it (a purge replayed whole
/// removed every later message before the fix).
#[tokio::test]
async fn a_restart_replays_purges_and_deletes_without_losing_later_messages() {
    let (mut cl, nc, js, _) = with_r3_stream(3).await;
    publish_acked(&js, "before", 5).await;
    let purged = api(&nc, &format!("STREAM.PURGE.{STREAM}"), "")
        .await
        .expect("purge answered");
    assert_eq!(purged["purged"], 5, "{purged}");
    let mut acked = publish_acked(&js, "after", 5).await;
    let first = *acked.keys().next().unwrap();
    let body = format!(r#"{{"seq":{first}}}"#);
    let deleted = api(&nc, &format!("STREAM.MSG.DELETE.{STREAM}"), &body)
        .await
        .expect("delete answered");
    assert_eq!(deleted["success"], true, "{deleted}");
    acked.remove(&first);
    // A delete of a sequence not stored yet fails, and must not take it later.
    let ahead = format!(r#"{{"seq":{}}}"#, first + 6);
    let refused = api(&nc, &format!("STREAM.MSG.DELETE.{STREAM}"), &ahead)
        .await
        .expect("delete answered");
    assert!(refused["error"]["code"].is_number(), "{refused}");
    acked.extend(publish_acked(&js, "later", 3).await);
    assert!(acked.contains_key(&(first + 6)), "{acked:?}");
    drop(nc);
    let (_nc, js) = restart_all(&mut cl, false, &acked).await;
    let stream = js.get_stream(STREAM).await.expect("stream");
    for (seq, payload) in &acked {
        let m = stream.get_raw_message(*seq).await.expect("kept");
        assert_eq!(&String::from_utf8(m.payload.to_vec()).unwrap(), payload);
    }
}

/// A stream placed on servers other than the meta leader: the create answers at
/// once, naming its leader, with nats-server's zero times (nats.go failed to parse
/// "" and the create waited 2 s for a replica that was never coming here); a list
/// shows each stream's state as its leader has it; updates parse in a client too.
#[tokio::test]
async fn streams_placed_away_from_the_meta_leader_parse_in_clients() {
    let cl = Cluster::start_tagged(3, 0, &["[a]", "[b]", "[c]"]);
    let (nc, js) = connect(&cl.url(0)).await;
    assert!(wait_js(&nc).await, "no meta leader:\n{}", cl.logs());
    for (i, tag) in ["a", "b", "c"].into_iter().enumerate() {
        let name = format!("ON_{}", tag.to_uppercase());
        let config = jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{tag}.>")],
            placement: Some(jetstream::stream::Placement {
                cluster: None,
                tags: vec![tag.to_string()],
            }),
            ..Default::default()
        };
        let created = js.create_stream(config.clone()).await;
        let mut stream = created.unwrap_or_else(|e| panic!("{name}: {e}\n{}", cl.logs()));
        assert_eq!(stream.cached_info().state.messages, 0);
        let leader = stream
            .cached_info()
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone());
        assert_eq!(leader.as_deref(), Some(format!("n{}-c1", i + 1).as_str()));
        for _ in 0..=i {
            let ack = js
                .publish(format!("{tag}.x"), "m".into())
                .await
                .expect("sent");
            ack.await.expect("acknowledged");
        }
        let updated = js
            .update_stream(jetstream::stream::Config {
                max_messages: 10,
                ..config
            })
            .await
            .unwrap_or_else(|e| panic!("update {name}: {e}"));
        assert_eq!(updated.config.max_messages, 10);
        // The replica takes the new config once the meta entry applies there.
        let begun = Instant::now();
        while stream.info().await.expect("info").config.max_messages != 10 {
            assert!(begun.elapsed() < FORM_WAIT, "{name} kept its old config");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut listed = Vec::new();
    let mut streams = js.streams();
    while let Some(info) = streams.next().await {
        let info = info.expect("a stream info that parses");
        let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
        listed.push((info.config.name, info.state.messages, leader));
    }
    listed.sort();
    let expected =
        |name: &str, msgs: u64, server: &str| (name.to_string(), msgs, Some(server.to_string()));
    assert_eq!(
        listed,
        [
            expected("ON_A", 1, "n1-c1"),
            expected("ON_B", 2, "n2-c1"),
            expected("ON_C", 3, "n3-c1")
        ]
    );
}
