//! TLS as clients and operators meet it: async-nats and nats-py over `tls://` (server
//! certificate checked against a test CA), mutual TLS with `verify`, users mapped from
//! certificates with `verify_and_map`, `handshake_first`, a plain client refused as
//! nats-server refuses it, the `--tls*` flags, bad certificates stopping the server,
//! TLS routes (natrix with natrix, natrix with nats-server 2.9.10), and new
//! certificates on SIGHUP.

mod common;

use common::certs::{Ca, Pem};
use common::{Raw, TestServer};
use futures::StreamExt;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Pem,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.server("server");
    Pki { dir, ca, server }
}

/// A natrix with `tls { <server cert> <tls_extra> }` and `extra` at the top level.
fn tls_server(shards: usize, pki: &Pki, tls_extra: &str, extra: &str) -> TestServer {
    TestServer::with_shards(shards)
        .config(&format!(
            "listen: \"127.0.0.1:{{port}}\"\nhttp: \"127.0.0.1:{{http}}\"\n{extra}\ntls {{ {}, {tls_extra} }}\n",
            pki.server.conf()
        ))
        .start()
}

fn options(ca: &Ca, client: Option<&Pem>) -> async_nats::ConnectOptions {
    let mut o = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.cert.clone())
        .require_tls(true)
        .connection_timeout(Duration::from_secs(5));
    if let Some(c) = client {
        o = o.add_client_certificate(c.cert.clone(), c.key.clone());
    }
    o
}

async fn connect(
    server: &TestServer,
    opts: async_nats::ConnectOptions,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    opts.connect(format!("tls://127.0.0.1:{}", server.port))
        .await
}

