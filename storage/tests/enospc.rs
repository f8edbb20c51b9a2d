//! Full disk: ENOSPC surfaces as an error, the log stays readable, and it
//! recovers when space returns. Needs root to mount a small tmpfs; skipped otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use natrix_storage::rt::run_local;
use natrix_storage::{FileStore, LogConfig};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(at: &Path) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(at.to_path_buf()))
}

#[test]
fn disk_full_fails_the_commit_and_recovers() {
    let base = tempfile::tempdir().unwrap();
    let Some(mount) = mount_small_tmpfs(base.path()) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = mount.0.join("log");
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![1u8; 600 << 10]).unwrap();
    run_local(move || async move {
        let cfg = LogConfig {
            segment_size_bytes: 64 << 10,
            record_max_bytes: 8 << 10,
            ..LogConfig::default()
        };
        let s = FileStore::open(&dir, cfg.clone()).await.unwrap();
        let payload = vec![7u8; 1000];
        let mut durable = 0;
        let err = loop {
            for _ in 0..10 {
                s.append("full", b"", &payload).unwrap();
            }
            match s.commit().await {
                Ok(seq) => durable = seq,
                Err(e) => break e,
            }
            assert!(durable < 10_000, "the disk never filled");
        };
        assert!(err.is_disk_full(), "{err}");
        assert!(durable > 0);
        // Reads still work, and nothing past the durable point is kept.
        assert_eq!(s.state().last_seq, durable);
        assert!(s.get(durable).await.unwrap().is_some());
        assert!(s.get(durable + 1).await.unwrap().is_none());
        // Still full: what fits in the preallocated tail commits, then commits
        // fail again, without harm.
        let mut failed_again = false;
        for _ in 0..100 {
            s.append("full", b"", &payload).unwrap();
            match s.commit().await {
                Ok(seq) => durable = seq,
                Err(e) => {
                    assert!(e.is_disk_full(), "{e}");
                    failed_again = true;
                    break;
                }
            }
        }
        assert!(failed_again);
        assert_eq!(s.state().last_seq, durable);
        // Space returns.
        std::fs::remove_file(&filler).unwrap();
        let t = s.append("full", b"", &payload).unwrap();
        assert_eq!(t.seq, durable + 1);
        s.commit().await.unwrap();
        s.wait_durable(t).await.unwrap();
        drop(s);
        let s = FileStore::open(&dir, cfg).await.unwrap();
        assert_eq!(s.state().last_seq, durable + 1);
        for seq in 1..=durable + 1 {
            assert_eq!(s.get(seq).await.unwrap().unwrap().payload.len(), 1000);
        }
    });
}
