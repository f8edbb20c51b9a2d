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

/// What a run of the binary that must end by itself left: exit status and stderr.
/// A run still going after a while is killed (by its pid) and fails the test.
fn run_to_exit(cmd: &mut Command, dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    let err_path = dir.join("stderr.txt");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + common::READY_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running: {}",
                std::fs::read_to_string(&err_path).unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&err_path).unwrap())
}

/// Starts natrix on `text` as its config file; it must refuse to start. Its stderr.
fn refused(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("server.conf");
    std::fs::write(&path, text).unwrap();
    let (status, stderr) = run_to_exit(natrix().arg("-c").arg(&path), dir);
    assert_eq!(
        status.code(),
        Some(1),
        "{text:?} must refuse to start: {stderr}"
    );
    stderr
}

#[test]
fn features_natrix_lacks_refuse_to_start() {
    let dir = temp_dir("unsupported");
    let cases = [
        (
            "port: -1\nauthorization {\n  users: [ { nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4 } ]\n}\n",
            "server.conf:3:14: users.nkey is not supported by natrix yet",
        ),
        ("port: -1\noperator: \"./op.jwt\"\n", "server.conf:2:1: operator is not supported by natrix yet"),
        ("port: -1\nresolver: MEMORY\n", "server.conf:2:1: resolver is not supported by natrix yet"),
        (
            "port: -1\nresolver_preload: { ACC: jwt }\n",
            "server.conf:2:1: resolver_preload is not supported by natrix yet",
        ),
        (
            "port: -1\ntls {\n  cert_file: \"./cert.pem\"\n}\n",
            "server.conf:2:1: tls is not supported by natrix yet",
        ),
        (
            "port: -1\ncluster {\n  port: -1\n  tls { cert_file: \"./c.pem\" }\n}\n",
            "server.conf:4:3: cluster.tls is not supported by natrix yet",
        ),
        ("port: -1\nleafnodes { port: 7422 }\n", "server.conf:2:1: leafnodes is not supported by natrix yet"),
        ("port: -1\nwebsocket { port: 8080 }\n", "server.conf:2:1: websocket is not supported by natrix yet"),
        ("port: -1\nmqtt { port: 1883 }\n", "server.conf:2:1: mqtt is not supported by natrix yet"),
        ("port: -1\ngateway { name: A }\n", "server.conf:2:1: gateway is not supported by natrix yet"),
    ];
    for (text, expected) in cases {
        let stderr = refused(&dir, text);
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// As nats-server 2.9.10: every unknown field, top-level or nested, is listed with
/// its place, and the server does not start.
#[test]
fn unknown_fields_refuse_to_start() {
    let dir = temp_dir("unknown");
    let stderr = refused(&dir, "port: -1\nfoo: 1\ncluster {\n  bar: 2\n}\n");
    assert!(
        stderr.contains("server.conf:2:1: unknown field \"foo\"\n")
            && stderr.contains("server.conf:4:3: unknown field \"bar\""),
        "{stderr}"
    );
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
