//! Scenarios: which clients a run has, on which executor and server each runs, and
//! the driver on the main thread that starts the publishers once every subscriber is
//! ready, shows progress, and ends the run.

pub mod idle;
pub mod jetstream;
pub mod msgs;
pub mod reqrep;

use crate::engine::{self, Coord};
use crate::flags::{Flags, Scenario};
use crate::progress::Progress;
use crate::report::{IdleSummary, Report};
use crate::stats::{ClientResult, Role};
use crate::url::ServerUrl;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes a server adds to each message it holds for a subscriber (the MSG line), as
/// counted by --inflight.
const FRAMING_BYTES: u64 = 48;
/// How often the driver looks at the clients' progress.
const DRIVER_TICK: Duration = Duration::from_millis(10);
/// How long idle connections stay open before the server's memory is read, unless
/// --duration says otherwise.
const IDLE_HOLD: Duration = Duration::from_secs(1);

/// What every client of a run shares.
#[derive(Clone)]
pub struct Ctx {
    pub flags: Arc<Flags>,
    pub coord: Arc<Coord>,
    /// Each client's server, by slot.
    pub urls: Arc<Vec<ServerUrl>>,
    pub publishers: usize,
    pub subscribers: usize,
    /// Messages each (non-queue) subscriber must count, when known in advance.
    pub expected_per_sub: Option<u64>,
    /// Deliveries each published message makes (subscribers, 1 for a queue group).
    pub fanout: u64,
    /// Deliveries that may be outstanding (published, not yet received) before
    /// publishers pause; None: no limit.
    pub inflight_msgs: Option<u64>,
    /// The clients do not all use the same server: publishers probe for the
    /// subscribers' interest before they publish.
    pub cross_server: bool,
    /// Unique per run, for inbox subjects.
    pub run_id: String,
}

impl Ctx {
    /// The server of the client numbered `slot` (see `assign_servers`).
    pub fn server_for_slot(&self, slot: usize) -> &ServerUrl {
        &self.urls[slot % self.urls.len()]
    }

