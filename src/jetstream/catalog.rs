//! Shard 0's catalogue of streams: which shard owns each, with its subjects, so
//! that creates can be checked for overlaps and requests sent to the owner; the
//! account-wide requests (INFO, NAMES, LIST, CREATE, UPDATE, DELETE); and
//! reopening every stream at start-up.

use crate::jetstream::api::types::*;
use crate::jetstream::api::{errors, Reply};
use crate::jetstream::consumer::config::name_problem;
use crate::jetstream::registry::{self, Usage, LIST_PAGE};
use crate::jetstream::{persist, subjects_overlap};
use crate::server::accounts::AccountId;
use crate::server::shard::Shard;
use crate::server::Server;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

#[derive(Clone, Debug)]
pub struct Entry {
    pub shard: usize,
    pub subjects: Vec<String>,
    /// Being created: its name and subjects are taken, requests wait.
    pub creating: bool,
}

#[derive(Default)]
pub struct Catalog {
    entries: RefCell<BTreeMap<(AccountId, String), Entry>>,
    api_total: RefCell<BTreeMap<AccountId, (u64, u64)>>,
    pub in_flight: Cell<usize>,
}

impl Catalog {
    pub fn count(&self, account: AccountId, failed: bool) {
        let mut api = self.api_total.borrow_mut();
        let e = api.entry(account).or_default();
        e.0 += 1;
        if failed {
            e.1 += 1;
        }
    }

    pub fn api_stats(&self, account: Option<AccountId>) -> ApiStats {
        let api = self.api_total.borrow();
        let (total, errors) = api
            .iter()
            .filter(|(a, _)| account.is_none_or(|x| x == **a))
            .fold((0, 0), |(t, e), (_, (t2, e2))| (t + t2, e + e2));
        ApiStats { total, errors }
    }

    fn shard_loads(&self, shards: usize) -> Vec<usize> {
        let mut loads = vec![0; shards];
        for e in self.entries.borrow().values() {
            loads[e.shard] += 1;
        }
        loads
    }

    /// The least loaded shard (the lowest on a tie).
    fn pick_shard(&self, shards: usize) -> usize {
        let loads = self.shard_loads(shards);
        (0..shards).min_by_key(|s| (loads[*s], *s)).unwrap_or(0)
    }

    pub fn stream_count(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Lists a clustered stream's replica (always on shard 0, where its group is).
    pub fn add_clustered(&self, account: AccountId, stream: &crate::jetstream::stream::Stream) {
        let entry = Entry {
            shard: 0,
            subjects: stream.config.borrow().subjects.clone(),
            creating: false,
        };
        self.entries
            .borrow_mut()
            .insert((account, stream.name.clone()), entry);
    }

    pub fn remove(&self, account: AccountId, name: &str) {
        self.entries
            .borrow_mut()
            .remove(&(account, name.to_string()));
    }
}

pub fn store_dir(server: &Server) -> PathBuf {
    store_dir_of(&server.opts)
}

/// The store directory: `jetstream { store_dir }`, or nats-server's default;
/// made absolute, as the storage's directory opens (io_uring) fail on a
/// relative path such as `./natrix-data`.
pub fn store_dir_of(opts: &crate::options::Options) -> PathBuf {
    let dir = opts
        .jetstream
        .as_ref()
        .and_then(|j| j.store_dir.clone())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("nats"));
    std::path::absolute(&dir).unwrap_or(dir)
}

pub fn owner(shard: &Shard, account: AccountId, name: &str) -> Option<usize> {
    let entries = shard.catalog.entries.borrow();
    entries
        .get(&(account, name.to_string()))
        .filter(|e| !e.creating)
        .map(|e| e.shard)
}

/// Gathers `f` from every shard.
async fn gather<T: Send + 'static>(
    shard: &Rc<Shard>,
    f: impl Fn(&Shard) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let mut out = Vec::with_capacity(shard.count);
    for peer in 0..shard.count {
        let f = f.clone();
        if let Some(t) = shard
            .call(peer, move |s| Box::pin(async move { f(&s) }))
            .await
        {
            out.push(t);
        }
    }
    out
}

pub async fn account_usage(shard: &Rc<Shard>, account: Option<AccountId>) -> Usage {
    let parts = gather(shard, move |s| registry::usage(s, account)).await;
    parts.into_iter().fold(Usage::default(), |a, b| Usage {
        streams: a.streams + b.streams,
        consumers: a.consumers + b.consumers,
        memory: a.memory + b.memory,
        storage: a.storage + b.storage,
        messages: a.messages + b.messages,
    })
}

