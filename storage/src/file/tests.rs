//! Unit tests of the commit pipeline and the background index writes.

use std::time::Duration;

use futures_lite::future::poll_once;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use super::index_writes::IndexWrites;
use super::tail::WriteOp;
use super::*;
use crate::config::PurgeRequest;
use crate::rt::run_local;

/// Holds commit `held`'s fdatasync until `gate` is signalled (then fails
/// it if `fail`), and records which commits reached their sync.
fn hold_sync(
    s: &FileStore,
    held: u64,
    fail: bool,
) -> (Rc<glommio::sync::Semaphore>, Rc<RefCell<Vec<u64>>>) {
    let gate = Rc::new(glommio::sync::Semaphore::new(0));
    let reached = Rc::new(RefCell::new(Vec::new()));
    let (g, r) = (gate.clone(), reached.clone());
    *s.sync_hook.borrow_mut() = Some(Box::new(move |no| {
        r.borrow_mut().push(no);
        let g = g.clone();
        Box::pin(async move {
            if no == held {
                g.acquire(1).await.expect("gate");
                if fail {
                    return Err(std::io::Error::other("injected sync failure").into());
                }
            }
            Ok(())
        })
    }));
    (gate, reached)
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if f() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition never met");
}

#[test]
fn next_batch_is_written_while_the_previous_sync_is_in_flight_but_durable_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = Rc::new(FileStore::open(&path, LogConfig::default()).await.unwrap());
        let (gate, reached) = hold_sync(&s, 1, false);
        let a = s.append("a", b"", &[1u8; 3000]).unwrap();
        let c1 = glommio::spawn_local({
            let s = s.clone();
            async move { s.commit().await }
        });
        until(|| reached.borrow().contains(&1)).await;
        // Batch 2 (which rewrites batch 1's last block) is written and synced
        // while batch 1's sync is still held.
        let b = s.append("b", b"", &[2u8; 3000]).unwrap();
        let c2 = glommio::spawn_local({
            let s = s.clone();
            async move { s.commit().await }
        });
        until(|| reached.borrow().contains(&2)).await;
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            s.watch().durable_seq(),
            0,
            "nothing durable before batch 1's sync"
        );
        assert!(poll_once(s.wait_durable(b)).await.is_none());
        assert!(poll_once(s.wait_durable(a)).await.is_none());
        gate.signal(1);
        assert_eq!(c1.await.unwrap(), 1);
        assert_eq!(c2.await.unwrap(), 2);
        s.wait_durable(a).await.unwrap();
        s.wait_durable(b).await.unwrap();
        assert_eq!(s.get(2).await.unwrap().unwrap().payload[0], 2);
        let s = Rc::try_unwrap(s).ok().unwrap();
        drop(s);
        let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
        assert_eq!(s.state().last_seq, 2);
        assert_eq!(s.get(1).await.unwrap().unwrap().payload.len(), 3000);
        assert_eq!(s.get(2).await.unwrap().unwrap().payload[2999], 2);
    });
}

#[test]
fn a_failed_sync_fails_the_batches_pipelined_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = Rc::new(FileStore::open(&path, LogConfig::default()).await.unwrap());
        let first = s.append("x", b"", b"durable").unwrap();
        s.commit().await.unwrap();
        s.wait_durable(first).await.unwrap();
        let (gate, reached) = hold_sync(&s, 2, true);
        let a = s.append("a", b"", b"lost").unwrap();
        let c1 = glommio::spawn_local({
            let s = s.clone();
            async move { s.commit().await }
        });
        until(|| reached.borrow().contains(&2)).await;
        let b = s.append("b", b"", b"lost too").unwrap();
        let c2 = glommio::spawn_local({
            let s = s.clone();
            async move { s.commit().await }
        });
        until(|| reached.borrow().contains(&3)).await;
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert!(poll_once(s.wait_durable(b)).await.is_none());
        gate.signal(1);
        assert!(c1.await.is_err());
        assert!(matches!(c2.await, Err(StoreError::NotDurable { .. })));
        assert!(matches!(
            s.wait_durable(a).await,
            Err(StoreError::NotDurable { .. })
        ));
        assert!(matches!(
            s.wait_durable(b).await,
            Err(StoreError::NotDurable { .. })
        ));
        s.wait_durable(first).await.unwrap();
        // Cut back to the last durable point, and usable again.
        assert_eq!(s.state().last_seq, 1);
        let t = s.append("c", b"", b"after").unwrap();
        assert_eq!(t.seq, 2);
        s.commit().await.unwrap();
        s.wait_durable(t).await.unwrap();
        let s = Rc::try_unwrap(s).ok().unwrap();
        drop(s);
        let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
        assert_eq!(s.state().last_seq, 2);
        assert_eq!(&s.get(2).await.unwrap().unwrap().payload[..], b"after");
    });
}

