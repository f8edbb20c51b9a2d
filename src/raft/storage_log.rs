//! [`LogStore`] over natrix-storage: each group's entries live in its own segment log
//! (`FileStore`, record sequence = Raft index, record term = entry term).
//!
//! ```text
//! dir/raft-state                         every group: replica id and hard state (term, vote, commit)
//! dir/groups/<group>/snapshot            the group's latest snapshot (metadata + data)
//! dir/groups/<group>/log/NNNNNNNNNN.seg  the group's log (natrix-storage)
//! ```
//!
//! The trait's methods are synchronous and run inside the driver's `ready()`: they
//! update each group's metadata in memory (snapshot, hard state, first and last index,
//! and the terms of the log as runs: one `(first index, term)` per term, so every
//! `term(index)` is answered without I/O) and a bounded cache of entries, and queue the
//! storage operations. The cache holds each group's newest entries (a tail: every entry
//! not yet applied, plus applied ones up to [`CacheConfig::group_entry_cache_bytes_max`],
//! all groups together within [`CacheConfig::entry_cache_bytes_max`]) and one run of
//! older entries read back from disk. A read that misses is queued
//! ([`LogStore::want_entries`]) and done by the caller ([`FileLogStore::read_fetch`],
//! then [`FileLogStore::install_fetched`] and the driver's `on_entries_fetched`).
//! [`FileLogStore::persist`] is the shard's group commit: it writes new
//! snapshot files, replays the queued operations into the logs (appends into the logs'
//! buffers, the rare truncation durably), commits every touched log at once (all
//! writes and fdatasyncs in flight together), then rewrites the state file if a term,
//! vote or group changed. Only then does the caller call `on_persisted`, so a follower
//! acknowledges, and anyone votes, only what is durable. An entry leaves the cache only
//! once applied, and raft applies only what it knows durable: whatever is not cached
//! is in the group's log on disk.
//!
//! Crash safety. A snapshot file is durable before the log's compact marker that relies
//! on it; on open, a log that still holds entries up to a snapshot is compacted again,
//! and one whose entry at the snapshot index has another term is cut back to the
//! snapshot. The commit index in the state file is written lazily (with the next term
//! or vote change): it never exceeds what the logs made durable before it, and a stale
//! one only means re-learning the commit index from the leader. Persistence failures
//! are returned; the caller must stop the shard (the copy in memory is then ahead of the
//! disk).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

use natrix_storage::{Disk, FileStore, LogConfig, StoreError};
use raft::eraftpb::{Entry, EntryType, HardState, Snapshot};
use raft::GetEntriesContext;

use super::log_store::{FetchRequest, GroupId, LogStore};
use super::persist_format::{self as fmt, GroupState};

const STATE_FILE: &str = "raft-state";
const SNAPSHOT_FILE: &str = "snapshot";
/// Records read from disk at once (concurrently) by a fetch.
const FETCH_BATCH: u64 = 64;
/// Raft reads parked on one group's fetch; more are dropped (raft asks again).
const MAX_PARKED_READS: usize = 64;

/// How many entries the store keeps in memory.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Every group's cached entries together (tails and runs read back from disk).
    /// Entries not yet applied always stay (raft bounds them: uncommitted bytes,
    /// messages in flight), so this can be exceeded by them alone.
    pub entry_cache_bytes_max: u64,
    /// Applied entries one group keeps after its newest ones (for followers slightly
    /// behind).
    pub group_entry_cache_bytes_max: u64,
    /// Entries one fetch reads from disk.
    pub fetch_bytes_max: u64,
}

/// Default [`CacheConfig::entry_cache_bytes_max`]: 64 MiB per shard.
pub const DEFAULT_ENTRY_CACHE_BYTES_MAX: u64 = 64 << 20;
/// Default [`CacheConfig::group_entry_cache_bytes_max`]: 4 MiB.
pub const DEFAULT_GROUP_ENTRY_CACHE_BYTES_MAX: u64 = 4 << 20;
/// Default [`CacheConfig::fetch_bytes_max`]: 4 MiB.
pub const DEFAULT_FETCH_BYTES_MAX: u64 = 4 << 20;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            entry_cache_bytes_max: DEFAULT_ENTRY_CACHE_BYTES_MAX,
            group_entry_cache_bytes_max: DEFAULT_GROUP_ENTRY_CACHE_BYTES_MAX,
            fetch_bytes_max: DEFAULT_FETCH_BYTES_MAX,
        }
    }
}

/// Memory an entry takes in the cache.
fn cached_bytes(e: &Entry) -> u64 {
    (std::mem::size_of::<Entry>() + e.data.len() + e.context.len()) as u64
}

