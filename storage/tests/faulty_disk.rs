//! The file store on the fault-injecting disk (`disk::faulty`): crashes that
//! lose or tear what was not fdatasynced, bit flips on read, ENOSPC and EIO on
//! demand. Each test runs many seeds on one executor; a failure names its seed
//! (rerun one with `NATRIX_FAULTY_SEED=<seed>`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use futures_lite::future::{poll_once, yield_now};
use natrix_storage::disk::faulty::{CrashReport, FaultyDisk, Rng};
use natrix_storage::frame;
use natrix_storage::rt::run_local;
use natrix_storage::{FileStore, LogConfig, StoreError};

const SEEDS: u64 = 200;
const DIR: &str = "/faulty/log";

/// Seeds past the first `SEEDS` that once failed: an open's index write was lost
/// to the next crash, and that open's successor dropped segments of acknowledged
/// records after damage the first one had kept.
const REGRESSION_SEEDS: &[u64] = &[1136, 2041];

fn seeds(n: u64) -> Vec<u64> {
    match std::env::var("NATRIX_FAULTY_SEED") {
        Ok(s) => vec![s.parse().expect("a seed")],
        Err(_) => (0..n).chain(REGRESSION_SEEDS.iter().copied()).collect(),
    }
}

fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

fn cfg(rng: &mut Rng) -> LogConfig {
    LogConfig {
        segment_size_bytes: 64 << 10,
        record_max_bytes: 8 << 10,
        verify_all_on_open: rng.chance(1, 4),
        ..LogConfig::default()
    }
}

fn subject(seq: u64) -> String {
    format!("s.{}", seq % 3)
}

/// A payload of random length: one random word repeated.
fn payload(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(3_000) as usize;
    let mut p = rng.next_u64().to_le_bytes().repeat(len.div_ceil(8));
    p.truncate(len);
    p
}

/// What the test knows the log holds.
#[derive(Default)]
struct Model {
    /// Payload of each sequence as last appended or read back.
    live: BTreeMap<u64, Vec<u8>>,
    /// Every payload ever appended at each sequence.
    history: HashMap<u64, Vec<Vec<u8>>>,
}

impl Model {
    fn appended(&mut self, seq: u64, payload: Vec<u8>) {
        self.history.entry(seq).or_default().push(payload.clone());
        self.live.insert(seq, payload);
    }
}

/// Appends `least` records and up to `extra` more, recording them in the model.
fn append_n(
    s: &FileStore,
    m: &mut Model,
    rng: &mut Rng,
    least: u64,
    extra: u64,
) -> Result<(), StoreError> {
    for _ in 0..least + rng.below(extra + 1) {
        let p = payload(rng);
        let seq = s.last_index() + 1;
        let t = s.append(&subject(seq), b"", &p)?;
        assert_eq!(t.seq, seq);
        m.appended(seq, p);
    }
    Ok(())
}

/// After a reopen: every record acknowledged durable (up to `acked`) is
/// there, intact, in order; whatever else is served is a record that was
/// appended at that sequence; nothing acknowledged is reported missing. The
/// model then holds what the log serves.
async fn check_after_reopen(s: &FileStore, m: &mut Model, acked: u64) -> Result<(), String> {
    let st = s.state();
    if st.last_seq < acked {
        return Err(format!("last_seq {} < acknowledged {acked}", st.last_seq));
    }
    let msgs = s
        .range(st.first_seq, st.last_seq, usize::MAX)
        .await
        .map_err(|e| format!("range: {e}"))?;
    let mut served = BTreeMap::new();
    for msg in msgs {
        if served.last_key_value().is_some_and(|(&q, _)| q >= msg.seq) {
            return Err(format!("{} served out of order", msg.seq));
        }
        let known = m.history.get(&msg.seq).is_some_and(|h| {
            h.iter().any(|p| p[..] == msg.payload[..]) && msg.subject == subject(msg.seq)
        });
        if !known {
            return Err(format!("{} served but never appended so", msg.seq));
        }
        served.insert(msg.seq, msg.payload.to_vec());
    }
    for (&seq, want) in m.live.range(..=acked) {
        match served.get(&seq) {
            Some(got) if got == want => {}
            Some(_) => return Err(format!("acknowledged {seq} changed")),
            None => return Err(format!("acknowledged {seq} lost")),
        }
    }
    let report = s.recovery_report();
    for &(a, b) in &report.missing {
        if a <= acked && m.live.range(a..=b.min(acked)).next().is_some() {
            return Err(format!("acknowledged records reported missing: {a}..={b}"));
        }
    }
    m.live = served;
    Ok(())
}

