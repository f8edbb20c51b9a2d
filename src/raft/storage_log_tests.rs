//! The file store on real files in a temporary directory, inside a glommio executor:
//! the shared behaviour suite, then reopen and crash recovery.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use natrix_storage::rt::run_local;
use natrix_storage::LogConfig;
use raft::eraftpb::{HardState, Snapshot};

use raft::eraftpb::Entry;

use super::log_store::{FetchRequest, GroupId, LogStore};
use super::log_store_suite::{self as suite, dump, entry, snapshot, Dump};
use super::persist_format as fmt;
use super::storage_log::{CacheConfig, FileLogStore};

fn small_logs() -> LogConfig {
    LogConfig {
        segment_size_bytes: 256 << 10,
        record_max_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

async fn open(dir: &Path) -> Rc<RefCell<FileLogStore>> {
    Rc::new(RefCell::new(
        FileLogStore::open(dir, small_logs()).await.expect("open"),
    ))
}

/// Every entry of `g`, from memory where cached, from disk otherwise.
async fn read_all(s: &Rc<RefCell<FileLogStore>>, g: GroupId, from: u64) -> Vec<Entry> {
    let last = s.borrow().last_index(g);
    let mut out = Vec::new();
    let mut next = from;
    while next <= last {
        let mut got = s.borrow().entries(g, next, last + 1, u64::MAX);
        if got.is_empty() {
            let req = FetchRequest {
                group: g,
                low: next,
                high: last + 1,
                max_bytes: u64::MAX,
            };
            got = FileLogStore::read_fetch(s, req).await.expect("read");
            assert!(!got.is_empty(), "group {g}: entry {next} not on disk");
        }
        next += got.len() as u64;
        out.extend(got);
    }
    out
}

/// [`dump`] with every entry, read from disk where not cached.
async fn dump_file(s: &Rc<RefCell<FileLogStore>>) -> Dump {
    let mut d = dump(&*s.borrow());
    for gd in &mut d.groups {
        let first = s.borrow().first_index(gd.group);
        gd.entries = read_all(s, gd.group, first).await;
    }
    d
}

async fn persist(s: &Rc<RefCell<FileLogStore>>) {
    FileLogStore::persist(s).await.expect("persist");
    assert!(!s.borrow().has_pending());
}

/// After a reopen everything is as before, except that the commit index may be an
/// older (lazily written) one, never below the snapshot (which is committed).
fn assert_same_after_reopen(before: &Dump, after: &Dump) {
    assert_eq!(before.groups.len(), after.groups.len());
    for (b, a) in before.groups.iter().zip(&after.groups) {
        assert_eq!(
            (a.group, a.replica, a.term, a.vote),
            (b.group, b.replica, b.term, b.vote)
        );
        assert_eq!(a.snapshot, b.snapshot);
        assert_eq!(a.entries, b.entries, "group {}", b.group);
        let snap_index = b.snapshot.get_metadata().index;
        assert!(
            a.commit <= b.commit.max(snap_index) && a.commit >= snap_index,
            "group {}: commit {} after, {} before",
            b.group,
            a.commit,
            b.commit
        );
    }
}

#[test]
fn file_store_passes_the_suite_and_reopens_the_same() {
    for (name, case) in suite::cases::<FileLogStore>() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        run_local(move || async move {
            let s = open(&dir).await;
            case(&mut s.borrow_mut());
            persist(&s).await;
            let before = dump_file(&s).await;
            drop(s);
            let s = open(&dir).await;
            let after = dump_file(&s).await;
            assert_same_after_reopen(&before, &after);
            // And the reopened store keeps working.
            let g = after.groups[0].group;
            let next = s.borrow().last_index(g) + 1;
            let term = s.borrow().term(g, next - 1).unwrap_or(1).max(1);
            s.borrow_mut().append(g, &[entry(next, term)]);
            persist(&s).await;
            drop(s);
            let s = open(&dir).await;
            assert_eq!(s.borrow().last_index(g), next, "{name}");
        });
    }
}

#[test]
fn writes_not_persisted_are_lost_as_a_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_local(move || async move {
        let s = open(&dir).await;
        s.borrow_mut()
            .create_group(1, 4, &snapshot(1, 1, &[4, 5, 6]), &HardState::default());
        s.borrow_mut().append(1, &[entry(2, 2), entry(3, 2)]);
        s.borrow_mut().set_hard_state(
            1,
            &HardState {
                term: 2,
                vote: 4,
                commit: 3,
                ..Default::default()
            },
        );
        persist(&s).await;
        let durable = dump_file(&s).await;
        // A new term, a vote, a truncation and appends, never persisted: a crash.
        s.borrow_mut().truncate_suffix(1, 3);
        s.borrow_mut().append(1, &[entry(3, 3), entry(4, 3)]);
        s.borrow_mut().set_hard_state(
            1,
            &HardState {
                term: 3,
                vote: 5,
                commit: 3,
                ..Default::default()
            },
        );
        s.borrow_mut()
            .create_group(2, 4, &Snapshot::default(), &HardState::default());
        drop(s);
        let s = open(&dir).await;
        assert_eq!(dump_file(&s).await, durable);
        assert!(!dir.join("groups").join(format!("{:020}", 2)).exists());
    });
}

