//! The streams one shard owns, and what it does with them for the API: create,
//! open at start-up, update, delete, purge, reads, consumers, acks and pull
//! requests. Called on the owning shard only (through `Shard::call`).

use crate::jetstream::api::errors;
use crate::jetstream::api::types::*;
use crate::jetstream::api::Reply;
use crate::jetstream::consumer::ack::{self, AckKind};
use crate::jetstream::consumer::{config as cconfig, deliver, Consumer, PullRequest};
use crate::jetstream::stream::{self, Stream};
use crate::jetstream::usage::{Medium, Refusal};
use crate::jetstream::{persist, send, Service};
use crate::server::accounts::AccountId;
use crate::server::interest::InternalSub;
use crate::server::shard::{Msg, Shard};
use ahash::AHashMap;
use bytes::Bytes;
use natrix_storage::{Durability, FileStore, LogConfig, MemStore, Store};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// The streams of one shard, by account and name.
#[derive(Default)]
pub struct Streams {
    map: RefCell<AHashMap<(AccountId, String), Rc<Stream>>>,
}

impl Streams {
    pub fn get(&self, account: AccountId, name: &str) -> Option<Rc<Stream>> {
        self.map.borrow().get(&(account, name.to_string())).cloned()
    }

    pub fn of_account(&self, account: AccountId) -> Vec<Rc<Stream>> {
        self.map
            .borrow()
            .iter()
            .filter(|((a, _), _)| *a == account)
            .map(|(_, s)| s.clone())
            .collect()
    }

    pub fn all(&self) -> Vec<Rc<Stream>> {
        self.map.borrow().values().cloned().collect()
    }
}

/// Usage of one account on one shard, for account info and `/jsz`.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub streams: u64,
    pub consumers: u64,
    pub memory: u64,
    pub storage: u64,
    pub messages: u64,
}

pub fn usage(shard: &Shard, account: Option<AccountId>) -> Usage {
    let mut u = Usage::default();
    let streams = match account {
        Some(a) => shard.js.of_account(a),
        None => shard.js.all(),
    };
    for s in streams {
        let st = s.store.state();
        u.streams += 1;
        u.consumers += s.consumers.borrow().len() as u64;
        u.messages += st.msgs;
        if stream::is_memory(&s.config.borrow()) {
            u.memory += st.bytes;
        } else {
            u.storage += st.bytes;
        }
    }
    u
}

/// Saves every consumer's state and commits every stream (a stop is coming).
pub async fn flush(shard: &Shard) {
    for stream in shard.js.all() {
        for c in stream.consumers.borrow().values() {
            if c.dirty.get() {
                c.save();
            }
        }
        if let Err(e) = stream.store.commit().await {
            tracing::error!("JetStream stream {}: final commit failed: {e}", stream.name);
        }
    }
}

/// Publishes what this shard's streams hold, per account, for the storage limits.
pub fn publish_usage(shard: &Shard) {
    let accounts = shard.server.accounts.len();
    let mut held = vec![[0u64; 2]; accounts];
    for s in shard.js.all() {
        if let Some(cell) = held.get_mut(s.account.index()) {
            cell[medium(&s) as usize] += s.store.state().bytes;
        }
    }
    let usage = &shard.server.js_usage;
    for (i, [memory, file]) in held.into_iter().enumerate() {
        let account = AccountId(i as u32);
        usage.set(shard.id, account, Medium::Memory, memory);
        usage.set(shard.id, account, Medium::File, file);
    }
}

pub fn medium(stream: &Stream) -> Medium {
    if stream::is_memory(&stream.config.borrow()) {
        Medium::Memory
    } else {
        Medium::File
    }
}

/// The error a publish of `size_bytes` more to `stream` gets from the storage
/// limits: the account's would be passed (10002), the server's is (10023).
pub fn over_storage_limit(shard: &Shard, stream: &Stream, size_bytes: u64) -> Option<ApiError> {
    let usage = &shard.server.js_usage;
    match usage.refusal(stream.account, medium(stream), size_bytes)? {
        Refusal::Account => Some(errors::account_resources_exceeded()),
        Refusal::Server => Some(errors::insufficient_resources()),
    }
}

fn store_root(shard: &Shard) -> PathBuf {
    crate::jetstream::catalog::store_dir(&shard.server)
}

/// The largest segment a stream store starts (nats-server's default block size is
/// 8 MiB too): a segment is preallocated whole, so many small streams must not each
/// take 64 MiB of disk.
const STREAM_SEGMENT_MAX_BYTES: u64 = 8 << 20;
const STREAM_SEGMENT_MIN_BYTES: u64 = 1 << 20;

/// A stream's segment size: up to 8 MiB, smaller for a stream whose `max_bytes` is
/// smaller, never below what one message of `max_payload` needs; an existing store
/// keeps the size its segments were made with.
fn segment_bytes(config: &StreamConfig, max_payload: usize, dir: Option<&std::path::Path>) -> u64 {
    let wanted = match u64::try_from(config.max_bytes) {
        Ok(max) if max > 0 => max.clamp(STREAM_SEGMENT_MIN_BYTES, STREAM_SEGMENT_MAX_BYTES),
        _ => STREAM_SEGMENT_MAX_BYTES,
    };
    let one_message = 2 * max_payload as u64 + (64 << 10);
    let existing = dir
        .map(|d| largest_segment_bytes(&persist::messages_dir(d)))
        .unwrap_or(0);
    wanted
        .max(one_message)
        .max(existing)
        .next_multiple_of(4096)
        .min(natrix_storage::config::SEGMENT_SIZE_MAX_BYTES)
}

