//! `$JS.API` in a cluster. Every JetStream server gets each request; this decides
//! whether this one answers (see the module map) and answers it: account-wide
//! requests, creates and deletes on the meta leader (through the meta group),
//! requests about a stream on its leader, about a consumer on the consumer's leader.

use super::assign::{Change, MetaOp, Refusal, StreamAssignment};
use super::entry;
use super::gather;
use super::{Answer, Cluster};
use crate::jetstream::api::request::ApiOp;
use crate::jetstream::api::types::*;
use crate::jetstream::api::{errors, Reply};
use crate::jetstream::consumer::config as cconfig;
use crate::jetstream::meta::META_GROUP;
use crate::jetstream::stream::Stream;
use crate::jetstream::{catalog, persist, registry, subjects_overlap, time_string};
use crate::raft::{GroupId, NodeId};
use crate::server::accounts::AccountId;
use crate::server::shard::Shard;
use bytes::Bytes;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// How long a create waits for the replica on this server before it answers
/// from the assignment alone.
const REPLICA_WAIT_MS: u64 = 2_000;
const REPLICA_POLL_MS: u64 = 10;
/// How long the meta group is without a leader before every server answers the
/// meta leader's requests with 10008 (nats-server's `lostQuorumInterval`; a
/// server just started stays silent until then, as an election usually ends first).
const LEADERLESS_ANSWER_AFTER: Duration = Duration::from_secs(10);
/// How long one question to a group's leader waits for the answer.
const LEADER_ANSWER_WAIT_MS: u64 = 200;
/// How long a create waits for the new group's leader before it answers.
const LEADER_WAIT_MS: u64 = 5_000;
/// How long a request waits for a leader just elected here to be able to act.
const ACTING_WAIT_MS: u64 = 2_000;
const ACTING_POLL_MS: u64 = 2;

/// Answers `op` if this server is the one to; None to stay silent.
pub async fn handle(
    shard: &Rc<Shard>,
    cl: &Rc<Cluster>,
    account: AccountId,
    op: ApiOp,
    reply: Bytes,
    body: Vec<u8>,
) -> Option<Reply> {
    let kind = op.response_kind();
    let acct = shard.server.accounts.name(account).to_string();
    let meta_leader = cl.is_meta_leader();
    if answered_by_meta_leader(&op) && cl.host.leaderless_for() >= LEADERLESS_ANSWER_AFTER {
        // Every server without a usable meta leader (a leader cut off from its
        // quorum included) answers so, as nats-server's do: the client takes the first.
        return Some(Reply::error(kind, errors::cluster_not_available()));
    }
    match op {
        ApiOp::AccountInfo => meta_leader.then(|| account_info(shard, cl, account, &acct)),
        ApiOp::StreamNames => meta_leader.then(|| names(cl, &acct, &body)),
        ApiOp::StreamList => match meta_leader {
            true => Some(list(shard, cl, account, &acct, &body).await),
            false => None,
        },
        ApiOp::StreamCreate(name) if meta_leader => {
            Some(create_stream(shard, cl, account, &acct, &name, &body).await)
        }
        ApiOp::StreamUpdate(name) if meta_leader => {
            Some(update_stream(shard, cl, account, &acct, &name, &body).await)
        }
        ApiOp::StreamDelete(name) if meta_leader => {
            let held = cl
                .meta
                .borrow()
                .stream(&acct, &name)
                .map(|sa| (sa.group, sa.peers.clone()));
            let op = MetaOp::RemoveStream {
                account: acct,
                name,
            };
            Some(success_or_error(kind, remove(shard, cl, op, held).await))
        }
        ApiOp::MetaLeaderStepdown if meta_leader => {
            if account != shard.server.accounts.system() {
                return Some(Reply::error(
                    kind,
                    errors::general("only the system account may step the meta leader down"),
                ));
            }
            Some(success_or_error(kind, cl.step_down(META_GROUP).await))
        }
        ApiOp::StreamPeerRemove(name) if meta_leader => Some(success_or_error(
            kind,
            remove_peer(cl, &acct, &name, &body).await,
        )),
        ApiOp::ServerRemove if meta_leader => {
            if account != shard.server.accounts.system() {
                return Some(Reply::error(
                    kind,
                    errors::general("only the system account may remove a server"),
                ));
            }
            Some(success_or_error(kind, remove_server(cl, &body).await))
        }
        ApiOp::ConsumerCreate {
            stream,
            name,
            filter,
            durable_form,
        } if meta_leader => Some(
            create_consumer(
                shard,
                cl,
                account,
                &stream,
                name,
                filter,
                durable_form,
                &body,
            )
            .await,
        ),
        ApiOp::ConsumerDelete(stream, name) if meta_leader => {
            let held = cl.meta.borrow().stream(&acct, &stream).and_then(|sa| {
                let ca = sa.consumers.get(&name)?;
                Some((ca.group, sa.peers.clone()))
            });
            let op = MetaOp::RemoveConsumer {
                account: acct,
                stream,
                name,
            };
            Some(success_or_error(kind, remove(shard, cl, op, held).await))
        }
        op if answered_by_meta_leader(&op) => None,
        op => about_stream(shard, cl, account, &acct, op, reply, body).await,
    }
}

