//! What JetStream keeps on disk beside the message logs, in nats-server's layout:
//! `<store_dir>/jetstream/<account>/streams/<stream>/{meta.json, msgs/, obs/<consumer>/}`.
//! Small JSON documents, written to a temporary file and renamed into place.

use crate::jetstream::api::types::{ConsumerConfig, StreamConfig};
use crate::jetstream::consumer::state::ConsumerState;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Serialize, Deserialize)]
pub struct StreamMeta {
    pub config: StreamConfig,
    pub created_ns: u64,
}

#[derive(Serialize, Deserialize)]
pub struct ConsumerMeta {
    pub config: ConsumerConfig,
    pub created_ns: u64,
    /// A clustered consumer's Raft group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
}

/// A clustered stream replica's group and peers (`cluster.json` beside its config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub group: u64,
    pub peers: Vec<u64>,
    /// The group's log holds every message after this sequence (it was compacted up
    /// to a point at or before it): a damaged record above it can be applied again.
    #[serde(default)]
    pub log_from_seq: u64,
}

const BINDING_FILE: &str = "cluster.json";

pub fn save_binding(dir: &Path, binding: &Binding) -> io::Result<()> {
    write_atomically(&dir.join(BINDING_FILE), &serde_json::to_vec(binding)?)?;
    sync_dir(dir)
}

/// The binding of a clustered stream's replica; None for a stream of one server.
pub fn load_binding(dir: &Path) -> io::Result<Option<Binding>> {
    match std::fs::read(dir.join(BINDING_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub fn from_ns(ns: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
}

pub fn account_dir(root: &Path, account: &str) -> PathBuf {
    root.join("jetstream").join(account).join("streams")
}

pub fn messages_dir(stream_dir: &Path) -> PathBuf {
    stream_dir.join("msgs")
}

pub fn consumer_dir(stream_dir: &Path, consumer: &str) -> PathBuf {
    stream_dir.join("obs").join(consumer)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    io::Write::write_all(&mut f, bytes)?;
    // Durable before the rename: a crash never leaves an empty file in its place.
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

pub fn save_stream_meta(dir: &Path, config: &StreamConfig, created: SystemTime) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta = StreamMeta {
        config: config.clone(),
        created_ns: to_ns(created),
    };
    write_atomically(&dir.join("meta.json"), &serde_json::to_vec_pretty(&meta)?)?;
    sync_dir(dir)
}

pub fn load_stream_meta(dir: &Path) -> io::Result<StreamMeta> {
    let bytes = std::fs::read(dir.join("meta.json"))?;
    serde_json::from_slice(&bytes).map_err(io::Error::other)
}

pub fn save_consumer(
    dir: &Path,
    config: &ConsumerConfig,
    created: SystemTime,
    state: &ConsumerState,
    group: Option<u64>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta = ConsumerMeta {
        config: config.clone(),
        created_ns: to_ns(created),
        group,
    };
    write_atomically(&dir.join("meta.json"), &serde_json::to_vec(&meta)?)?;
    write_atomically(&dir.join("state.json"), &serde_json::to_vec(state)?)
}

pub fn load_consumer(dir: &Path) -> io::Result<(ConsumerMeta, ConsumerState)> {
    let meta: ConsumerMeta =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?).map_err(io::Error::other)?;
    let state = match std::fs::read(dir.join("state.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => ConsumerState::new(1),
        Err(e) => return Err(e),
    };
    Ok((meta, state))
}

/// Makes a directory's new entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Stream directories under an account's folder, by name.
pub fn stream_dirs(root: &Path, account: &str) -> Vec<PathBuf> {
    dirs_with_meta(&account_dir(root, account))
}

pub fn consumer_dirs(stream_dir: &Path) -> Vec<PathBuf> {
    dirs_with_meta(&stream_dir.join("obs"))
}

/// The folders in `parent` that hold a `meta.json`, by name.
fn dirs_with_meta(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    dirs.sort();
    dirs
}