/// The size of the largest segment file in `dir` (0 when there is none).
fn largest_segment_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

fn log_config(shard: &Shard, config: &StreamConfig, dir: &std::path::Path) -> LogConfig {
    let durability = match shard
        .server
        .opts
        .jetstream
        .as_ref()
        .and_then(|j| j.sync_interval_ms)
    {
        Some(ms) => Durability::Interval(Duration::from_millis(ms)),
        None => Durability::Always,
    };
    let segment_size_bytes = segment_bytes(config, shard.server.opts.max_payload, Some(dir));
    LogConfig {
        durability,
        limits: stream::limits(config),
        segment_size_bytes,
        record_max_bytes: ((segment_size_bytes / 2) as usize)
            .min(natrix_storage::frame::RECORD_MAX_BYTES),
        ..LogConfig::default()
    }
}

/// Creates a new stream here (its files, its subscriptions, its tasks).
pub async fn create_stream(
    shard: &Rc<Shard>,
    account: AccountId,
    config: StreamConfig,
) -> Result<StreamInfo, ApiError> {
    create_replica(shard, account, config, SystemTime::now(), None)
        .await
        .map(|s| s.info(None, false))
}

/// Creates a stream here; a clustered stream's replica when `replica` is given
/// (its group is written beside its config, so a restart finds it).
pub async fn create_replica(
    shard: &Rc<Shard>,
    account: AccountId,
    config: StreamConfig,
    created: SystemTime,
    replica: Option<crate::jetstream::cluster::stream::Replica>,
) -> Result<Rc<Stream>, ApiError> {
    if let Some(existing) = shard.js.get(account, &config.name) {
        if *existing.config.borrow() == config {
            return Ok(existing);
        }
        return Err(errors::stream_name_in_use());
    }
    let dir = (!stream::is_memory(&config)).then(|| {
        persist::account_dir(&store_root(shard), shard.server.accounts.name(account))
            .join(&config.name)
    });
    if let Some(dir) = &dir {
        persist::save_stream_meta(dir, &config, created)
            .and_then(|_| match &replica {
                Some(r) => persist::save_binding(dir, &r.binding()),
                None => Ok(()),
            })
            .map_err(|e| errors::stream_create(format!("could not create stream: {e}")))?;
    }
    let store = open_store(shard, &config, dir.as_deref())
        .await
        .map_err(|e| {
            if let Some(dir) = &dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            errors::stream_create(format!("could not open stream storage: {e}"))
        })?;
    if config.first_seq > 1 {
        store
            .start_at(config.first_seq)
            .map_err(|e| errors::stream_create(e.to_string()))?;
    }
    let stream = Stream::new(account, config, created, store, dir);
    if let Some(r) = replica {
        let _ = stream.cluster.set(r);
    }
    start(shard, &stream);
    Ok(stream)
}

async fn open_store(
    shard: &Shard,
    config: &StreamConfig,
    dir: Option<&std::path::Path>,
) -> Result<Store, natrix_storage::StoreError> {
    match dir {
        None => Ok(Store::Memory(MemStore::new(stream::limits(config)))),
        Some(dir) => {
            let cfg = log_config(shard, config, dir);
            Ok(Store::File(
                FileStore::open(persist::messages_dir(dir), cfg).await?,
            ))
        }
    }
}

/// What open did about damaged records.
#[derive(PartialEq)]
enum Repair {
    /// None found, or a stream of one server's (reported, never served).
    None,
    /// A clustered replica dropped them and every later one: its group's log
    /// holds them and applies them again.
    FromLog,
    /// As above, but the log no longer holds them: a peer's store provides them.
    FromPeer,
}

/// Damaged records found on open are lost to a stream of one server (reported,
/// never served). A clustered replica drops everything from the first one on, and
/// gets it back from its group's log, or from a peer where the log no longer
/// holds it.
async fn repair_damage(
    shard: &Rc<Shard>,
    meta: &persist::StreamMeta,
    dir: &std::path::Path,
    store: Store,
    binding: Option<&persist::Binding>,
) -> Result<(Store, Repair), String> {
    let name = &meta.config.name;
    let Store::File(f) = &store else {
        return Ok((store, Repair::None));
    };
    let report = f.recovery_report();
    let Some(&(first_missing, _)) = report.missing.first() else {
        return Ok((store, Repair::None));
    };
    let Some(b) = binding else {
        tracing::error!(
            "JetStream stream {name}: damaged records found, sequences {:?} are lost and will not be served",
            report.missing
        );
        return Ok((store, Repair::None));
    };
    let repair = if first_missing > b.log_from_seq {
        Repair::FromLog
    } else {
        Repair::FromPeer
    };
    tracing::warn!(
        "JetStream stream {name}: damaged records found (sequences {:?}); this replica drops sequences {first_missing} and later, to get them again from {}",
        report.missing,
        if repair == Repair::FromLog { "its group's log" } else { "a peer" }
    );
    if first_missing >= f.first_index() {
        f.truncate_from(first_missing)
            .await
            .map_err(|e| format!("could not cut the damaged records: {e}"))?;
        return Ok((store, repair));
    }
    // The damage reaches the first record: the store starts again, empty.
    store.close().await.map_err(|e| e.to_string())?;
    let messages = persist::messages_dir(dir);
    std::fs::remove_dir_all(&messages)
        .map_err(|e| format!("could not clear {}: {e}", messages.display()))?;
    let store = open_store(shard, &meta.config, Some(dir))
        .await
        .map_err(|e| e.to_string())?;
    if first_missing > 1 {
        store.start_at(first_missing).map_err(|e| e.to_string())?;
    }
    store.commit().await.map_err(|e| e.to_string())?;
    Ok((store, repair))
}