/// The account's own `jetstream { ... }` limits, when its config has them.
fn account_limits(server: &Server, account: AccountId) -> crate::options::AccountJsLimits {
    let name = server.accounts.name(account);
    server
        .opts
        .accounts
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.jetstream_limits)
        .unwrap_or_default()
}

/// Whether `account` may use JetStream: every account when none is configured
/// (the global one), else those whose config says `jetstream: enabled`.
pub fn enabled_for(server: &Server, account: AccountId) -> bool {
    if account == server.accounts.system() {
        return false;
    }
    let configured = &server.opts.accounts;
    let name = server.accounts.name(account);
    match configured.iter().find(|a| a.name == name) {
        Some(a) => a.jetstream,
        None => !configured.iter().any(|a| a.jetstream),
    }
}

/// The limits an account sees: its own, within the server's.
pub fn limits(server: &Server, account: AccountId) -> AccountLimits {
    let js = server.opts.jetstream.as_ref();
    let own = account_limits(server, account);
    let tighter = |a: i64, b: i64| match (a < 0, b < 0) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    };
    AccountLimits {
        max_memory: tighter(
            js.and_then(|j| j.max_memory_store).unwrap_or(-1),
            own.max_memory,
        ),
        max_storage: tighter(
            js.and_then(|j| j.max_file_store).unwrap_or(-1),
            own.max_storage,
        ),
        max_streams: own.max_streams,
        max_consumers: own.max_consumers,
        max_ack_pending: -1,
        memory_max_stream_bytes: -1,
        storage_max_stream_bytes: -1,
        max_bytes_required: false,
    }
}

pub async fn account_info(shard: &Rc<Shard>, account: AccountId) -> Reply {
    let u = account_usage(shard, Some(account)).await;
    account_info_reply(shard, account, &u, u.streams, u.consumers)
}

/// The account info document: `usage`'s bytes, and the stream and consumer counts
/// given (a cluster counts them from its assignments).
pub fn account_info_reply(
    shard: &Shard,
    account: AccountId,
    usage: &Usage,
    streams: u64,
    consumers: u64,
) -> Reply {
    let info = AccountInfo {
        memory: usage.memory,
        storage: usage.storage,
        reserved_memory: 0,
        reserved_storage: 0,
        streams,
        consumers,
        limits: limits(&shard.server, account),
        domain: shard
            .server
            .opts
            .jetstream
            .as_ref()
            .and_then(|j| j.domain.clone()),
        api: shard.catalog.api_stats(Some(account)),
    };
    Reply::json(&Response {
        kind: kind::ACCOUNT_INFO,
        body: info,
    })
}

pub fn parse_list(body: &[u8]) -> Result<ListRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ListRequest::default());
    }
    serde_json::from_slice::<Option<ListRequest>>(body)
        .map(Option::unwrap_or_default)
        .map_err(errors::invalid_json)
}

/// Names of the account's streams (with `subject`: those that could store it).
fn matching_names(
    shard: &Shard,
    account: AccountId,
    subject: Option<&str>,
) -> Vec<(String, usize)> {
    shard
        .catalog
        .entries
        .borrow()
        .iter()
        .filter(|((a, _), e)| *a == account && !e.creating)
        .filter(|(_, e)| {
            subject
                .is_none_or(|s| s.is_empty() || e.subjects.iter().any(|x| subjects_overlap(x, s)))
        })
        .map(|((_, n), e)| (n.clone(), e.shard))
        .collect()
}

pub fn names(shard: &Rc<Shard>, account: AccountId, body: &[u8]) -> Reply {
    let req = match parse_list(body) {
        Ok(r) => r,
        Err(e) => return Reply::error(kind::STREAM_NAMES, e),
    };
    let all = matching_names(shard, account, req.subject.as_deref());
    let total = all.len();
    let streams = all
        .into_iter()
        .skip(req.offset)
        .take(LIST_PAGE)
        .map(|(n, _)| n)
        .collect();
    Reply::json(&Response {
        kind: kind::STREAM_NAMES,
        body: NamesBody {
            total,
            offset: req.offset,
            limit: LIST_PAGE,
            streams,
        },
    })
}

