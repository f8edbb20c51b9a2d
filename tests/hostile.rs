//! What arrives from outside, or goes wrong inside, harms nobody else: a panic
//! ends the process at once, logged, rather than leaving a half-dead server.

mod common;

use common::TestServer;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

#[test]
fn a_panic_on_any_shard_ends_the_process_with_the_panic_logged() {
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