/// Reopens a file stream found in the store directory, with its consumers (and,
/// for a clustered stream's replica, its group).
pub async fn open_stream(
    shard: &Rc<Shard>,
    account: AccountId,
    dir: PathBuf,
) -> Result<Rc<Stream>, String> {
    let meta = persist::load_stream_meta(&dir).map_err(|e| e.to_string())?;
    let store = open_store(shard, &meta.config, Some(&dir))
        .await
        .map_err(|e| e.to_string())?;
    let binding = persist::load_binding(&dir).map_err(|e| e.to_string())?;
    let (store, repair) = repair_damage(shard, &meta, &dir, store, binding.as_ref()).await?;
    let config = meta.config.clone();
    let stream = Stream::new(
        account,
        meta.config,
        persist::from_ns(meta.created_ns),
        store,
        Some(dir.clone()),
    );
    if let Some(b) = binding {
        let _ = stream
            .cluster
            .set(crate::jetstream::cluster::stream::Replica::new(
                b.group,
                b.peers,
                b.log_from_seq,
            ));
        if repair == Repair::FromPeer {
            crate::jetstream::cluster::catchup::start(shard, &stream);
        }
    }
    for cdir in persist::consumer_dirs(&dir) {
        match persist::load_consumer(&cdir) {
            Ok((m, state)) => {
                let name = m
                    .config
                    .durable_name
                    .clone()
                    .or(m.config.name.clone())
                    .unwrap_or_default();
                let c = Consumer::new(
                    &stream,
                    name.clone(),
                    m.config,
                    persist::from_ns(m.created_ns),
                    state,
                    Some(cdir),
                );
                if let Some(group) = m.group {
                    let _ = c
                        .cluster
                        .set(crate::jetstream::cluster::consumer::Replica::new(group));
                }
                stream.consumers.borrow_mut().insert(name, c);
            }
            Err(e) => tracing::error!(
                "JetStream stream {}: could not load consumer at {}: {e}",
                config.name,
                cdir.display()
            ),
        }
    }
    start(shard, &stream);
    let first = stream.store.state().first_seq;
    for c in stream.consumers.borrow().values() {
        c.state.borrow_mut().forget_below(first);
        glommio::spawn_local(deliver::run(shard.clone(), stream.clone(), c.clone())).detach();
    }
    debug_assert_eq!(*stream.config.borrow(), config);
    Ok(stream)
}

/// Subscribes the stream and starts its tasks.
fn start(shard: &Rc<Shard>, stream: &Rc<Stream>) {
    subscribe(shard, stream);
    glommio::spawn_local(stream::commit_loop(stream.clone())).detach();
    glommio::spawn_local(stream::ack_loop(shard.clone(), stream.clone())).detach();
    glommio::spawn_local(stream::expiry_loop(stream.clone())).detach();
}

/// Subscribes the stream to its subjects (a clustered stream only while its
/// replica here leads) and ack subjects, and lists it here.
fn subscribe(shard: &Rc<Shard>, stream: &Rc<Stream>) {
    let account = stream.account;
    let weak = Rc::downgrade(stream);
    if stream.cluster.get().is_none() {
        subscribe_subjects(shard, stream);
    }
    let acks = [
        format!("$JS.ACK.{}.>", stream.name),
        format!("$JS.ACK.*.*.{}.>", stream.name),
    ]
    .into_iter()
    .map(|s| (s, Service::Ack(weak.clone())));
    let flow = [format!("$JS.FC.{}.*.*", stream.name)]
        .into_iter()
        .map(|s| (s, Service::FlowControl(weak.clone())));
    let subs = acks
        .chain(flow)
        .map(|(subject, service)| {
            let entry = shard.add_internal(account, &subject, InternalSub::JetStream(service));
            (Bytes::from(subject), entry)
        })
        .collect();
    *stream.interests.borrow_mut() = subs;
    shard
        .js
        .map
        .borrow_mut()
        .insert((account, stream.name.clone()), stream.clone());
}

/// Subscribes the stream's subjects (publishes reach it from then on).
pub fn subscribe_subjects(shard: &Rc<Shard>, stream: &Rc<Stream>) {
    let weak = Rc::downgrade(stream);
    let subjects = {
        let c = stream.config.borrow();
        if c.subjects.is_empty() {
            vec![c.name.clone()]
        } else {
            c.subjects.clone()
        }
    };
    let subs = subjects
        .into_iter()
        .map(|subject| {
            let service = InternalSub::JetStream(Service::Publish(weak.clone()));
            let entry = shard.add_internal(stream.account, &subject, service);
            (Bytes::from(subject), entry)
        })
        .collect();
    *stream.subject_interests.borrow_mut() = subs;
}