#[test]
fn truncation_and_snapshot_install_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_local(move || async move {
        let s = open(&dir).await;
        s.borrow_mut()
            .create_group(1, 1, &Snapshot::default(), &HardState::default());
        s.borrow_mut()
            .create_group(2, 1, &Snapshot::default(), &HardState::default());
        let es: Vec<_> = (1..=50).map(|i| entry(i, 1)).collect();
        s.borrow_mut().append(1, &es);
        s.borrow_mut().append(2, &es);
        persist(&s).await;
        s.borrow_mut().truncate_suffix(1, 20);
        s.borrow_mut().append(1, &[entry(20, 2), entry(21, 2)]);
        s.borrow_mut()
            .install_snapshot(2, &snapshot(70, 3, &[1, 2, 3]));
        s.borrow_mut().append(2, &[entry(71, 3)]);
        persist(&s).await;
        let before = dump_file(&s).await;
        drop(s);
        let s = open(&dir).await;
        let after = dump_file(&s).await;
        assert_same_after_reopen(&before, &after);
        assert_eq!(s.borrow().last_index(1), 21);
        assert_eq!(s.borrow().term(1, 20), Some(2));
        assert_eq!(
            (s.borrow().first_index(2), s.borrow().last_index(2)),
            (71, 71)
        );
        assert_eq!(s.borrow().hard_state(2).commit, 70);
    });
}

#[test]
fn crash_between_snapshot_file_and_compaction_is_repaired() {
    for (snap_term, expect_first_entry) in [(1, Some(4)), (9, None)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        run_local(move || async move {
            let s = open(&dir).await;
            s.borrow_mut()
                .create_group(1, 1, &Snapshot::default(), &HardState::default());
            let es: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
            s.borrow_mut().append(1, &es);
            persist(&s).await;
            drop(s);
            // The snapshot file made it to disk, the log's compact marker did not.
            let gdir = dir.join("groups").join(format!("{:020}", 1));
            let snap = snapshot(3, snap_term, &[1]);
            std::fs::write(gdir.join("snapshot"), fmt::encode_snapshot(&snap)).unwrap();
            let s = open(&dir).await;
            assert_eq!(s.borrow().first_index(1), 4);
            assert_eq!(s.borrow().term(1, 3), Some(snap_term));
            match expect_first_entry {
                Some(i) => assert_eq!(read_all(&s, 1, i).await, es[3..].to_vec()),
                // Entries after a snapshot of another history are dropped.
                None => assert_eq!(s.borrow().last_index(1), 3),
            }
        });
    }
}

