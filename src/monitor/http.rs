//! The monitoring port: HTTP/1.1 served by hyper on the executor of shard 0, with
//! keep-alive, the per-request deadlines of `io`, and at most
//! `CONNECTIONS_MAX` connections at once (beyond it a connection is closed at
//! accept, logged and counted in `/varz`'s `http_refused_connections`).

use crate::monitor::io::{Clock, TimedIo};
use crate::monitor::{document, Endpoint, Request};
use crate::server::shard::Shard;
use crate::tls::{ClientTls, Stream};
use bytes::Bytes;
use glommio::net::{TcpListener, TcpStream};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Monitoring connections served at once; more are closed at accept.
pub const CONNECTIONS_MAX: usize = 128;
/// Pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_RETRY_MS: u64 = 10;

/// What the monitoring port counted; it lives on shard 0's thread, where the port
/// and every document are served.
#[derive(Default)]
struct Stats {
    /// Requests per path; only the paths of `PATHS` are counted, so it holds at
    /// most `PATHS.len()` entries.
    requests: RefCell<BTreeMap<&'static str, u64>>,
    refused: Cell<u64>,
}

thread_local! {
    static STATS: Stats = Stats::default();
}

/// Requests served per path (`/varz`'s `http_req_stats`).
pub fn req_stats() -> BTreeMap<String, u64> {
    STATS.with(|s| {
        s.requests
            .borrow()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    })
}

/// Connections refused at the connection limit, since start.
pub fn refused_connections() -> u64 {
    STATS.with(|s| s.refused.get())
}

/// What a path serves.
#[derive(Clone, Copy)]
enum Page {
    Doc(Endpoint),
    Stacks,
    Index,
}

const PATHS: [(&str, Page); 14] = [
    ("/", Page::Index),
    ("/varz", Page::Doc(Endpoint::Varz)),
    ("/connz", Page::Doc(Endpoint::Connz)),
    ("/subsz", Page::Doc(Endpoint::Subsz)),
    ("/subscriptionsz", Page::Doc(Endpoint::Subsz)),
    ("/routez", Page::Doc(Endpoint::Routez)),
    ("/healthz", Page::Doc(Endpoint::Healthz)),
    ("/jsz", Page::Doc(Endpoint::Jsz)),
    ("/accountz", Page::Doc(Endpoint::Accountz)),
    ("/accstatz", Page::Doc(Endpoint::Accstatz)),
    ("/leafz", Page::Doc(Endpoint::Leafz)),
    ("/gatewayz", Page::Doc(Endpoint::Gatewayz)),
    ("/idz", Page::Doc(Endpoint::Idz)),
    ("/stacksz", Page::Stacks),
];

fn lookup(path: &str) -> Option<(&'static str, Page)> {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    PATHS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(p, page)| (*p, *page))
}

/// Serves monitoring on `listener`; with `tls`, every connection is https.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener, tls: Option<ClientTls>) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) if open.get() >= CONNECTIONS_MAX => refuse(stream),
            Ok(stream) => {
                open.set(open.get() + 1);
                let (shard, open, tls) = (shard.clone(), open.clone(), tls.clone());
                glommio::spawn_local(async move {
                    if let Some(stream) = secured(stream, tls).await {
                        connection(shard, stream).await;
                    }
                    open.set(open.get() - 1);
                })
                .detach();
            }
            Err(e) => {
                debug!("monitoring accept error: {e}");
                glommio::timer::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

fn refuse(stream: TcpStream) {
    let refused = STATS.with(|s| {
        s.refused.set(s.refused.get() + 1);
        s.refused.get()
    });
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    // Logged at the 1st, 2nd, 4th, 8th... refusal, so that a flood cannot flood the log.
    if refused.is_power_of_two() {
        warn!(
            "Monitoring connection from {peer} refused: {CONNECTIONS_MAX} connections open ({refused} refused so far)"
        );
    } else {
        debug!("Monitoring connection from {peer} refused");
    }
    drop(stream);
}

/// The connection as hyper will see it: plain, or after the TLS handshake
/// (bounded by the tls block's timeout; a failed one is logged and dropped).
async fn secured(tcp: TcpStream, tls: Option<ClientTls>) -> Option<Stream> {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Some(Stream::Plain(tcp));
    };
    let peer = tcp.peer_addr().ok();
    match crate::tls::stream::accept(tcp, &tls.acceptor, tls.timeout).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            debug!("Monitoring TLS handshake with {peer:?} failed: {e}");
            None
        }
    }
}

async fn connection(shard: Rc<Shard>, stream: Stream) {
    let peer = stream.peer_addr();
    let clock = Clock::new(Instant::now());
    let io = TimedIo::new(stream, clock.clone());
    let service = hyper::service::service_fn(move |req| {
        let (shard, clock) = (shard.clone(), clock.clone());
        async move {
            clock.request();
            let response = within_deadline(&clock, respond(&shard, req)).await;
            clock.responded();
            Ok::<_, Infallible>(response)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        debug!("monitoring connection {peer:?} ended: {e}");
    }
}

/// The handler's answer, or 503 once the request's deadline has passed.
async fn within_deadline(
    clock: &Clock,
    answer: impl std::future::Future<Output = Response<Full<Bytes>>>,
) -> Response<Full<Bytes>> {
    let left = clock.deadline().saturating_duration_since(Instant::now());
    let late = async {
        glommio::timer::sleep(left).await;
        plain(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n")
    };
    futures_lite::future::or(answer, late).await
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

fn reply(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => reply(StatusCode::OK, "application/json", Bytes::from(body)),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

async fn respond(shard: &Rc<Shard>, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let Some((path, page)) = lookup(req.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    STATS.with(|s| *s.requests.borrow_mut().entry(path).or_default() += 1);
    let query = req.uri().query().unwrap_or("");
    match page {
        Page::Doc(e) => json(&document(shard, e, &Request::from_query(query)).await),
        Page::Stacks => reply(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from(crate::monitor::others::stacksz()),
        ),
        Page::Index => json(&Index {
            endpoints: PATHS
                .iter()
                .map(|(p, _)| *p)
                .filter(|p| *p != "/")
                .collect(),
        }),
    }
}

/// `/`: the endpoints served here.
#[derive(serde::Serialize)]
struct Index {
    endpoints: Vec<&'static str>,
}
