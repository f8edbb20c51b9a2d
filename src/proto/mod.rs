//! The client protocol: parsing what clients send, encoding what they receive.

pub mod client_parser;
pub mod encode;

pub use client_parser::{parse, ClientOp, Limits, ParseError};