#[test]
fn records_straddling_tail_buffers_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let cfg = LogConfig {
            segment_size_bytes: 4 << 20,
            record_max_bytes: 64 << 10,
            ..LogConfig::default()
        };
        let s = FileStore::open(&path, cfg.clone()).await.unwrap();
        let mut n = 0u64;
        // Sizes that cross buffer boundaries at odd places; a commit now and then.
        for i in 0..3_000u64 {
            let len = (i * 7919) % 9000;
            s.append("s", b"h", &vec![(i % 251) as u8; len as usize])
                .unwrap();
            n += 1;
            if i % 400 == 0 {
                s.commit().await.unwrap();
            }
            if i % 97 == 0 {
                let m = s.get(n).await.unwrap().unwrap();
                assert_eq!(m.payload.len() as u64, len);
            }
        }
        s.commit().await.unwrap();
        drop(s);
        let s = FileStore::open(&path, cfg).await.unwrap();
        assert_eq!(s.state().last_seq, n);
        assert!(s.recovery_report().torn_tails.is_empty());
        for i in 0..3_000u64 {
            let m = s.get(i + 1).await.unwrap().unwrap();
            assert_eq!(m.payload.len() as u64, (i * 7919) % 9000);
            assert!(m.payload.iter().all(|&b| b == (i % 251) as u8));
        }
    });
}

#[test]
fn full_tail_buffers_are_written_before_the_commit_but_durable_only_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
        let mut last = None;
        for _ in 0..3_000 {
            last = Some(s.append("w", b"", &[7u8; 1024]).unwrap());
        }
        let ops: Vec<Rc<WriteOp>> = {
            let i = s.inner.borrow();
            i.finished.iter().map(|c| c.op.clone()).collect()
        };
        assert!(ops.len() >= 2, "3 MiB fill several tail buffers");
        assert!(ops.iter().all(|op| op.started.get()), "written at once");
        for op in &ops {
            assert!(op.done.wait().await, "write succeeded");
        }
        // Written, not synced: nothing is durable yet.
        assert_eq!(s.watch().durable_seq(), 0);
        assert!(poll_once(s.wait_durable(last.unwrap())).await.is_none());
        assert_eq!(s.get(1).await.unwrap().unwrap().payload[0], 7);
        assert_eq!(s.commit().await.unwrap(), 3_000);
        s.wait_durable(last.unwrap()).await.unwrap();
        drop(s);
        let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
        assert_eq!(s.state().last_seq, 3_000);
        assert!(s.recovery_report().torn_tails.is_empty());
        for seq in [1, 1_000, 2_999, 3_000] {
            assert_eq!(s.get(seq).await.unwrap().unwrap().payload.len(), 1024);
        }
    });
}

