//! HTTP monitoring: `/varz`, `/connz`, `/subsz`, `/routez`, `/healthz`, with
//! nats-server's field names.

pub mod http;
pub mod json;