    /// Records an error on a client's result and stops the run.
    pub fn fail(&self, mut result: ClientResult, error: String) -> ClientResult {
        result.error = Some(error);
        Coord::set(&self.coord.abort);
        result
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Pub(Option<u64>),
    JsPub(Option<u64>),
    Sub { queue: bool },
    Consumer,
    Req(Option<u64>),
    Rep,
    Idle,
}

#[derive(Clone, Copy, Debug)]
struct Job {
    kind: Kind,
    index: usize,
    slot: usize,
}

impl Job {
    fn role(&self) -> Role {
        match self.kind {
            Kind::Pub(_) | Kind::JsPub(_) => Role::Pub,
            Kind::Sub { .. } | Kind::Consumer => Role::Sub,
            Kind::Req(_) => Role::Req,
            Kind::Rep => Role::Rep,
            Kind::Idle => Role::Idle,
        }
    }
}

async fn run_job(ctx: Rc<Ctx>, job: Job) -> ClientResult {
    let i = job.index;
    match job.kind {
        Kind::Pub(quota) => msgs::publisher(ctx, i, job.slot, quota).await,
        Kind::JsPub(quota) => jetstream::publisher(ctx, i, job.slot, quota).await,
        Kind::Sub { queue } => msgs::subscriber(ctx, i, job.slot, queue).await,
        Kind::Consumer => jetstream::consumer(ctx, i, job.slot).await,
        Kind::Req(quota) => reqrep::requester(ctx, i, job.slot, quota).await,
        Kind::Rep => reqrep::responder(ctx, i, job.slot).await,
        Kind::Idle => idle::idle(ctx, i, job.slot).await,
    }
}

/// Splits `total` over `parts` as evenly as possible.
fn quotas(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts as u64;
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

fn plan(f: &Flags) -> Vec<Job> {
    let (publishers, subscribers) = (f.publishers(), f.subscribers());
    let counted = |n: usize| -> Vec<Option<u64>> {
        match f.duration {
            Some(_) => vec![None; n],
            None => quotas(f.msgs, n).into_iter().map(Some).collect(),
        }
    };
    let mut kinds: Vec<Kind> = Vec::new();
    match f.scenario {
        Scenario::Pub if f.js => kinds.extend(counted(publishers).into_iter().map(Kind::JsPub)),
        Scenario::Pub | Scenario::Pubsub | Scenario::Fanout | Scenario::Queue => {
            let queue = f.scenario == Scenario::Queue;
            kinds.extend((0..subscribers).map(|_| Kind::Sub { queue }));
            kinds.extend(counted(publishers).into_iter().map(Kind::Pub));
        }
        Scenario::Reqrep => {
            kinds.extend((0..subscribers).map(|_| Kind::Rep));
            kinds.extend(counted(publishers).into_iter().map(Kind::Req));
        }
        Scenario::Idle => kinds.extend((0..f.conns).map(|_| Kind::Idle)),
        Scenario::Consume => kinds.extend((0..subscribers).map(|_| Kind::Consumer)),
        Scenario::Sink => {}
    }
    let mut seen = [0usize; 5];
    kinds
        .into_iter()
        .enumerate()
        .map(|(slot, kind)| {
            let job = Job {
                kind,
                index: 0,
                slot,
            };
            let counter = &mut seen[job.role() as usize];
            let index = *counter;
            *counter += 1;
            Job { index, ..job }
        })
        .collect()
}

/// Clients are numbered subscribers (or responders, consumers) first, then publishers
/// (or requesters). A client takes, in turn by its number within its role, the servers
/// of `--sub-server` or `--pub-server` when that is given; otherwise it takes the
/// `--server` URLs in turn by its overall number, so that a 1:1 run over two servers
/// puts the subscriber on the first and the publisher on the second.
fn assign_servers(
    jobs: &[Job],
    all: &[ServerUrl],
    pubs: &[ServerUrl],
    subs: &[ServerUrl],
) -> Vec<ServerUrl> {
    jobs.iter()
        .map(|job| {
            let own = match job.role() {
                Role::Pub | Role::Req => pubs,
                Role::Sub | Role::Rep => subs,
                Role::Idle => &[],
            };
            if own.is_empty() {
                all[job.slot % all.len()].clone()
            } else {
                own[job.index % own.len()].clone()
            }
        })
        .collect()
}

fn parse_urls(urls: &[String]) -> Result<Vec<ServerUrl>, String> {
    urls.iter().map(|u| ServerUrl::parse(u)).collect()
}

/// Runs a client scenario to the end and reports it.
pub fn run(flags: Flags) -> Result<Report, String> {
    let jobs = plan(&flags);
    let urls = assign_servers(
        &jobs,
        &parse_urls(&flags.server)?,
        &parse_urls(&flags.pub_server)?,
        &parse_urls(&flags.sub_server)?,
    );
    let first = match urls.first() {
        Some(url) => url.clone(),
        None => ServerUrl::parse(&flags.server[0])?,
    };
    let probe = jetstream::probe_info(&first)?;
    if flags.size > probe.max_payload {
        return Err(format!(
            "--size {} exceeds the server's max_payload {}",
            flags.size, probe.max_payload
        ));
    }
    let run_id = format!("{:x}{:x}", std::process::id(), crate::stats::now_nanos());
    let mut admin = None;
    let mut stored = None;
    if flags.js {
        jetstream::require(&probe)?;
        let mut a = crate::admin::Admin::connect(&first, &run_id)?;
        match flags.scenario {
            Scenario::Consume => {
                stored = Some(jetstream::prepare_consume(&mut a, &flags, &run_id)?)
            }
            _ => jetstream::create_stream(&mut a, &flags)?,
        }
        admin = Some(a);
    }
    if flags.scenario == Scenario::Idle {
        engine::raise_open_files();
    }
    let cross_server = urls.iter().any(|u| u.address() != first.address());
    let ctx = Ctx {
        cross_server,
        publishers: flags.publishers(),
        subscribers: flags.subscribers(),
        expected_per_sub: match (flags.scenario, flags.duration) {
            (Scenario::Consume, _) => stored,
            (Scenario::Pubsub | Scenario::Fanout, None) => Some(flags.msgs),
            _ => None,
        },
        fanout: match flags.scenario {
            Scenario::Pubsub | Scenario::Fanout => flags.subscribers() as u64,
            Scenario::Queue => 1,
            _ => 0,
        },
        inflight_msgs: (flags.inflight > 0)
            .then(|| (flags.inflight / (flags.size as u64 + FRAMING_BYTES)).max(1)),
        run_id,
        flags: Arc::new(flags),
        coord: Arc::new(Coord::default()),
        urls: Arc::new(urls),
    };
    let threads = ctx
        .flags
        .threads
        .unwrap_or_else(natrix_shards::runtime::available_cores)
        .clamp(1, jobs.len().max(1));
    let mut per_executor: Vec<Vec<Job>> = vec![Vec::new(); threads];
    for job in &jobs {
        per_executor[job.slot % threads].push(*job);
    }
    let rss_before = ctx.flags.server_pid.and_then(crate::report::server_rss_kib);
    let executor_ctx = ctx.clone();
    let started = Instant::now();
    let executors = engine::start(threads, ctx.flags.pin, move |i| {
        let ctx = Rc::new(executor_ctx.clone());
        let jobs = per_executor[i].clone();
        async move {
            let tasks: Vec<_> = jobs
                .into_iter()
                .map(|job| glommio::spawn_local(run_job(ctx.clone(), job)))
                .collect();
            let mut results = Vec::with_capacity(tasks.len());
            for t in tasks {
                results.push(t.await);
            }
            Coord::bump(&ctx.coord.executors_done);
            results
        }
    })?;
    let idle = drive(&ctx, &jobs, threads, started, rss_before);
    let results = executors.join()?;
    if let (Some(mut a), Scenario::Consume) = (admin, ctx.flags.scenario) {
        jetstream::delete_consumer(&mut a, &ctx.flags)?;
    }
    let info = ctx.coord.info.lock().unwrap().clone().unwrap_or(probe);
    Ok(Report::build(
        &ctx.flags,
        &info,
        results,
        idle,
        started.elapsed(),
    ))
}

/// The main thread's part: start publishers when all are ready, show progress, measure
/// idle connections, end responders and idle clients, until every executor is done.
fn drive(
    ctx: &Ctx,
    jobs: &[Job],
    threads: usize,
    started: Instant,
    rss_before: Option<u64>,
) -> Option<IdleSummary> {
    let coord = &ctx.coord;
    let f = &ctx.flags;
    let count = |role: Role| jobs.iter().filter(|j| j.role() == role).count();
    let (subs, pubs) = (
        count(Role::Sub) + count(Role::Rep),
        count(Role::Pub) + count(Role::Req),
    );
    let progress = Progress::new(f);
    let mut go_at = None;
    let mut idle = None;
    while Coord::get(&coord.executors_done) < threads {
        std::thread::sleep(DRIVER_TICK);
        if go_at.is_none()
            && Coord::get(&coord.subs_ready) == subs
            && Coord::get(&coord.pubs_ready) == pubs
        {
            go_at = Some(Instant::now());
            Coord::set(&coord.go);
        }
        if f.scenario == Scenario::Idle && idle.is_none() && Coord::get(&coord.connected) == f.conns
        {
            let connect_seconds = started.elapsed().as_secs_f64();
            progress.set(f.conns as u64);
            std::thread::sleep(f.duration.unwrap_or(IDLE_HOLD));
            let rss_after = f.server_pid.and_then(crate::report::server_rss_kib);
            idle = Some(IdleSummary::new(
                f.conns,
                connect_seconds,
                rss_before,
                rss_after,
            ));
            Coord::set(&coord.stop);
        }
        if pubs > 0 && Coord::get(&coord.pubs_done) == pubs && f.scenario == Scenario::Reqrep {
            Coord::set(&coord.stop);
        }
        match (f.scenario, f.duration, go_at) {
            (Scenario::Idle, _, _) => progress.set(Coord::get(&coord.connected) as u64),
            (_, Some(_), Some(at)) => progress.set(at.elapsed().as_millis() as u64),
            (Scenario::Consume, _, _) => progress.set(coord.received.load(Ordering::Acquire)),
            _ => progress.set(coord.published.load(Ordering::Acquire)),
        }
    }
    progress.finish();
    idle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_add_up() {
        assert_eq!(quotas(10, 3), vec![4, 3, 3]);
        assert_eq!(quotas(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(quotas(7, 1).iter().sum::<u64>(), 7);
    }

    fn servers_of(args: &[&str]) -> Vec<(Role, usize, u16)> {
        use clap::Parser;
        let f = Flags::try_parse_from(std::iter::once("natrix-bench").chain(args.iter().copied()))
            .unwrap();
        let jobs = plan(&f);
        let urls = assign_servers(
            &jobs,
            &parse_urls(&f.server).unwrap(),
            &parse_urls(&f.pub_server).unwrap(),
            &parse_urls(&f.sub_server).unwrap(),
        );
        jobs.iter()
            .zip(urls)
            .map(|(j, u)| (j.role(), j.index, u.port))
            .collect()
    }

    #[test]
    fn servers_in_turn_or_per_role() {
        // --server alone: in turn by slot, subscribers first.
        assert_eq!(
            servers_of(&["pubsub", "--server", "h:1,h:2"]),
            vec![(Role::Sub, 0, 1), (Role::Pub, 0, 2)]
        );
        // Two subscribers over two servers would put the publisher with the first one;
        // --pub-server and --sub-server say where each role goes.
        assert_eq!(
            servers_of(&["pubsub", "--server", "h:1,h:2", "--sub", "2"]),
            vec![(Role::Sub, 0, 1), (Role::Sub, 1, 2), (Role::Pub, 0, 1)]
        );
        assert_eq!(
            servers_of(&[
                "pubsub",
                "--pub-server",
                "h:1",
                "--sub-server",
                "h:2,h:3",
                "--sub",
                "3",
                "--pub",
                "2"
            ]),
            vec![
                (Role::Sub, 0, 2),
                (Role::Sub, 1, 3),
                (Role::Sub, 2, 2),
                (Role::Pub, 0, 1),
                (Role::Pub, 1, 1)
            ]
        );
        // Only one role given: the other keeps --server.
        assert_eq!(
            servers_of(&["reqrep", "--server", "h:7", "--pub-server", "h:8"]),
            vec![(Role::Rep, 0, 7), (Role::Req, 0, 8)]
        );
    }
}
