//! INFO's JSON, as servers send it to clients and to each other over routes
//! (nats-server's `Info`, the fields natrix sends or reads).

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_verify: bool,
    pub max_payload: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// For the client to sign when nkey users may log in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Client INFO: JetStream is served here; route INFO: always present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<bool>,
    /// Routes: where this server's routes are dialed (`nats-route://host:port/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub cluster_dynamic: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// Lame duck mode: the server is going away.
    #[serde(skip_serializing_if = "is_false")]
    pub ldm: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub lnoc: bool,
    /// natrix: this server pools route connections, one per shard.
    #[serde(skip_serializing_if = "is_false")]
    pub natrix_pool: bool,
    /// natrix: this server runs the JetStream meta group as `natrix_node`.
    #[serde(skip_serializing_if = "is_false")]
    pub natrix_raft: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub natrix_node: Option<u64>,
    /// natrix: this server's meta group exists (stored or formed); a server that
    /// finds one behind its routes joins it instead of forming its own.
    #[serde(skip_serializing_if = "is_false")]
    pub natrix_meta: bool,
    /// `server_tags` (routes: a stream's placement tags are matched against them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl ServerInfo {
    /// The INFO protocol line.
    pub fn line(&self) -> String {
        format!(
            "INFO {}\r\n",
            serde_json::to_string(self).expect("INFO serializes")
        )
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("INFO serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trips_and_ignores_unknown_fields() {
        let info = ServerInfo {
            server_id: "N1".into(),
            connect_urls: vec!["127.0.0.1:4222".into()],
            ldm: true,
            ..Default::default()
        };
        let back: ServerInfo = serde_json::from_str(&info.json()).unwrap();
        assert_eq!(back, info);
        let theirs: ServerInfo =
            serde_json::from_str(r#"{"server_id":"N2","import":{"allow":[]},"port":6222}"#)
                .unwrap();
        assert_eq!((theirs.server_id.as_str(), theirs.port), ("N2", 6222));
        assert!(!info.json().contains("auth_required"));
    }
}
