use super::*;
use crate::conf::parse_str;

fn opts(text: &str) -> Options {
    let map = parse_str(text, "opts.conf").unwrap_or_else(|e| panic!("{e}"));
    Options::from_config(&map).unwrap_or_else(|e| panic!("{e}"))
}

fn opts_err(text: &str) -> ConfError {
    let map = parse_str(text, "opts.conf").unwrap_or_else(|e| panic!("{e}"));
    Options::from_config(&map).expect_err(text)
}

#[test]
fn defaults_match_nats_server() {
    let o = Options::default();
    assert_eq!(o.host, "0.0.0.0");
    assert_eq!(o.port, 4222);
    assert_eq!(o.max_payload, 1_048_576);
    assert_eq!(o.max_control_line, 4096);
    assert_eq!(o.max_pending, 64 * 1024 * 1024);
    assert_eq!(o.max_connections, 65_536);
    assert_eq!(o.max_subscriptions, 0);
    assert_eq!(o.ping_interval_ms, 120_000);
    assert_eq!(o.ping_max, 2);
    assert_eq!(o.write_deadline_ms, 10_000);
    assert_eq!(o.auth_timeout_ms, 2_000);
    assert_eq!(o.lame_duck_duration_ms, 120_000);
    assert_eq!(o.lame_duck_grace_period_ms, 10_000);
    assert!(o.logtime && !o.debug && !o.trace);
    assert_eq!(opts(""), o);
}

#[test]
fn listen_host_port_and_http() {
    let o = opts("listen: 127.0.0.1:4333\nhttp: 8222");
    assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4333));
    assert_eq!(
        (o.http_host.as_deref(), o.http_port),
        (Some("127.0.0.1"), Some(8222))
    );

    let o = opts("listen: 5222\nhost: 10.0.0.1\nhttp: 0.0.0.0:8080");
    assert_eq!((o.host.as_str(), o.port), ("10.0.0.1", 5222));
    assert_eq!(
        (o.http_host.as_deref(), o.http_port),
        (Some("0.0.0.0"), Some(8080))
    );

    let o = opts("net: localhost\nport: -1\nmonitor_port: 8222");
    assert_eq!((o.host.as_str(), o.port), ("localhost", 0));
    assert_eq!(o.http_port, Some(8222));
    assert_eq!(opts("http_port: 9000").http_port, Some(9000));
}

#[test]
fn keys_are_case_insensitive() {
    let o = opts("PORT: 1234\nServer_Name: a\nDEBUG: true");
    assert_eq!(o.port, 1234);
    assert_eq!(o.server_name.as_deref(), Some("a"));
    assert!(o.debug);
}

#[test]
fn limits_accept_sizes_as_integers_and_strings() {
    let o = opts("max_payload: 2MB\nmax_pending: \"128MB\"\nmax_control_line: 8KB\nmax_connections: 100\nmax_subs: 10");
    assert_eq!(o.max_payload, 2 * 1024 * 1024);
    assert_eq!(o.max_pending, 128 * 1024 * 1024);
    assert_eq!(o.max_control_line, 8192);
    assert_eq!(o.max_connections, 100);
    assert_eq!(o.max_subscriptions, 10);
    assert_eq!(opts("max_payload: \"512KB\"").max_payload, 512 * 1024);
    assert_eq!(opts("max_connections: 0").max_connections, 0);
}

#[test]
fn payload_larger_than_pending_is_refused() {
    let e = opts_err("max_pending: 1KB\nmax_payload: 4KB");
    assert_eq!((e.pos.line, e.pos.col), (2, 1));
    assert!(
        e.reason.contains("cannot be higher than max_pending"),
        "{e}"
    );
    assert!(opts_err("max_payload: 3GB")
        .reason
        .contains("between 0 and"));
}