/// A read from disk queued or in flight for a group, and the raft reads waiting on it.
struct Fetch {
    req: FetchRequest,
    issued: bool,
    contexts: Vec<GetEntriesContext>,
}

/// One group: metadata, the terms of its whole log, and the cached entries.
struct GroupLog {
    replica: u64,
    snapshot: Snapshot,
    hard_state: HardState,
    last: u64,
    /// `(first index, term)` for each term of `snapshot index ..= last`, the snapshot
    /// first; indexes increase, terms too.
    terms: Vec<(u64, u64)>,
    /// The newest entries, `tail_first ..= last`.
    tail: VecDeque<Entry>,
    tail_first: u64,
    tail_bytes: u64,
    /// Older entries read back from disk, from `fetched_first` on.
    fetched: Vec<Entry>,
    fetched_first: u64,
    fetched_bytes: u64,
    /// Handed to the application: may leave the cache.
    applied: u64,
    fetch: Option<Fetch>,
    /// Raft reads whose fetch landed, for the driver to resume.
    resumed: Vec<GetEntriesContext>,
    /// Indexes of the configuration changes in the log after the snapshot.
    conf_changes: BTreeSet<u64>,
    /// Entries up to here were in the log at open, unread: any may be a
    /// configuration change.
    unread_through: u64,
}

