#![recursion_limit = "256"]
//! Natrix: a NATS server on a thread-per-core engine.
//!
//! Module map:
//! - `cli`: the nats-server compatible command line.
//! - `conf`: the NATS configuration file format (lexer/parser, includes, variables).
//! - `options`: typed server options from the config file and the command line.
//! - `logging`: log lines in nats-server's format.
//! - `proto`: the client protocol (parser and encoders), free of I/O.
//! - `subject`, `sublist`: subject syntax and the subscription index.
//! - `server`: accounts, auth, shards, clients, routing between shards, `$SYS`.
//! - `jetstream`: the JetStream meta group (preview) and `/jsz`.
//! - `raft`: multi-Raft consensus on the shards (tikv's raft crate, quiet groups,
//!   per-peer frames, group-committed persistence).
//! - `route`: routes between servers (protocol, connections, gossip).
//! - `net`: socket plumbing shared by client and route connections.
//! - `read_loop`: the one read loop of every connection, over a protocol's decoder.
//! - `monitor`: the HTTP monitoring endpoints.
//! - `timefmt`: wall-clock formatting for logs and JSON.
//! - `tls`: TLS for clients and routes (rustls).

pub mod cli;
pub mod conf;
pub mod jetstream;
pub mod logging;
pub mod monitor;
pub mod net;
pub mod options;
pub mod proto;
pub mod raft;
pub mod read_loop;
pub mod route;
pub mod server;
pub mod subject;
pub mod sublist;
pub mod timefmt;
pub mod tls;
