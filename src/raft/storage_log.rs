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
//! update an in-memory copy of every group's uncompacted log (all reads are served from
//! it, as raft-rs's `Storage` must answer synchronously) and queue the storage
//! operations. [`FileLogStore::persist`] is the shard's group commit: it writes new
//! snapshot files, replays the queued operations into the logs (appends into the logs'
//! buffers, the rare truncation durably), commits every touched log at once (all
//! writes and fdatasyncs in flight together), then rewrites the state file if a term,
//! vote or group changed. Only then does the caller call `on_persisted`, so a follower
//! acknowledges, and anyone votes, only what is durable.
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
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use natrix_storage::{FileStore, LogConfig, StoreError};
use raft::eraftpb::{Entry, HardState, Snapshot};

use super::log_store::{GroupId, LogStore, MemStore};
use super::persist_format::{self as fmt, GroupState};

const STATE_FILE: &str = "raft-state";
const SNAPSHOT_FILE: &str = "snapshot";
/// Entries read per batch when loading a log at open.
const LOAD_BATCH: usize = 1024;

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
    dir: PathBuf,
    log_cfg: LogConfig,
    /// Every group's uncompacted log, hard state and snapshot: the reads.
    mirror: MemStore,
    logs: BTreeMap<GroupId, Rc<FileStore>>,
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

impl FileLogStore {
    /// Opens (or creates) the store in `dir` and loads every group's log.
    pub async fn open(dir: impl AsRef<Path>, log_cfg: LogConfig) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("groups"))?;
        let groups = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(buf) => fmt::decode_state(&buf)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut s = Self {
            dir,
            log_cfg,
            mirror: MemStore::new(),
            logs: BTreeMap::new(),
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
        for ent in std::fs::read_dir(s.dir.join("groups"))? {
            let ent = ent?;
            let id = ent.file_name().to_string_lossy().parse::<GroupId>().ok();
            if id.is_none_or(|id| !known.contains(&id)) {
                std::fs::remove_dir_all(ent.path())?;
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
        let snap = match std::fs::read(gdir.join(SNAPSHOT_FILE)) {
            Ok(buf) => fmt::decode_snapshot(&buf)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => return Err(e),
        };
        let log = FileStore::open(gdir.join("log"), self.log_cfg.clone())
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
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "group {g}: log starts at {} (term {:?}), snapshot at {snap_index} term {snap_term}",
                    log.first_index(),
                    log.term(snap_index)
                ),
            ));
        }
        let mut hs = gs.hard_state;
        hs.commit = hs.commit.clamp(snap_index, log.last_index());
        self.mirror.create_group(g, gs.replica, &snap, &hs);
        let mut next = log.first_index();
        while next <= log.last_index() {
            let batch = log
                .range(next, log.last_index(), LOAD_BATCH)
                .await
                .map_err(io_err)?;
            let mut entries = Vec::with_capacity(batch.len());
            for m in batch {
                if m.seq != next {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("group {g}: entry {next} missing from the log"),
                    ));
                }
                entries.push(fmt::decode_entry(m.seq, m.term, &m.payload)?);
                next += 1;
            }
            self.mirror.append(g, &entries);
        }
        self.logs.insert(g, Rc::new(log));
        Ok(())
    }

    /// Whether writes are waiting for [`Self::persist`].
    pub fn has_pending(&self) -> bool {
        !self.ops.is_empty() || !self.snapshots_dirty.is_empty() || self.state_dirty
    }

    /// Makes every write so far durable: the shard's group commit. At most one runs at
    /// a time per store; the store must not be borrowed by the caller across it.
    pub async fn persist(store: &Rc<RefCell<Self>>) -> io::Result<()> {
        let (ops, snapshots, state, dir) = {
            let mut s = store.borrow_mut();
            assert!(!s.persisting, "one persist at a time");
            s.persisting = true;
            let snapshots: Vec<(PathBuf, Snapshot)> = std::mem::take(&mut s.snapshots_dirty)
                .into_iter()
                .filter(|g| s.mirror.has_group(*g))
                .map(|g| (s.group_dir(g), s.mirror.snapshot(g)))
                .collect();
            let state = std::mem::take(&mut s.state_dirty).then(|| s.state_records());
            (std::mem::take(&mut s.ops), snapshots, state, s.dir.clone())
        };
        let r = Self::write_all(store, ops, snapshots, state, &dir).await;
        store.borrow_mut().persisting = false;
        r
    }

    async fn write_all(
        store: &Rc<RefCell<Self>>,
        ops: Vec<Op>,
        snapshots: Vec<(PathBuf, Snapshot)>,
        state: Option<Vec<GroupState>>,
        dir: &Path,
    ) -> io::Result<()> {
        for (gdir, snap) in snapshots {
            std::fs::create_dir_all(&gdir)?;
            write_atomic(&gdir, SNAPSHOT_FILE, fmt::encode_snapshot(&snap)).await?;
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
            write_atomic(dir, STATE_FILE, fmt::encode_state(&state)).await?;
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
                let (path, cfg) = {
                    let s = store.borrow();
                    (s.group_dir(g).join("log"), s.log_cfg.clone())
                };
                let log = Rc::new(FileStore::open(path, cfg).await.map_err(io_err)?);
                assert!(log.last_index() == 0, "a new group's log is empty");
                store.borrow_mut().logs.insert(g, log.clone());
                touched.insert(g, log);
            }
            Op::Remove(g) => {
                touched.remove(&g);
                let (log, gdir) = {
                    let mut s = store.borrow_mut();
                    (s.logs.remove(&g), s.group_dir(g))
                };
                drop(log);
                std::fs::remove_dir_all(gdir)?;
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
                log.truncate_from(from).await.map_err(io_err)?;
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
                    log.truncate_from(log.first_index()).await.map_err(io_err)?;
                }
                log.compact(index + 1, term).map_err(io_err)?;
                touched.insert(g, log);
            }
        }
        Ok(())
    }

    fn state_records(&self) -> Vec<GroupState> {
        self.mirror
            .group_ids()
            .into_iter()
            .map(|g| GroupState {
                group: g,
                replica: self.mirror.replica_id(g),
                hard_state: self.mirror.hard_state(g),
            })
            .collect()
    }
}

