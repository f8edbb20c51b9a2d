//! Each scenario runs briefly against a natrix (2 shards) that the test starts, and the
//! counts natrix-bench reports are checked.
//!
//! The natrix binary: `NATRIX_BIN` when set; otherwise `natrix` in the same target
//! directory and profile as this test (found from the test's own path,
//! `<target>/<profile>/deps/<test>`), built there with `cargo build -p natrix` first if
//! it is missing.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_natrix-bench");
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn natrix_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("NATRIX_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let bin = profile_dir.join("natrix");
        if !bin.exists() {
            let target_dir = profile_dir.parent().unwrap();
            let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cargo
                .args(["build", "-p", "natrix", "--bin", "natrix"])
                .env("CARGO_TARGET_DIR", target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().unwrap() == "release" {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo build -p natrix");
            assert!(status.success(), "cargo build -p natrix failed");
        }
        bin
    })
    .clone()
}

/// A server (natrix, or nats-server for the JetStream test) on a port the kernel
/// picks; killed on drop.
struct Natrix {
    child: Child,
    port: u16,
}

impl Natrix {
    fn start() -> Natrix {
        Natrix::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Natrix {
        let mut cmd = Command::new(natrix_bin());
        cmd.args(["--shards", "2", "-a", "127.0.0.1", "-p", "-1"]);
        cmd.args(extra);
        Natrix::spawn(cmd)
    }

    /// Both servers log the port they listen on and when they are ready.
    fn spawn(mut cmd: Command) -> Natrix {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut port = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("Listening for client connections on ") {
                    port = line[at..]
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse().ok());
                }
                if line.contains("Server is ready") {
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("server did not become ready: {other:?}");
            }
        };
        Natrix { child, port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Natrix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(args: &[&str]) -> (Output, Option<Value>) {
    let json = std::env::temp_dir().join(format!(
        "natrix-bench-test-{}-{}.json",
        std::process::id(),
        args.join("_").replace(['/', ':', '.'], "")
    ));
    let _ = std::fs::remove_file(&json);
    let out = Command::new(BENCH)
        .args(args)
        .args(["--no-progress", "--json", json.to_str().unwrap()])
        .output()
        .expect("run natrix-bench");
    let report = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("valid JSON report"));
    let _ = std::fs::remove_file(&json);
    (out, report)
}

fn ok_report(args: &[&str]) -> Value {
    let (out, report) = bench(args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "natrix-bench {args:?} failed: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report = report.expect("a JSON report");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{text}");
    assert_eq!(report["lost"], 0, "{text}");
    report
}

fn clients<'a>(report: &'a Value, role: &str) -> Vec<&'a Value> {
    report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == role)
        .collect()
}

#[test]
fn pubsub_one_to_one_every_message_arrives() {
    let server = Natrix::start();
    let r = ok_report(&[
        "pubsub",
        "--server",
        &server.url(),
        "--msgs",
        "5000",
        "--size",
        "64",
    ]);
    assert_eq!(r["published"], 5000);
    let subs = clients(&r, "sub");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["msgs"], 5000);
    assert_eq!(subs[0]["bytes"], 5000 * 64);
    assert_eq!(r["latency"]["count"], 5000);
}

#[test]
fn fanout_every_subscriber_gets_every_message() {
    let server = Natrix::start();
    let url = server.url();
    let r = ok_report(&["fanout", "--server", &url, "--sub", "3", "--msgs", "3000"]);
    assert_eq!(r["published"], 3000);
    let subs = clients(&r, "sub");
    assert_eq!(subs.len(), 3);
    for s in subs {
        assert_eq!(s["msgs"], 3000, "{s}");
    }
    assert_eq!(r["received"], 9000);
}