pub fn unsubscribe_subjects(shard: &Shard, stream: &Stream) {
    for (subject, entry) in stream.subject_interests.borrow_mut().drain(..) {
        shard.remove_interest(stream.account, &subject, None, &entry);
    }
}

fn unsubscribe(shard: &Shard, stream: &Stream) {
    unsubscribe_subjects(shard, stream);
    for (subject, entry) in stream.interests.borrow_mut().drain(..) {
        shard.remove_interest(stream.account, &subject, None, &entry);
    }
}

pub async fn update_stream(
    shard: &Rc<Shard>,
    stream: &Rc<Stream>,
    config: StreamConfig,
) -> Result<StreamInfo, ApiError> {
    let old = stream.config.borrow().clone();
    if old.storage != config.storage {
        return Err(errors::stream_update(
            "stream configuration update can not change storage type",
        ));
    }
    if old.retention != config.retention {
        return Err(errors::stream_update(
            "stream configuration update can not change retention policy",
        ));
    }
    if old.sealed && !config.sealed {
        return Err(errors::stream_update(
            "stream configuration update can not unseal a sealed stream",
        ));
    }
    if old.deny_delete && !config.deny_delete {
        return Err(errors::stream_update(
            "stream configuration update can not cancel deny message deletes",
        ));
    }
    if old.deny_purge && !config.deny_purge {
        return Err(errors::stream_update(
            "stream configuration update can not cancel deny purge",
        ));
    }
    stream
        .store
        .set_limits(stream::limits(&config))
        .map_err(|e| errors::stream_update(e.to_string()))?;
    stream
        .dedupe
        .borrow_mut()
        .set_window(Duration::from_nanos(config.duplicate_window.max(0) as u64));
    let resubscribe = old.subjects != config.subjects;
    *stream.config.borrow_mut() = config;
    stream.expiry_needed.notify();
    stream.save_config()?;
    if resubscribe && !stream.subject_interests.borrow().is_empty() {
        unsubscribe_subjects(shard, stream);
        subscribe_subjects(shard, stream);
    }
    wake_consumers(stream);
    Ok(stream.info(None, false))
}

pub async fn delete_stream(shard: &Rc<Shard>, stream: &Rc<Stream>) -> Result<(), ApiError> {
    stream.deleted.set(true);
    unsubscribe(shard, stream);
    shard
        .js
        .map
        .borrow_mut()
        .remove(&(stream.account, stream.name.clone()));
    let consumers: Vec<Rc<Consumer>> = stream.consumers.borrow_mut().values().cloned().collect();
    for c in consumers {
        end_consumer(shard, stream, &c);
    }
    stream.consumers.borrow_mut().clear();
    stream.acks_ready.notify();
    stream.commit_needed.notify();
    stream.expiry_needed.notify();
    if let Some(dir) = &stream.dir {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(
                "JetStream stream {}: could not remove {}: {e}",
                stream.name,
                dir.display()
            );
        }
    }
    Ok(())
}

fn wake_consumers(stream: &Stream) {
    for c in stream.consumers.borrow().values() {
        c.wake.notify();
    }
}

/// A sealed stream, or one whose config denies it, refuses a purge or delete.
fn refuse_removal(
    stream: &Stream,
    denied: impl Fn(&StreamConfig) -> bool,
    error: impl Fn() -> ApiError,
) -> Result<(), ApiError> {
    let c = stream.config.borrow();
    if c.sealed {
        return Err(errors::sealed());
    }
    if denied(&c) {
        return Err(error());
    }
    Ok(())
}

pub async fn purge(stream: &Stream, req: &PurgeRequest) -> Result<u64, ApiError> {
    let n = purge_now(stream, req)?;
    stream
        .store
        .commit()
        .await
        .map_err(|e| errors::purge_failed(e.to_string()))?;
    Ok(n)
}

/// A purge request as the store takes it.
pub fn storage_purge(req: &PurgeRequest) -> natrix_storage::PurgeRequest {
    natrix_storage::PurgeRequest {
        subject: req.filter.clone().filter(|f| !f.is_empty()),
        up_to_seq: req.seq,
        keep: req.keep,
    }
}

/// Purges in the store (durable with the store's next commit) and moves the
/// consumers past what went, if the stream allows purges.
pub fn purge_now(stream: &Stream, req: &PurgeRequest) -> Result<u64, ApiError> {
    refuse_removal(
        stream,
        |c| c.deny_purge,
        || errors::purge_failed("stream purge not permitted"),
    )?;
    purge_store(stream, req)
}

/// Purges the store and moves the consumers past what went (no permission checks:
/// a replica following its group, or catching up).
pub fn purge_store(stream: &Stream, req: &PurgeRequest) -> Result<u64, ApiError> {
    let n = stream
        .store
        .purge(&storage_purge(req))
        .map_err(|e| errors::purge_failed(e.to_string()))?;
    let first = stream.store.state().first_seq;
    for c in stream.consumers.borrow().values() {
        c.state.borrow_mut().forget_below(first);
        c.mark_dirty();
        c.wake.notify();
    }
    stream.commit_needed.notify();
    Ok(n)
}

