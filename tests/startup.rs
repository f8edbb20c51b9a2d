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
            "port: -1\noperator: \"./op.jwt\"\n",
            "server.conf:2:1: operator is not supported by natrix yet",
        ),
        (
            "port: -1\nresolver: MEMORY\n",
            "server.conf:2:1: resolver is not supported by natrix yet",
        ),
        (
            "port: -1\nresolver_preload: { ACC: jwt }\n",
            "server.conf:2:1: resolver_preload is not supported by natrix yet",
        ),
        (
            "port: -1\ntls {\n  cert_file: \"./cert.pem\"\n}\n",
            "server.conf:2:1: missing 'key_file' in TLS configuration",
        ),
        (
            "port: -1\ncluster {\n  port: -1\n  tls { cert_file: \"./c.pem\" }\n}\n",
            "server.conf:4:3: missing 'key_file' in TLS configuration",
        ),
        (
            "port: -1\nleafnodes { port: 7422 }\n",
            "server.conf:2:1: leafnodes is not supported by natrix yet",
        ),
        (
            "port: -1\nwebsocket { port: 8080 }\n",
            "server.conf:2:1: websocket is not supported by natrix yet",
        ),
        (
            "port: -1\nmqtt { port: 1883 }\n",
            "server.conf:2:1: mqtt is not supported by natrix yet",
        ),
        (
            "port: -1\ngateway { name: A }\n",
            "server.conf:2:1: gateway is not supported by natrix yet",
        ),
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
        "configs/jetstream5",
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

#[test]
fn test_flag_checks_the_config_and_exits() {
    let dir = temp_dir("check");
    let (status, stderr) = run_to_exit(natrix().arg("-t"), &dir);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("must specify [-c, --config] option to check configuration file syntax"),
        "{stderr}"
    );
    let good = dir.join("good.conf");
    std::fs::write(&good, "port: 4222\nhttp: 8222\n").unwrap();
    let (status, stderr) = run_to_exit(natrix().arg("-t").arg("-c").arg(&good), &dir);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("configuration file {} is valid", good.display())),
        "{stderr}"
    );
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "port: 4222\nnope: 1\n").unwrap();
    let (status, stderr) = run_to_exit(natrix().arg("-t").arg("-c").arg(&bad), &dir);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("bad.conf:2:1: unknown field \"nope\""),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// TLS flags without a certificate and key stop the server with nats-server's words;
/// HTTPS monitoring and syslog flags stop it naming the flag as typed; so does a bad
/// value or an unknown flag.
#[test]
fn refused_flags_name_what_was_typed() {
    let dir = temp_dir("refused-flags");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--tls"],
            "natrix: TLS Server certificate must be present and valid",
        ),
        (
            &["-tlscert=cert.pem"],
            "natrix: TLS Server private key must be present and valid",
        ),
        (
            &["--tlskey", "key.pem", "--tlsverify"],
            "natrix: TLS Server certificate must be present and valid",
        ),
        (&["--https_port=8443"], "natrix: https monitoring needs TLS"),
        (
            &["-r", "tcp://localhost:514"],
            "natrix: error connecting to syslog: remote syslog over tcp is not supported",
        ),
        (
            &["-T=maybe"],
            "natrix: invalid boolean value \"maybe\" for -T: parse error",
        ),
        (&["-bogus"], "natrix: flag provided but not defined: -bogus"),
        (
            &["-p", "x"],
            "natrix: invalid value \"x\" for flag -p: parse error",
        ),
        (
            &["--spin_us", "10001"],
            "natrix: --spin_us must be at most 10000",
        ),
    ];
    for (args, expected) in cases {
        let (status, stderr) = run_to_exit(natrix().args(*args), &dir);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_lists_nats_server_flags() {
    let out = natrix().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "-js, --jetstream",
        "-sd, --store_dir",
        "-DV ",
        "--cluster <cluster-url>",
        "--ports_file_dir <dir>",
        "-T, --logtime",
        "-t ",
        "--connect_retries <number>",
        "--shards <n>",
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
}

/// `--ports_file_dir` writes `natrix_<pid>.ports` once the server listens and removes
/// it on SIGTERM; `-P` writes the pid; `-m -1` picks a monitoring port; `-T=false`
/// drops timestamps; `--max_traced_msg_len` cuts trace lines; the cluster flags
/// `--connect_retries` and `--no_advertise` are taken.
#[test]
fn ports_file_pid_file_and_other_flags() {
    let dir = temp_dir("ports");
    let pid_file = dir.join("natrix.pid");
    let mut server = common::TestServer::with_shards(1)
        .config("listen: 127.0.0.1:{port}\n")
        .args(&["-m", "-1", "--ports_file_dir", dir.to_str().unwrap()])
        .args(&["-P", pid_file.to_str().unwrap(), "-T=false", "-V"])
        .args(&["--max_traced_msg_len", "12", "--connect_retries", "2"])
        .args(&["--no_advertise", "-cluster", "nats://127.0.0.1:{cluster}"])
        .start();
    let ports_file = dir.join(format!("natrix_{}.ports", server.pid()));
    common::wait_for("the ports file", common::READY_TIMEOUT, || {
        ports_file.exists()
    });
    let ports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ports_file).unwrap()).unwrap();
    assert_eq!(
        ports["nats"],
        serde_json::json!([format!("nats://127.0.0.1:{}", server.port)])
    );
    assert_eq!(
        ports["cluster"],
        serde_json::json!([format!("nats://127.0.0.1:{}", server.cluster_port)])
    );
    let monitoring = ports["monitoring"][0].as_str().unwrap();
    let http_port: u16 = monitoring.rsplit(':').next().unwrap().parse().unwrap();
    assert!(monitoring.starts_with("http://127.0.0.1:") && http_port != 0);
    let varz = http_json(http_port, "/varz");
    assert_eq!(varz["http_port"], http_port);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        server.pid().to_string()
    );

    let mut raw = common::Raw::connect(server.port);
    raw.send(
        b"CONNECT {\"verbose\":false}\r\nPUB traced 26\r\nabcdefghijklmnopqrstuvwxyz\r\nPING\r\n",
    );
    assert_eq!(raw.line(), "PONG");
    let ready = format!("[{}] [INF] Server is ready", server.pid());
    common::wait_for("a cut trace line", common::READY_TIMEOUT, || {
        server
            .log()
            .lines()
            .any(|l| l.contains("<<- ") && l.ends_with("..."))
    });
    let log = server.log();
    assert!(log.contains(&ready), "no timestamps with -T=false:\n{log}");
    assert!(!log.contains("abcdefghijklmnopqrstuvwxyz"), "{log}");

    server.terminate();
    assert!(server.wait_exit(common::READY_TIMEOUT).is_some());
    assert!(!ports_file.exists(), "the ports file is removed on exit");
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

