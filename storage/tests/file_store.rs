//! File store behaviour on a real disk, inside a glommio executor.

use natrix_storage::rt::run_local;
use natrix_storage::{Discard, FileStore, Limits, LogConfig, PurgeRequest, RaftLog};

fn cfg(seg: u64) -> LogConfig {
    LogConfig {
        segment_size_bytes: seg,
        record_max_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

#[test]
fn append_commit_read_reopen_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = FileStore::open(&path, cfg(64 << 10)).await.unwrap();
        let mut tickets = Vec::new();
        for i in 0..2000u64 {
            let t = s
                .append(
                    &format!("orders.{}", i % 7),
                    b"",
                    format!("payload-{i}").as_bytes(),
                )
                .unwrap();
            assert_eq!(t.seq, i + 1);
            tickets.push(t);
            if i % 300 == 0 {
                // Reads of records not yet written come from memory.
                let m = s.get(i + 1).await.unwrap().unwrap();
                assert_eq!(m.payload.as_ref(), format!("payload-{i}").as_bytes());
                s.commit().await.unwrap();
            }
        }
        assert_eq!(s.commit().await.unwrap(), 2000);
        for t in tickets {
            s.wait_durable(t).await.unwrap();
        }
        assert!(s.segment_count() >= 2, "rolled: {}", s.segment_count());
        let before = s.state();
        s.close().await.unwrap();

        let s = FileStore::open(&path, cfg(64 << 10)).await.unwrap();
        assert_eq!(s.state(), before);
        let r = s.recovery_report();
        // The tail, and the preallocated next segment when there is one.
        assert!(r.segments_scanned <= 2, "only the tail is scanned: {r:?}");
        assert!(r.segments_from_index >= 1, "{r:?}");
        assert!(r.missing.is_empty() && r.damage.is_empty() && r.torn_tails.is_empty());
        for seq in [1u64, 2, 999, 1500, 2000] {
            let m = s.get(seq).await.unwrap().unwrap();
            assert_eq!(
                m.payload.as_ref(),
                format!("payload-{}", seq - 1).as_bytes()
            );
            assert_eq!(m.subject, format!("orders.{}", (seq - 1) % 7));
        }
        assert_eq!(
            s.last_for_subject("orders.3").await.unwrap().unwrap().seq,
            1999
        );
        assert_eq!(s.subject_counts("orders.*").len(), 7);
        let t = s.append("x", b"", b"after reopen").unwrap();
        assert_eq!(t.seq, 2001);
        s.commit().await.unwrap();
    });
}

#[test]
fn delete_purge_and_retention_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let mut c = cfg(64 << 10);
        c.limits = Limits {
            max_msgs_per_subject: 3,
            ..Limits::default()
        };
        let s = FileStore::open(&path, c.clone()).await.unwrap();
        for i in 0..600u64 {
            s.append_at(1_000 + i, &format!("kv.{}", i % 10), b"", &[i as u8; 100])
                .unwrap();
        }
        assert_eq!(s.state().msgs, 30);
        assert!(s.delete(599).unwrap());
        assert!(!s.delete(599).unwrap());
        let n = s
            .purge(&PurgeRequest {
                subject: Some("kv.1".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(n, 3);
        s.commit().await.unwrap();
        let before = s.state();
        assert_eq!(before.msgs, 26);
        drop(s);
        let s = FileStore::open(&path, c.clone()).await.unwrap();
        assert_eq!(s.state(), before);
        assert!(s.get(599).await.unwrap().is_none());
        assert_eq!(s.seq_for_time(1_595), Some(596));
        // Purge all keeps the sequence going and drops old segments.
        s.purge(&PurgeRequest::default()).unwrap();
        s.commit().await.unwrap();
        assert_eq!(s.state().first_seq, 601);
        drop(s);
        let s = FileStore::open(&path, c).await.unwrap();
        assert_eq!(s.state().msgs, 0);
        assert_eq!(s.state().first_seq, 601);
        assert_eq!(s.state().last_seq, 600);
        assert!(
            s.recovery_report().missing.is_empty(),
            "{:?}",
            s.recovery_report()
        );
    });
}