pub async fn delete_msg(stream: &Stream, req: &MsgDeleteRequest) -> Result<(), ApiError> {
    delete_now(stream, req)?;
    stream
        .store
        .commit()
        .await
        .map_err(|e| errors::msg_delete_failed(e.to_string()))?;
    Ok(())
}

/// Deletes one message in the store (durable with the store's next commit).
pub fn delete_now(stream: &Stream, req: &MsgDeleteRequest) -> Result<(), ApiError> {
    refuse_removal(
        stream,
        |c| c.deny_delete,
        || errors::msg_delete_failed("message delete not permitted"),
    )?;
    delete_from_store(stream, req.seq)
}

/// Deletes message `seq` from the store and from the consumers' pending (no
/// permission checks).
pub fn delete_from_store(stream: &Stream, seq: u64) -> Result<(), ApiError> {
    match stream.store.delete(seq) {
        Ok(true) => {
            for c in stream.consumers.borrow().values() {
                c.state.borrow_mut().forget(seq);
                c.wake.notify();
            }
            stream.commit_needed.notify();
            Ok(())
        }
        Ok(false) => Err(errors::sequence_not_found(seq)),
        Err(e) => Err(errors::msg_delete_failed(e.to_string())),
    }
}

/// STREAM.MSG.GET and DIRECT.GET: the message asked for. A damaged record is never
/// served; a replica of a replicated stream gets it again from a peer.
pub async fn get_msg(
    shard: &Rc<Shard>,
    stream: &Rc<Stream>,
    req: &MsgGetRequest,
) -> Result<natrix_storage::StoredMsg, ApiError> {
    let Some(seq) = msg_get_seq(stream, req)? else {
        return Err(errors::no_message_found());
    };
    match stream.store.get(seq).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(errors::no_message_found()),
        Err(natrix_storage::StoreError::Corrupt { .. }) => {
            crate::jetstream::cluster::catchup::repair_damaged(shard, stream, seq);
            Err(errors::no_message_found())
        }
        Err(e) => Err(errors::general(e.to_string())),
    }
}

/// The sequence a message get asks for, if the stream holds one that matches.
fn msg_get_seq(stream: &Stream, req: &MsgGetRequest) -> Result<Option<u64>, ApiError> {
    let store = &stream.store;
    Ok(if let Some(subject) = &req.last_by_subj {
        if crate::subject::has_wildcard(subject.as_bytes()) {
            let lasts = store.last_per_subject(std::slice::from_ref(subject));
            lasts.last().copied()
        } else {
            store.last_seq_of_subject(subject)
        }
    } else if let Some(subject) = &req.next_by_subj {
        store.next_matching(req.seq.unwrap_or(0), std::slice::from_ref(subject))
    } else if let Some(seq) = req.seq {
        Some(seq)
    } else {
        return Err(errors::bad_request());
    })
}

// ----- consumers ---------------------------------------------------------------------

/// Creates (or returns the same, or updates) a consumer on `stream`.
pub fn create_consumer(
    shard: &Rc<Shard>,
    stream: &Rc<Stream>,
    name: Option<String>,
    config: ConsumerConfig,
    action: &str,
    replica: Option<crate::jetstream::cluster::consumer::Replica>,
) -> Result<ConsumerInfo, ApiError> {
    let limits = stream.config.borrow().consumer_limits.clone();
    let (name, config) = named_with_defaults(name, config, &limits);
    let existing = stream.consumers.borrow().get(&name).cloned();
    if let Some(existing) = existing {
        let old = existing.config.borrow().clone();
        if old == config {
            return Ok(existing.info(stream));
        }
        if action == "create" {
            return Err(errors::consumer_exists());
        }
        cconfig::update_allowed(&old, &config)?;
        let others = workqueue_peers(stream, Some(&name));
        cconfig::validate(&config, &stream.config.borrow(), &others)?;
        existing.set_config(config);
        existing.save();
        existing.wake.notify();
        return Ok(existing.info(stream));
    }
    if action == "update" {
        return Err(errors::consumer_does_not_exist());
    }
    let others = workqueue_peers(stream, None);
    cconfig::validate(&config, &stream.config.borrow(), &others)?;
    let max = stream.config.borrow().max_consumers;
    if max > 0 && stream.consumers.borrow().len() as i64 >= max {
        return Err(errors::maximum_consumers());
    }
    let (state, lps, lps_end) = Consumer::start(stream, &config);
    let dir = match (&stream.dir, config.durable_name.is_some()) {
        (Some(sdir), true) => Some(persist::consumer_dir(sdir, &name)),
        _ => None,
    };
    let consumer = Consumer::new(stream, name.clone(), config, SystemTime::now(), state, dir);
    if let Some(r) = replica {
        let _ = consumer.cluster.set(r);
    }
    if !lps.is_empty() {
        *consumer.lps.borrow_mut() = lps.into();
        consumer.lps_end.set(lps_end);
    }
    consumer.save();
    stream.consumers.borrow_mut().insert(name, consumer.clone());
    glommio::spawn_local(deliver::run(
        shard.clone(),
        stream.clone(),
        consumer.clone(),
    ))
    .detach();
    Ok(consumer.info(stream))
}