/// Proposes a removal; once applied, waits until the servers holding `held`'s
/// group (its id and peers) let it go.
async fn remove(
    shard: &Shard,
    cl: &Cluster,
    op: MetaOp,
    held: Option<(GroupId, Vec<NodeId>)>,
) -> Result<(), ApiError> {
    propose_meta(cl, op).await?;
    if let Some((group, peers)) = held {
        super::gone::wait_gone(shard, cl, group, &peers).await;
    }
    Ok(())
}

/// The requests only the meta leader answers.
fn answered_by_meta_leader(op: &ApiOp) -> bool {
    matches!(
        op,
        ApiOp::AccountInfo
            | ApiOp::StreamNames
            | ApiOp::StreamList
            | ApiOp::StreamCreate(_)
            | ApiOp::StreamUpdate(_)
            | ApiOp::StreamDelete(_)
            | ApiOp::MetaLeaderStepdown
            | ApiOp::ServerRemove
            | ApiOp::StreamPeerRemove(_)
            | ApiOp::ConsumerCreate { .. }
            | ApiOp::ConsumerDelete(..)
    )
}

/// `STREAM.PEER.REMOVE`: a replacement takes the peer's place.
async fn remove_peer(cl: &Cluster, acct: &str, name: &str, body: &[u8]) -> Result<(), ApiError> {
    let Some(sa) = cl.meta.borrow().stream(acct, name).cloned() else {
        return Err(errors::stream_not_found());
    };
    let peers = super::moves::without_peer(cl, &sa, body)?;
    propose_meta(cl, super::moves::moved_op(&sa, peers)).await
}

/// `SERVER.REMOVE`: the server's stream replicas move to others (or go, where no
/// server is free), and it leaves the meta group for good.
async fn remove_server(cl: &Cluster, body: &[u8]) -> Result<(), ApiError> {
    let node = super::moves::server_named(cl, body)?;
    let streams: Vec<StreamAssignment> = cl
        .meta
        .borrow()
        .streams
        .values()
        .filter(|sa| sa.peers.contains(&node))
        .cloned()
        .collect();
    for sa in streams {
        match super::moves::without_server(cl, &sa, node) {
            Ok(peers) => propose_meta(cl, super::moves::moved_op(&sa, peers)).await?,
            Err(e) => tracing::warn!(
                "JetStream cluster: stream {} keeps a replica on a removed server: {}",
                sa.config.name,
                e.description
            ),
        }
    }
    propose_meta(cl, MetaOp::RemoveServer { node }).await
}

fn success_or_error(kind: &'static str, r: Result<(), ApiError>) -> Reply {
    match r {
        Ok(()) => Reply::json(&Response {
            kind,
            body: SuccessBody { success: true },
        }),
        Err(e) => Reply::error(kind, e),
    }
}

/// Proposes a meta operation and waits for it to be applied.
async fn propose_meta_change(cl: &Cluster, op: MetaOp) -> Result<Change, ApiError> {
    match cl
        .propose(META_GROUP, super::assign::encode_op(&op))
        .await?
    {
        Answer::Meta(change) => match *change {
            Change::Refused(why) => Err(refusal_error(why)),
            change => Ok(change),
        },
        Answer::Count(Err(e)) => Err(e),
        _ => Err(errors::general(
            "JetStream cluster: the meta leader changed, try again",
        )),
    }
}

