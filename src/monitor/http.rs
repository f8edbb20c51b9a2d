//! A small HTTP/1.1 server for the monitoring port: GET only, one request per
//! connection, JSON answers.

use crate::monitor::json::{endpoint, Endpoint, ListParams};
use crate::server::shard::Shard;
use crate::server::stats::{gather, ShardQuery};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::rc::Rc;
use tracing::debug;

/// Bytes of request head we read at most.
const REQUEST_HEAD_MAX: usize = 8192;

pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(handle(shard.clone(), stream)).detach();
            }
            Err(e) => {
                debug!("monitoring accept error: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > REQUEST_HEAD_MAX {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).ok()
}

async fn handle(shard: Rc<Shard>, mut stream: TcpStream) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "{\"error\":\"method not allowed\"}".to_string(),
        )
    } else {
        match route(path) {
            Some(e) => ("200 OK", answer(&shard, e, query).await),
            None if path.trim_end_matches('/') == "/jsz" => ("200 OK", jsz(&shard, query).await),
            None if path == "/" => ("200 OK", index()),
            None => ("404 Not Found", "{\"error\":\"not found\"}".to_string()),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}

fn route(path: &str) -> Option<Endpoint> {
    match path.trim_end_matches('/') {
        "/varz" => Some(Endpoint::Varz),
        "/connz" => Some(Endpoint::Connz),
        "/subsz" | "/subscriptionsz" => Some(Endpoint::Subsz),
        "/routez" => Some(Endpoint::Routez),
        "/healthz" => Some(Endpoint::Healthz),
        _ => None,
    }
}

async fn answer(shard: &Rc<Shard>, e: Endpoint, query: &str) -> String {
    let params = ListParams::from_query(query);
    let needs_shards = matches!(e, Endpoint::Varz | Endpoint::Connz | Endpoint::Subsz);
    let reports = if needs_shards {
        let q = ShardQuery {
            connections: e == Endpoint::Connz,
            subscriptions: params.subs,
        };
        gather(shard, q).await
    } else {
        Vec::new()
    };
    let mut value = endpoint(&shard.server, shard.routes.as_ref(), e, &reports, &params);
    if e == Endpoint::Varz {
        if let Some(block) = crate::jetstream::jsz::varz_block(shard).await {
            value["jetstream"] = serde_json::to_value(block).unwrap_or_default();
        }
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

async fn jsz(shard: &Rc<Shard>, query: &str) -> String {
    let q = crate::jetstream::jsz::JszQuery::from_query(query);
    let doc = crate::jetstream::jsz::document(shard, q).await;
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn index() -> String {
    serde_json::json!({
        "endpoints": ["/varz", "/connz", "/subsz", "/routez", "/healthz", "/jsz"]
    })
    .to_string()
}