pub async fn list(shard: &Rc<Shard>, account: AccountId, body: &[u8]) -> Reply {
    let req = match parse_list(body) {
        Ok(r) => r,
        Err(e) => return Reply::error(kind::STREAM_LIST, e),
    };
    let all = matching_names(shard, account, req.subject.as_deref());
    let total = all.len();
    let mut streams = Vec::new();
    let mut missing = Vec::new();
    for (name, owner) in all.into_iter().skip(req.offset).take(LIST_PAGE) {
        let n = name.clone();
        let info = shard
            .call(owner, move |s| {
                Box::pin(async move { s.js.get(account, &n).map(|st| st.info(None, false)) })
            })
            .await
            .flatten();
        match info {
            Some(i) => streams.push(i),
            None => missing.push(name),
        }
    }
    Reply::json(&Response {
        kind: kind::STREAM_LIST,
        body: StreamListBody {
            total,
            offset: req.offset,
            limit: LIST_PAGE,
            streams,
            missing,
        },
    })
}

/// The most replicas a clustered stream may have, as on nats-server.
pub const REPLICAS_MAX: i64 = 5;

/// Checks a stream config as a create or update gives it, and fills in defaults
/// (more than one replica only in a cluster).
pub fn checked_config(name: &str, body: &[u8], clustered: bool) -> Result<StreamConfig, ApiError> {
    let mut config: StreamConfig = serde_json::from_slice(body).map_err(errors::invalid_json)?;
    if config.name.is_empty() {
        config.name = name.to_string();
    }
    if config.name != name {
        return Err(errors::stream_name_mismatch());
    }
    match name_problem(name) {
        Some("path") => return Err(errors::stream_name_path_separators()),
        Some(_) => {
            return Err(errors::stream_invalid_config(
                "stream name is required and can not contain '.', '*', '>'",
            ))
        }
        None => {}
    }
    if config.mirror.is_some() || config.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(errors::stream_invalid_config(
            "stream mirrors and sources are not supported by this server yet",
        ));
    }
    if config.num_replicas > 1 && !clustered {
        return Err(errors::replicas_not_supported());
    }
    if config.num_replicas > REPLICAS_MAX {
        return Err(errors::stream_invalid_config("maximum replicas is 5"));
    }
    if config.num_replicas < 1 {
        config.num_replicas = 1;
    }
    if config.duplicate_window <= 0 {
        config.duplicate_window = if config.max_age > 0 {
            config.max_age.min(DUPLICATE_WINDOW_DEFAULT_NS)
        } else {
            DUPLICATE_WINDOW_DEFAULT_NS
        };
    }
    if config.max_age > 0 && config.duplicate_window > config.max_age {
        return Err(errors::stream_invalid_config(
            "duplicates window can not be larger then max age",
        ));
    }
    for (i, s) in config.subjects.iter().enumerate() {
        if !crate::subject::is_valid_filter(s.as_bytes()) {
            return Err(errors::stream_invalid_config(format!(
                "invalid subject: {s:?}"
            )));
        }
        if s.starts_with("$JS.API") {
            return Err(errors::stream_invalid_config(
                "subjects that overlap with jetstream api require further configuration",
            ));
        }
        if config.subjects[..i].iter().any(|o| subjects_overlap(o, s)) {
            return Err(errors::stream_invalid_config("subjects overlap"));
        }
    }
    if config.subjects.is_empty() {
        config.subjects = vec![name.to_string()];
    }
    if let Some(r) = &config.republish {
        let valid = crate::subject::is_valid_filter(r.dest.as_bytes())
            && crate::jetstream::transform::is_valid(&r.src, &r.dest);
        if !valid {
            return Err(errors::stream_invalid_config(
                "stream republish destination is not valid",
            ));
        }
        if config.subjects.iter().any(|s| subjects_overlap(s, &r.dest)) {
            return Err(errors::stream_invalid_config(
                "stream republish destination forms a cycle",
            ));
        }
    }
    if let Some(t) = &config.subject_transform {
        if !t.dest.is_empty() && !crate::jetstream::transform::is_valid(&t.src, &t.dest) {
            return Err(errors::stream_invalid_config(
                "stream subject transform destination is not valid",
            ));
        }
    }
    if config.max_msgs == 0 {
        config.max_msgs = -1;
    }
    if config.max_bytes == 0 {
        config.max_bytes = -1;
    }
    if config.max_msgs_per_subject == 0 {
        config.max_msgs_per_subject = -1;
    }
    if config.max_msg_size == 0 {
        config.max_msg_size = -1;
    }
    if config.max_consumers == 0 {
        config.max_consumers = -1;
    }
    if config.discard_new_per_subject
        && (config.discard != DiscardPolicy::New || config.max_msgs_per_subject <= 0)
    {
        return Err(errors::stream_invalid_config(
            "discard new per subject requires discard new policy to be set and max msgs per subject > 0",
        ));
    }
    Ok(config)
}

