//! The client protocol: parsing what clients send, encoding what they receive, and
//! (for clients such as natrix-bench) parsing what servers send.

pub mod client_parser;
pub mod encode;
pub mod lex;
pub mod server_parser;

pub use client_parser::{parse, ClientOp, Limits};
pub use lex::ParseError;