#[test]
fn many_publishers_over_two_server_urls() {
    let server = Natrix::start();
    let urls = format!("{},{}", server.url(), server.url());
    let r = ok_report(&[
        "pubsub", "--server", &urls, "--pub", "3", "--sub", "2", "--msgs", "4000", "--size", "16",
    ]);
    assert_eq!(r["published"], 4000);
    let pubs = clients(&r, "pub");
    assert_eq!(
        pubs.iter()
            .map(|p| p["msgs"].as_u64().unwrap())
            .sum::<u64>(),
        4000
    );
    for s in clients(&r, "sub") {
        assert_eq!(s["msgs"], 4000);
    }
}

#[test]
fn queue_group_total_equals_published() {
    let server = Natrix::start();
    let r = ok_report(&[
        "queue",
        "--server",
        &server.url(),
        "--pub",
        "2",
        "--sub",
        "3",
        "--msgs",
        "6000",
    ]);
    assert_eq!(r["published"], 6000);
    let subs = clients(&r, "sub");
    assert_eq!(subs.len(), 3);
    let total: u64 = subs.iter().map(|s| s["msgs"].as_u64().unwrap()).sum();
    assert_eq!(total, 6000);
}

#[test]
fn request_reply_counts_and_latency() {
    let server = Natrix::start();
    let r = ok_report(&[
        "reqrep",
        "--server",
        &server.url(),
        "--pub",
        "2",
        "--sub",
        "2",
        "--msgs",
        "1000",
    ]);
    assert_eq!(r["published"], 1000);
    let answered: u64 = clients(&r, "rep")
        .iter()
        .map(|c| c["msgs"].as_u64().unwrap())
        .sum();
    assert_eq!(answered, 1000);
    assert_eq!(r["latency"]["count"], 1000);
    assert!(r["latency"]["p50_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn publish_only_and_timed_runs() {
    let server = Natrix::start();
    let r = ok_report(&[
        "pub",
        "--server",
        &server.url(),
        "--msgs",
        "5000",
        "--size",
        "16",
    ]);
    assert_eq!(r["publish"]["msgs"], 5000);
    assert!(r["subscribe"].is_null());
    let r = ok_report(&["pubsub", "--server", &server.url(), "--duration", "300ms"]);
    let published = r["published"].as_u64().unwrap();
    assert!(published > 0);
    assert_eq!(r["received"], published);
}

#[test]
fn idle_connections_and_server_memory() {
    let server = Natrix::start();
    let pid = server.child.id().to_string();
    let r = ok_report(&[
        "idle",
        "--server",
        &server.url(),
        "--conns",
        "50",
        "--duration",
        "100ms",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(r["idle"]["conns"], 50);
    assert!(r["idle"]["server_rss_after_kib"].as_u64().unwrap() > 0);
    assert_eq!(clients(&r, "idle").len(), 50);
}

#[test]
fn loss_is_reported_against_a_server_that_delivers_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = Command::new(BENCH)
        .args(["sink", "--port", &port.to_string(), "--duration", "20s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = sink.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.contains("discarding"), "{ready}");
    let url = format!("127.0.0.1:{port}");
    let (out, report) = bench(&[
        "pubsub", "--server", &url, "--msgs", "2000", "--grace", "200ms",
    ]);
    let _ = sink.kill();
    let _ = sink.wait();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = report.unwrap();
    assert_eq!(r["published"], 2000);
    assert_eq!(r["lost"], 2000);
    assert!(String::from_utf8_lossy(&out.stdout).contains("LOST"));
}

#[test]
fn jetstream_needs_a_jetstream_server() {
    let server = Natrix::start();
    let (out, _) = bench(&["pub", "--js", "--server", &server.url(), "--window", "8"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("JetStream scenarios need a JetStream server"),
        "{err}"
    );
}

#[test]
fn bad_flags_are_refused() {
    let (out, _) = bench(&["consume", "--pull"]);
    assert_eq!(out.status.code(), Some(2));
    let (out, _) = bench(&["pubsub", "--server", "tls://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported"));
}

/// JetStream against nats-server (natrix has no JetStream yet); skipped when nats-server
/// is not installed.
#[test]
fn jetstream_publish_and_consume_on_nats_server() {
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: nats-server is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("natrix-bench-js-{}", std::process::id()));
    let mut cmd = Command::new("nats-server");
    cmd.args([
        "-js",
        "-sd",
        dir.to_str().unwrap(),
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
    ]);
    let server = Natrix::spawn(cmd);
    let url = server.url();
    let r = ok_report(&[
        "pub",
        "--js",
        "--window",
        "64",
        "--server",
        &url,
        "--msgs",
        "3000",
        "--storage",
        "file",
    ]);
    assert_eq!(r["published"], 3000);
    assert_eq!(r["expected_received"], 3000);
    assert_eq!(r["latency"]["count"], 3000);
    let r = ok_report(&["pub", "--js", "--server", &url, "--msgs", "200"]);
    assert_eq!(r["published"], 200);
    let r = ok_report(&[
        "consume", "--js", "--pull", "--window", "100", "--server", &url, "--msgs", "500",
    ]);
    assert_eq!(
        r["received"], 500,
        "the stream holds the 200 of the last run plus 300 filled"
    );
    let r = ok_report(&[
        "consume", "--js", "--push", "--sub", "2", "--server", &url, "--msgs", "500",
    ]);
    assert_eq!(r["received"], 500);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `num_routes` from a server's /routez (None while the monitoring port is not up).
fn num_routes(http_port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", http_port)).ok()?;
    s.write_all(b"GET /routez HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = &text[text.find("\r\n\r\n")? + 4..];
    serde_json::from_str::<Value>(body).ok()?["num_routes"].as_u64()
}

/// A 2-node natrix cluster; the subscriber on one server, the publisher on the other:
/// every message crosses the route, and none is published before the subscriber's
/// interest has reached the publisher's server.
#[test]
fn pubsub_across_a_two_node_cluster() {
    let (cluster_a, cluster_b) = (free_port(), free_port());
    let (http_a, http_b) = (free_port(), free_port());
    let seed = format!("nats://127.0.0.1:{cluster_a}");
    let a = Natrix::start_with(&[
        "-m",
        &http_a.to_string(),
        "-cluster",
        &seed,
        "--cluster_name",
        "bench",
    ]);
    let b = Natrix::start_with(&[
        "-m",
        &http_b.to_string(),
        "-cluster",
        &format!("nats://127.0.0.1:{cluster_b}"),
        "--cluster_name",
        "bench",
        "-routes",
        &seed,
    ]);
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while [http_a, http_b].iter().any(|p| num_routes(*p) != Some(1)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the route never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = ok_report(&[
        "pubsub",
        "--pub-server",
        &a.url(),
        "--sub-server",
        &b.url(),
        "--msgs",
        "20000",
        "--size",
        "128",
    ]);
    assert_eq!(r["published"], 20000);
    let (pubs, subs) = (clients(&r, "pub"), clients(&r, "sub"));
    assert_eq!((pubs.len(), subs.len()), (1, 1));
    assert_eq!(pubs[0]["server"], format!("127.0.0.1:{}", a.port));
    assert_eq!(subs[0]["server"], format!("127.0.0.1:{}", b.port));
    assert_eq!(subs[0]["msgs"], 20000);
    assert_eq!(subs[0]["bytes"], 20000 * 128);
    // Two subscribers, one on each server, a timed run: both get everything published.
    let both = format!("{},{}", b.url(), a.url());
    let r = ok_report(&[
        "pubsub",
        "--pub-server",
        &a.url(),
        "--sub-server",
        &both,
        "--sub",
        "2",
        "--duration",
        "300ms",
        "--size",
        "16",
    ]);
    let published = r["published"].as_u64().unwrap();
    assert!(published > 0);
    for s in clients(&r, "sub") {
        assert_eq!(s["msgs"].as_u64(), Some(published), "{s}");
    }
}