#[test]
fn damaged_state_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_local(move || async move {
        let s = open(&dir).await;
        s.borrow_mut()
            .create_group(1, 1, &Snapshot::default(), &HardState::default());
        persist(&s).await;
        drop(s);
        let path = dir.join("raft-state");
        let mut buf = std::fs::read(&path).unwrap();
        buf[10] ^= 0x40;
        std::fs::write(&path, buf).unwrap();
        let err = FileLogStore::open(&dir, small_logs())
            .await
            .err()
            .expect("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    });
}

fn tiny_cache() -> CacheConfig {
    CacheConfig {
        entry_cache_bytes_max: 96 << 10,
        group_entry_cache_bytes_max: 32 << 10,
        fetch_bytes_max: 16 << 10,
    }
}

fn big_entry(index: u64, term: u64) -> Entry {
    let mut e = entry(index, term);
    let mut data = e.data.to_vec();
    data.resize(200, b'.');
    e.data = data.into();
    e
}

/// The term of entry `index` written by [`write_big_log`] (a new term every 1,000
/// entries or so).
fn term_of(index: u64) -> u64 {
    1 + ((index - 1) / 100 * 100 + 1) / 1000
}

/// Appends `n` entries of 200 bytes to each group, persisting and applying as it goes.
async fn write_big_log(s: &Rc<RefCell<FileLogStore>>, groups: &[GroupId], n: u64) {
    for &g in groups {
        s.borrow_mut()
            .create_group(g, 1, &Snapshot::default(), &HardState::default());
    }
    let budget = s.borrow().cache_config().clone();
    let mut next = 1;
    while next <= n {
        let batch: Vec<_> = (next..(next + 100).min(n + 1))
            .map(|i| big_entry(i, term_of(i)))
            .collect();
        for &g in groups {
            s.borrow_mut().append(g, &batch);
        }
        persist(s).await;
        next += batch.len() as u64;
        for &g in groups {
            s.borrow_mut().set_applied(g, next - 1);
            assert!(s.borrow().group_cache_bytes(g) <= budget.group_entry_cache_bytes_max);
        }
        s.borrow_mut().trim_cache();
        assert!(
            s.borrow().cache_bytes() <= budget.entry_cache_bytes_max,
            "{} bytes cached",
            s.borrow().cache_bytes()
        );
    }
}

#[test]
fn a_log_far_larger_than_the_cache_stays_within_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_local(move || async move {
        let s = Rc::new(RefCell::new(
            FileLogStore::open_with(&dir, small_logs(), tiny_cache())
                .await
                .expect("open"),
        ));
        // 4 groups of 5,000 entries: 4 MB of data for a 96 KiB cache.
        let groups = [1, 2, 3, 4];
        write_big_log(&s, &groups, 5000).await;
        for g in groups {
            let st = s.borrow();
            assert_eq!((st.first_index(g), st.last_index(g)), (1, 5000));
            for i in 0..=5000 {
                assert_eq!(st.term(g, i), Some(if i == 0 { 0 } else { term_of(i) }));
            }
            // Old entries are on disk only.
            assert!(st.entries(g, 1, 10, u64::MAX).is_empty());
            assert_eq!(st.cached_through(g, 1), 0);
        }
        // A miss is queued once, read by the caller, and served from memory after.
        s.borrow_mut().want_entries(2, 10, 5001, u64::MAX, None);
        s.borrow_mut().want_entries(2, 10, 5001, u64::MAX, None);
        let reqs = s.borrow_mut().take_fetches();
        assert_eq!(reqs.len(), 1);
        assert!(s.borrow_mut().take_fetches().is_empty());
        let got = FileLogStore::read_fetch(&s, reqs[0]).await.expect("read");
        assert!(!got.is_empty() && got.len() < 200, "{} entries", got.len());
        s.borrow_mut().install_fetched(reqs[0], got.clone());
        let through = s.borrow().cached_through(2, 10);
        assert_eq!(through, 9 + got.len() as u64);
        assert_eq!(s.borrow().entries(2, 10, through + 1, u64::MAX), got);
        assert_eq!(got[0], big_entry(10, 1));
        s.borrow_mut().trim_cache();
        assert!(s.borrow().cache_bytes() <= tiny_cache().entry_cache_bytes_max);
        // Everything is still there, from disk.
        let all = read_all(&s, 3, 1).await;
        assert_eq!(all.len(), 5000);
        assert_eq!(all[4321], big_entry(4322, 5));
    });
}

#[test]
fn reopen_reads_no_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_local(move || async move {
        let s = Rc::new(RefCell::new(
            FileLogStore::open_with(&dir, small_logs(), tiny_cache())
                .await
                .expect("open"),
        ));
        write_big_log(&s, &[7], 20_000).await;
        drop(s);
        let s = Rc::new(RefCell::new(
            FileLogStore::open_with(&dir, small_logs(), tiny_cache())
                .await
                .expect("reopen"),
        ));
        assert_eq!(s.borrow().cache_bytes(), 0, "open loaded entries");
        {
            let st = s.borrow();
            assert_eq!((st.first_index(7), st.last_index(7)), (1, 20_000));
            assert_eq!(st.term(7, 19_999), Some(20));
            assert_eq!(st.term(7, 999), Some(1));
            assert_eq!(st.term(7, 1000), Some(1));
            assert_eq!(st.term(7, 1001), Some(2));
            assert_eq!(st.term(7, 20_001), None);
        }
        // Appends go on at the end; a conflicting suffix below what is cached is cut.
        s.borrow_mut().truncate_suffix(7, 15_000);
        s.borrow_mut()
            .append(7, &[big_entry(15_000, 21), big_entry(15_001, 21)]);
        assert_eq!(s.borrow().term(7, 14_999), Some(15));
        assert_eq!(s.borrow().term(7, 15_000), Some(21));
        persist(&s).await;
        let all = read_all(&s, 7, 14_990).await;
        assert_eq!(all.len(), 12);
        assert_eq!(all[10], big_entry(15_000, 21));
        drop(s);
        let s = open(&dir).await;
        assert_eq!(s.borrow().last_index(7), 15_001);
        assert_eq!(s.borrow().term(7, 15_001), Some(21));
        assert_eq!(read_all(&s, 7, 14_999).await[0], big_entry(14_999, 15));
    });
}

