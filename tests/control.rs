//! Signals as operators send them: `natrix --signal ldm|reload|term=<pid>`, lame
//! duck mode and config reload.

mod common;

use common::{Raw, TestServer};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn signal(cmd: &str, server: &TestServer) {
    let out = Command::new(env!("CARGO_BIN_EXE_natrix"))
        .arg("--signal")
        .arg(format!("{cmd}={}", server.pid()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lame_duck_mode_tells_clients_closes_them_and_exits() {
    let mut server = TestServer::with_shards(2)
        .config("listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\nlame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n")
        .start();
    let mut client = Raw::connect(server.port);
    client.send(b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n");
    assert_eq!(client.line(), "PONG");
    signal("ldm", &server);
    let info = client.line();
    assert!(info.starts_with("INFO "), "{info}");
    let info: serde_json::Value = serde_json::from_str(&info[5..]).unwrap();
    assert_eq!(info["ldm"], true);
    // no new clients
    common::wait_for("the listener to close", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err()
    });
    // the client is closed after the grace period, and then the server exits
    assert!(client.closed_by_server());
    let status = server
        .wait_exit(WAIT)
        .expect("server exits after lame duck mode");
    assert!(status.success(), "{status}");
    assert!(server.log().contains("Entering lame duck mode"));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = TestServer::start(2);
    signal("term", &server);
    let status = server.wait_exit(WAIT).expect("server exits");
    assert!(status.success(), "{status}");
}

#[test]
fn reload_applies_new_passwords() {
    let config = |pass: &str| {
        format!("listen: 127.0.0.1:{{port}}\nhttp: 127.0.0.1:{{http}}\nauthorization {{ user: u, password: {pass} }}\n")
    };
    let server = TestServer::with_shards(2).config(&config("first")).start();
    let login = |pass: &str| {
        let mut c = Raw::connect(server.port);
        c.send(
            format!("CONNECT {{\"verbose\":false,\"user\":\"u\",\"pass\":\"{pass}\"}}\r\nPING\r\n")
                .as_bytes(),
        );
        c.line() == "PONG"
    };
    assert!(login("first"));
    let path = server.dir.join("server.conf");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("first", "second");
    std::fs::write(&path, text).unwrap();
    signal("reload", &server);
    common::wait_for("the reload", WAIT, || {
        server.log().contains("Reloaded server configuration")
    });
    assert!(login("second"));
    assert!(!login("first"));
}

#[test]
fn unknown_signal_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_natrix"))
        .args(["--signal", "explode=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown signal"));
}

/// `stop=-1` must not become kill(-1): every process the user may signal.
#[test]
fn a_pid_that_is_not_a_process_is_refused() {
    for pid in ["-1", "0", "-42"] {
        let out = Command::new(env!("CARGO_BIN_EXE_natrix"))
            .args(["--signal", &format!("stop={pid}")])
            .output()
            .unwrap();
        assert!(!out.status.success(), "stop={pid}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("invalid pid {pid}")), "{err}");
    }
}

#[test]
fn reload_adds_a_route() {
    let b = TestServer::with_shards(1)
        .arg("-cluster")
        .arg("nats://127.0.0.1:{cluster}")
        .arg("--cluster_name")
        .arg("reload")
        .start();
    let config = |routes: &str| {
        format!(
            "listen: 127.0.0.1:{{port}}\nhttp: 127.0.0.1:{{http}}\ncluster {{\n  name: reload\n  listen: 127.0.0.1:{{cluster}}\n  routes: [{routes}]\n}}\n"
        )
    };
    let a = TestServer::with_shards(2).config(&config("")).start();
    assert_eq!(a.json("/routez")["num_routes"], 0);
    let path = a.dir.join("server.conf");
    let route = format!("nats-route://127.0.0.1:{}", b.cluster_port);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("routes: []", &format!("routes: [{route}]"));
    std::fs::write(&path, text).unwrap();
    signal("reload", &a);
    common::wait_for("the new route", WAIT, || {
        a.json("/routez")["num_routes"] == 1 && b.json("/routez")["num_routes"] == 1
    });
}