#[test]
fn discard_new_refuses_and_max_bytes_drops_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let mut c = cfg(64 << 10);
        c.limits = Limits {
            max_msgs: 5,
            discard: Discard::New,
            ..Limits::default()
        };
        let s = FileStore::open(path.join("new"), c.clone()).await.unwrap();
        for _ in 0..5 {
            s.append("a", b"", b"x").unwrap();
        }
        assert!(matches!(
            s.append("a", b"", b"x"),
            Err(natrix_storage::StoreError::LimitReached("messages"))
        ));
        c.limits = Limits {
            max_bytes: 20_000,
            ..Limits::default()
        };
        let s = FileStore::open(path.join("old"), c.clone()).await.unwrap();
        for i in 0..2_000u64 {
            s.append("b", b"", &[1u8; 200]).unwrap();
            if i % 100 == 0 {
                s.commit().await.unwrap();
            }
        }
        s.commit().await.unwrap();
        s.commit().await.unwrap();
        assert!(s.state().bytes <= 20_000);
        assert!(
            s.segment_count() <= 3,
            "old segments removed: {}",
            s.segment_count()
        );
        let st = s.state();
        drop(s);
        let s = FileStore::open(path.join("old"), c).await.unwrap();
        assert_eq!(s.state(), st);
        assert!(
            s.recovery_report().missing.is_empty(),
            "{:?}",
            s.recovery_report()
        );
    });
}

#[test]
fn raft_log_append_truncate_compact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let log = RaftLog::File(FileStore::open(&path, cfg(64 << 10)).await.unwrap());
        for i in 1..=500u64 {
            log.append(i, &[(1 + i / 100, format!("e{i}").as_bytes())])
                .unwrap();
        }
        assert!(log.append(502, &[(9, b"gap")]).is_err());
        log.commit().await.unwrap();
        assert_eq!(log.term(250), Some(3));
        log.truncate_suffix(301).await.unwrap();
        assert_eq!(log.last_index(), 300);
        log.append(301, &[(7, b"new301"), (7, b"new302")]).unwrap();
        log.compact_prefix(101, 2).unwrap();
        log.commit().await.unwrap();
        assert_eq!(log.first_index(), 101);
        assert_eq!(log.term(100), Some(2));
        drop(log);
        let log = RaftLog::File(FileStore::open(&path, cfg(64 << 10)).await.unwrap());
        assert_eq!(log.first_index(), 101);
        assert_eq!(log.last_index(), 302);
        assert_eq!(log.term(100), Some(2));
        assert_eq!(log.term(302), Some(7));
        assert_eq!(log.entry(301).await.unwrap().unwrap().1.as_ref(), b"new301");
        assert_eq!(log.entry(300).await.unwrap().unwrap().1.as_ref(), b"e300");
        assert!(log.entry(50).await.unwrap().is_none());
        // Snapshot install past the end.
        log.compact_prefix(1_000, 9).unwrap();
        log.append(1_000, &[(9, b"after snapshot")]).unwrap();
        log.commit().await.unwrap();
        drop(log);
        let log = RaftLog::File(FileStore::open(&path, cfg(64 << 10)).await.unwrap());
        assert_eq!((log.first_index(), log.last_index()), (1_000, 1_000));
        assert_eq!(log.term(999), Some(9));
    });
}

#[test]
fn interval_durability_and_concurrent_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let mut c = cfg(1 << 20);
        c.durability = natrix_storage::Durability::Interval(std::time::Duration::from_secs(3600));
        let s = std::rc::Rc::new(FileStore::open(&path, c).await.unwrap());
        let flusher = {
            let s = s.clone();
            glommio::spawn_local(async move {
                for _ in 0..50 {
                    s.commit().await.unwrap();
                    glommio::yield_if_needed().await;
                }
            })
        };
        for i in 0..5_000u32 {
            let t = s.append("i", b"", &i.to_le_bytes()).unwrap();
            if i % 1000 == 999 {
                s.commit().await.unwrap();
                s.wait_durable(t).await.unwrap();
            }
        }
        flusher.await;
        s.sync().await.unwrap();
        assert_eq!(s.watch().durable_seq(), 5_000);
    });
}

/// Reads served from the read-ahead block never outlive a cut: after a
/// truncation and new appends at the same sequences, a read sees the new records.
#[test]
fn read_ahead_block_is_void_after_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = FileStore::open(&path, cfg(1 << 20)).await.unwrap();
        for i in 0..200u64 {
            s.append("a", b"", format!("old-{i}").as_bytes()).unwrap();
        }
        s.commit().await.unwrap();
        for seq in 1..=200u64 {
            let m = s.get(seq).await.unwrap().unwrap();
            assert_eq!(m.payload.as_ref(), format!("old-{}", seq - 1).as_bytes());
        }
        s.truncate_from(100).await.unwrap();
        for i in 99..200u64 {
            s.append("a", b"", format!("new-{i}").as_bytes()).unwrap();
        }
        s.commit().await.unwrap();
        for seq in [1u64, 99, 100, 150, 200] {
            let want = if seq < 100 { "old" } else { "new" };
            let m = s.get(seq).await.unwrap().unwrap();
            assert_eq!(m.payload.as_ref(), format!("{want}-{}", seq - 1).as_bytes());
        }
    });
}