/// One process's life: appends with commits awaited, pipelined or left out,
/// now and then a stretch of failing writes or syncs, then the crash. Returns
/// the durable sequence it reached and the crash.
async fn live_and_crash(disk: &FaultyDisk, m: &mut Model, rng: &mut Rng) -> (u64, CrashReport) {
    let s = Rc::new(
        FileStore::open_on(disk.disk(), DIR, cfg(rng))
            .await
            .unwrap(),
    );
    let mut commits = Vec::new();
    let mut durable = s.watch().durable_seq();
    for _ in 0..4 + rng.below(12) {
        // Appends fail while the log recovers from a failed commit.
        let _ = append_n(&s, m, rng, 1, 30);
        match rng.below(5) {
            0 => {
                let _ = s.commit().await;
            }
            1 => {
                let sc = s.clone();
                commits.push(glommio::spawn_local(async move { sc.commit().await }));
            }
            2 => {}
            3 => {
                for _ in 0..rng.below(5) {
                    yield_now().await;
                }
            }
            _ => {
                if rng.chance(1, 2) {
                    disk.fail_syncs(Some(libc::EIO));
                } else {
                    disk.fail_writes(Some(libc::ENOSPC));
                }
                // A commit with something to write fails (one with nothing
                // to write may succeed: a recovery begun earlier may finish).
                if append_n(&s, m, rng, 1, 30).is_ok() {
                    assert!(s.commit().await.is_err(), "a commit on a failing disk");
                }
                disk.fail_syncs(None);
                disk.fail_writes(None);
            }
        }
        let now = s.watch().durable_seq();
        assert!(now >= durable, "durable went back from {durable} to {now}");
        durable = now;
    }
    if rng.chance(1, 2) {
        let _ = s.commit().await;
    }
    for _ in 0..rng.below(10) {
        yield_now().await;
    }
    let acked = s.watch().durable_seq();
    let crash = disk.crash();
    // Commits in flight die with the process.
    drop(commits);
    drop(s);
    (acked, crash)
}

/// Runs `lives` crashes on a fresh disk for `seed`; the first failed check.
async fn crash_seed(seed: u64, lives: u32, lie: bool) -> Result<CrashReport, String> {
    let disk = FaultyDisk::new(seed);
    disk.lie_about_sync(lie);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut m = Model::default();
    let mut total = CrashReport::default();
    for _ in 0..lives {
        let (acked, crash) = live_and_crash(&disk, &mut m, &mut rng).await;
        total.ops_lost += crash.ops_lost;
        total.ops_kept += crash.ops_kept;
        total.writes_torn += crash.writes_torn;
        total.dir_ops_lost += crash.dir_ops_lost;
        let s = FileStore::open_on(disk.disk(), DIR, cfg(&mut rng))
            .await
            .map_err(|e| format!("reopen: {e}"))?;
        // Writes the crash dropped whole leave unwritten space: what follows it
        // was never durable and goes with it, so the log has no hole (a Raft log
        // with one cannot start). Only a torn write, in this life or an earlier
        // one (its damage stays), leaves records to skip.
        let missing = &s.recovery_report().missing;
        if total.writes_torn == 0 && !missing.is_empty() {
            return Err(format!(
                "holes after a crash that tore nothing: {:?}",
                s.recovery_report()
            ));
        }
        check_after_reopen(&s, &mut m, acked).await?;
    }
    Ok(total)
}

