//! Publish and subscribe permissions as nats-server has them, `allow_responses`
//! included: the same scenario runs against natrix and, when installed, Debian's
//! nats-server 2.9.10, and both must answer line for line the same.

mod common;

use common::{Raw, TestServer};

const CONFIG: &str = r#"
listen: 127.0.0.1:{port}
authorization {
  users: [
    { user: svc, password: svc, permissions: {
        subscribe: "svc.>", publish: { deny: "secret.>" }, allow_responses: { max: 2 } } }
    { user: cli, password: cli }
  ]
}
"#;

fn login(port: u16, user: &str) -> Raw {
    let mut c = Raw::connect(port);
    c.send(
        format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{user}\",\"pass\":\"{user}\"}}\r\nPING\r\n")
            .as_bytes(),
    );
    assert_eq!(c.line(), "PONG", "{user} logged in");
    c
}

/// What the service and the client each see of a request answered three times
/// (two allowed), and of a publish the service may not make.
fn scenario(server: &TestServer) -> (Vec<String>, Vec<String>) {
    let mut svc = login(server.port, "svc");
    svc.send(b"SUB svc.echo 1\r\nPING\r\n");
    assert_eq!(svc.line(), "PONG");
    let mut cli = login(server.port, "cli");
    cli.send(b"SUB _INBOX.r 1\r\nPUB svc.echo _INBOX.r 2\r\nhi\r\nPING\r\n");
    assert_eq!(cli.line(), "PONG");
    assert_eq!(svc.line(), "MSG svc.echo 1 _INBOX.r 2");
    assert_eq!(svc.line(), "hi");
    svc.send(b"PUB _INBOX.r 3\r\nyo1\r\nPUB _INBOX.r 3\r\nyo2\r\nPUB _INBOX.r 3\r\nyo3\r\n");
    svc.send(b"PUB other 1\r\nx\r\nPUB _INBOX.never 1\r\nx\r\nPING\r\n");
    let mut seen_by_svc = Vec::new();
    loop {
        let line = svc.line();
        if line == "PONG" || line.is_empty() {
            break;
        }
        seen_by_svc.push(line);
    }
    cli.send(b"PING\r\n");
    let mut seen_by_cli = Vec::new();
    loop {
        let line = cli.line();
        if line == "PONG" || line.is_empty() {
            break;
        }
        seen_by_cli.push(line);
    }
    (seen_by_svc, seen_by_cli)
}

fn expected() -> (Vec<String>, Vec<String>) {
    let violation = |s: &str| format!("-ERR 'Permissions Violation for Publish to \"{s}\"'");
    (
        vec![
            violation("_INBOX.r"),
            violation("other"),
            violation("_INBOX.never"),
        ],
        ["MSG _INBOX.r 1 3", "yo1", "MSG _INBOX.r 1 3", "yo2"]
            .map(String::from)
            .to_vec(),
    )
}

#[test]
fn allow_responses_lets_a_service_answer_what_it_received_and_no_more() {
    let server = TestServer::with_shards(2).config(CONFIG).start();
    assert_eq!(scenario(&server), expected());
}

/// The expectations above are nats-server's.
#[test]
fn nats_server_answers_the_same() {
    if std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: nats-server is not installed");
        return;
    }
    let server = TestServer::with_shards(1)
        .binary("nats-server")
        .config(CONFIG)
        .start();
    assert_eq!(scenario(&server), expected());
}

/// nkey users: the client signs INFO's nonce with its seed; a key the server
/// does not know, or a bad signature, is an Authorization Violation. Checked
/// against nats-server 2.9.10 too when it is installed.
#[tokio::test]
async fn nkey_users_sign_the_nonce() {
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let config = format!(
        "listen: 127.0.0.1:{{port}}\nauthorization {{ users: [ {{ nkey: {} }} ] }}\n",
        user.public_key()
    );
    let mut servers = vec![TestServer::with_shards(2).config(&config).start()];
    if std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        servers.push(
            TestServer::with_shards(1)
                .binary("nats-server")
                .config(&config)
                .start(),
        );
    }
    for server in &servers {
        let nc = async_nats::ConnectOptions::with_nkey(user.seed().unwrap())
            .connect(server.url())
            .await
            .expect("the configured nkey logs in");
        nc.flush().await.unwrap();
        let refused =
            async_nats::ConnectOptions::with_nkey(stranger.seed().unwrap()).connect(server.url());
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), refused).await;
        assert!(!matches!(refused, Ok(Ok(_))), "an unknown nkey is refused");
        // A raw CONNECT with the right key and a bad signature.
        let mut raw = Raw::connect(server.port);
        assert!(
            raw.info["nonce"].as_str().is_some_and(|n| !n.is_empty()),
            "{}",
            raw.info
        );
        raw.send(
            format!(
                "CONNECT {{\"verbose\":false,\"nkey\":\"{}\",\"sig\":\"AAAA\"}}\r\nPING\r\n",
                user.public_key()
            )
            .as_bytes(),
        );
        assert_eq!(raw.line(), "-ERR 'Authorization Violation'");
    }
}
