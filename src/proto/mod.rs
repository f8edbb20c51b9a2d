//! The client protocol: parsing what clients send, encoding what they receive, and
//! (for clients such as natrix-bench) parsing what servers send; the JSON of INFO
//! and CONNECT (`info`, `connect`).

pub mod client_parser;
pub mod connect;
pub mod encode;
pub mod info;
pub mod lex;
pub mod server_parser;

pub use client_parser::{parse, ClientOp, Limits};
pub use lex::ParseError;