/// A new consumer's name (given, from its config, or made up) and its config with
/// nats-server's defaults and its name filled in.
pub fn named_with_defaults(
    name: Option<String>,
    config: ConsumerConfig,
    limits: &crate::jetstream::api::types::ConsumerLimits,
) -> (String, ConsumerConfig) {
    let mut config = cconfig::with_defaults(config, limits);
    let name = name
        .or(config.name.clone())
        .or(config.durable_name.clone())
        .unwrap_or_else(|| crate::jetstream::random_id()[..8].to_string());
    if config.durable_name.is_none() && config.name.is_none() {
        config.name = Some(name.clone());
    } else if config.name.is_none() {
        config.name = config.durable_name.clone();
    }
    (name, config)
}

/// The other consumers' configs, which only a workqueue stream checks a new
/// consumer against (copying them for every create would be quadratic).
fn workqueue_peers(stream: &Stream, except: Option<&str>) -> Vec<ConsumerConfig> {
    if !stream.is_workqueue() {
        return Vec::new();
    }
    stream
        .consumers
        .borrow()
        .iter()
        .filter(|(n, _)| Some(n.as_str()) != except)
        .map(|(_, c)| c.config.borrow().clone())
        .collect()
}

/// Ends a consumer's task and answers its waiting pull requests.
fn end_consumer(shard: &Shard, stream: &Stream, consumer: &Consumer) {
    consumer.deleted.set(true);
    consumer.wake.notify();
    for r in consumer.waiting.borrow_mut().drain(..) {
        deliver::send_status(shard, stream, &r.reply, 409, "Consumer Deleted", None);
    }
}

/// Removes a consumer (API delete, or an ephemeral gone inactive).
pub fn remove_consumer(shard: &Shard, stream: &Stream, name: &str, _api: bool) -> bool {
    let Some(consumer) = stream.consumers.borrow_mut().remove(name) else {
        return false;
    };
    end_consumer(shard, stream, &consumer);
    if let Some(dir) = &consumer.dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    true
}

/// A pull request (`CONSUMER.MSG.NEXT`): queued for the delivery task.
pub fn pull_request(
    shard: &Shard,
    stream: &Stream,
    consumer: &Consumer,
    reply: Bytes,
    body: &[u8],
) {
    let req = parse_next_request(body);
    let now = Instant::now();
    consumer.last_active.set(now);
    let max_waiting = consumer.config.borrow().max_waiting.max(1) as usize;
    if consumer.waiting.borrow().len() >= max_waiting {
        deliver::send_status(shard, stream, &reply, 409, "Exceeded MaxWaiting", None);
        return;
    }
    let max_batch = consumer.config.borrow().max_batch;
    if max_batch > 0 && req.batch > max_batch {
        let text = format!("Exceeded MaxRequestBatch of {max_batch}");
        deliver::send_status(shard, stream, &reply, 409, &text, None);
        return;
    }
    consumer
        .waiting
        .borrow_mut()
        .push_back(PullRequest::new(reply, &req, now));
    consumer.wake.notify();
}

fn parse_next_request(body: &[u8]) -> NextRequest {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return NextRequest {
            batch: 1,
            ..Default::default()
        };
    }
    if let Ok(n) = text.parse::<i64>() {
        return NextRequest {
            batch: n,
            ..Default::default()
        };
    }
    serde_json::from_str(text).unwrap_or(NextRequest {
        batch: 1,
        ..Default::default()
    })
}

/// A client's answer to a flow-control request (`$JS.FC.<stream>.<consumer>.<token>`).
pub fn on_flow_control(stream: &Stream, msg: &Msg) {
    let Ok(subject) = std::str::from_utf8(msg.subject) else {
        return;
    };
    let Some(name) = subject.split('.').nth(3) else {
        return;
    };
    let Some(consumer) = stream.consumers.borrow().get(name).cloned() else {
        return;
    };
    let answered = consumer
        .flow
        .borrow_mut()
        .as_mut()
        .is_some_and(|fc| fc.on_answer(subject));
    if answered {
        consumer.wake.notify();
    }
}

