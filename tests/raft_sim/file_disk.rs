//! A node's disk for the file mode: the production `FileLogStore` (and under it the
//! natrix-storage segment logs) on a seeded `FaultyDisk`. A crash is
//! `FaultyDisk::crash()` (unsynced writes lost, kept or torn, directory operations
//! lost) and a restart reopens the store from what the disk kept.
//!
//! Group commits and log reads are glommio tasks on the world's executor, as in the
//! node loop; they make progress only when the world yields to the executor (at its
//! disk poll events), so a seed replays exactly. A crash cancels them mid-way.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::Path;
use std::rc::Rc;

use glommio::{BuilderErrorKind, GlommioError, LocalExecutorBuilder, Task};
use natrix::raft::eraftpb::Entry;
use natrix::raft::log_store::FetchRequest;
use natrix::raft::{CacheConfig, FileLogStore, GroupId, LogStore, MultiRaft};
use natrix_storage::disk::faulty::FaultyDisk;
use natrix_storage::LogConfig;
use rand_chacha::ChaCha8Rng;

use super::disk::{digest, Written};
use super::node_disk::{CrashLoss, NodeDisk};
use super::world::Faults;

/// Where the store lives on its (private, in-memory) disk.
const STORE_DIR: &str = "/node";

/// Small segments and a small cache: segments roll and seal, and followers that
/// fall behind are served from disk (fetches).
fn log_config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 64 << 10,
        record_max_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

fn cache_config() -> CacheConfig {
    CacheConfig {
        entry_cache_bytes_max: 32 << 10,
        group_entry_cache_bytes_max: 4 << 10,
        fetch_bytes_max: 8 << 10,
    }
}

/// A task of the store's process and where its result lands.
pub struct InFlight<T> {
    out: Rc<RefCell<Option<T>>>,
    /// Dropping it cancels the task (the process died).
    _task: Task<()>,
}

impl<T: 'static> InFlight<T> {
    pub fn spawn(fut: impl Future<Output = T> + 'static) -> Self {
        let out = Rc::new(RefCell::new(None));
        let slot = out.clone();
        let task = glommio::spawn_local(async move {
            let r = fut.await;
            *slot.borrow_mut() = Some(r);
        });
        InFlight { out, _task: task }
    }

    pub fn take(&self) -> Option<T> {
        self.out.borrow_mut().take()
    }
}

type Fetched = (FetchRequest, io::Result<Vec<Entry>>);

pub struct FileDisk {
    faulty: FaultyDisk,
    /// The store of the process running now.
    store: Option<Rc<RefCell<FileLogStore>>>,
    persist: Option<InFlight<io::Result<()>>>,
    fetches: Vec<InFlight<Fetched>>,
    /// Per group, the newest entry (index, term) given to the log-matching check.
    checked: BTreeMap<GroupId, (u64, u64)>,
    /// The groups of the last store opened (while the node is down).
    groups: Vec<GroupId>,
}

impl FileDisk {
    fn store(&self) -> &Rc<RefCell<FileLogStore>> {
        self.store.as_ref().expect("the node is up")
    }

    /// Entries of `g` not given to the check yet: those after the last one checked
    /// if it is still there. New entries are not applied yet, so they are all in the
    /// cache. If the last one checked is gone (a conflicting suffix was cut), those
    /// that replaced it are among the unapplied entries at the end of the cache
    /// (entries before them may be on disk only, after a restart).
    fn unchecked(&self, s: &FileLogStore, g: GroupId, applied: u64) -> Vec<Entry> {
        let last = s.last_index(g);
        let first = s.first_index(g);
        let from = match self.checked.get(&g) {
            Some(&(i, t)) if s.term(g, i) == Some(t) => i + 1,
            Some(_) => {
                let floor = applied.max(first - 1) + 1;
                let mut from = last + 1;
                while from > floor && !s.entries(g, from - 1, from, u64::MAX).is_empty() {
                    from -= 1;
                }
                from
            }
            None => first,
        };
        if from > last {
            return Vec::new();
        }
        let got = s.entries(g, from, last + 1, u64::MAX);
        assert_eq!(
            got.len() as u64,
            last + 1 - from,
            "group {g}: new entries {from}..={last} are not all in the cache"
        );
        got
    }
}

impl NodeDisk for FileDisk {
    type Store = FileLogStore;