#[test]
fn acknowledged_records_survive_crashes_and_torn_writes() {
    run_local(|| async {
        let mut total = CrashReport::default();
        for seed in seeds(SEEDS) {
            let c = crash_seed(seed, 3, false)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            total.ops_lost += c.ops_lost;
            total.writes_torn += c.writes_torn;
            total.dir_ops_lost += c.dir_ops_lost;
        }
        // The seeds did exercise the faults.
        if std::env::var("NATRIX_FAULTY_SEED").is_err() {
            assert!(total.ops_lost > 0 && total.writes_torn > 0, "{total:?}");
            assert!(total.dir_ops_lost > 0, "{total:?}");
        }
    });
}

#[test]
fn a_disk_that_lies_about_fdatasync_fails_the_durability_check() {
    run_local(|| async {
        let mut caught = 0;
        for seed in 0..20 {
            if crash_seed(seed, 1, true).await.is_err() {
                caught += 1;
            }
        }
        assert!(
            caught > 0,
            "the check never noticed lost acknowledged records"
        );
    });
}

/// The messages in a segment's bytes: (offset, length without padding, seq).
fn records(bytes: &[u8]) -> Vec<(u64, usize, u64)> {
    let mut out = Vec::new();
    let mut off = 0;
    while let Ok((f, stored)) = frame::parse(&bytes[off..]) {
        if f.kind == frame::Kind::Msg {
            let len = frame::check(&bytes[off..]).expect("parsed");
            out.push((off as u64, len, f.seq));
        }
        off += stored;
    }
    out
}

fn seg_path(id: u32) -> PathBuf {
    dir().join(format!("{id:010}.seg"))
}

/// Appends and syncs a few segments' worth; returns the model.
async fn fill_and_close(disk: &FaultyDisk, rng: &mut Rng, cfg: &LogConfig) -> Model {
    let s = FileStore::open_on(disk.disk(), DIR, cfg.clone())
        .await
        .unwrap();
    let mut m = Model::default();
    for _ in 0..4 + rng.below(8) {
        append_n(&s, &mut m, rng, 10, 40).unwrap();
        s.commit().await.unwrap();
    }
    s.close().await.unwrap();
    m
}

#[test]
fn a_flipped_bit_is_reported_missing_and_never_served() {
    run_local(|| async {
        for seed in seeds(SEEDS) {
            let disk = FaultyDisk::new(seed);
            let mut rng = Rng::new(seed ^ 0xf11b);
            let cfg = cfg(&mut rng);
            let m = fill_and_close(&disk, &mut rng, &cfg).await;
            // A record followed by another in its segment (a bad last record
            // of the tail is a torn tail, cut).
            let segs = disk
                .files(&dir())
                .iter()
                .filter(|n| n.ends_with(".seg"))
                .count();
            let id = rng.below(segs as u64) as u32;
            let recs = records(&disk.contents(&seg_path(id)).unwrap());
            if recs.len() < 2 {
                continue;
            }
            let (off, len, seq) = recs[rng.below(recs.len() as u64 - 1) as usize];
            let at = off + rng.below(len as u64);
            assert!(disk.flip_on_read(&seg_path(id), at, 1 << rng.below(8)));
            let s = FileStore::open_on(disk.disk(), DIR, cfg.clone())
                .await
                .unwrap();
            let r = s.get(seq).await;
            assert!(
                matches!(r, Err(StoreError::Corrupt { .. }) | Ok(None)),
                "seed {seed}: flipped {seq} served: {r:?}"
            );
            let report = s.recovery_report();
            assert!(
                report.missing.iter().any(|&(a, b)| a <= seq && seq <= b),
                "seed {seed}: {seq} not reported missing: {report:?}"
            );
            assert_eq!(report.missing_count(), 1, "seed {seed}: {report:?}");
            for (&q, want) in &m.live {
                if q != seq {
                    let got = s.get(q).await.unwrap().unwrap();
                    assert_eq!(&got.payload[..], &want[..], "seed {seed}: {q}");
                }
            }
        }
    });
}