#[test]
fn durations_as_strings_or_seconds() {
    let o = opts("ping_interval: \"30s\"\nwrite_deadline: \"2s\"\nlame_duck_duration: \"1m30s\"\nlame_duck_grace_period: '5s'");
    assert_eq!(o.ping_interval_ms, 30_000);
    assert_eq!(o.write_deadline_ms, 2_000);
    assert_eq!(o.lame_duck_duration_ms, 90_000);
    assert_eq!(o.lame_duck_grace_period_ms, 5_000);
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);

    let o = opts("ping_interval: 60\nping_max: 5");
    assert_eq!(o.ping_interval_ms, 60_000);
    assert_eq!(o.ping_max, 5);
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(
        o.warnings[0].starts_with("opts.conf:1:1: "),
        "{:?}",
        o.warnings
    );

    let e = opts_err("lame_duck_duration: \"10s\"");
    assert!(e.reason.contains("minimum is 30s"), "{e}");
    let e = opts_err("a: 1\nping_interval: \"soon\"");
    assert_eq!((e.pos.line, e.pos.col), (2, 1));
}

#[test]
fn wrong_types_fail_at_the_key() {
    let e = opts_err("debug: true\n  port: \"4222\"");
    assert_eq!(
        e.to_string(),
        "opts.conf:2:3: expected an integer for \"port\", got string"
    );
    let e = opts_err("debug: 1");
    assert_eq!(e.reason, "expected a boolean for \"debug\", got integer");
    let e = opts_err("cluster {\n  name: c1\n  routes: 5\n}");
    assert_eq!((e.pos.line, e.pos.col), (3, 3));
    assert!(e.reason.contains("\"routes\""), "{e}");
    let e = opts_err("server_name: [a]");
    assert_eq!(e.reason, "expected a string for \"server_name\", got array");
    let e = opts_err("authorization: 5");
    assert_eq!(
        e.reason,
        "expected a map for \"authorization\", got integer"
    );
    assert!(opts_err("server_name: \"a b\"").reason.contains("spaces"));
    assert!(opts_err("port: 70000").reason.contains("65535"));
}

#[test]
fn unknown_keys_are_errors_and_variables_are_not_unknown() {
    let e = opts_err(
        "PASS: secret\nbogus: 1\nauthorization {\n  password: $PASS\n  user: u\n  nope: 2\n}",
    );
    assert_eq!(
        e.to_string(),
        "opts.conf:2:1: unknown field \"bogus\"\nopts.conf:6:3: unknown field \"nope\""
    );
    let o = opts("PASS: secret\nauthorization {\n  password: $PASS\n  user: u\n}");
    assert_eq!(o.authorization.unwrap().password.as_deref(), Some("secret"));
}

#[test]
fn features_natrix_lacks_are_refused_with_their_place() {
    let e = opts_err("port: 1\nleafnodes { port: 7422 }\ngateway { name: g }\nwebsocket { port: 8080 }\nmqtt { port: 1883 }\noperator: /op.jwt\nresolver: MEMORY\nresolver_preload: {}");
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "opts.conf:2:1: leafnodes is not supported by natrix yet",
            "opts.conf:3:1: gateway is not supported by natrix yet",
            "opts.conf:4:1: websocket is not supported by natrix yet",
            "opts.conf:5:1: mqtt is not supported by natrix yet",
            "opts.conf:6:1: operator is not supported by natrix yet",
            "opts.conf:7:1: resolver is not supported by natrix yet",
            "opts.conf:8:1: resolver_preload is not supported by natrix yet",
        ]
    );
}

#[test]
fn nkey_users_need_a_valid_user_key() {
    let key = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
    let o = opts(&format!("authorization {{ users: [ {{nkey: {key}}} ] }}"));
    let users = &o.authorization.unwrap().users;
    assert_eq!(users[0].nkey.as_deref(), Some(key));
    let e = opts_err("authorization { users: [ {nkey: UABC} ] }");
    assert_eq!(
        e.to_string(),
        "opts.conf:1:27: Not a valid public nkey for a user"
    );
}