#[test]
fn pipelined_commits_rewriting_partial_blocks_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let cfg = LogConfig {
            segment_size_bytes: 4 << 20,
            record_max_bytes: 64 << 10,
            ..LogConfig::default()
        };
        let s = Rc::new(FileStore::open(&path, cfg.clone()).await.unwrap());
        let mut commits = Vec::new();
        let mut tickets = Vec::new();
        // Many commits in flight at once, most ending inside a block that the
        // next one rewrites, some batches filling whole tail buffers (written
        // before their commit), across segment rolls.
        for i in 0..4_000u64 {
            let len = if i % 500 < 10 {
                200_000
            } else {
                (i * 7919) % 3000
            };
            let len = len.min(60_000) as usize;
            tickets.push(s.append("p", b"", &vec![(i % 251) as u8; len]).unwrap());
            if i % 3 == 0 {
                let sc = s.clone();
                commits.push(glommio::spawn_local(async move { sc.commit().await }));
            }
            if i % 5 == 0 {
                glommio::yield_if_needed().await;
                futures_lite::future::yield_now().await;
            }
        }
        let sc = s.clone();
        commits.push(glommio::spawn_local(async move { sc.commit().await }));
        for c in commits {
            c.await.unwrap();
        }
        for t in tickets {
            s.wait_durable(t).await.unwrap();
        }
        let s = Rc::try_unwrap(s).ok().unwrap();
        drop(s);
        let s = FileStore::open(&path, cfg).await.unwrap();
        assert_eq!(s.state().last_seq, 4_000);
        assert!(s.recovery_report().torn_tails.is_empty());
        assert!(s.recovery_report().missing.is_empty());
        for i in 0..4_000u64 {
            let m = s.get(i + 1).await.unwrap().unwrap();
            let len = if i % 500 < 10 {
                200_000
            } else {
                (i * 7919) % 3000
            };
            assert_eq!(m.payload.len() as u64, len.min(60_000));
            assert!(m.payload.iter().all(|&b| b == (i % 251) as u8));
        }
    });
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_size_bytes: 64 << 10,
        record_max_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

async fn fill(s: &FileStore, n: u64) {
    for i in 0..n {
        s.append(&format!("s.{}", i % 5), b"", &[i as u8; 200])
            .unwrap();
        if i % 100 == 99 {
            s.commit().await.unwrap();
        }
    }
    s.commit().await.unwrap();
}

/// Holds every index write between its temporary file and its rename.
fn hold_index_writes(s: &FileStore) -> (Rc<glommio::sync::Semaphore>, Rc<IndexWrites>) {
    let gate = Rc::new(glommio::sync::Semaphore::new(0));
    let w = s.inner.borrow().idx_writes.clone();
    *w.gate.borrow_mut() = Some(gate.clone());
    (gate, w)
}

#[test]
fn sealed_indexes_are_written_in_the_background_and_used_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = FileStore::open(&path, small_segments()).await.unwrap();
        fill(&s, 2_000).await;
        let sealed = s.segment_count() - 1;
        assert!(sealed >= 4, "{sealed}");
        s.flush_indexes().await;
        assert_eq!(files(&path, ".idx").len(), sealed);
        assert!(files(&path, ".tmp").is_empty());
        let before = s.state();
        drop(s);
        let s = FileStore::open(&path, small_segments()).await.unwrap();
        assert_eq!(s.state(), before);
        let r = s.recovery_report();
        // Every sealed segment from its index; only the tail (and the
        // preallocated spare, which became the tail) scanned.
        assert_eq!(r.segments_from_index as usize, sealed, "{r:?}");
        assert!(r.segments_scanned <= 2, "{r:?}");
        for seq in [1, 777, 2_000] {
            let m = s.get(seq).await.unwrap().unwrap();
            assert_eq!(m.payload.as_ref(), &[(seq - 1) as u8; 200][..]);
        }
    });
}

