//! Starting the binary as an operator does: flags, config files, bad configs,
//! log files, version.

mod common;

use std::process::Command;

fn natrix() -> Command {
    Command::new(env!("CARGO_BIN_EXE_natrix"))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("natrix-startup-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn version_flag() {
    let out = natrix().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("natrix: v"));
    let out = natrix().arg("-v").output().unwrap();
    assert!(out.status.success());
}

#[test]
fn bad_config_fails_with_line_and_reason() {
    let dir = temp_dir("bad");
    let cases = [
        ("port: 4222\nmax_payload: [1, 2]\n", "server.conf:2:"),
        (
            "port: 4222\nauthorization {\n  user: \"unterminated\n}\n",
            "server.conf:3:",
        ),
        ("listen: 127.0.0.1:4222\naccounts {\n", "server.conf:"),
        ("port: \"not a number\"\n", "server.conf:1:"),
        ("include \"missing.conf\"\n", "server.conf:1:"),
    ];
    for (text, expected) in cases {
        let path = dir.join("server.conf");
        std::fs::write(&path, text).unwrap();
        let out = natrix().arg("-c").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} must fail to start");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn port_in_use_fails() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let out = natrix()
        .args(["-a", "127.0.0.1", "-p", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&port));
}

#[test]
fn config_file_and_flag_override_and_log_file() {
    let dir = temp_dir("log");
    let log = dir.join("natrix.log");
    let server = common::TestServer::with_shards(2)
        .config(&format!(
            "listen: 127.0.0.1:1\nhttp: 127.0.0.1:{{http}}\nserver_name: from-config\nlog_file: {:?}\n",
            log.to_str().unwrap()
        ))
        .arg("-p")
        .arg("{port}")
        .start();
    let varz = server.json("/varz");
    assert_eq!(varz["server_name"], "from-config");
    assert_eq!(varz["port"], server.port, "-p overrides the config's port");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("[INF] Server is ready"), "{text}");
    assert!(
        text.contains("Listening for client connections on 127.0.0.1:"),
        "{text}"
    );
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_example_config_parses() {
    let mut seen = 0;
    for dir in [
        "configs",
        "configs/seeds",
        "configs/cluster",
        "configs/jetstream",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(path).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "conf") {
                natrix::options::Options::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
    }
    assert!(seen >= 15, "found {seen} configs");
}