fn http_json(port: u16, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

/// With no address given, the server listens on every address, IPv6 included, as
/// nats-server does (its 0.0.0.0 is a dual-stack socket).
#[test]
fn listens_on_ipv6_too_without_an_address() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let server = common::TestServer::with_shards(2)
        .config("listen: {port}\n")
        .start();
    let stream = std::net::TcpStream::connect(("::1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut line).unwrap();
    assert!(line.starts_with("INFO "), "{line}");
}

/// A route that cannot be reached is reported at the default level, in nats-server's
/// words: the first attempt as an error, later ones at debug level only (until the
/// 3600th, as `connect_error_reports` has it).
#[test]
fn unreachable_routes_are_logged_as_errors() {
    let closed = common::free_port();
    let server = common::TestServer::with_shards(1)
        .args(&["-D", "-cluster", "nats://127.0.0.1:{cluster}"])
        .args(&[
            "-routes",
            &format!("nats://127.0.0.1:{closed},nats://nosuchhost.invalid:4248"),
        ])
        .start();
    let refused = format!(
        "[ERR] Error trying to connect to route (attempt 1): dial tcp 127.0.0.1:{closed}: connect: connection refused"
    );
    let unresolved = "[ERR] Error trying to connect to route (attempt 1): lookup for host \"nosuchhost.invalid\": ";
    let second = "[DBG] Error trying to connect to route (attempt 2): ";
    common::wait_for("route errors", common::READY_TIMEOUT, || {
        let log = server.log();
        log.contains(&refused) && log.contains(unresolved) && log.contains(second)
    });
    let log = server.log();
    assert!(
        !log.contains("[ERR] Error trying to connect to route (attempt 2)"),
        "{log}"
    );
}

/// With a locked-memory limit below what io_uring needs (`ulimit -l 64`), the server
/// raises it when it may (CAP_SYS_RESOURCE) and serves; otherwise it exits naming
/// the fix. Never glommio's bare `MemLockLimit(65536/524288)`.
#[test]
fn low_memlock_limit_is_raised_or_explained() {
    use std::os::unix::process::CommandExt;
    let dir = temp_dir("memlock");
    let port = common::free_port();
    let err_path = dir.join("stderr.txt");
    let mut cmd = natrix();
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "--shards", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap());
    // SAFETY: only setrlimit runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let low = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            match libc::setrlimit(libc::RLIMIT_MEMLOCK, &low) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut exited = None;
    common::wait_for("start or exit", common::READY_TIMEOUT, || {
        exited = child.try_wait().unwrap();
        exited.is_some() || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    match exited {
        Some(status) => {
            assert_eq!(status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("RLIMIT_MEMLOCK") && stderr.contains("ulimit -l unlimited"),
                "{stderr}"
            );
        }
        None => {
            let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
            let _ = child.kill();
            let _ = child.wait();
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max locked memory"))
                .unwrap();
            assert!(line.contains("unlimited"), "{line}");
        }
    }
    assert!(!stderr.contains("MemLockLimit("), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `-r udp://host:port` sends the log to a remote syslog, one datagram per line
/// with nats-server's facility (daemon) and natrix's tag.
#[test]
fn logs_go_to_a_remote_syslog() {
    let daemon = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let url = format!("udp://{}", daemon.local_addr().unwrap());
    let _server = common::TestServer::with_shards(1)
        .args(&["-r", &url])
        .start();
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    while !lines.iter().any(|l: &String| l.contains("Server is ready")) {
        let n = daemon.recv(&mut buf).expect("a syslog datagram in time");
        lines.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let ready = lines
        .iter()
        .find(|l| l.contains("Server is ready"))
        .unwrap();
    assert!(ready.starts_with("<29>"), "daemon.notice: {ready}");
    assert!(ready.contains(" natrix["), "{ready}");
    assert!(ready.ends_with("[INF] Server is ready"), "{ready}");
}