async fn propose_meta(cl: &Cluster, op: MetaOp) -> Result<(), ApiError> {
    propose_meta_change(cl, op).await.map(|_| ())
}

fn refusal_error(why: Refusal) -> ApiError {
    match why {
        Refusal::StreamExists => errors::stream_name_in_use(),
        Refusal::StreamNotFound => errors::stream_not_found(),
        Refusal::ConsumerExists => errors::consumer_exists(),
        Refusal::ConsumerNotFound => errors::consumer_not_found(),
        Refusal::TooManyStreams => errors::maximum_streams(),
    }
}

fn account_info(shard: &Shard, cl: &Cluster, account: AccountId, acct: &str) -> Reply {
    let meta = cl.meta.borrow();
    let (streams, consumers) = meta
        .of_account(acct)
        .fold((0, 0), |(s, c), sa| (s + 1, c + sa.consumers.len() as u64));
    let mut usage = registry::usage(shard, Some(account));
    let (memory, storage) = cl.others_usage.of_account(acct, std::time::Instant::now());
    usage.memory += memory;
    usage.storage += storage;
    catalog::account_info_reply(shard, account, &usage, streams, consumers)
}

fn matching(cl: &Cluster, acct: &str, subject: Option<&str>) -> Vec<StreamAssignment> {
    cl.meta
        .borrow()
        .of_account(acct)
        .filter(|sa| {
            subject.is_none_or(|s| {
                s.is_empty() || sa.config.subjects.iter().any(|x| subjects_overlap(x, s))
            })
        })
        .cloned()
        .collect()
}

fn names(cl: &Cluster, acct: &str, body: &[u8]) -> Reply {
    let req = match catalog::parse_list(body) {
        Ok(r) => r,
        Err(e) => return Reply::error(kind::STREAM_NAMES, e),
    };
    let all = matching(cl, acct, req.subject.as_deref());
    Reply::json(&Response {
        kind: kind::STREAM_NAMES,
        body: NamesBody {
            total: all.len(),
            offset: req.offset,
            limit: registry::LIST_PAGE,
            streams: all
                .into_iter()
                .skip(req.offset)
                .take(registry::LIST_PAGE)
                .map(|sa| sa.config.name)
                .collect(),
        },
    })
}

/// The stream list: from the replicas here, or from the assignment (empty state)
/// for streams this server holds no replica of.
async fn list(
    shard: &Rc<Shard>,
    cl: &Cluster,
    account: AccountId,
    acct: &str,
    body: &[u8],
) -> Reply {
    let req = match catalog::parse_list(body) {
        Ok(r) => r,
        Err(e) => return Reply::error(kind::STREAM_LIST, e),
    };
    let all = matching(cl, acct, req.subject.as_deref());
    let total = all.len();
    let page: Vec<(StreamAssignment, Option<Rc<Stream>>)> = all
        .into_iter()
        .skip(req.offset)
        .take(registry::LIST_PAGE)
        .map(|sa| {
            let local = shard.js.get(account, &sa.config.name);
            (sa, local)
        })
        .collect();
    // A stream with no replica here: its leader tells its state.
    let elsewhere: Vec<String> = page
        .iter()
        .filter(|(_, local)| local.is_none())
        .map(|(sa, _)| sa.config.name.clone())
        .collect();
    let mut answers = gather::stream_infos(shard, cl, account, &elsewhere)
        .await
        .into_iter();
    let (mut streams, mut missing) = (Vec::new(), Vec::new());
    for (sa, local) in page {
        match local {
            Some(s) => {
                let mut info = s.info(None, false);
                info.cluster = Some(cluster_info(shard, cl, &sa, sa.group).await);
                streams.push(info);
            }
            // No leader answered: listed as missing, as nats-server does.
            None => match answers.next().flatten() {
                Some(info) => streams.push(info),
                None => missing.push(sa.config.name.clone()),
            },
        }
    }
    Reply::json(&Response {
        kind: kind::STREAM_LIST,
        body: StreamListBody {
            total,
            offset: req.offset,
            limit: registry::LIST_PAGE,
            streams,
            missing,
        },
    })
}