/// An ack (or nak, term, progress, next) for a delivered message.
pub fn on_ack(shard: &Shard, stream: &Rc<Stream>, msg: &Msg) {
    let Ok(subject) = std::str::from_utf8(msg.subject) else {
        return;
    };
    let Some(a) = ack::parse_subject(subject) else {
        return;
    };
    let Some(consumer) = stream.consumers.borrow().get(a.consumer).cloned() else {
        return;
    };
    if !consumer.acts_here() {
        return; // a clustered consumer's leader takes its acks
    }
    let body = &msg.payload[msg.header_len..];
    let rules = consumer.rules();
    let now_ms = consumer.now_ms();
    consumer.last_active.set(Instant::now());
    let kind = ack::parse_body(body);
    let acked = {
        let mut st = consumer.state.borrow_mut();
        match &kind {
            AckKind::Ack | AckKind::Next(_) => {
                if consumer.config.borrow().ack_policy == AckPolicy::All {
                    st.ack_all(a.stream_seq)
                } else {
                    st.ack(a.stream_seq)
                }
            }
            AckKind::Nak { delay_ms } => {
                st.nak(a.stream_seq, now_ms, *delay_ms);
                false
            }
            AckKind::InProgress => {
                st.in_progress(a.stream_seq, now_ms, &rules);
                false
            }
            AckKind::Term { .. } => st.terminate(a.stream_seq).is_some(),
        }
    };
    consumer.mark_dirty();
    consumer.wake.notify();
    if acked {
        stream.retire_acked(a.stream_seq);
    }
    if let AckKind::Next(req) = &kind {
        if let Some(reply) = msg.reply {
            pull_request(
                shard,
                stream,
                &consumer,
                Bytes::copy_from_slice(reply),
                req.as_bytes(),
            );
        }
        return;
    }
    if let Some(reply) = msg.reply {
        // The client waits for this answer: what it acked survives a crash (in a
        // cluster: is committed in the consumer's group).
        consumer.save();
        let held = consumer
            .cluster
            .get()
            .is_some_and(|r| r.hold_reply(Bytes::copy_from_slice(reply)));
        if held {
            if let Some(cl) = shard.cluster.get() {
                cl.wake();
            }
        } else {
            send(shard, stream.account, reply, None, b"", b"");
        }
    }
}

// ----- requests the API forwards to this shard ----------------------------------------

fn json<T: serde::Serialize>(kind: &'static str, body: T) -> Reply {
    Reply::json(&Response { kind, body })
}

fn error(kind: &'static str, e: ApiError) -> Reply {
    Reply::error(kind, e)
}

/// Runs a request about one stream that lives here.
pub async fn execute(
    shard: Rc<Shard>,
    account: AccountId,
    op: crate::jetstream::api::request::ApiOp,
    reply: Option<Bytes>,
    body: Vec<u8>,
) -> Option<Reply> {
    use crate::jetstream::api::request::ApiOp::*;
    let kind = op.response_kind();
    let name = op.stream().expect("a stream request").to_string();
    let Some(stream) = shard.js.get(account, &name) else {
        if let ConsumerNext(..) = op {
            return None;
        }
        return Some(error(kind, errors::stream_not_found()));
    };
    let parse = |what: &[u8]| -> Result<serde_json::Value, ApiError> {
        if what.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Object(Default::default()));
        }
        // Clients send `null` for "no options" (Go's decoder takes it as empty).
        match serde_json::from_slice(what).map_err(errors::invalid_json)? {
            serde_json::Value::Null => Ok(serde_json::Value::Object(Default::default())),
            v => Ok(v),
        }
    };
    macro_rules! body_as {
        ($t:ty) => {
            match parse(&body)
                .and_then(|v| serde_json::from_value::<$t>(v).map_err(errors::invalid_json))
            {
                Ok(v) => v,
                Err(e) => return Some(error(kind, e)),
            }
        };
    }
    let out = match op {
        StreamInfo(_) => {
            let req = body_as!(StreamInfoRequest);
            json(
                kind,
                stream.info(req.subjects_filter.as_deref(), req.deleted_details),
            )
        }
        StreamUpdate(_) => {
            let config = body_as!(StreamConfig);
            match update_stream(&shard, &stream, config).await {
                Ok(info) => json(kind, info),
                Err(e) => error(kind, e),
            }
        }
        StreamDelete(_) => match delete_stream(&shard, &stream).await {
            Ok(()) => json(kind, SuccessBody { success: true }),
            Err(e) => error(kind, e),
        },
        StreamPurge(_) => {
            let req = body_as!(PurgeRequest);
            match purge(&stream, &req).await {
                Ok(n) => json(
                    kind,
                    PurgeBody {
                        success: true,
                        purged: n,
                    },
                ),
                Err(e) => error(kind, e),
            }
        }
        MsgGet(_) => {
            let req = body_as!(MsgGetRequest);
            match get_msg(&shard, &stream, &req).await {
                Ok(m) => json(
                    kind,
                    MsgGetBody {
                        message: stored_message(&m),
                    },
                ),
                Err(e) => error(kind, e),
            }
        }
        MsgDelete(_) => {
            let req = body_as!(MsgDeleteRequest);
            match delete_msg(&stream, &req).await {
                Ok(()) => json(kind, SuccessBody { success: true }),
                Err(e) => error(kind, e),
            }
        }
        DirectGet(_, subject) => {
            return crate::jetstream::direct::answer(&shard, &stream, subject, reply, &body).await
        }
        ConsumerCreate {
            name,
            filter,
            durable_form,
            ..
        } => {
            let req = body_as!(ConsumerCreateRequest);
            match consumer_create(&shard, &stream, name, filter, durable_form, req) {
                Ok(info) => json(kind, info),
                Err(e) => error(kind, e),
            }
        }
        ConsumerInfo(_, c) => match stream.consumers.borrow().get(&c) {
            Some(c) => json(kind, c.info(&stream)),
            None => error(kind, errors::consumer_not_found()),
        },
        ConsumerDelete(_, c) => {
            if remove_consumer(&shard, &stream, &c, true) {
                json(kind, SuccessBody { success: true })
            } else {
                error(kind, errors::consumer_not_found())
            }
        }
        ConsumerNames(_) => {
            let req = body_as!(ListRequest);
            let names: Vec<String> = stream.consumers.borrow().keys().cloned().collect();
            let total = names.len();
            let page: Vec<String> = names.into_iter().skip(req.offset).take(LIST_PAGE).collect();
            json(
                kind,
                ConsumerNamesBody {
                    total,
                    offset: req.offset,
                    limit: LIST_PAGE,
                    consumers: page,
                },
            )
        }
        ConsumerList(_) => {
            let req = body_as!(ListRequest);
            let all: Vec<Rc<Consumer>> = stream.consumers.borrow().values().cloned().collect();
            let total = all.len();
            let page = all
                .iter()
                .skip(req.offset)
                .take(LIST_PAGE)
                .map(|c| c.info(&stream))
                .collect();
            json(
                kind,
                ConsumerListBody {
                    total,
                    offset: req.offset,
                    limit: LIST_PAGE,
                    consumers: page,
                },
            )
        }
        ConsumerNext(_, c) => {
            let consumer = stream.consumers.borrow().get(&c).cloned();
            match (consumer, reply) {
                (Some(consumer), Some(reply)) if !consumer.is_push() => {
                    pull_request(&shard, &stream, &consumer, reply, &body);
                }
                (Some(_), Some(reply)) => deliver::send_status(
                    &shard,
                    &stream,
                    &reply,
                    409,
                    "Consumer is push based",
                    None,
                ),
                (None, Some(reply)) => {
                    deliver::send_status(&shard, &stream, &reply, 404, "Consumer Not Found", None)
                }
                _ => {}
            }
            return None;
        }
        ConsumerPause(_, c) => {
            let req = body_as!(PauseRequest);
            let Some(consumer) = stream.consumers.borrow().get(&c).cloned() else {
                return Some(error(kind, errors::consumer_not_found()));
            };
            let until = req
                .pause_until
                .as_deref()
                .and_then(crate::timefmt::parse_rfc3339_ns)
                .map(persist::from_ns)
                .filter(|t| *t > SystemTime::now());
            consumer.paused_until.set(until);
            consumer.config.borrow_mut().pause_until =
                req.pause_until.clone().filter(|_| until.is_some());
            consumer.save();
            consumer.wake.notify();
            json(
                kind,
                PauseBody {
                    paused: until.is_some(),
                    pause_until: until.map_or_else(
                        || crate::jetstream::ZERO_TIME.into(),
                        crate::jetstream::time_string,
                    ),
                    pause_remaining: until
                        .and_then(|t| t.duration_since(SystemTime::now()).ok())
                        .map(|d| d.as_nanos() as i64),
                },
            )
        }
        StreamLeaderStepdown(_) | ConsumerLeaderStepdown(..) | StreamPeerRemove(_) => {
            error(kind, errors::cluster_required())
        }
        StreamCreate(_) | AccountInfo | StreamNames | StreamList | MetaLeaderStepdown
        | ServerRemove => error(kind, errors::bad_request()),
    };
    Some(out)
}

