//! storage-bench: durable append throughput with group commit, one durable
//! commit's latency, the disk's own O_DIRECT ceiling (same run), reopen time.
//!
//! Usage: storage-bench [--dir D] [--total-mib N] [--reopen-gib G] [--sizes 128,1024]
//!                      [--batch-mib B] [--commits-in-flight C]
//!
//! The producer behaves like a shard: it appends, calls `yield_if_needed`
//! (the executor runs with a short preempt timer, so I/O is submitted and
//! reaped while it works), and starts one commit per batch without waiting
//! for the previous one (commits pipeline: batch N+1 is written while batch
//! N's fdatasync is in flight), keeping at most `--commits-in-flight`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::OpenOptions;
use natrix_storage::rt::{raise_memlock_limit, IO_MEMORY_BYTES};
use natrix_storage::{Durability, FileStore, LogConfig};

struct Args {
    dir: std::path::PathBuf,
    total_mib: u64,
    reopen_gib: u64,
    sizes: Vec<usize>,
    /// Bytes appended per group commit.
    batch_mib: u64,
    /// Commits started and not finished (pipelined) at most.
    commits_in_flight: usize,
}

fn args() -> Args {
    let mut a = Args {
        dir: std::env::temp_dir().join("natrix-storage-bench"),
        total_mib: 1024,
        reopen_gib: 4,
        sizes: vec![128, 1024],
        batch_mib: 4,
        commits_in_flight: 3,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < v.len() {
        match v[i].as_str() {
            "--dir" => a.dir = v[i + 1].clone().into(),
            "--total-mib" => a.total_mib = v[i + 1].parse().expect("number"),
            "--reopen-gib" => a.reopen_gib = v[i + 1].parse().expect("number"),
            "--batch-mib" => a.batch_mib = v[i + 1].parse().expect("number"),
            "--commits-in-flight" => a.commits_in_flight = v[i + 1].parse().expect("number"),
            "--sizes" => {
                a.sizes = v[i + 1]
                    .split(',')
                    .map(|x| x.parse().expect("number"))
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// Plain O_DIRECT sequential writer: 1 MiB writes, 8 in flight, one fdatasync
/// (buffers filled once and reused: no CPU spent per write).
async fn disk_ceiling(dir: &std::path::Path, total_bytes: u64) -> f64 {
    let path = dir.join("ceiling.dat");
    let f = Rc::new(
        OpenOptions::new()
            .write(true)
            .read(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .unwrap(),
    );
    f.pre_allocate(total_bytes, false).await.unwrap();
    f.fdatasync().await.unwrap();
    const PIECE: usize = 1 << 20;
    const DEPTH: usize = 8;
    let start = Instant::now();
    let bufs: Vec<Rc<glommio::io::DmaBuffer>> = (0..DEPTH)
        .map(|_| {
            let mut b = f.alloc_dma_buffer(PIECE);
            b.as_bytes_mut().fill(0xab);
            Rc::new(b)
        })
        .collect();
    let mut pos = 0u64;
    let mut inflight = std::collections::VecDeque::new();
    let mut n = 0usize;
    while pos < total_bytes {
        if inflight.len() == DEPTH {
            let t: glommio::task::JoinHandle<usize> = inflight.pop_front().unwrap();
            t.await.unwrap();
        }
        let (ff, buf, p) = (f.clone(), bufs[n % DEPTH].clone(), pos);
        inflight.push_back(
            glommio::spawn_local(async move { ff.write_rc_at(buf, p).await.unwrap() }).detach(),
        );
        pos += PIECE as u64;
        n += 1;
    }
    for t in inflight {
        t.await.unwrap();
    }
    f.fdatasync().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    total_bytes as f64 / secs / 1e6
}

/// The executor's preempt timer: how long a task may run before the
/// executor goes back to the reactor (a shard's loop turn).
const PREEMPT: Duration = Duration::from_micros(200);

struct Throughput {
    record_bytes: usize,
    stored_bytes: u64,
    records: u64,
    secs: f64,
    commits: u64,
}

/// Durable appends with group commit: the next batch is appended while the
/// previous ones are being written and synced.
async fn durable_throughput(
    a: &Args,
    dir: &std::path::Path,
    record_bytes: usize,
    total_bytes: u64,
) -> Throughput {
    let path = dir.join(format!("tp-{record_bytes}"));
    let _ = std::fs::remove_dir_all(&path);
    let s = Rc::new(FileStore::open(&path, LogConfig::default()).await.unwrap());
    let subject = "bench.s";
    let payload_len = record_bytes;
    let payload = vec![0x5au8; payload_len];
    let stored = natrix_storage::frame::stored_len(subject.len(), 0, payload_len) as u64;
    let total_records = total_bytes / stored;
    let batch = ((a.batch_mib << 20) / stored).max(1);
    let start = Instant::now();
    let mut appended = 0u64;
    let mut commits = 0u64;
    let mut running = std::collections::VecDeque::new();
    while appended < total_records {
        let n = batch.min(total_records - appended);
        for _ in 0..n {
            s.append(subject, b"", &payload).unwrap();
            glommio::yield_if_needed().await;
        }
        appended += n;
        if running.len() == a.commits_in_flight {
            let t: glommio::task::JoinHandle<u64> = running.pop_front().unwrap();
            t.await.unwrap();
        }
        let sc = s.clone();
        running.push_back(glommio::spawn_local(async move { sc.commit().await.unwrap() }).detach());
        commits += 1;
    }
    for t in running {
        t.await.unwrap();
    }
    let last = s.commit().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(last, total_records);
    assert_eq!(s.watch().durable_seq(), total_records);
    drop(s);
    std::fs::remove_dir_all(&path).unwrap();
    Throughput {
        record_bytes,
        stored_bytes: stored,
        records: total_records,
        secs,
        commits,
    }
}

/// One 128 B append + durable commit at a time.
async fn commit_latency(dir: &std::path::Path, n: usize) -> (Duration, Duration) {
    let path = dir.join("lat");
    let _ = std::fs::remove_dir_all(&path);
    let s = FileStore::open(&path, LogConfig::default()).await.unwrap();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let t = s.append("lat", b"", &[1u8; 80]).unwrap();
        s.commit().await.unwrap();
        s.wait_durable(t).await.unwrap();
        lat.push(t0.elapsed());
    }
    lat.sort();
    drop(s);
    std::fs::remove_dir_all(&path).unwrap();
    (lat[n / 2], lat[n * 99 / 100])
}

/// Builds a log of `gib` GiB of 1 KiB records, then times reopening it.
async fn reopen_time(dir: &std::path::Path, gib: u64) -> (u64, u64, Duration, u32) {
    let path = dir.join("reopen");
    let _ = std::fs::remove_dir_all(&path);
    let cfg = LogConfig {
        durability: Durability::Interval(Duration::from_secs(1)),
        ..LogConfig::default()
    };
    let s = Rc::new(FileStore::open(&path, cfg.clone()).await.unwrap());
    let payload = vec![0x33u8; 1024 - 48];
    let total = (gib << 30) / 1024;
    let mut running: Option<glommio::task::JoinHandle<u64>> = None;
    let mut i = 0u64;
    while i < total {
        for _ in 0..4096 {
            s.append("reopen.x", b"", &payload).unwrap();
        }
        i += 4096;
        if let Some(t) = running.take() {
            t.await.unwrap();
        }
        let sc = s.clone();
        running = Some(glommio::spawn_local(async move { sc.commit().await.unwrap() }).detach());
    }
    if let Some(t) = running.take() {
        t.await.unwrap();
    }
    s.sync().await.unwrap();
    let bytes = s.state().bytes;
    drop(s);
    let t0 = Instant::now();
    let s = FileStore::open(&path, cfg).await.unwrap();
    let took = t0.elapsed();
    let st = s.state();
    assert_eq!(st.msgs, i);
    let segs = s.segment_count() as u32;
    drop(s);
    std::fs::remove_dir_all(&path).unwrap();
    (st.msgs, bytes, took, segs)
}

fn main() {
    let a = args();
    std::fs::create_dir_all(&a.dir).unwrap();
    raise_memlock_limit();
    glommio::LocalExecutorBuilder::default()
        .io_memory(IO_MEMORY_BYTES * 8)
        .preempt_timer(PREEMPT)
        .spawn(move || async move {
            let _park_guard = natrix_shards::park_guard::Guard::install();
            let total = a.total_mib << 20;
            // Open a store first: it settles glommio's per-device iopoll probe
            // (see storage/src/file/open.rs), which the ceiling's fresh empty file would unsettle.
            let probe = a.dir.join("probe");
            drop(FileStore::open(&probe, LogConfig::default()).await.unwrap());
            std::fs::remove_dir_all(&probe).unwrap();
            let ceiling = disk_ceiling(&a.dir, total).await;
            println!("disk ceiling (O_DIRECT 1 MiB x 8 in flight, {} MiB): {ceiling:.0} MB/s", a.total_mib);
            println!(
                "log: tail buffers up to 1 MiB (each written as it fills), {} MiB per commit, up to {} commits in flight",
                a.batch_mib, a.commits_in_flight
            );
            for &rb in &a.sizes {
                let t = durable_throughput(&a, &a.dir, rb, total).await;
                let mbs = t.records as f64 * t.stored_bytes as f64 / t.secs / 1e6;
                let payload_mbs = t.records as f64 * t.record_bytes as f64 / t.secs / 1e6;
                println!(
                    "durable append, {rb} B payload ({} B on disk): {:.0} records/s, {mbs:.0} MB/s to disk ({:.0}% of ceiling), {payload_mbs:.0} MB/s payload, {} records, {} commits, {:.2} s",
                    t.stored_bytes,
                    t.records as f64 / t.secs,
                    100.0 * mbs / ceiling,
                    t.records,
                    t.commits,
                    t.secs
                );
            }
            let (p50, p99) = commit_latency(&a.dir, 2000).await;
            println!("durable commit of one 128 B record: p50 {} us, p99 {} us", p50.as_micros(), p99.as_micros());
            if a.reopen_gib > 0 {
                let (msgs, bytes, took, segs) = reopen_time(&a.dir, a.reopen_gib).await;
                println!(
                    "reopen of a {:.2} GiB log ({msgs} records, {segs} segments): {:.0} ms",
                    bytes as f64 / (1u64 << 30) as f64,
                    took.as_secs_f64() * 1e3
                );
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