/// Replaces `dir/name` by `bytes` atomically and durably.
async fn write_atomic(dir: &Path, name: &str, bytes: Vec<u8>) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let file = glommio::io::BufferedFile::create(&tmp).await?;
    let len = bytes.len();
    let written = file.write_at(bytes, 0).await?;
    assert_eq!(written, len, "short write");
    file.fdatasync().await?;
    file.close().await?;
    glommio::io::rename(&tmp, dir.join(name)).await?;
    let d = glommio::io::Directory::open(dir).await?;
    d.sync().await?;
    d.close().await?;
    Ok(())
}

impl LogStore for FileLogStore {
    fn group_ids(&self) -> Vec<GroupId> {
        self.mirror.group_ids()
    }

    fn create_group(
        &mut self,
        group: GroupId,
        replica: u64,
        snapshot: &Snapshot,
        hard_state: &HardState,
    ) {
        self.mirror
            .create_group(group, replica, snapshot, hard_state);
        self.ops.push(Op::Create(group));
        let index = snapshot.get_metadata().index;
        if index > 0 {
            self.snapshots_dirty.insert(group);
            self.ops
                .push(Op::Compact(group, index, snapshot.get_metadata().term));
        }
        self.state_dirty = true;
    }

    fn replica_id(&self, group: GroupId) -> u64 {
        self.mirror.replica_id(group)
    }

    fn remove_group(&mut self, group: GroupId) {
        self.mirror.remove_group(group);
        self.snapshots_dirty.remove(&group);
        self.ops.push(Op::Remove(group));
        self.state_dirty = true;
    }

    fn append(&mut self, group: GroupId, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        self.mirror.append(group, entries);
        self.ops.push(Op::Append(group, entries.to_vec()));
    }

    fn truncate_suffix(&mut self, group: GroupId, from_index: u64) {
        self.mirror.truncate_suffix(group, from_index);
        self.ops.push(Op::Truncate(group, from_index));
    }

    fn compact_prefix(&mut self, group: GroupId, snapshot: &Snapshot) {
        let before = self.mirror.snapshot(group).get_metadata().index;
        self.mirror.compact_prefix(group, snapshot);
        let meta = snapshot.get_metadata();
        if meta.index > before {
            self.snapshots_dirty.insert(group);
            self.ops.push(Op::Compact(group, meta.index, meta.term));
        }
    }

    fn install_snapshot(&mut self, group: GroupId, snapshot: &Snapshot) {
        self.mirror.install_snapshot(group, snapshot);
        let meta = snapshot.get_metadata();
        self.snapshots_dirty.insert(group);
        self.ops.push(Op::Install(group, meta.index, meta.term));
        self.state_dirty = true;
    }

    fn set_hard_state(&mut self, group: GroupId, hard_state: &HardState) {
        let old = self.mirror.hard_state(group);
        if old.term != hard_state.term || old.vote != hard_state.vote {
            self.state_dirty = true;
        }
        self.mirror.set_hard_state(group, hard_state);
    }

    /// Not available: storage I/O is asynchronous; call [`FileLogStore::persist`].
    fn sync(&mut self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "FileLogStore persists with persist().await",
        ))
    }

    fn hard_state(&self, group: GroupId) -> HardState {
        self.mirror.hard_state(group)
    }

    fn snapshot(&self, group: GroupId) -> Snapshot {
        self.mirror.snapshot(group)
    }

    fn first_index(&self, group: GroupId) -> u64 {
        self.mirror.first_index(group)
    }

    fn last_index(&self, group: GroupId) -> u64 {
        self.mirror.last_index(group)
    }

    fn term(&self, group: GroupId, index: u64) -> Option<u64> {
        self.mirror.term(group, index)
    }

    fn entries(&self, group: GroupId, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        self.mirror.entries(group, low, high, max_bytes)
    }
}