#[test]
fn tuning_knobs_natrix_lacks_are_warnings() {
    let o = opts("server_tags: [SSD, \"az:1,fast\"]\ncluster { compression: s2_auto }");
    assert_eq!(o.server_tags, ["ssd", "az:1", "fast"]);
    assert_eq!(
        o.warnings,
        ["opts.conf:2:11: cluster.compression is not supported by natrix yet; ignored"]
    );
    assert_eq!(opts("max_closed_clients: 2").max_closed_clients, 2);
}

#[test]
fn route_error_reports_and_trace_length() {
    let o = opts("connect_error_reports: 10\nreconnect_error_reports: 0\nmax_traced_msg_len: 64\nports_file_dir: /tmp");
    assert_eq!(o.connect_error_reports, 10);
    assert_eq!(o.reconnect_error_reports, DEFAULT_RECONNECT_ERROR_REPORTS);
    assert_eq!(o.max_traced_msg_len, 64);
    assert_eq!(o.ports_file_dir.as_deref(), Some("/tmp"));
}

#[test]
fn logging_options() {
    let o =
        opts("debug: true\ntrace: on\nlogtime: false\nlog_file: /tmp/n.log\npidfile: /tmp/n.pid");
    assert!(o.debug && o.trace && !o.logtime);
    assert_eq!(o.log_file.as_deref(), Some("/tmp/n.log"));
    assert_eq!(o.pid_file.as_deref(), Some("/tmp/n.pid"));
}

#[test]
fn authorization_single_user_token_and_timeout() {
    let o = opts("authorization { user: derek, password: T0pS3cr3t, timeout: 1 }");
    let auth = o.authorization.unwrap();
    assert_eq!(auth.user.as_deref(), Some("derek"));
    assert_eq!(auth.password.as_deref(), Some("T0pS3cr3t"));
    assert_eq!(auth.timeout_ms, Some(1000));
    assert_eq!(o.auth_timeout_ms, 1000);

    assert_eq!(opts("authorization { timeout: 0.5 }").auth_timeout_ms, 500);
    assert_eq!(
        opts("authorization { timeout: \"3s\" }").auth_timeout_ms,
        3000
    );
    let token = opts("authorization { token: s3cr3t }")
        .authorization
        .unwrap()
        .token;
    assert_eq!(token.as_deref(), Some("s3cr3t"));

    assert!(opts_err("authorization { user: a, token: b }")
        .reason
        .contains("token"));
    assert!(opts_err("authorization { user: a, users: [{user: b}] }")
        .reason
        .contains("users array"));
    assert!(opts_err("authorization { users: [{password: b}] }")
        .reason
        .contains("requires a user"));
}

#[test]
fn users_with_permissions_in_every_form() {
    let o = opts(
        r#"
authorization {
  default_permissions: { subscribe: "PUBLIC.>" }
  users: [
    {user: a, password: pa, permissions: {publish: "a.>", subscribe: ["x", "y"]}}
    {user: b, pass: pb, permissions: {publish: {allow: ["b.>"], deny: "b.secret"}}}
    {user: c}
  ]
}
"#,
    );
    let users = o.authorization.unwrap().users;
    assert_eq!(users.len(), 3);
    let a = users[0].permissions.as_ref().unwrap();
    assert_eq!(
        a.publish.as_ref().unwrap().allow.as_deref().unwrap(),
        ["a.>"]
    );
    assert_eq!(
        a.subscribe.as_ref().unwrap().allow.as_deref().unwrap(),
        ["x", "y"]
    );
    let b = users[1].permissions.as_ref().unwrap();
    assert_eq!(users[1].password.as_deref(), Some("pb"));
    assert_eq!(b.publish.as_ref().unwrap().deny, ["b.secret"]);
    assert!(b.subscribe.is_none());
    let c = users[2].permissions.as_ref().unwrap();
    assert_eq!(
        c.subscribe.as_ref().unwrap().allow.as_deref().unwrap(),
        ["PUBLIC.>"]
    );
    assert!(users.iter().all(|u| u.account.is_none()));
}