fn assigned_info(sa: &StreamAssignment) -> StreamInfo {
    StreamInfo {
        config: sa.config.clone(),
        created: time_string(persist::from_ns(sa.created_ns)),
        state: StreamState::default(),
        cluster: None,
        ts: time_string(SystemTime::now()),
    }
}

/// The servers a new stream's replicas go to: the least loaded JetStream servers
/// of the meta group (ties broken by the stream's name, so streams spread).
fn place(
    shard: &Shard,
    cl: &Cluster,
    config: &StreamConfig,
    replicas: usize,
) -> Result<Vec<NodeId>, ApiError> {
    let mut peers = super::moves::eligible(shard, cl, config)?;
    if peers.len() < replicas {
        return Err(match config.placement {
            Some(_) => errors::no_suitable_peers(),
            None => errors::insufficient_resources(),
        });
    }
    let name = &config.name;
    let meta = cl.meta.borrow();
    let salt = crate::jetstream::node_id::node_id(name);
    peers.sort_by_key(|n| (meta.load_of(*n), n ^ salt));
    peers.truncate(replicas);
    // This server (the meta leader) first when it holds a replica: it stands for
    // leader at once and answers the create when it leads.
    if let Some(at) = peers.iter().position(|n| *n == cl.node) {
        peers.swap(0, at);
    }
    Ok(peers)
}

async fn create_stream(
    shard: &Rc<Shard>,
    cl: &Rc<Cluster>,
    account: AccountId,
    acct: &str,
    name: &str,
    body: &[u8],
) -> Reply {
    let k = kind::STREAM_CREATE;
    let config = match catalog::checked_config(name, body, true) {
        Ok(c) => c,
        Err(e) => return Reply::error(k, e),
    };
    if let Some(existing) = cl.meta.borrow().stream(acct, name) {
        if existing.config != config {
            return Reply::error(k, errors::stream_name_in_use());
        }
    }
    let exists = cl.meta.borrow().stream(acct, name).is_some();
    if !exists {
        let overlaps = cl.meta.borrow().of_account(acct).any(|sa| {
            sa.config
                .subjects
                .iter()
                .any(|a| config.subjects.iter().any(|b| subjects_overlap(a, b)))
        });
        if overlaps {
            return Reply::error(k, errors::subjects_overlap());
        }
        let max_streams = catalog::limits(&shard.server, account).max_streams;
        if max_streams >= 0 && cl.meta.borrow().of_account(acct).count() as i64 >= max_streams {
            return Reply::error(k, errors::maximum_streams());
        }
        let peers = match place(shard, cl, &config, config.num_replicas.max(1) as usize) {
            Ok(p) => p,
            Err(e) => return Reply::error(k, e),
        };
        let op = MetaOp::AddStream {
            account: acct.to_string(),
            config: config.clone(),
            peers,
            created_ns: persist::to_ns(SystemTime::now()),
        };
        if let Err(e) = propose_meta(cl, op).await {
            return Reply::error(k, e);
        }
    }
    let Some(sa) = cl.meta.borrow().stream(acct, name).cloned() else {
        return Reply::error(k, errors::stream_not_found());
    };
    wait_for_leader(shard, cl, account, &sa).await;
    // A replica here answers with its state; without one, the stream's leader
    // (naming itself and the replicas), or else the assignment.
    let local = if sa.peers.contains(&cl.node) {
        local_stream(shard, account, name).await
    } else {
        None
    };
    let asked = match local {
        Some(_) => None,
        None => gather::stream_infos(shard, cl, account, std::slice::from_ref(&sa.config.name))
            .await
            .pop()
            .flatten(),
    };
    let info = match (local, asked) {
        (_, Some(info)) => info,
        (local, None) => {
            let mut info = local.map_or_else(|| assigned_info(&sa), |s| s.info(None, false));
            info.cluster = Some(cluster_info(shard, cl, &sa, sa.group).await);
            info
        }
    };
    Reply::json(&Response {
        kind: k,
        body: info,
    })
}