pub fn overlaps_other(shard: &Shard, account: AccountId, name: &str, subjects: &[String]) -> bool {
    shard.catalog.entries.borrow().iter().any(|((a, n), e)| {
        *a == account
            && n != name
            && e.subjects
                .iter()
                .any(|x| subjects.iter().any(|s| subjects_overlap(x, s)))
    })
}

pub fn storage_limit_error(
    shard: &Shard,
    account: AccountId,
    config: &StreamConfig,
) -> Option<ApiError> {
    let limits = limits(&shard.server, account);
    let (max, err) = match config.storage {
        StorageType::File => (limits.max_storage, errors::insufficient_storage()),
        StorageType::Memory => (limits.max_memory, errors::insufficient_memory()),
    };
    (max >= 0 && config.max_bytes > max).then_some(err)
}

pub async fn create(shard: &Rc<Shard>, account: AccountId, name: String, body: &[u8]) -> Reply {
    let k = kind::STREAM_CREATE;
    let config = match checked_config(&name, body, false) {
        Ok(c) => c,
        Err(e) => return Reply::error(k, e),
    };
    let existing = shard
        .catalog
        .entries
        .borrow()
        .get(&(account, name.clone()))
        .cloned();
    let owner = match existing {
        Some(e) if e.creating => return Reply::error(k, errors::stream_name_in_use()),
        Some(e) => e.shard,
        None => {
            if overlaps_other(shard, account, &name, &config.subjects) {
                return Reply::error(k, errors::subjects_overlap());
            }
            if let Some(e) = storage_limit_error(shard, account, &config) {
                return Reply::error(k, e);
            }
            let max_streams = limits(&shard.server, account).max_streams;
            if max_streams >= 0 && matching_names(shard, account, None).len() as i64 >= max_streams
            {
                return Reply::error(k, errors::maximum_streams());
            }
            let owner = shard.catalog.pick_shard(shard.count);
            shard.catalog.entries.borrow_mut().insert(
                (account, name.clone()),
                Entry {
                    shard: owner,
                    subjects: config.subjects.clone(),
                    creating: true,
                },
            );
            owner
        }
    };
    let result = shard
        .call(owner, move |s| {
            Box::pin(async move { registry::create_stream(&s, account, config).await })
        })
        .await
        .unwrap_or_else(|| Err(errors::general("stream owner is gone")));
    let mut entries = shard.catalog.entries.borrow_mut();
    match result {
        Ok(info) => {
            if let Some(e) = entries.get_mut(&(account, name)) {
                e.creating = false;
            }
            Reply::json(&Response {
                kind: k,
                body: info,
            })
        }
        Err(e) => {
            if entries
                .get(&(account, name.clone()))
                .is_some_and(|e| e.creating)
            {
                entries.remove(&(account, name));
            }
            Reply::error(k, e)
        }
    }
}

pub async fn update(shard: &Rc<Shard>, account: AccountId, name: String, body: &[u8]) -> Reply {
    let k = kind::STREAM_UPDATE;
    let config = match checked_config(&name, body, false) {
        Ok(c) => c,
        Err(e) => return Reply::error(k, e),
    };
    let Some(owner) = owner(shard, account, &name) else {
        return Reply::error(k, errors::stream_not_found());
    };
    if overlaps_other(shard, account, &name, &config.subjects) {
        return Reply::error(k, errors::subjects_overlap());
    }
    let subjects = config.subjects.clone();
    let n = name.clone();
    let result = shard
        .call(owner, move |s| {
            Box::pin(async move {
                match s.js.get(account, &n) {
                    Some(st) => registry::update_stream(&s, &st, config).await,
                    None => Err(errors::stream_not_found()),
                }
            })
        })
        .await
        .unwrap_or_else(|| Err(errors::general("stream owner is gone")));
    match result {
        Ok(info) => {
            if let Some(e) = shard.catalog.entries.borrow_mut().get_mut(&(account, name)) {
                e.subjects = subjects;
            }
            Reply::json(&Response {
                kind: k,
                body: info,
            })
        }
        Err(e) => Reply::error(k, e),
    }
}