#[test]
fn accounts_in_block_and_list_forms() {
    let o = opts(
        "accounts {\n  A { users: [{user: ua, password: pa}], jetstream: enabled }\n  B: { users = [ {user: ub} ] }\n}",
    );
    assert_eq!(o.accounts.len(), 2);
    assert_eq!(o.accounts[0].name, "A");
    assert!(o.accounts[0].jetstream);
    assert!(!o.accounts[1].jetstream);
    assert_eq!(o.accounts[0].users[0].account.as_deref(), Some("A"));
    assert_eq!(o.accounts[1].users[0].user, "ub");
    assert_eq!(o.system_account, None);

    let o = opts("accounts: [X, Y]");
    let names: Vec<&str> = o.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["X", "Y"]);

    assert!(opts_err("accounts: [X, X]")
        .reason
        .contains("duplicate account"));
    assert!(opts_err("accounts { $G { } }").reason.contains("reserved"));
    assert!(
        opts_err("accounts { A { users: [{user: u}] }, B { users: [{user: u}] } }")
            .reason
            .contains("duplicate user")
    );
}

#[test]
fn system_account_explicit_or_sys() {
    let o = opts("accounts { $SYS { users: [{user: admin, password: x}] } }");
    assert_eq!(o.system_account.as_deref(), Some("$SYS"));
    let o = opts("accounts { SYSTEM { } }\nsystem_account: SYSTEM");
    assert_eq!(o.system_account.as_deref(), Some("SYSTEM"));
}

#[test]
fn cluster_block() {
    let o = opts(
        "cluster {\n  name: c1\n  listen: localhost:6222\n  routes: [nats://a:6222, nats://b:6222, nats://a:6222]\n  pool_size: 5\n  advertise: \"h:6222\"\n  no_advertise: true\n  connect_retries: 3\n  authorization { user: r, password: p, timeout: 2 }\n}",
    );
    let c = o.cluster.unwrap();
    assert_eq!(c.name.as_deref(), Some("c1"));
    assert_eq!((c.host.as_str(), c.port), ("localhost", 6222));
    assert_eq!(c.routes, ["nats://a:6222", "nats://b:6222"]);
    assert_eq!(c.pool_size, Some(5));
    assert_eq!(c.advertise.as_deref(), Some("h:6222"));
    assert!(c.no_advertise);
    assert_eq!(c.connect_retries, 3);
    assert_eq!(c.authorization.unwrap().user.as_deref(), Some("r"));
    assert_eq!(
        o.warnings.len(),
        1,
        "duplicate route warns: {:?}",
        o.warnings
    );

    let c = opts("cluster { port: 4248 }").cluster.unwrap();
    assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 4248));
    assert_eq!(
        opts("cluster { pool_size: -1 }").cluster.unwrap().pool_size,
        Some(0)
    );
    assert!(opts_err("cluster { authorization { users: [{user: a}] } }")
        .reason
        .contains("multiple users"));
}

#[test]
fn jetstream_forms() {
    assert_eq!(
        opts("jetstream: enabled").jetstream,
        Some(JetStreamConfig::default())
    );
    assert_eq!(
        opts("jetstream: true").jetstream,
        Some(JetStreamConfig::default())
    );
    assert_eq!(opts("jetstream: disabled").jetstream, None);
    assert_eq!(
        opts("jetstream { enabled: false, store_dir: /x }").jetstream,
        None
    );
    let js = opts(
        "jetstream {\n  store_dir: /nats/storage\n  max_memory_store: 1G\n  max_file_store: \"10G\"\n  domain: hub\n  sync_interval: \"2m\"\n}",
    )
    .jetstream
    .unwrap();
    assert_eq!(js.store_dir.as_deref(), Some("/nats/storage"));
    assert_eq!(js.max_memory_store, Some(1_000_000_000));
    assert_eq!(js.max_file_store, Some(10 << 30));
    assert_eq!(js.domain.as_deref(), Some("hub"));
    assert_eq!(js.sync_interval_ms, Some(120_000));
    assert_eq!(
        opts("jetstream { sync: always }")
            .jetstream
            .unwrap()
            .sync_interval_ms,
        None
    );
    assert!(opts_err("jetstream: maybe").reason.contains("enabled"));
}