pub const LIST_PAGE: usize = 256;

fn consumer_create(
    shard: &Rc<Shard>,
    stream: &Rc<Stream>,
    name: Option<String>,
    filter: Option<String>,
    durable_form: bool,
    req: ConsumerCreateRequest,
) -> Result<ConsumerInfo, ApiError> {
    let (name, config) = requested_consumer(&stream.name, name, filter, durable_form, &req)?;
    create_consumer(shard, stream, name, config, &req.action, None)
}

/// The name and config a consumer create request asks for, checked against its
/// subject's name and filter.
pub fn requested_consumer(
    stream_name: &str,
    name: Option<String>,
    filter: Option<String>,
    durable_form: bool,
    req: &ConsumerCreateRequest,
) -> Result<(Option<String>, ConsumerConfig), ApiError> {
    let Some(mut config) = req.config.clone() else {
        return Err(errors::consumer_config_required());
    };
    if !req.stream_name.is_empty() && req.stream_name != stream_name {
        return Err(errors::stream_name_mismatch());
    }
    if let Some(name) = &name {
        if durable_form {
            match &config.durable_name {
                Some(d) if d != name => return Err(errors::consumer_durable_name_mismatch()),
                Some(_) => {}
                None => config.durable_name = Some(name.clone()),
            }
        } else {
            let given = config.name.as_ref().or(config.durable_name.as_ref());
            if given.is_some_and(|g| g != name) {
                return Err(errors::consumer_durable_name_mismatch());
            }
        }
    }
    if let Some(f) = &filter {
        if config.filter_subject.as_deref().is_some_and(|c| c != f) {
            return Err(errors::consumer_filter_mismatch());
        }
    }
    Ok((name, config))
}

fn stored_message(m: &natrix_storage::StoredMsg) -> StoredMessage {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    StoredMessage {
        subject: m.subject.clone(),
        seq: m.seq,
        hdrs: (!m.headers.is_empty()).then(|| b64.encode(&m.headers)),
        data: (!m.payload.is_empty()).then(|| b64.encode(&m.payload)),
        time: crate::jetstream::time_string(persist::from_ns(m.timestamp_ns)),
    }
}