/// A message published on `client` comes back to its own subscription.
async fn round_trip(client: &async_nats::Client, subject: &str) {
    let mut sub = client.subscribe(subject.to_string()).await.unwrap();
    let payload = vec![b'x'; 200_000];
    client
        .publish(subject.to_string(), payload.clone().into())
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.payload.len(), payload.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_over_tls_with_the_ca() {
    let pki = pki();
    let server = tls_server(2, &pki, "timeout: 3", "");
    let client = connect(&server, options(&pki.ca, None)).await.unwrap();
    round_trip(&client, "tls.plain").await;
    let info = client.server_info();
    assert!(info.tls_required);
    let varz = server.json("/varz");
    assert_eq!(varz["tls_required"], true);
    assert_eq!(varz["tls_timeout"], 3.0);
    // A client that does not trust the CA gives up.
    let other = Ca::new(pki.dir.path(), "other");
    assert!(connect(&server, options(&other, None)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_signed_by_the_ca() {
    let pki = pki();
    let tls = format!("{}, verify: true", pki.ca.conf());
    let server = tls_server(1, &pki, &tls, "");
    let alice = pki.ca.client("alice", "alice", "acme", "");
    let client = connect(&server, options(&pki.ca, Some(&alice)))
        .await
        .unwrap();
    round_trip(&client, "tls.mutual").await;
    assert_eq!(Raw::connect(server.port).info["tls_verify"], true);
    assert!(connect(&server, options(&pki.ca, None)).await.is_err());
    let stranger_ca = Ca::new(pki.dir.path(), "stranger");
    let stranger = stranger_ca.client("stranger", "eve", "acme", "");
    assert!(connect(&server, options(&pki.ca, Some(&stranger)))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_map_takes_the_user_from_the_certificate() {
    let pki = pki();
    let tls = format!("{}, verify_and_map: true", pki.ca.conf());
    let users = "authorization { users: [ {user: \"alice@example.com\"}, {user: \"CN=bob,O=acme\"}, {user: \"CN=dave,O=acme\"} ] }";
    let server = tls_server(2, &pki, &tls, users);
    let alice = pki.ca.client("alice", "alice", "acme", "alice@example.com");
    let bob = pki.ca.client("bob", "bob", "acme", "");
    let carol = pki.ca.client("carol", "carol", "acme", "");
    let a = connect(&server, options(&pki.ca, Some(&alice)))
        .await
        .unwrap();
    let b = connect(&server, options(&pki.ca, Some(&bob)))
        .await
        .unwrap();
    round_trip(&a, "map.a").await;
    round_trip(&b, "map.b").await;
    let connz = server.json("/connz?auth=true");
    let mut users: Vec<&str> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["authorized_user"].as_str())
        .collect();
    users.sort();
    assert_eq!(users, ["CN=bob,O=acme", "alice@example.com"]);
    let refused = connect(&server, options(&pki.ca, Some(&carol))).await;
    assert!(refused.is_err(), "a certificate naming no user is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_sends_info_inside_tls() {
    let pki = pki();
    let server = tls_server(2, &pki, "handshake_first: true", "");
    let client = connect(&server, options(&pki.ca, None).tls_first())
        .await
        .unwrap();
    round_trip(&client, "tls.first").await;
    // Nothing in plain text: a plain client waiting for INFO is closed at the timeout.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

/// nats-server 2.9.10 sends INFO (tls_required) in plain text, then takes what the
/// client sends as its TLS handshake: a plain CONNECT fails it and the connection
/// is closed without PONG (nor a TLS alert); a silent client is closed when the timeout expires.
#[test]
fn a_plain_client_is_refused_as_nats_server_refuses_it() {
    let pki = pki();
    let server = tls_server(2, &pki, "timeout: 0.5", "");
    let mut raw = Raw::connect(server.port);
    assert_eq!(raw.info["tls_required"], true);
    raw.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    let mut rest = Vec::new();
    let _ = raw.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no PONG, nor a TLS alert: {rest:?}");
    let started = Instant::now();
    let mut silent = Raw::connect(server.port);
    assert!(silent.closed_by_server());
    assert!(started.elapsed() < Duration::from_secs(5));
    common::wait_for("the handshake errors in the log", WAIT, || {
        let log = server.log();
        log.contains("TLS handshake error") && log.contains("TLS handshake timeout")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_flags_enable_tls_as_on_nats_server() {
    let pki = pki();
    let (cert, key) = (path(&pki.server.cert), path(&pki.server.key));
    let ca = path(&pki.ca.cert);
    let server = TestServer::with_shards(1)
        .args(&["--tlsverify", "--tlscert", &cert, "--tlskey", &key])
        .args(&["--tlscacert", &ca])
        .start();
    let alice = pki.ca.client("alice", "alice", "acme", "");
    let client = connect(&server, options(&pki.ca, Some(&alice)))
        .await
        .unwrap();
    round_trip(&client, "tls.flags").await;
    assert!(connect(&server, options(&pki.ca, None)).await.is_err());
    let out = Command::new(env!("CARGO_BIN_EXE_natrix"))
        .args(["--tls", "--tlscert", &cert, "-p", "-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS Server private key must be present and valid"),
        "{stderr}"
    );
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_bad_certificate_stops_the_server_with_its_place() {
    let pki = pki();
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").unwrap();
    let cases = [
        (
            format!("tls {{ cert_file: {:?} }}", path(&pki.server.cert)),
            "missing 'key_file' in TLS configuration".to_string(),
        ),
        (
            format!(
                "tls {{ cert_file: {:?}, key_file: {:?} }}",
                path(&pki.server.cert),
                path(&garbage)
            ),
            "error parsing X509 certificate/key pair: tls: failed to find any PEM data in key input".to_string(),
        ),
        (
            format!(
                "tls {{ cert_file: \"/nonexistent/cert.pem\", key_file: {:?} }}",
                path(&pki.server.key)
            ),
            "error parsing X509 certificate/key pair: open /nonexistent/cert.pem: no such file or directory".to_string(),
        ),
    ];
    for (conf, reason) in cases {
        let file = pki.dir.path().join("bad.conf");
        std::fs::write(&file, format!("port: -1\n{conf}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_natrix"))
            .arg("-c")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let place = format!("{}:2:1: {reason}", file.display());
        assert!(stderr.contains(&place), "want {place:?} in:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_loads_new_certificates_for_new_connections() {
    let pki = pki();
    let live = Pem {
        cert: pki.dir.path().join("live-cert.pem"),
        key: pki.dir.path().join("live-key.pem"),
    };
    std::fs::copy(&pki.server.cert, &live.cert).unwrap();
    std::fs::copy(&pki.server.key, &live.key).unwrap();
    let server = TestServer::with_shards(2)
        .config(&format!(
            "listen: \"127.0.0.1:{{port}}\"\nhttp: \"127.0.0.1:{{http}}\"\ntls {{ {} }}\n",
            live.conf()
        ))
        .start();
    let before = connect(&server, options(&pki.ca, None)).await.unwrap();
    let next_ca = Ca::new(pki.dir.path(), "next");
    let next = next_ca.server("next");
    std::fs::copy(&next.cert, &live.cert).unwrap();
    std::fs::copy(&next.key, &live.key).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    common::wait_until("a client of the new CA to connect", WAIT, || async {
        connect(&server, options(&next_ca, None)).await.is_ok()
    })
    .await;
    assert!(connect(&server, options(&pki.ca, None)).await.is_err());
    round_trip(&before, "tls.reload").await;
}

#[test]
fn nats_py_connects_with_tls_and_mutual_tls() {
    let pki = pki();
    let tls = format!("{}, verify: true", pki.ca.conf());
    let server = tls_server(2, &pki, &tls, "");
    let alice = pki.ca.client("alice", "alice", "acme", "");
    let script = r#"
import asyncio, ssl, sys
import nats

async def main(url, ca, cert, key):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    nc = await nats.connect(url, tls=ctx, allow_reconnect=False)
    sub = await nc.subscribe("py.tls")
    await nc.publish("py.tls", b"hello")
    msg = await sub.next_msg(timeout=10)
    assert msg.data == b"hello"
    await nc.close()
    bare = ssl.create_default_context(cafile=ca)
    try:
        nc = await nats.connect(url, tls=bare, allow_reconnect=False, max_reconnect_attempts=0,
                                connect_timeout=5)
        await nc.flush(timeout=5)
        sys.exit("connected without a client certificate")
    except SystemExit:
        raise
    except Exception:
        pass
    print("nats-py ok")

asyncio.run(main(*sys.argv[1:]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("tls://127.0.0.1:{}", server.port))
        .args([path(&pki.ca.cert), path(&alice.cert), path(&alice.key)])
        .output()
        .expect("python3 with nats-py (pip install nats-py)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("nats-py ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ----- routes --------------------------------------------------------------------

/// A cluster node with route TLS; `seed` is another node's cluster port.
fn route_node(pki: &Pki, name: &str, seed: Option<u16>, binary: Option<&str>) -> TestServer {
    route_node_with(pki, name, seed, binary, "", "")
}

/// The same, with `tls_extra` in the cluster's tls block and `cluster_extra` in the
/// cluster block.
fn route_node_with(
    pki: &Pki,
    name: &str,
    seed: Option<u16>,
    binary: Option<&str>,
    tls_extra: &str,
    cluster_extra: &str,
) -> TestServer {
    let routes = seed.map_or(String::new(), |p| {
        format!("routes: [\"nats-route://127.0.0.1:{p}\"]")
    });
    let config = format!(
        "server_name: {name}\nlisten: \"127.0.0.1:{{port}}\"\nhttp: \"127.0.0.1:{{http}}\"\n\
         cluster {{\n  name: tlsc\n  listen: \"127.0.0.1:{{cluster}}\"\n  {routes}\n  \
         tls {{ {}, {}, timeout: 5{tls_extra} }}\n  {cluster_extra}\n}}\n",
        pki.server.conf(),
        pki.ca.conf()
    );
    let builder = TestServer::with_shards(2).config(&config);
    match binary {
        Some(b) => builder.binary(b),
        None => builder,
    }
    .start()
}

async fn plain_client(server: &TestServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.unwrap()
}

/// Messages published on `from` reach a subscriber on `to` (once interest has
/// crossed the route).
async fn flows(from: &async_nats::Client, to: &async_nats::Client, subject: &str) {
    let mut sub = to.subscribe(subject.to_string()).await.unwrap();
    common::sync(to).await;
    let deadline = Instant::now() + WAIT;
    loop {
        from.publish(subject.to_string(), "hi".into())
            .await
            .unwrap();
        from.flush().await.unwrap();
        if tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "no message across the TLS route");
    }
}

async fn exercise_route(a: &TestServer, b: &TestServer) {
    common::wait_for("the TLS route", WAIT, || {
        a.json("/varz")["routes"].as_u64() >= Some(1)
            && b.json("/varz")["routes"].as_u64() >= Some(1)
    });
    let (ca, cb) = (plain_client(a).await, plain_client(b).await);
    flows(&ca, &cb, "route.ab").await;
    flows(&cb, &ca, "route.ba").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_route_between_two_natrix_servers() {
    let pki = pki();
    let a = route_node(&pki, "A", None, None);
    let b = route_node(&pki, "B", Some(a.cluster_port), None);
    exercise_route(&a, &b).await;
    assert!(b.json("/varz")["cluster"].is_object());
}

/// Two nodes with `verify_and_map` in their cluster tls block and `user` as the
/// cluster's route user; the second routes to the first.
fn mapped_route_pair(pki: &Pki, first: &str, second: &str, user: &str) -> (TestServer, TestServer) {
    let map = ", verify_and_map: true";
    let authorization = format!("authorization {{ user: {user} }}");
    let a = route_node_with(pki, first, None, None, map, &authorization);
    let b = route_node_with(pki, second, Some(a.cluster_port), None, map, &authorization);
    (a, b)
}

/// `verify_and_map` on routes, as nats-server has it: the accepted route's
/// certificate must name the cluster's `authorization { user }` (the test
/// certificate offers `localhost`); one that names nobody else is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_verify_and_map_takes_the_route_user_from_the_certificate() {
    let pki = pki();
    let (a, b) = mapped_route_pair(&pki, "A", "B", "localhost");
    exercise_route(&a, &b).await;

    let (c, d) = mapped_route_pair(&pki, "C", "D", "someone_else");
    common::wait_for("the route refused", WAIT, || {
        c.log().contains("Authorization Violation")
    });
    assert_eq!(c.json("/varz")["routes"].as_u64(), Some(0));
    assert_eq!(d.json("/varz")["routes"].as_u64(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_route_between_natrix_and_nats_server() {
    let pki = pki();
    let a = route_node(&pki, "A", None, None);
    let b = route_node(&pki, "B", Some(a.cluster_port), Some(nats_server()));
    exercise_route(&a, &b).await;
    let c = route_node(&pki, "C", Some(b.cluster_port), None);
    exercise_route(&b, &c).await;
}

#[test]
fn a_route_without_tls_is_refused_by_a_tls_cluster() {
    let pki = pki();
    let a = route_node(&pki, "A", None, None);
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", a.cluster_port)).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain
        .write_all(b"CONNECT {\"name\":\"x\"}\r\nPING\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("INFO"), "{got:?}");
}

fn nats_server() -> &'static str {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found,
        "interop tests need Debian's nats-server on PATH (apt-get install nats-server)"
    );
    "nats-server"
}

/// Builds tests/clients/gotls offline against Debian's nats.go (GOPATH mode, as
/// perf/gen/build.sh does) into the test's scratch directory.
fn build_gotls() -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/gotls");
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin = scratch.join("gotls");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", scratch.join("gocache"))
        .env("GOPROXY", "off")
        .output()
        .expect("go (apt-get install golang-go golang-github-nats-io-go-nats-dev)");
    assert!(
        out.status.success(),
        "building gotls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

#[test]
fn nats_go_connects_with_tls_and_mutual_tls() {
    let pki = pki();
    let gotls = build_gotls();
    let run = |server: &TestServer, client: Option<&Pem>| {
        let mut cmd = Command::new(&gotls);
        cmd.arg(format!("tls://127.0.0.1:{}", server.port))
            .arg(&pki.ca.cert);
        if let Some(c) = client {
            cmd.arg(&c.cert).arg(&c.key);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success() && text.contains("nats.go ok"), text)
    };
    let plain_tls = tls_server(1, &pki, "timeout: 2", "");
    let (ok, text) = run(&plain_tls, None);
    assert!(ok, "{text}");
    let tls = format!("{}, verify: true", pki.ca.conf());
    let mutual = tls_server(2, &pki, &tls, "");
    let alice = pki.ca.client("alice", "alice", "acme", "");
    let (ok, text) = run(&mutual, Some(&alice));
    assert!(ok, "{text}");
    let (ok, text) = run(&mutual, None);
    assert!(!ok, "connected without a client certificate: {text}");
}

/// `https_port` serves monitoring over TLS with the tls block's certificate:
/// curl, trusting the test CA, gets `/varz` (which names the port); without
/// TLS configured, the server refuses to start.
#[test]
fn https_monitoring_uses_the_tls_certificate() {
    let pki = pki();
    let https_port = common::free_port();
    let server = tls_server(1, &pki, "", &format!("https: \"127.0.0.1:{https_port}\""));
    let url = format!("https://127.0.0.1:{https_port}/varz");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(&pki.ca.cert)
        .arg(&url)
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    let varz: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!(varz["https_port"], https_port, "{body}");
    assert_eq!(varz["server_id"], server.json("/varz")["server_id"]);
    let untrusted = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        !untrusted.status.success(),
        "a client not trusting the CA fails"
    );

    let refused = Command::new(env!("CARGO_BIN_EXE_natrix"))
        .args(["-p", "-1", "-ms", &common::free_port().to_string()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("https monitoring needs TLS"), "{err}");
}

/// `/connz` names a TLS connection's version and cipher suite, as nats-server does.
#[tokio::test]
async fn connz_shows_tls_version_and_cipher() {
    let pki = pki();
    let server = tls_server(1, &pki, "", "");
    let nc = connect(&server, options(&pki.ca, None)).await.unwrap();
    nc.flush().await.unwrap();
    let connz = server.json("/connz");
    let conn = &connz["connections"][0];
    assert_eq!(conn["tls_version"], "1.3", "{connz}");
    let suite = conn["tls_cipher_suite"].as_str().unwrap_or_default();
    assert!(suite.starts_with("TLS_"), "{connz}");
}