#[test]
fn a_segment_removed_while_its_index_is_written_leaves_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = FileStore::open(&path, small_segments()).await.unwrap();
        let (gate, writes) = hold_index_writes(&s);
        fill(&s, 2_000).await;
        let front: Vec<u32> = s.inner.borrow().segs.iter().map(|g| g.id).collect();
        let sealed = &front[..front.len() - 1];
        assert!(sealed.len() >= 4);
        until(|| writes.pending.borrow().len() == sealed.len()).await;
        // Retention removes every sealed segment while their writes wait.
        s.purge(&PurgeRequest {
            subject: None,
            up_to_seq: None,
            keep: Some(1),
        })
        .unwrap();
        for _ in 0..4 {
            s.append("s.x", b"", b"after").unwrap();
            s.commit().await.unwrap();
        }
        let left: Vec<u32> = s.inner.borrow().segs.iter().map(|g| g.id).collect();
        let removed: Vec<u32> = sealed
            .iter()
            .copied()
            .filter(|id| !left.contains(id))
            .collect();
        assert!(removed.len() >= 3, "removed {removed:?}, left {left:?}");
        gate.signal(1_000);
        s.flush_indexes().await;
        for id in &removed {
            assert!(!idx_path(&path, *id).exists(), "index of removed {id}");
            assert!(!seg_path(&path, *id).exists());
        }
        assert!(
            files(&path, ".tmp").is_empty(),
            "{:?}",
            files(&path, ".tmp")
        );
        let before = s.state();
        drop(s);
        let s = FileStore::open(&path, small_segments()).await.unwrap();
        assert_eq!(s.state(), before);
        let r = s.recovery_report();
        assert!(r.missing.is_empty() && r.damage.is_empty(), "{r:?}");
        assert_eq!(
            s.get(2_004).await.unwrap().unwrap().payload.as_ref(),
            b"after"
        );
    });
}

#[test]
fn dropping_the_store_cancels_index_writes_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = FileStore::open(&path, small_segments()).await.unwrap();
        let (gate, writes) = hold_index_writes(&s);
        fill(&s, 2_000).await;
        let sealed = s.segment_count() - 1;
        until(|| writes.pending.borrow().len() == sealed).await;
        let before = s.state();
        drop(s);
        gate.signal(1_000);
        writes.wait_all().await;
        assert!(files(&path, ".idx").is_empty());
        assert!(files(&path, ".tmp").is_empty());
        let s = FileStore::open(&path, small_segments()).await.unwrap();
        assert_eq!(s.state(), before);
        let r = s.recovery_report();
        assert_eq!(r.segments_from_index, 0, "{r:?}");
        assert!(r.missing.is_empty() && r.damage.is_empty(), "{r:?}");
        // Open wrote the indexes it rebuilt (the old tail's too, now
        // that the preallocated spare is the tail).
        assert!(files(&path, ".idx").len() >= sealed);
    });
}

#[test]
fn no_file_appears_in_the_directory_once_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = FileStore::open(&path, small_segments()).await.unwrap();
        // The blocking thread waits before its first index write until
        // the store is gone, and says when that write is over.
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (over_tx, over_rx) = std::sync::mpsc::channel::<()>();
        let (go_rx, over_tx) = (Mutex::new(go_rx), Mutex::new(over_tx));
        let writes = s.inner.borrow().idx_writes.clone();
        *writes.on_blocking.borrow_mut() = Some(Arc::new(move |after| {
            if after {
                let _ = over_tx.lock().unwrap().send(());
            } else {
                let _ = go_rx.lock().unwrap().recv();
            }
        }));
        fill(&s, 2_000).await;
        let sealed = s.segment_count() - 1;
        assert!(sealed >= 4);
        drop(s);
        let listing = files(&path, "");
        for _ in 0..sealed {
            go_tx.send(()).unwrap();
            over_rx.recv().unwrap();
        }
        // No await since the drop: the executor removed nothing since.
        assert_eq!(files(&path, ""), listing);
        assert!(files(&path, ".tmp").is_empty());
        writes.wait_all().await;
        std::fs::remove_dir_all(&path).unwrap();
    });
}

