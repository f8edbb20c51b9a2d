//! Crash test: a child process appends in durable mode and reports each durable
//! sequence; it is killed with SIGKILL at random moments. After reopen every
//! record it reported durable is there, intact, in order.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use natrix_storage::rt::run_local;
use natrix_storage::{FileStore, LogConfig};

const CHILD_ENV: &str = "NATRIX_STORAGE_CRASH_CHILD";

fn cfg() -> LogConfig {
    LogConfig {
        segment_size_bytes: 256 << 10,
        record_max_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

fn payload(seq: u64) -> Vec<u8> {
    let len = (seq * 7919 % 3000) as usize;
    (0..len).map(|i| (seq as usize + i * 13) as u8).collect()
}

/// The child's body; a no-op unless started by `crash_and_recover`.
#[test]
fn crash_child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    run_local(move || async move {
        let s = FileStore::open(&dir, cfg()).await.unwrap();
        let mut out = std::io::stdout();
        let mut batch = 1u64;
        loop {
            let mut last = 0;
            for _ in 0..batch {
                let seq = s.state().last_seq + 1;
                let t = s
                    .append(&format!("crash.{}", seq % 5), b"", &payload(seq))
                    .unwrap();
                assert_eq!(t.seq, seq);
                last = seq;
            }
            s.commit().await.unwrap();
            writeln!(out, "durable {last}").unwrap();
            out.flush().unwrap();
            batch = batch % 64 + 1;
        }
    });
}

#[test]
fn crash_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let exe = std::env::current_exe().unwrap();
    let mut durable_max = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..6 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let lines_before_kill = 1 + rng % 200;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("durable ") {
                durable_max = durable_max.max(n.parse().unwrap());
                seen += 1;
                if seen == lines_before_kill {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: child was killed");

        let path2 = path.clone();
        let want = durable_max;
        run_local(move || async move {
            let s = FileStore::open(&path2, cfg()).await.unwrap();
            let r = s.recovery_report();
            assert!(r.missing.is_empty() && r.damage.is_empty(), "{r:?}");
            let st = s.state();
            assert!(
                st.last_seq >= want,
                "durable {want} but last {}",
                st.last_seq
            );
            assert_eq!(st.first_seq, 1);
            assert_eq!(st.msgs, st.last_seq);
            for seq in 1..=st.last_seq {
                let m = s.get(seq).await.unwrap().unwrap();
                assert_eq!(m.seq, seq);
                assert_eq!(m.subject, format!("crash.{}", seq % 5));
                assert_eq!(&m.payload[..], &payload(seq)[..], "seq {seq}");
            }
        });
    }
    assert!(durable_max > 0);
}