fn commit_only(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

/// The commit index is written lazily, except past a configuration change: a node
/// restarted with a commit index below a committed change it holds would campaign (and
/// count votes) under the configuration before it (raft_sim file seed 1655: a removed
/// voter elected a leader that lacked a committed entry).
#[test]
fn a_commit_past_a_conf_change_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_local(move || async move {
        let s = open(&dir).await;
        s.borrow_mut()
            .create_group(1, 1, &Snapshot::default(), &commit_only(1, 1, 0));
        let mut cc = entry(3, 1);
        cc.set_entry_type(raft::eraftpb::EntryType::EntryConfChangeV2);
        s.borrow_mut()
            .append(1, &[entry(1, 1), entry(2, 1), cc, entry(4, 1)]);
        persist(&s).await;
        // Past normal entries only: lazy.
        s.borrow_mut().set_hard_state(1, &commit_only(1, 1, 2));
        assert!(!s.borrow().has_pending());
        // Past the change: durable with the next persist.
        s.borrow_mut().set_hard_state(1, &commit_only(1, 1, 3));
        persist(&s).await;
        drop(s);
        let s = open(&dir).await;
        assert_eq!(s.borrow().hard_state(1).commit, 3);
        // After a reopen the entries past the commit index are unread: the first
        // move of the commit index over them is made durable too.
        s.borrow_mut().set_hard_state(1, &commit_only(1, 1, 4));
        assert!(s.borrow().has_pending());
        persist(&s).await;
        drop(s);
        let s = open(&dir).await;
        assert_eq!(s.borrow().hard_state(1).commit, 4);
    });
}
