//! What arrives from outside, or goes wrong inside, harms nobody else: a panic
//! ends the process at once, logged, rather than leaving a half-dead server.

mod common;

use common::TestServer;

// The panic switch exists in debug builds only (`server::panic::injected`): a
// release server never panics on it, so the test runs where the switch does.
#[cfg(debug_assertions)]
#[test]
fn a_panic_on_any_shard_ends_the_process_with_the_panic_logged() {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join("panic-now");
    let mut server = TestServer::with_shards(2)
        .env("NATRIX_TEST_PANIC_SHARD", "1")
        .env("NATRIX_TEST_PANIC_FILE", trigger.to_str().unwrap())
        .start();
    let mut client = common::Raw::connect(server.port);
    client.send(b"PING\r\n");
    assert_eq!(client.line(), "PONG", "serving");
    std::fs::write(&trigger, b"").unwrap();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the process ends when a shard panics");
    assert_eq!(status.signal(), Some(6), "aborted: {status:?}");
    let log = server.log();
    assert!(
        log.contains("Fatal: panic on thread") && log.contains("injected panic on shard 1"),
        "{log}"
    );
}

/// A route peer that speaks Raft (no route credentials are needed) sends a
/// checksum-valid heartbeat committing far past the log, an oversized RAFT
/// operation, and floods of interest and garbage: clients go on being served,
/// and the server lives.
#[test]
fn a_hostile_route_peer_harms_nobody() {
    use natrix::jetstream::meta::META_GROUP;
    use natrix::jetstream::node_id::node_id;
    use natrix::raft::eraftpb::{Message, MessageType};
    use natrix::raft::frame::{encode, Frame, Item};
    use natrix::raft::replica_id;
    use std::io::{BufRead, BufReader, Write};

    let store = tempfile::tempdir().unwrap();
    let mut server = TestServer::with_shards(2)
        .arg("-js")
        .arg("-sd")
        .arg(store.path().to_str().unwrap())
        .arg("--server_name")
        .arg("A")
        .arg("--cluster_name")
        .arg("C")
        .arg("--cluster")
        .arg("nats://127.0.0.1:{cluster}")
        .start();
    let mut client = common::Raw::connect(server.port);
    client.send(b"CONNECT {\"verbose\":false}\r\nSUB x 1\r\nPUB x 2\r\nhi\r\nPING\r\n");
    assert_eq!(client.line(), "MSG x 1 2");

    let evil_node = 777;
    let route = std::net::TcpStream::connect(("127.0.0.1", server.cluster_port)).unwrap();
    let mut reader = BufReader::new(route.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO "), "{info}");
    let mut route = route;
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"EVIL\",\"cluster\":\"C\"}}\r\n\
         INFO {{\"server_id\":\"EVIL\",\"server_name\":\"evil\",\"cluster\":\"C\",\"natrix_raft\":true,\"natrix_node\":{evil_node}}}\r\n"
    );
    route.write_all(hello.as_bytes()).unwrap();

    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = replica_id(evil_node, 1);
    heartbeat.to = replica_id(node_id("A"), 1);
    heartbeat.term = 1_000;
    heartbeat.commit = 1 << 40;
    let frame = encode(&Frame {
        from_node: evil_node,
        to_node: node_id("A"),
        incarnation: 1,
        items: vec![Item::Raft {
            group: META_GROUP,
            msg: heartbeat,
        }],
    });
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.extend_from_slice(format!("RAFT {}\r\n", frame.len()).as_bytes());
        flood.extend_from_slice(&frame);
        flood.extend_from_slice(b"\r\n");
    }
    for i in 0..20_000 {
        flood.extend_from_slice(format!("RS+ $G flood.{i}\r\n").as_bytes());
    }
    flood.extend_from_slice(b"RMSG $G x 2\r\nyo\r\n");
    flood.extend_from_slice(b"RAFT 999999999999\r\n");
    flood.extend_from_slice(b"RMSG $G x 99999999999\r\n\x00\xff garbage\r\n");
    let _ = route.write_all(&flood);

    // Clients are served all along; the server is alive and monitors.
    for i in 0..20 {
        client.send(format!("PUB x 2\r\n{:02}\r\nPING\r\n", i).as_bytes());
        let mut got = client.line();
        while got.starts_with("MSG x 1 2") || got == "hi" || got == "yo" || got == "PONG" {
            if got == format!("{i:02}") {
                break;
            }
            got = client.line();
        }
        assert_eq!(got, format!("{i:02}"), "message {i} reached the subscriber");
    }
    assert!(server.exit_status().is_none(), "the server lives");
    let (status, _) = server.http_get("/varz");
    assert_eq!(status, 200);
}
