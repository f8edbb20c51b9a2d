//! The monitoring port as an HTTP server: a slow client cannot hold it (request
//! deadlines), the number of connections is bounded, and keep-alive works.

mod common;

use common::{wait_for, TestServer};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// natrix's monitoring deadlines and bound (src/monitor/io.rs, http.rs).
const HEADER_READ_TIMEOUT_MS: u64 = 5_000;
const CONNECTIONS_MAX: usize = 128;
/// Slack on top of a deadline for a loaded machine.
const SLACK_MS: u64 = 5_000;

fn open(server: &TestServer) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Whether the server has closed `s` (EOF or reset), waiting up to `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_slowloris_is_cut_off_and_others_are_served_meanwhile() {
    let server = TestServer::start(1);
    let mut slow = open(&server);
    let sent = Instant::now();
    slow.write_all(b"GET /varz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let asked = Instant::now();
    let varz = server.json("/varz");
    assert!(varz["server_id"].is_string());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "/varz took {:?} beside a slow client",
        asked.elapsed()
    );
    assert!(
        !closed_within(&mut slow, Duration::from_millis(200)),
        "not closed before its deadline"
    );
    let limit = Duration::from_millis(HEADER_READ_TIMEOUT_MS + SLACK_MS);
    assert!(
        closed_within(&mut slow, limit),
        "the slow connection was not closed"
    );
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(HEADER_READ_TIMEOUT_MS - 500),
        "closed after {took:?}, before the header timeout"
    );
}

#[test]
fn connections_beyond_the_bound_are_refused_logged_and_counted() {
    let server = TestServer::start(1);
    let mut held: Vec<TcpStream> = (0..CONNECTIONS_MAX).map(|_| open(&server)).collect();
    let mut extra = open(&server);
    assert!(
        closed_within(&mut extra, Duration::from_secs(3)),
        "a connection beyond {CONNECTIONS_MAX} was not refused"
    );
    held.truncate(CONNECTIONS_MAX / 2);
    wait_for(
        "/varz once connections are free",
        Duration::from_secs(10),
        || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", server.http_port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(s, "GET /varz HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            // Tries made while the slots were still taken are refused (and counted) too.
            let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            serde_json::from_str::<serde_json::Value>(body)
                .is_ok_and(|v| v["http_refused_connections"].as_u64() >= Some(1))
        },
    );
    assert!(server.log().contains("refused"), "{}", server.log());
    drop(held);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = TestServer::start(1);
    let mut s = open(&server);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("\"ok\"") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"));
    }
    let varz = server.json("/varz");
    assert_eq!(varz["http_req_stats"]["/healthz"], 3);
}

/// `max_closed_clients` bounds what `/connz?state=closed` remembers: the newest
/// ones, as on nats-server.
#[test]
fn max_closed_clients_keeps_the_newest_closed_connections() {
    let server = TestServer::with_shards(2)
        .config("listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\nmax_closed_clients: 2\n")
        .start();
    let mut cids = Vec::new();
    for _ in 0..3 {
        let mut c = common::Raw::connect(server.port);
        cids.push(c.info["client_id"].as_u64().unwrap());
        c.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
        assert_eq!(c.line(), "PONG");
        let closed_before = server.json("/connz?state=closed")["total"]
            .as_u64()
            .unwrap();
        drop(c);
        wait_for("the close recorded", Duration::from_secs(10), || {
            let total = server.json("/connz?state=closed")["total"]
                .as_u64()
                .unwrap();
            total > closed_before || total == 2
        });
    }
    wait_for("two closed kept", Duration::from_secs(10), || {
        let connz = server.json("/connz?state=closed");
        let kept: Vec<u64> = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cid"].as_u64().unwrap())
            .collect();
        kept == cids[1..]
    });
}