pub async fn delete(shard: &Rc<Shard>, account: AccountId, name: String) -> Reply {
    let k = kind::STREAM_DELETE;
    let Some(owner) = owner(shard, account, &name) else {
        return Reply::error(k, errors::stream_not_found());
    };
    let n = name.clone();
    let result = shard
        .call(owner, move |s| {
            Box::pin(async move {
                match s.js.get(account, &n) {
                    Some(st) => registry::delete_stream(&s, &st).await,
                    None => Err(errors::stream_not_found()),
                }
            })
        })
        .await
        .unwrap_or_else(|| Err(errors::general("stream owner is gone")));
    match result {
        Ok(()) => {
            shard.catalog.entries.borrow_mut().remove(&(account, name));
            Reply::json(&Response {
                kind: k,
                body: SuccessBody { success: true },
            })
        }
        Err(e) => Reply::error(k, e),
    }
}

/// Start-up: checks the store directory, reopens every stream on a shard of its
/// own (spread like new ones), then subscribes `$JS.API.>` for each account.
pub async fn start(shard: &Rc<Shard>) -> Result<(), String> {
    let root = store_dir(&shard.server);
    let js_root = root.join("jetstream");
    std::fs::create_dir_all(&js_root)
        .and_then(|_| {
            let probe = js_root.join(".natrix-write-check");
            std::fs::write(&probe, b"")?;
            std::fs::remove_file(&probe)
        })
        .map_err(|e| {
            format!(
                "Can't start JetStream: could not use storage directory {}: {e}",
                root.display()
            )
        })?;
    let accounts = &shard.server.accounts;
    let mut opened = 0;
    for index in 0..accounts.len() {
        let account = AccountId(index as u32);
        if account == accounts.system() {
            // A cluster's system-wide requests (meta leader step-down, server
            // removal) come in the system account.
            if let Some(node) = shard.server.raft_node {
                for subject in ["$JS.API.META.>", "$JS.API.SERVER.>"] {
                    shard.add_internal(
                        account,
                        subject,
                        crate::server::interest::InternalSub::JetStream(
                            crate::jetstream::Service::Api,
                        ),
                    );
                }
                shard.add_internal(
                    account,
                    &crate::jetstream::cluster::catchup::subscription(node),
                    crate::server::interest::InternalSub::JetStream(
                        crate::jetstream::Service::CatchUp,
                    ),
                );
                shard.add_internal(
                    account,
                    crate::jetstream::cluster::shared_usage::subscription(),
                    crate::server::interest::InternalSub::JetStream(
                        crate::jetstream::Service::Usage,
                    ),
                );
            }
            continue;
        }
        if accounts.name(account) == "$SYS" {
            // The built-in system account's name, unused when the config names
            // another: no JetStream there (a nats-server route would not know it).
            continue;
        }
        let account_name = accounts.name(account).to_string();
        for dir in persist::stream_dirs(&root, &account_name) {
            // A clustered stream's replica lives on shard 0, beside its group.
            let clustered = matches!(persist::load_binding(&dir), Ok(Some(_)));
            let owner = if clustered {
                0
            } else {
                shard.catalog.pick_shard(shard.count)
            };
            let d = dir.clone();
            let result = shard
                .call(owner, move |s| {
                    Box::pin(async move {
                        let stream = registry::open_stream(&s, account, d).await?;
                        let config = stream.config.borrow().clone();
                        Ok::<_, String>(config)
                    })
                })
                .await
                .unwrap_or_else(|| Err("shard is gone".into()));
            match result {
                Ok(config) => {
                    opened += 1;
                    shard.catalog.entries.borrow_mut().insert(
                        (account, config.name.clone()),
                        Entry {
                            shard: owner,
                            subjects: config.subjects.clone(),
                            creating: false,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!("JetStream: could not open stream at {}: {e}", dir.display())
                }
            }
        }
        shard.add_internal(
            account,
            "$JS.API.>",
            crate::server::interest::InternalSub::JetStream(crate::jetstream::Service::Api),
        );
        if let Some(node) = shard.server.raft_node {
            shard.add_internal(
                account,
                &crate::jetstream::cluster::gather::subscription(node),
                crate::server::interest::InternalSub::JetStream(crate::jetstream::Service::Gather),
            );
        }
    }
    tracing::info!("Starting JetStream");
    tracing::info!("    Storage directory: {}", root.display());
    tracing::info!("  Restored {opened} streams");
    Ok(())
}