#[test]
fn top_level_store_dir() {
    let js = opts("store_dir: /data\njetstream: enabled")
        .jetstream
        .unwrap();
    assert_eq!(js.store_dir.as_deref(), Some("/data"));
    assert!(opts_err("store_dir: /a\njetstream { store_dir: /b }")
        .reason
        .contains("duplicate"));
    assert_eq!(opts("store_dir: /a").warnings.len(), 1);
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("natrix-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("n.conf");
    std::fs::write(&path, "port: 4999\n").unwrap();
    assert_eq!(Options::load(&path).unwrap().port, 4999);
    std::fs::write(&path, "port: [\n").unwrap();
    let e = Options::load(&path).unwrap_err();
    assert_eq!((e.pos.line, e.pos.col), (1, 7));
}

/// A self-signed certificate and key in a temporary directory.
fn cert_files() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let s = |p: std::path::PathBuf| p.display().to_string();
    (dir, s(cert), s(key))
}

#[test]
fn tls_blocks_read_as_nats_server_reads_them() {
    let (_dir, cert, key) = cert_files();
    let o = opts(&format!(
        "tls {{\n cert_file: {cert:?}\n key_file: {key:?}\n ca_file: {cert:?}\n verify_and_map: true\n timeout: 0.5\n handshake_first: true\n}}\ncluster {{ tls {{ cert_file: {cert:?}, key_file: {key:?}, ca_file: {cert:?}, timeout: \"3s\" }} }}"
    ));
    let tls = o.tls.unwrap();
    assert!(tls.verify && tls.map && tls.handshake_first);
    assert_eq!(tls.timeout_ms, 500);
    assert_eq!(tls.ca_file.as_deref(), Some(cert.as_str()));
    assert_eq!(o.cluster.unwrap().tls.unwrap().timeout_ms, 3000);
    let o = opts(&format!("tls {{ cert_file: {cert:?}, key_file: {key:?} }}"));
    assert_eq!(o.tls.unwrap().timeout_ms, DEFAULT_TLS_TIMEOUT_MS);
}

#[test]
fn bad_tls_blocks_stop_with_their_place() {
    let (_dir, cert, key) = cert_files();
    let err = |text: String| opts_err(&text).to_string();
    assert_eq!(
        err(format!("port: 1\ntls {{ key_file: {key:?} }}")),
        "opts.conf:2:1: missing 'cert_file' in TLS configuration"
    );
    assert_eq!(
        err(format!(
            "tls {{ cert_file: {cert:?}, key_file: {key:?}, verify: true }}"
        )),
        "opts.conf:1:1: 'verify' requires a 'ca_file' to check client certificates"
    );
    assert_eq!(
        err(format!(
            "tls {{ cert_file: {cert:?}, key_file: {key:?}, ca_file: {key:?} }}"
        )),
        "opts.conf:1:1: failed to parse root ca certificate"
    );
    assert_eq!(
        err(format!(
            "cluster {{ tls {{ cert_file: {cert:?}, key_file: {key:?} }} }}"
        )),
        "opts.conf:1:11: cluster tls requires a 'ca_file': routes verify each other's certificates"
    );
    let refused = err(format!(
        "tls {{ cert_file: {cert:?}, key_file: {key:?}, cipher_suites: [x] }}"
    ));
    assert!(refused.starts_with("opts.conf:1:"), "{refused}");
    assert!(
        refused.ends_with(": tls.cipher_suites is not supported by natrix yet"),
        "{refused}"
    );
}