/// A write or sync fault: the commit fails, nothing acknowledged is lost,
/// the failed batch is not reported durable, and once the fault clears the
/// log takes appends again; a crash afterwards keeps every acknowledged record.
async fn fault_seed(seed: u64, on_sync: bool) -> Result<(), String> {
    let disk = FaultyDisk::new(seed);
    let mut rng = Rng::new(seed ^ 0xe10);
    let cfg = cfg(&mut rng);
    let s = FileStore::open_on(disk.disk(), DIR, cfg.clone())
        .await
        .unwrap();
    let mut m = Model::default();
    append_n(&s, &mut m, &mut rng, 1, 300).unwrap();
    s.commit().await.unwrap();
    let errno = if on_sync { libc::EIO } else { libc::ENOSPC };
    if on_sync {
        disk.fail_syncs(Some(errno));
    } else {
        disk.fail_writes(Some(errno));
    }
    let last_before = s.state().last_seq;
    let t = s.append("s.x", b"", b"doomed").map_err(|e| e.to_string())?;
    m.appended(t.seq, b"doomed".to_vec());
    append_n(&s, &mut m, &mut rng, 0, 20).map_err(|e| e.to_string())?;
    let err = match s.commit().await {
        Ok(seq) => return Err(format!("commit succeeded up to {seq}")),
        Err(e) => e,
    };
    if !on_sync && !err.is_disk_full() {
        return Err(format!("not a full disk: {err}"));
    }
    let acked = s.watch().durable_seq();
    if acked != last_before {
        return Err(format!("durable moved from {last_before} to {acked}"));
    }
    match poll_once(s.wait_durable(t)).await {
        Some(Err(StoreError::NotDurable { disk_full })) if disk_full != on_sync => {}
        other => return Err(format!("failed batch's waiter got {other:?}")),
    }
    // Reads still work while the fault lasts.
    for (&seq, want) in m.live.range(..=acked) {
        let got = s.get(seq).await.map_err(|e| format!("get {seq}: {e}"))?;
        if got.map(|g| g.payload.to_vec()).as_ref() != Some(want) {
            return Err(format!("acknowledged {seq} unreadable during the fault"));
        }
    }
    // Commits keep failing while it lasts, without harm.
    let _ = s.commit().await;
    disk.fail_writes(None);
    disk.fail_syncs(None);
    // The next commit (the flusher's) recovers the log; appends work again.
    s.commit()
        .await
        .map_err(|e| format!("commit after the fault: {e}"))?;
    let state = s.state();
    if state.last_seq != acked {
        return Err(format!(
            "after recovery last_seq {} != {acked}",
            state.last_seq
        ));
    }
    m.live.retain(|&q, _| q <= acked);
    append_n(&s, &mut m, &mut rng, 1, 50).map_err(|e| format!("append after: {e}"))?;
    let acked = s.commit().await.map_err(|e| format!("commit after: {e}"))?;
    disk.crash();
    drop(s);
    let s = FileStore::open_on(disk.disk(), DIR, cfg).await.unwrap();
    check_after_reopen(&s, &mut m, acked).await
}

