//! Natrix: a NATS server on a thread-per-core engine.
//!
//! Module map:
//! - `conf`: the NATS configuration file format (lexer/parser, includes, variables).
//! - `options`: typed server options built from the config file and the command line.
//! - `raft`: multi-Raft consensus on the shards (tikv's raft crate, quiet groups,
//!   per-peer frames, group-committed persistence).

pub mod raft;