/// A segment cut inside its last record's padding (a file truncated while the
/// server was down) opens with every record, and takes appends after it.
#[test]
fn a_segment_cut_inside_the_last_padding_opens_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
        s.append("a", b"", &[1u8; 100]).unwrap();
        s.append("b", b"", &[2u8; 101]).unwrap();
        s.commit().await.unwrap();
        let data_len = s.inner.borrow().segs.last().unwrap().data_len;
        drop(s);
        let seg = seg_path(&path, 0);
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(data_len - 1).unwrap();
        drop(f);

        let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
        assert_eq!(s.state().last_seq, 2);
        assert_eq!(s.get(2).await.unwrap().unwrap().payload, vec![2u8; 101]);
        s.append("c", b"", &[3u8; 7]).unwrap();
        s.commit().await.unwrap();
        drop(s);
        let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
        assert_eq!(s.state().last_seq, 3);
        assert_eq!(s.get(3).await.unwrap().unwrap().payload, vec![3u8; 7]);
        assert_eq!(s.get(1).await.unwrap().unwrap().payload, vec![1u8; 100]);
    });
}

/// A crash lost the last write of a segment while the next segment's first write
/// landed: the end of segment `k` is zeros (from inside a record, or from a record
/// boundary, where the segment just ends) and segment `k + 1` starts past a gap.
/// Neither was sealed (no index), so none of it was durable: the log ends at the
/// zeros, later segments go, and appends go on from there. With the next segment
/// sealed (it has an index), the gap is damage instead: reported, nothing dropped.
#[test]
fn segments_after_a_lost_write_are_dropped_unless_sealed() {
    for (next_sealed, at_boundary) in [(false, false), (false, true), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run_local(move || async move {
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            fill(&s, 2_000).await;
            s.flush_indexes().await;
            let segs: Vec<(u32, u64)> = s
                .inner
                .borrow()
                .segs
                .iter()
                .map(|g| (g.id, g.data_len))
                .collect();
            assert!(segs.len() >= 5, "{segs:?}");
            let (k, data_len) = segs[segs.len() - 3];
            let mut lost_from = align_down(data_len - 8192);
            if at_boundary {
                let inner = s.inner.borrow();
                let (_, e) = inner
                    .core
                    .range(1, 2_000)
                    .find(|(_, e)| e.loc.seg == k && e.loc.offset as u64 >= lost_from)
                    .expect("a record after the cut");
                lost_from = e.loc.offset as u64;
            }
            drop(s);
            for (id, _) in &segs[segs.len() - 3..] {
                if !(next_sealed && *id == k + 1) {
                    let _ = std::fs::remove_file(idx_path(&path, *id));
                }
            }
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(seg_path(&path, k))
                .unwrap();
            std::os::unix::fs::FileExt::write_all_at(
                &f,
                &vec![0u8; (data_len - lost_from) as usize],
                lost_from,
            )
            .unwrap();
            drop(f);

            let s = FileStore::open(&path, small_segments()).await.unwrap();
            let r = s.recovery_report();
            let last = s.state().last_seq;
            if next_sealed {
                assert!(!r.missing.is_empty(), "{r:?}");
                assert_eq!(last, 2_000);
                return;
            }
            assert!(r.missing.is_empty(), "{r:?}");
            assert!(last < 2_000 && last > 1_000, "last {last}");
            assert_eq!(files(&path, ".seg").len(), k as usize + 1, "{r:?}");
            let loc = s.inner.borrow().core.entry(last).unwrap().loc;
            assert!((loc.offset + loc.len) as u64 <= lost_from && loc.seg == k);
            assert_eq!(
                s.get(last).await.unwrap().unwrap().payload,
                vec![(last - 1) as u8; 200]
            );
            s.append("after", b"", &[7u8; 50]).unwrap();
            s.commit().await.unwrap();
            drop(s);
            let s = FileStore::open(&path, small_segments()).await.unwrap();
            assert_eq!(s.state().last_seq, last + 1);
            assert!(s.recovery_report().missing.is_empty());
            assert_eq!(
                s.get(last + 1).await.unwrap().unwrap().payload,
                vec![7u8; 50]
            );
        });
    }
}