#[test]
fn enospc_on_append_loses_nothing_acknowledged_and_appends_resume() {
    run_local(|| async {
        for seed in seeds(SEEDS) {
            fault_seed(seed, false)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    });
}

#[test]
fn eio_on_fdatasync_is_an_error_and_never_reported_durable() {
    run_local(|| async {
        for seed in seeds(SEEDS) {
            fault_seed(seed, true)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    });
}

/// Regression: recovery after a failed commit removed the segments past the
/// durable point without syncing the directory, so a crash could bring one
/// back (here the preallocated spare, whose creation was synced) with records
/// of the failed batch.
#[test]
fn recovery_removes_segments_of_failed_batches_durably() {
    run_local(|| async {
        let disk = FaultyDisk::new(7);
        let mut rng = Rng::new(7);
        let cfg = LogConfig {
            verify_all_on_open: false,
            ..cfg(&mut rng)
        };
        let s = FileStore::open_on(disk.disk(), DIR, cfg).await.unwrap();
        let mut m = Model::default();
        // Past half the tail: the commit creates (and syncs) the spare segment 1.
        while s.segment_count() == 1 && disk.files(&dir()).len() < 2 {
            append_n(&s, &mut m, &mut rng, 20, 0).unwrap();
            s.commit().await.unwrap();
        }
        let spare = "0000000001.seg".to_string();
        assert!(disk.synced_files(&dir()).contains(&spare));
        // A batch that rolls into the spare fails its sync.
        disk.fail_syncs(Some(libc::EIO));
        while s.segment_count() == 1 {
            append_n(&s, &mut m, &mut rng, 20, 0).unwrap();
        }
        assert!(s.commit().await.is_err());
        disk.fail_syncs(None);
        s.commit().await.unwrap();
        assert_eq!(s.segment_count(), 1);
        assert!(!disk.files(&dir()).contains(&spare));
        assert!(
            !disk.synced_files(&dir()).contains(&spare),
            "the removed segment comes back after a crash"
        );
    });
}

/// One life of a log whose commits mostly do not sync (`commit_unsynced`, as a
/// replicated stream's store) and now and then do (`sync`), awaited or left in
/// flight, then the crash. Returns the last sequence a completed `sync` covered.
async fn live_unsynced_and_crash(disk: &FaultyDisk, m: &mut Model, rng: &mut Rng) -> u64 {
    let s = Rc::new(
        FileStore::open_on(disk.disk(), DIR, cfg(rng))
            .await
            .unwrap(),
    );
    let synced = Rc::new(std::cell::Cell::new(0u64));
    let mut commits = Vec::new();
    for _ in 0..4 + rng.below(16) {
        append_n(&s, m, rng, 1, 40).expect("appends on a working disk");
        let sc = s.clone();
        match rng.below(5) {
            0 => {
                s.commit_unsynced().await.expect("an unsynced commit");
            }
            1 => commits.push(glommio::spawn_local(async move {
                let _ = sc.commit_unsynced().await;
            })),
            2 => {
                let through = s.sync().await.expect("a sync");
                synced.set(synced.get().max(through));
            }
            3 => {
                let done = synced.clone();
                commits.push(glommio::spawn_local(async move {
                    if let Ok(through) = sc.sync().await {
                        done.set(done.get().max(through));
                    }
                }));
            }
            _ => {
                for _ in 0..rng.below(5) {
                    yield_now().await;
                }
            }
        }
    }
    for _ in 0..rng.below(10) {
        yield_now().await;
    }
    let acked = synced.get();
    disk.crash();
    drop(commits);
    drop(s);
    acked
}

#[test]
fn records_of_unsynced_commits_survive_a_crash_once_a_later_sync_completed() {
    run_local(|| async {
        for seed in seeds(SEEDS) {
            let disk = FaultyDisk::new(seed);
            let mut rng = Rng::new(seed ^ 0x1a2e);
            let mut m = Model::default();
            for _ in 0..3 {
                let acked = live_unsynced_and_crash(&disk, &mut m, &mut rng).await;
                let s = FileStore::open_on(disk.disk(), DIR, cfg(&mut rng))
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
                check_after_reopen(&s, &mut m, acked)
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                // As a replicated stream's replica does: the log after the first
                // damaged record is dropped (its group's log has it all).
                if let Some(&(first, _)) = s.recovery_report().missing.first() {
                    s.truncate_from(first)
                        .await
                        .unwrap_or_else(|e| panic!("seed {seed}: truncate: {e}"));
                    m.live.retain(|&seq, _| seq < first);
                }
            }
        }
    });
}