/// Waits (bounded) until the new stream has a leader that took its subjects, as
/// nats-server answers a create once the stream's leader is elected: a publish
/// right after the answer finds it.
async fn wait_for_leader(shard: &Shard, cl: &Cluster, account: AccountId, sa: &StreamAssignment) {
    let subject = sa
        .config
        .subjects
        .first()
        .map(|s| literal_of(s))
        .unwrap_or_else(|| sa.config.name.clone());
    let mut waited_ms = 0;
    while waited_ms < LEADER_WAIT_MS {
        if cl.view(sa.group).ready || shard.has_interest(account, subject.as_bytes()) {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
        waited_ms += REPLICA_POLL_MS;
    }
}

/// A subject that `pattern` matches (wildcards filled in).
fn literal_of(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|t| if t == "*" || t == ">" { "_" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

/// Waits (bounded) until a group this server holds has a leader, and when that is
/// this server, until it may act (it applied what was committed before its term).
async fn wait_for_group_leader(cl: &Cluster, group: GroupId) {
    let mut waited_ms = 0;
    while waited_ms < LEADER_WAIT_MS && !has_acting_leader(cl, group) {
        glommio::timer::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
        waited_ms += REPLICA_POLL_MS;
    }
}

fn has_acting_leader(cl: &Cluster, group: GroupId) -> bool {
    let v = cl.view(group);
    v.ready || (v.leader != 0 && v.leader != cl.node)
}

/// Whether this server leads `group` and may act; a leader just elected first
/// applies what was committed before its term (bounded wait), so a request that
/// reaches it then is answered rather than lost.
async fn leads(cl: &Cluster, group: GroupId) -> bool {
    let mut waited_ms = 0;
    loop {
        let v = cl.view(group);
        if v.ready {
            return true;
        }
        if v.leader != cl.node || waited_ms >= ACTING_WAIT_MS {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(ACTING_POLL_MS)).await;
        waited_ms += ACTING_POLL_MS;
    }
}

/// A purge or delete entry for the leader to propose, bounded by the last sequence
/// its stream will hold when the entry applies: the one stored, or the last of its
/// messages proposed before (they are ahead of it in the log).
fn removal(
    shard: &Shard,
    account: AccountId,
    name: &str,
    purge: bool,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let stream = shard
        .js
        .get(account, name)
        .ok_or_else(errors::stream_not_found)?;
    let r = stream.cluster.get().expect("a clustered stream");
    if !r.leading.get() {
        return Err(errors::general(
            "the stream's leader is not ready, try again",
        ));
    }
    let through_seq = match r.next_seq.get() {
        Some(next) => next - 1,
        None => stream.store.state().last_seq,
    };
    Ok(entry::encode_removal(purge, through_seq, body))
}

/// The replica here, once created (a create answers with its state).
async fn local_stream(shard: &Shard, account: AccountId, name: &str) -> Option<Rc<Stream>> {
    let mut waited_ms = 0;
    loop {
        if let Some(s) = shard.js.get(account, name) {
            return Some(s);
        }
        if waited_ms >= REPLICA_WAIT_MS {
            return None;
        }
        glommio::timer::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
        waited_ms += REPLICA_POLL_MS;
    }
}

async fn update_stream(
    shard: &Shard,
    cl: &Cluster,
    account: AccountId,
    acct: &str,
    name: &str,
    body: &[u8],
) -> Reply {
    let k = kind::STREAM_UPDATE;
    let config = match catalog::checked_config(name, body, true) {
        Ok(c) => c,
        Err(e) => return Reply::error(k, e),
    };
    let Some(sa) = cl.meta.borrow().stream(acct, name).cloned() else {
        return Reply::error(k, errors::stream_not_found());
    };
    if sa.config.placement != config.placement {
        return Reply::error(
            k,
            errors::stream_update("changing a stream's placement is not supported yet"),
        );
    }
    let op = if sa.config.num_replicas.max(1) != config.num_replicas.max(1) {
        match super::moves::for_replicas(cl, &sa, config.num_replicas.max(1) as usize) {
            Ok(peers) => MetaOp::UpdateStream {
                account: acct.to_string(),
                config: config.clone(),
                peers: Some(peers),
            },
            Err(e) => return Reply::error(k, e),
        }
    } else {
        MetaOp::UpdateStream {
            account: acct.to_string(),
            config: config.clone(),
            peers: None,
        }
    };
    match propose_meta_change(cl, op).await {
        Ok(Change::StreamUpdated(sa) | Change::StreamMoved(sa, _)) => {
            let mut info = match shard.js.get(account, name) {
                Some(s) => s.info(None, false),
                None => assigned_info(&sa),
            };
            info.config = config;
            Reply::json(&Response {
                kind: k,
                body: info,
            })
        }
        Ok(_) => Reply::error(k, errors::stream_not_found()),
        Err(e) => Reply::error(k, e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn create_consumer(
    shard: &Rc<Shard>,
    cl: &Rc<Cluster>,
    account: AccountId,
    stream: &str,
    name: Option<String>,
    filter: Option<String>,
    durable_form: bool,
    body: &[u8],
) -> Reply {
    let k = kind::CONSUMER_CREATE;
    let acct = shard.server.accounts.name(account).to_string();
    let acct = acct.as_str();
    let req: ConsumerCreateRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::error(k, errors::invalid_json(e)),
    };
    let Some(sa) = cl.meta.borrow().stream(acct, stream).cloned() else {
        return Reply::error(k, errors::stream_not_found());
    };
    let (name, config) =
        match registry::requested_consumer(stream, name, filter, durable_form, &req) {
            Ok(v) => v,
            Err(e) => return Reply::error(k, e),
        };
    let (name, config) = registry::named_with_defaults(name, config, &sa.config.consumer_limits);
    match sa.consumers.get(&name) {
        Some(existing) if existing.config == config => {}
        Some(_) if req.action == "create" => return Reply::error(k, errors::consumer_exists()),
        Some(existing) => {
            if let Err(e) = cconfig::update_allowed(&existing.config, &config) {
                return Reply::error(k, e);
            }
        }
        None if req.action == "update" => {
            return Reply::error(k, errors::consumer_does_not_exist())
        }
        None => {
            let others: Vec<ConsumerConfig> =
                sa.consumers.values().map(|c| c.config.clone()).collect();
            let others = if sa.config.retention == Retention::Workqueue {
                others
            } else {
                Vec::new()
            };
            if let Err(e) = cconfig::validate(&config, &sa.config, &others) {
                return Reply::error(k, e);
            }
            let max = sa.config.max_consumers;
            if max > 0 && sa.consumers.len() as i64 >= max {
                return Reply::error(k, errors::maximum_consumers());
            }
        }
    }
    let op = MetaOp::AddConsumer {
        account: acct.to_string(),
        stream: stream.to_string(),
        name: name.clone(),
        config,
        created_ns: persist::to_ns(SystemTime::now()),
    };
    let (sa, ca) = match propose_meta_change(cl, op).await {
        Ok(Change::ConsumerAdded(sa, ca)) => (sa, ca),
        Ok(_) => return Reply::error(k, errors::stream_not_found()),
        Err(e) => return Reply::error(k, e),
    };
    let local = local_consumer(shard, cl, ca.group).await;
    if local.is_some() {
        wait_for_group_leader(cl, ca.group).await;
    }
    let info = match local {
        Some(c) => c.stream.upgrade().map(|s| c.info(&s)),
        // The leader's answer names its cluster's view too.
        None => leader_consumer_info(shard, cl, account, &sa, &ca).await,
    };
    let mut info = info.unwrap_or_else(|| assigned_consumer_info(&sa, &ca));
    if info.cluster.is_none() {
        info.cluster = Some(cluster_info(shard, cl, &sa, ca.group).await);
    }
    Reply::json(&Response {
        kind: k,
        body: info,
    })
}

async fn local_consumer(
    _shard: &Shard,
    cl: &Cluster,
    group: GroupId,
) -> Option<Rc<crate::jetstream::consumer::Consumer>> {
    let mut waited_ms = 0;
    loop {
        if let Some(c) = cl.consumers.borrow().get(&group) {
            return Some(c.clone());
        }
        if waited_ms >= REPLICA_WAIT_MS {
            return None;
        }
        glommio::timer::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
        waited_ms += REPLICA_POLL_MS;
    }
}

/// A consumer's info from its leader on another server, once it has one: its
/// counts (`num_pending` above all: clients decide from it whether to wait for
/// messages) exist only there.
async fn leader_consumer_info(
    shard: &Shard,
    cl: &Cluster,
    account: AccountId,
    sa: &StreamAssignment,
    ca: &super::assign::ConsumerAssignment,
) -> Option<ConsumerInfo> {
    let begun = std::time::Instant::now();
    let names = (sa.config.name.as_str(), ca.name.as_str());
    loop {
        // Asked again soon: the group may not have elected its leader yet.
        let wait = Duration::from_millis(LEADER_ANSWER_WAIT_MS);
        let asked = super::gather::consumer_info(shard, cl, account, names, wait);
        if let Some(info) = asked.await {
            return Some(info);
        }
        if begun.elapsed() >= Duration::from_millis(REPLICA_WAIT_MS) {
            return None;
        }
        glommio::timer::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
    }
}

fn assigned_consumer_info(
    sa: &StreamAssignment,
    ca: &super::assign::ConsumerAssignment,
) -> ConsumerInfo {
    let zero = || SequencePair {
        consumer_seq: 0,
        stream_seq: 0,
        last_active: None,
    };
    ConsumerInfo {
        stream_name: sa.config.name.clone(),
        name: ca.name.clone(),
        created: time_string(persist::from_ns(ca.created_ns)),
        config: ca.config.clone(),
        delivered: zero(),
        ack_floor: zero(),
        num_ack_pending: 0,
        num_redelivered: 0,
        num_waiting: 0,
        num_pending: 0,
        cluster: None,
        push_bound: false,
        paused: false,
        pause_remaining: None,
        ts: time_string(SystemTime::now()),
    }
}

/// `cluster { name, leader, replicas }` of a group, as this server sees it (the
/// leader knows how far each replica is).
pub async fn cluster_info(
    shard: &Shard,
    cl: &Cluster,
    sa: &StreamAssignment,
    group: GroupId,
) -> ClusterInfo {
    let name = shard.server.opts.cluster_name();
    let Some(d) = cl.detail(group).await else {
        return ClusterInfo {
            name,
            leader: None,
            replicas: Vec::new(),
        };
    };
    let leading = d.leader == cl.node;
    // The assigned servers, and voters still leaving the group while it moves.
    let mut members = sa.peers.clone();
    members.extend(d.followers.iter().map(|f| f.node));
    members.dedup_by_key(|n| *n);
    let mut seen = std::collections::HashSet::new();
    members.retain(|n| seen.insert(*n));
    let last_seq = cl
        .streams
        .borrow()
        .get(&group)
        .map(|s| s.store.state().last_seq);
    let now = std::time::Instant::now();
    let replicas = members
        .iter()
        .filter(|n| **n != d.leader)
        .map(|n| {
            let follower = d.followers.iter().find(|f| f.node == *n);
            let matched = follower.map_or(0, |f| f.matched);
            let log_lag = d.last_index.saturating_sub(matched);
            // A stream replica catching up from this leader's store lacks messages
            // its log position does not show.
            let lacking = last_seq.and_then(|last| cl.askers.lacking(group, *n, last, now));
            PeerInfo {
                name: cl.name_of(*n),
                current: leading && matched >= d.commit && lacking.is_none(),
                active: follower
                    .and_then(|f| f.silent_ns)
                    .map_or(0, |ns| i64::try_from(ns).unwrap_or(i64::MAX)),
                lag: if leading {
                    log_lag.max(lacking.unwrap_or(0))
                } else {
                    0
                },
                // Never heard, or suspected dead (silent past the driver's limit).
                offline: leading && !follower.is_some_and(|f| f.alive),
            }
        })
        .collect();
    ClusterInfo {
        name,
        leader: (d.leader != 0).then(|| cl.name_of(d.leader)),
        replicas,
    }
}

/// A request about one stream (or its consumers): answered by its leader, or by
/// the consumer's leader; "not found" by the meta leader.
async fn about_stream(
    shard: &Rc<Shard>,
    cl: &Rc<Cluster>,
    account: AccountId,
    acct: &str,
    op: ApiOp,
    reply: Bytes,
    body: Vec<u8>,
) -> Option<Reply> {
    let kind = op.response_kind();
    let name = op.stream()?.to_string();
    let sa = cl.meta.borrow().stream(acct, &name).cloned();
    let Some(sa) = sa else {
        if !cl.is_meta_leader() {
            return None;
        }
        if let ApiOp::ConsumerNext(..) = op {
            // As on nats-server, where only a consumer's leader listens for its
            // pull requests: a server that has not applied the consumer's creation
            // yet must not answer "not found" for it.
            return None;
        }
        return Some(Reply::error(kind, errors::stream_not_found()));
    };
    let consumer = match &op {
        ApiOp::ConsumerInfo(_, c)
        | ApiOp::ConsumerNext(_, c)
        | ApiOp::ConsumerPause(_, c)
        | ApiOp::ConsumerLeaderStepdown(_, c) => Some(c.clone()),
        _ => None,
    };
    if let Some(c) = consumer {
        let Some(ca) = sa.consumers.get(&c).cloned() else {
            // Not found: the stream's leader says so.
            if !leads(cl, sa.group).await {
                return None;
            }
            if let ApiOp::ConsumerNext(..) = op {
                return None; // (see above)
            }
            return Some(Reply::error(kind, errors::consumer_not_found()));
        };
        if !leads(cl, ca.group).await {
            return None;
        }
        return match op {
            ApiOp::ConsumerLeaderStepdown(..) => {
                Some(success_or_error(kind, cl.step_down(ca.group).await))
            }
            ApiOp::ConsumerInfo(..) => {
                let stream = shard.js.get(account, &name)?;
                let c = stream.consumers.borrow().get(&c).cloned()?;
                let mut info = c.info(&stream);
                info.cluster = Some(cluster_info(shard, cl, &sa, ca.group).await);
                Some(Reply::json(&Response { kind, body: info }))
            }
            op => registry::execute(shard.clone(), account, op, Some(reply), body).await,
        };
    }
    if !leads(cl, sa.group).await {
        return None;
    }
    match op {
        ApiOp::StreamLeaderStepdown(_) => {
            Some(success_or_error(kind, cl.step_down(sa.group).await))
        }
        ApiOp::StreamInfo(_) => {
            let stream = shard.js.get(account, &name)?;
            let req: StreamInfoRequest = serde_json::from_slice(&body).unwrap_or_default();
            let mut info = stream.info(req.subjects_filter.as_deref(), req.deleted_details);
            info.cluster = Some(cluster_info(shard, cl, &sa, sa.group).await);
            Some(Reply::json(&Response { kind, body: info }))
        }
        ApiOp::StreamPurge(_) => {
            let data = match removal(shard, account, &name, true, &body) {
                Ok(data) => data,
                Err(e) => return Some(Reply::error(kind, e)),
            };
            Some(match cl.propose(sa.group, data).await {
                Ok(Answer::Count(Ok(purged))) => Reply::json(&Response {
                    kind,
                    body: PurgeBody {
                        success: true,
                        purged,
                    },
                }),
                Ok(Answer::Count(Err(e))) | Err(e) => Reply::error(kind, e),
                Ok(_) => Reply::error(
                    kind,
                    errors::general("the stream's leader changed, try again"),
                ),
            })
        }
        ApiOp::MsgDelete(_) => {
            let data = match removal(shard, account, &name, false, &body) {
                Ok(data) => data,
                Err(e) => return Some(Reply::error(kind, e)),
            };
            Some(match cl.propose(sa.group, data).await {
                Ok(Answer::Count(Ok(_))) => Reply::json(&Response {
                    kind,
                    body: SuccessBody { success: true },
                }),
                Ok(Answer::Count(Err(e))) | Err(e) => Reply::error(kind, e),
                Ok(_) => Reply::error(
                    kind,
                    errors::general("the stream's leader changed, try again"),
                ),
            })
        }
        op => registry::execute(shard.clone(), account, op, Some(reply), body).await,
    }
}