    fn new(seed: u64, node: usize, _faults: &Faults) -> Self {
        let disk_seed = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ (node as u64 + 1);
        FileDisk {
            faulty: FaultyDisk::new(disk_seed),
            store: None,
            persist: None,
            fetches: Vec::new(),
            checked: BTreeMap::new(),
            groups: Vec::new(),
        }
    }

    fn block_on<T, F, Fut>(f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        natrix_storage::rt::raise_memlock_limit();
        let ex = LocalExecutorBuilder::default()
            .io_memory(natrix_storage::rt::IO_MEMORY_BYTES)
            .spawn(move || natrix_shards::park_guard::guarded(f()))
            .expect("executor starts");
        match ex.join() {
            Ok(t) => t,
            // A panic in a task of the store: hand it to the caller as it is.
            Err(GlommioError::BuilderError(BuilderErrorKind::ThreadPanic(p))) => {
                std::panic::resume_unwind(p)
            }
            Err(e) => panic!("executor: {e}"),
        }
    }

    async fn open(&mut self) -> io::Result<Rc<RefCell<FileLogStore>>> {
        let disk = self.faulty.disk();
        let s =
            FileLogStore::open_on(disk, Path::new(STORE_DIR), log_config(), cache_config()).await?;
        self.checked.clear();
        for g in s.group_ids() {
            let last = s.last_index(g);
            self.checked
                .insert(g, (last, s.term(g, last).expect("last term")));
        }
        let s = Rc::new(RefCell::new(s));
        self.store = Some(s.clone());
        Ok(s)
    }

    async fn sync_now(&mut self) -> io::Result<()> {
        FileLogStore::persist(self.store()).await
    }

    fn has_pending(&self) -> bool {
        self.store
            .as_ref()
            .is_some_and(|s| s.borrow().has_pending())
    }

    fn start_sync(&mut self) {
        assert!(self.persist.is_none(), "one persist at a time");
        let store = self.store().clone();
        self.persist = Some(InFlight::spawn(async move {
            FileLogStore::persist(&store).await
        }));
    }

    fn poll_sync(&mut self) -> Option<io::Result<()>> {
        let r = self.persist.as_ref().expect("a persist in flight").take()?;
        self.persist = None;
        Some(r)
    }

    fn start_fetch(&mut self, req: FetchRequest) {
        let store = self.store().clone();
        self.fetches.push(InFlight::spawn(async move {
            (req, FileLogStore::read_fetch(&store, req).await)
        }));
    }

    fn fetches_in_flight(&self) -> bool {
        !self.fetches.is_empty()
    }

    fn take_fetched(&mut self) -> io::Result<Vec<GroupId>> {
        let mut groups = Vec::new();
        let mut i = 0;
        while i < self.fetches.len() {
            let Some((req, r)) = self.fetches[i].take() else {
                i += 1;
                continue;
            };
            self.fetches.remove(i);
            self.store().borrow_mut().install_fetched(req, r?);
            groups.push(req.group);
        }
        Ok(groups)
    }

    fn crash(&mut self, _rng: &mut ChaCha8Rng) -> CrashLoss {
        self.persist = None;
        self.fetches.clear();
        if let Some(s) = self.store.take() {
            self.groups = s.borrow().group_ids();
        }
        let r = self.faulty.crash();
        CrashLoss {
            ops_lost: r.ops_lost + r.dir_ops_lost,
            writes_torn: r.writes_torn,
        }
    }

    fn take_written(&mut self, driver: &MultiRaft<FileLogStore>) -> Vec<Written> {
        let store = driver.store().clone();
        let s = store.borrow();
        let mut out = Vec::new();
        let groups = s.group_ids();
        for &g in &groups {
            let applied = driver.status(g).map_or(0, |st| st.applied);
            let mut prev = None;
            for e in self.unchecked(&s, g, applied) {
                let p = prev.unwrap_or_else(|| s.term(g, e.index - 1).expect("previous term"));
                out.push((g, e.index, e.term, p, digest(&e)));
                prev = Some(e.term);
                self.checked.insert(g, (e.index, e.term));
            }
        }
        self.checked.retain(|g, _| groups.contains(g));
        out
    }

    fn stream_disk(&self) -> Option<natrix_storage::Disk> {
        Some(self.faulty.disk())
    }

    fn has_group(&self, g: GroupId) -> bool {
        match &self.store {
            Some(s) => s.borrow().group_ids().contains(&g),
            None => self.groups.contains(&g),
        }
    }
}