impl GroupLog {
    fn new(replica: u64, snapshot: &Snapshot, hard_state: &HardState, last: u64) -> Self {
        let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        Self {
            replica,
            snapshot: snapshot.clone(),
            hard_state: hard_state.clone(),
            last,
            terms: vec![(index, term)],
            tail: VecDeque::new(),
            tail_first: last + 1,
            tail_bytes: 0,
            fetched: Vec::new(),
            fetched_first: 0,
            fetched_bytes: 0,
            applied: index,
            fetch: None,
            resumed: Vec::new(),
            conf_changes: BTreeSet::new(),
            unread_through: 0,
        }
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn cache_bytes(&self) -> u64 {
        self.tail_bytes + self.fetched_bytes
    }

    fn term(&self, index: u64) -> Option<u64> {
        if index < self.snapshot_index() || index > self.last {
            return None;
        }
        let at = self.terms.partition_point(|&(first, _)| first <= index);
        Some(self.terms[at - 1].1)
    }

    /// Whether moving the commit index from `old` to `new` commits a configuration
    /// change (or may: an entry unread since open).
    fn commits_conf_change(&self, old: u64, new: u64) -> bool {
        new > old
            && (old < self.unread_through
                || self.conf_changes.range(old + 1..=new).next().is_some())
    }

    fn push_term(&mut self, index: u64, term: u64) {
        let &(_, last_term) = self.terms.last().expect("terms start at the snapshot");
        assert!(last_term <= term, "terms must not decrease");
        if term != last_term {
            self.terms.push((index, term));
        }
    }

    fn cached(&self, index: u64) -> Option<&Entry> {
        if index >= self.tail_first {
            return self.tail.get((index - self.tail_first) as usize);
        }
        index
            .checked_sub(self.fetched_first)
            .and_then(|i| self.fetched.get(i as usize))
    }

    fn cached_through(&self, from: u64) -> u64 {
        if from > self.last {
            return from - 1;
        }
        let mut next = from;
        let fetched_end = self.fetched_first + self.fetched.len() as u64;
        if (self.fetched_first..fetched_end).contains(&next) {
            next = fetched_end;
        }
        if next >= self.tail_first {
            self.last
        } else {
            next - 1
        }
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        assert!(low > self.snapshot_index() && high <= self.last + 1 && low <= high);
        let cached = (self.tail.len() + self.fetched.len()) as u64;
        let mut out = Vec::with_capacity((high - low).min(cached) as usize);
        let mut size_bytes = 0u64;
        for i in low..high {
            let Some(e) = self.cached(i) else { break };
            size_bytes += (e.data.len() + e.context.len() + 16) as u64;
            if !out.is_empty() && size_bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    /// Drops fetched entries outside `first ..= last`.
    fn clip_fetched(&mut self, first: u64, last: u64) -> u64 {
        let before = self.fetched_bytes;
        let end = self.fetched_first + self.fetched.len() as u64;
        if end <= first || self.fetched_first > last {
            self.fetched.clear();
        } else {
            if end > last + 1 {
                self.fetched
                    .truncate((last + 1 - self.fetched_first) as usize);
            }
            if self.fetched_first < first {
                self.fetched.drain(..(first - self.fetched_first) as usize);
                self.fetched_first = first;
            }
        }
        self.fetched_bytes = self.fetched.iter().map(cached_bytes).sum();
        before - self.fetched_bytes
    }

    /// Drops applied entries from the front of the tail while it is above `max_bytes`.
    /// Returns the bytes freed.
    fn trim_tail(&mut self, max_bytes: u64) -> u64 {
        let mut freed = 0;
        while self.tail_bytes > max_bytes && self.tail_first <= self.applied {
            let e = self.tail.pop_front().expect("tail not empty");
            let b = cached_bytes(&e);
            self.tail_bytes -= b;
            freed += b;
            self.tail_first += 1;
        }
        freed
    }
}

/// A storage operation waiting for the next [`FileLogStore::persist`].
#[derive(Debug)]
enum Op {
    Create(GroupId),
    Remove(GroupId),
    Append(GroupId, Vec<Entry>),
    Truncate(GroupId, u64),
    /// Drop entries up to `index` (a snapshot at `(index, term)` covers them).
    Compact(GroupId, u64, u64),
    /// Replace the whole log by a snapshot at `(index, term)`.
    Install(GroupId, u64, u64),
}

/// All groups' logs of a shard on natrix-storage.
pub struct FileLogStore {
    disk: Disk,
    dir: PathBuf,
    log_cfg: LogConfig,
    cache_cfg: CacheConfig,
    groups: BTreeMap<GroupId, GroupLog>,
    /// Entries cached, all groups together.
    cache_bytes: u64,
    /// Groups with a fetch not yet handed out.
    fetch_queue: Vec<GroupId>,
    /// Where the next store-wide trim starts (so that it spreads over the groups).
    trim_cursor: GroupId,
    logs: BTreeMap<GroupId, Rc<FileStore>>,
    /// Fetches reading a group's log now, and groups whose log is being cut: a cut
    /// waits for the reads and reads wait for the cut (a record read while its file is
    /// cut would look corrupt).
    reading: BTreeMap<GroupId, u32>,
    cutting: BTreeSet<GroupId>,
    /// Cuts and fetches waiting for the other to end.
    gate_waiters: Vec<Waker>,
    ops: Vec<Op>,
    snapshots_dirty: BTreeSet<GroupId>,
    state_dirty: bool,
    persisting: bool,
}

fn io_err(e: StoreError) -> io::Error {
    match e {
        StoreError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl FileLogStore {
    /// Opens (or creates) the store in `dir` with the default cache budget.
    pub async fn open(dir: impl AsRef<Path>, log_cfg: LogConfig) -> io::Result<Self> {
        Self::open_with(dir, log_cfg, CacheConfig::default()).await
    }

    /// Opens (or creates) the store in `dir`. Reads each group's metadata and the terms
    /// of its log from the log's index, no entry: the cache starts empty.
    pub async fn open_with(
        dir: impl AsRef<Path>,
        log_cfg: LogConfig,
        cache_cfg: CacheConfig,
    ) -> io::Result<Self> {
        Self::open_on(Disk::Real, dir, log_cfg, cache_cfg).await
    }

    /// Like [`Self::open_with`], with every file on `disk` (a faulty one, in tests).
    pub async fn open_on(
        disk: Disk,
        dir: impl AsRef<Path>,
        log_cfg: LogConfig,
        cache_cfg: CacheConfig,
    ) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        disk.create_dir_all(&dir.join("groups"))?;
        let groups = match disk.read(&dir.join(STATE_FILE)) {
            Ok(buf) => fmt::decode_state(&buf)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut s = Self {
            disk,
            dir,
            log_cfg,
            cache_cfg,
            groups: BTreeMap::new(),
            cache_bytes: 0,
            fetch_queue: Vec::new(),
            trim_cursor: 0,
            logs: BTreeMap::new(),
            reading: BTreeMap::new(),
            cutting: BTreeSet::new(),
            gate_waiters: Vec::new(),
            ops: Vec::new(),
            snapshots_dirty: BTreeSet::new(),
            state_dirty: false,
            persisting: false,
        };
        let known: BTreeSet<GroupId> = groups.iter().map(|g| g.group).collect();
        for g in groups {
            s.load_group(g).await?;
        }
        // Directories of groups created or removed around a crash.
        let groups_dir = s.dir.join("groups");
        for name in s.disk.list(&groups_dir)? {
            let id = name.parse::<GroupId>().ok();
            if id.is_none_or(|id| !known.contains(&id)) {
                s.disk.remove_dir_all(&groups_dir.join(name))?;
            }
        }
        Ok(s)
    }

    fn group_dir(&self, g: GroupId) -> PathBuf {
        self.dir.join("groups").join(format!("{g:020}"))
    }

    async fn load_group(&mut self, gs: GroupState) -> io::Result<()> {
        let g = gs.group;
        let gdir = self.group_dir(g);
        let snap = match self.disk.read(&gdir.join(SNAPSHOT_FILE)) {
            Ok(buf) => fmt::decode_snapshot(&buf)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => return Err(e),
        };
        let log = FileStore::open_on(self.disk.clone(), gdir.join("log"), self.log_cfg.clone())
            .await
            .map_err(io_err)?;
        let (snap_index, snap_term) = (snap.get_metadata().index, snap.get_metadata().term);
        if log.first_index() <= snap_index {
            // The crash came between the snapshot file and the log's compact marker.
            if log.last_index() >= log.first_index() && log.term(snap_index) != Some(snap_term) {
                log.truncate_from(log.first_index()).await.map_err(io_err)?;
            }
            log.compact(snap_index + 1, snap_term).map_err(io_err)?;
            log.sync().await.map_err(io_err)?;
        }
        if log.first_index() != snap_index + 1 || log.term(snap_index) != Some(snap_term) {
            return Err(invalid(format!(
                "group {g}: log starts at {} (term {:?}), snapshot at {snap_index} term {snap_term}",
                log.first_index(),
                log.term(snap_index)
            )));
        }
        let last = log.last_index();
        let mut hs = gs.hard_state;
        hs.commit = hs.commit.clamp(snap_index, last);
        let mut gl = GroupLog::new(gs.replica, &snap, &hs, last);
        gl.unread_through = last;
        // The terms from the log's index (in memory): no entry is read.
        for index in snap_index + 1..=last {
            let term = log
                .term(index)
                .ok_or_else(|| invalid(format!("group {g}: entry {index} missing from the log")))?;
            if term < gl.terms.last().expect("snapshot term").1 {
                return Err(invalid(format!("group {g}: term decreases at {index}")));
            }
            gl.push_term(index, term);
        }
        self.groups.insert(g, gl);
        self.logs.insert(g, Rc::new(log));
        Ok(())
    }

    fn log(&self, g: GroupId) -> &GroupLog {
        self.groups.get(&g).expect("unknown group in log store")
    }

    fn log_mut(&mut self, g: GroupId) -> &mut GroupLog {
        self.groups.get_mut(&g).expect("unknown group in log store")
    }

    /// Bytes of entries in memory, all groups together.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Bytes of entries in memory for `group`.
    pub fn group_cache_bytes(&self, group: GroupId) -> u64 {
        self.groups.get(&group).map_or(0, GroupLog::cache_bytes)
    }

    /// The cache budget.
    pub fn cache_config(&self) -> &CacheConfig {
        &self.cache_cfg
    }

    /// Reads the entries of a fetch from the group's log (the caller then hands them
    /// to [`Self::install_fetched`]). Stops at the first entry missing or after about
    /// `max_bytes`. The store must not be borrowed across it.
    pub async fn read_fetch(
        store: &Rc<RefCell<Self>>,
        req: FetchRequest,
    ) -> io::Result<Vec<Entry>> {
        Self::wait_gate(store, |s| !s.cutting.contains(&req.group)).await;
        let Some(log) = store.borrow().logs.get(&req.group).cloned() else {
            return Ok(Vec::new());
        };
        let _reading = ReadGuard::new(store, req.group);
        let mut out = Vec::new();
        let mut size_bytes = 0u64;
        let mut next = req.low;
        while next < req.high && size_bytes < req.max_bytes {
            let end = req.high.min(next + FETCH_BATCH);
            // One batch of reads in flight at once.
            let reads: Vec<_> = (next..end)
                .map(|seq| {
                    let log = log.clone();
                    glommio::spawn_local(async move { log.get(seq).await })
                })
                .collect();
            for r in reads {
                let Some(m) = r.await.map_err(io_err)? else {
                    if out.is_empty() && store.borrow().expects_on_disk(req.group, next) {
                        return Err(invalid(format!(
                            "group {}: entry {next} missing from the log",
                            req.group
                        )));
                    }
                    return Ok(out);
                };
                if m.seq != next {
                    return Ok(out);
                }
                let e = fmt::decode_entry(m.seq, m.term, &m.payload)?;
                size_bytes += (e.data.len() + e.context.len() + 16) as u64;
                out.push(e);
                next += 1;
                if size_bytes >= req.max_bytes {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Whether entry `index` of `g` should be in its log on disk (and stay there
    /// while nothing cuts the log): it is in the log but not in the tail.
    fn expects_on_disk(&self, g: GroupId, index: u64) -> bool {
        !self.cutting.contains(&g)
            && self.groups.get(&g).is_some_and(|gl| {
                index > gl.snapshot_index() && index < gl.tail_first && index <= gl.last
            })
            && !self.ops.iter().any(|op| {
                matches!(op, Op::Truncate(o, _) | Op::Install(o, ..) | Op::Compact(o, ..) | Op::Remove(o) if *o == g)
            })
    }

    /// Entries read for `req` (by [`Self::read_fetch`]): keeps those still in the log
    /// and not in the tail as the group's run of fetched entries, and readies the raft
    /// reads that waited (the driver's `on_entries_fetched(group)` resumes them).
    pub fn install_fetched(&mut self, req: FetchRequest, entries: Vec<Entry>) {
        let Some(gl) = self.groups.get_mut(&req.group) else {
            return;
        };
        if gl.fetch.as_ref().is_none_or(|f| f.req != req) {
            return; // a re-created group
        }
        let f = gl.fetch.take().expect("fetch");
        gl.resumed.extend(f.contexts);
        let mut keep = Vec::new();
        for (next, e) in (req.low..).zip(entries) {
            if e.index != next
                || next <= gl.snapshot_index()
                || next >= gl.tail_first
                || gl.term(next) != Some(e.term)
            {
                break;
            }
            keep.push(e);
        }
        if keep.is_empty() {
            return;
        }
        self.cache_bytes -= gl.fetched_bytes;
        gl.fetched_bytes = keep.iter().map(cached_bytes).sum();
        gl.fetched_first = req.low;
        gl.fetched = keep;
        self.cache_bytes += gl.fetched_bytes;
    }

    /// Whether writes are waiting for [`Self::persist`].
    pub fn has_pending(&self) -> bool {
        !self.ops.is_empty() || !self.snapshots_dirty.is_empty() || self.state_dirty
    }

    /// Makes every write so far durable: the shard's group commit. At most one runs at
    /// a time per store; the store must not be borrowed by the caller across it.
    pub async fn persist(store: &Rc<RefCell<Self>>) -> io::Result<()> {
        let (ops, snapshots, state, dir, disk) = {
            let mut s = store.borrow_mut();
            assert!(!s.persisting, "one persist at a time");
            s.persisting = true;
            let snapshots: Vec<(PathBuf, Snapshot)> = std::mem::take(&mut s.snapshots_dirty)
                .into_iter()
                .filter_map(|g| {
                    s.groups
                        .get(&g)
                        .map(|gl| (s.group_dir(g), gl.snapshot.clone()))
                })
                .collect();
            let state = std::mem::take(&mut s.state_dirty).then(|| s.state_records());
            let ops = std::mem::take(&mut s.ops);
            (ops, snapshots, state, s.dir.clone(), s.disk.clone())
        };
        let r = Self::write_all(store, &disk, ops, snapshots, state, &dir).await;
        store.borrow_mut().persisting = false;
        r
    }

    async fn write_all(
        store: &Rc<RefCell<Self>>,
        disk: &Disk,
        ops: Vec<Op>,
        snapshots: Vec<(PathBuf, Snapshot)>,
        state: Option<Vec<GroupState>>,
        dir: &Path,
    ) -> io::Result<()> {
        for (gdir, snap) in snapshots {
            disk.create_dir_all(&gdir)?;
            disk.replace_durably(&gdir, SNAPSHOT_FILE, fmt::encode_snapshot(&snap))
                .await?;
        }
        let mut touched: BTreeMap<GroupId, Rc<FileStore>> = BTreeMap::new();
        for op in ops {
            Self::apply_op(store, op, &mut touched).await?;
        }
        let commits: Vec<_> = touched
            .into_values()
            .map(|log| glommio::spawn_local(async move { log.commit().await }))
            .collect();
        let mut first_err = None;
        for c in commits {
            if let Err(e) = c.await {
                first_err.get_or_insert(io_err(e));
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        if let Some(state) = state {
            disk.replace_durably(dir, STATE_FILE, fmt::encode_state(&state))
                .await?;
        }
        Ok(())
    }

    async fn apply_op(
        store: &Rc<RefCell<Self>>,
        op: Op,
        touched: &mut BTreeMap<GroupId, Rc<FileStore>>,
    ) -> io::Result<()> {
        let log_of = |g: GroupId| store.borrow().logs.get(&g).cloned().expect("group log");
        match op {
            Op::Create(g) => {
                let (disk, path, cfg) = {
                    let s = store.borrow();
                    (
                        s.disk.clone(),
                        s.group_dir(g).join("log"),
                        s.log_cfg.clone(),
                    )
                };
                let log = Rc::new(FileStore::open_on(disk, path, cfg).await.map_err(io_err)?);
                assert!(log.last_index() == 0, "a new group's log is empty");
                store.borrow_mut().logs.insert(g, log.clone());
                touched.insert(g, log);
            }
            Op::Remove(g) => {
                touched.remove(&g);
                let (log, gdir, disk) = {
                    let mut s = store.borrow_mut();
                    (s.logs.remove(&g), s.group_dir(g), s.disk.clone())
                };
                drop(log);
                disk.remove_dir_all(&gdir)?;
            }
            Op::Append(g, entries) => {
                let log = log_of(g);
                for e in &entries {
                    log.append_entry(e.index, e.term, &fmt::encode_entry(e))
                        .map_err(io_err)?;
                }
                touched.insert(g, log);
            }
            Op::Truncate(g, from) => {
                let log = log_of(g);
                Self::cut(store, g, log.truncate_from(from))
                    .await
                    .map_err(io_err)?;
                touched.insert(g, log);
            }
            Op::Compact(g, index, term) => {
                let log = log_of(g);
                log.compact(index + 1, term).map_err(io_err)?;
                touched.insert(g, log);
            }
            Op::Install(g, index, term) => {
                let log = log_of(g);
                if log.last_index() >= log.first_index() {
                    Self::cut(store, g, log.truncate_from(log.first_index()))
                        .await
                        .map_err(io_err)?;
                }
                log.compact(index + 1, term).map_err(io_err)?;
                touched.insert(g, log);
            }
        }
        Ok(())
    }

    /// Runs a cut of `g`'s log once no fetch reads it.
    async fn cut<T>(store: &Rc<RefCell<Self>>, g: GroupId, cut: impl Future<Output = T>) -> T {
        store.borrow_mut().cutting.insert(g);
        Self::wait_gate(store, |s| !s.reading.contains_key(&g)).await;
        let r = cut.await;
        let mut s = store.borrow_mut();
        s.cutting.remove(&g);
        s.open_gate();
        r
    }

    /// Waits until `ready` holds; checked again whenever a cut or a fetch ends.
    async fn wait_gate(store: &Rc<RefCell<Self>>, ready: impl Fn(&Self) -> bool) {
        std::future::poll_fn(|cx| {
            let mut s = store.borrow_mut();
            if ready(&s) {
                return Poll::Ready(());
            }
            s.gate_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn open_gate(&mut self) {
        for w in self.gate_waiters.drain(..) {
            w.wake();
        }
    }

    fn state_records(&self) -> Vec<GroupState> {
        self.groups
            .iter()
            .map(|(&g, gl)| GroupState {
                group: g,
                replica: gl.replica,
                hard_state: gl.hard_state.clone(),
            })
            .collect()
    }
}

/// Counts a fetch reading a group's log while it lives.
struct ReadGuard<'a> {
    store: &'a Rc<RefCell<FileLogStore>>,
    group: GroupId,
}

impl<'a> ReadGuard<'a> {
    fn new(store: &'a Rc<RefCell<FileLogStore>>, group: GroupId) -> Self {
        *store.borrow_mut().reading.entry(group).or_insert(0) += 1;
        Self { store, group }
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.store.borrow_mut();
        if let Some(n) = s.reading.get_mut(&self.group) {
            *n -= 1;
            if *n == 0 {
                s.reading.remove(&self.group);
                s.open_gate();
            }
        }
    }
}

impl LogStore for FileLogStore {
    fn group_ids(&self) -> Vec<GroupId> {
        self.groups.keys().copied().collect()
    }

    fn create_group(
        &mut self,
        group: GroupId,
        replica: u64,
        snapshot: &Snapshot,
        hard_state: &HardState,
    ) {
        let index = snapshot.get_metadata().index;
        let gl = GroupLog::new(replica, snapshot, hard_state, index);
        let previous = self.groups.insert(group, gl);
        assert!(previous.is_none(), "group {group} already exists");
        self.ops.push(Op::Create(group));
        if index > 0 {
            self.snapshots_dirty.insert(group);
            self.ops
                .push(Op::Compact(group, index, snapshot.get_metadata().term));
        }
        self.state_dirty = true;
    }

    fn replica_id(&self, group: GroupId) -> u64 {
        self.log(group).replica
    }

    fn remove_group(&mut self, group: GroupId) {
        if let Some(gl) = self.groups.remove(&group) {
            self.cache_bytes -= gl.cache_bytes();
        }
        self.snapshots_dirty.remove(&group);
        self.ops.push(Op::Remove(group));
        self.state_dirty = true;
    }

    fn append(&mut self, group: GroupId, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let max = self.cache_cfg.group_entry_cache_bytes_max;
        let gl = self
            .groups
            .get_mut(&group)
            .expect("unknown group in log store");
        assert_eq!(first.index, gl.last + 1, "append must be contiguous");
        let mut added = 0;
        for e in entries {
            assert_eq!(e.index, gl.last + 1, "entries must be contiguous");
            if e.get_entry_type() != EntryType::EntryNormal {
                gl.conf_changes.insert(e.index);
            }
            gl.push_term(e.index, e.term);
            gl.last = e.index;
            added += cached_bytes(e);
            gl.tail.push_back(e.clone());
        }
        gl.tail_bytes += added;
        let freed = gl.trim_tail(max);
        self.cache_bytes = self.cache_bytes + added - freed;
        self.ops.push(Op::Append(group, entries.to_vec()));
    }

    fn truncate_suffix(&mut self, group: GroupId, from_index: u64) {
        let gl = self
            .groups
            .get_mut(&group)
            .expect("unknown group in log store");
        assert!(
            from_index > gl.snapshot_index(),
            "cannot truncate into the snapshot"
        );
        if from_index <= gl.last {
            let before = gl.cache_bytes();
            if from_index >= gl.tail_first {
                gl.tail.truncate((from_index - gl.tail_first) as usize);
            } else {
                gl.tail.clear();
                gl.tail_first = from_index;
            }
            gl.tail_bytes = gl.tail.iter().map(cached_bytes).sum();
            gl.clip_fetched(0, from_index - 1);
            gl.last = from_index - 1;
            gl.conf_changes.split_off(&from_index);
            gl.unread_through = gl.unread_through.min(gl.last);
            while gl.terms.len() > 1 && gl.terms.last().expect("terms").0 >= from_index {
                gl.terms.pop();
            }
            self.cache_bytes -= before - gl.cache_bytes();
        }
        self.ops.push(Op::Truncate(group, from_index));
    }

    fn compact_prefix(&mut self, group: GroupId, snapshot: &Snapshot) {
        let gl = self
            .groups
            .get_mut(&group)
            .expect("unknown group in log store");
        let meta = snapshot.get_metadata();
        let index = meta.index;
        if index <= gl.snapshot_index() {
            return;
        }
        assert!(index <= gl.last, "cannot compact past the last entry");
        assert_eq!(Some(meta.term), gl.term(index));
        let before = gl.cache_bytes();
        while gl.tail_first <= index && !gl.tail.is_empty() {
            let e = gl.tail.pop_front().expect("tail");
            gl.tail_bytes -= cached_bytes(&e);
            gl.tail_first += 1;
        }
        gl.tail_first = gl.tail_first.max(index + 1);
        gl.clip_fetched(index + 1, gl.last);
        gl.terms.retain(|&(first, _)| first > index);
        gl.terms.insert(0, (index, meta.term));
        gl.conf_changes = gl.conf_changes.split_off(&(index + 1));
        gl.snapshot = snapshot.clone();
        gl.applied = gl.applied.max(index);
        self.cache_bytes -= before - gl.cache_bytes();
        self.snapshots_dirty.insert(group);
        self.ops.push(Op::Compact(group, index, meta.term));
    }

    fn install_snapshot(&mut self, group: GroupId, snapshot: &Snapshot) {
        let gl = self
            .groups
            .get_mut(&group)
            .expect("unknown group in log store");
        let meta = snapshot.get_metadata();
        self.cache_bytes -= gl.cache_bytes();
        gl.tail.clear();
        gl.tail_bytes = 0;
        gl.fetched.clear();
        gl.fetched_bytes = 0;
        gl.last = meta.index;
        gl.tail_first = meta.index + 1;
        gl.terms = vec![(meta.index, meta.term)];
        gl.conf_changes.clear();
        gl.unread_through = 0;
        gl.snapshot = snapshot.clone();
        gl.applied = meta.index;
        let hs = &mut gl.hard_state;
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.snapshots_dirty.insert(group);
        self.ops.push(Op::Install(group, meta.index, meta.term));
        self.state_dirty = true;
    }

    fn set_hard_state(&mut self, group: GroupId, hard_state: &HardState) {
        let gl = self.log_mut(group);
        let old = &gl.hard_state;
        // raft-rs takes a configuration change into account once applied, and
        // before an election it applies those it knows committed: a commit index
        // that forgot one would let a restarted node campaign (and others vote)
        // under the configuration before it. So a commit past one is made durable.
        let changed = old.term != hard_state.term
            || old.vote != hard_state.vote
            || gl.commits_conf_change(old.commit, hard_state.commit);
        if hard_state.commit >= gl.unread_through {
            gl.unread_through = 0;
        }
        gl.hard_state = hard_state.clone();
        if changed {
            self.state_dirty = true;
        }
    }

    /// Not available: storage I/O is asynchronous; call [`FileLogStore::persist`].
    fn sync(&mut self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "FileLogStore persists with persist().await",
        ))
    }

    fn hard_state(&self, group: GroupId) -> HardState {
        self.log(group).hard_state.clone()
    }

    fn snapshot(&self, group: GroupId) -> Snapshot {
        self.log(group).snapshot.clone()
    }

    fn first_index(&self, group: GroupId) -> u64 {
        self.log(group).snapshot_index() + 1
    }

    fn last_index(&self, group: GroupId) -> u64 {
        self.log(group).last
    }

    fn term(&self, group: GroupId, index: u64) -> Option<u64> {
        self.log(group).term(index)
    }

    /// The part readable from memory (see [`LogStore::entries`]).
    fn entries(&self, group: GroupId, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        self.log(group).entries(low, high, max_bytes)
    }

    fn cached_through(&self, group: GroupId, from: u64) -> u64 {
        self.log(group).cached_through(from)
    }

    fn want_entries(
        &mut self,
        group: GroupId,
        low: u64,
        high: u64,
        _max_bytes: u64,
        context: Option<GetEntriesContext>,
    ) {
        let fetch_bytes = self.cache_cfg.fetch_bytes_max;
        let Some(gl) = self.groups.get_mut(&group) else {
            return;
        };
        let high = high.min(gl.tail_first).min(gl.last + 1);
        match &mut gl.fetch {
            Some(f) => {
                if let Some(c) = context {
                    if f.contexts.len() < MAX_PARKED_READS {
                        f.contexts.push(c);
                    }
                }
            }
            None if low < high => {
                gl.fetch = Some(Fetch {
                    req: FetchRequest {
                        group,
                        low,
                        high,
                        max_bytes: fetch_bytes,
                    },
                    issued: false,
                    contexts: context.into_iter().collect(),
                });
                self.fetch_queue.push(group);
            }
            None => {
                // Nothing on disk to read (it is all in memory now): resume at once.
                gl.resumed.extend(context);
            }
        }
    }

    fn take_fetches(&mut self) -> Vec<FetchRequest> {
        let mut out = Vec::new();
        for g in std::mem::take(&mut self.fetch_queue) {
            if let Some(f) = self.groups.get_mut(&g).and_then(|gl| gl.fetch.as_mut()) {
                if !f.issued {
                    f.issued = true;
                    out.push(f.req);
                }
            }
        }
        out
    }

    fn take_fetch_contexts(&mut self, group: GroupId) -> Vec<GetEntriesContext> {
        self.groups
            .get_mut(&group)
            .map(|gl| std::mem::take(&mut gl.resumed))
            .unwrap_or_default()
    }

    fn set_applied(&mut self, group: GroupId, index: u64) {
        let max = self.cache_cfg.group_entry_cache_bytes_max;
        if let Some(gl) = self.groups.get_mut(&group) {
            gl.applied = gl.applied.max(index);
            self.cache_bytes -= gl.trim_tail(max);
        }
    }

    fn trim_cache(&mut self) {
        let max = self.cache_cfg.entry_cache_bytes_max;
        if self.cache_bytes <= max {
            return;
        }
        // Down to 7/8 of the budget, so that a store at its budget does not sweep its
        // groups every turn. Runs read back from disk go first (they were used when
        // they landed), then the applied entries of the tails, from the group after
        // the last one trimmed.
        let target = max - max / 8;
        for gl in self.groups.values_mut() {
            if !gl.fetched.is_empty() {
                self.cache_bytes -= gl.clip_fetched(1, 0);
            }
        }
        let mut visited = 0;
        while self.cache_bytes > target && visited < self.groups.len() {
            let (&g, gl) = match self.groups.range_mut(self.trim_cursor..).next() {
                Some(x) => x,
                None => self.groups.iter_mut().next().expect("groups"),
            };
            let over = self.cache_bytes - target;
            let keep = gl.tail_bytes.saturating_sub(over);
            self.cache_bytes -= gl.trim_tail(keep);
            self.trim_cursor = g.wrapping_add(1);
            visited += 1;
        }
    }
}
