//! CONNECT's JSON: what a client says about itself, and what a route says.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

/// A field read leniently, as nats-server's clients expect: null or a value of the
/// wrong type reads as the type's default instead of failing the whole CONNECT.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(d: D) -> Result<T, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

fn yes() -> bool {
    true
}

/// `lenient`, for a flag whose default is true.
fn lenient_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value.as_bool().unwrap_or(true))
}

/// A protocol message's JSON object read into `T`; anything but an object is an
/// error (serde alone would also fill a struct from an array, field by field).
pub fn from_object<T: DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err("the arguments are not a JSON object".into());
    }
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

/// What a client said about itself in CONNECT (nats-server's `ClientOpts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectInfo {
    #[serde(default = "yes", deserialize_with = "lenient_true")]
    pub verbose: bool,
    #[serde(default = "yes", deserialize_with = "lenient_true")]
    pub pedantic: bool,
    #[serde(default = "yes", deserialize_with = "lenient_true")]
    pub echo: bool,
    #[serde(deserialize_with = "lenient")]
    pub headers: bool,
    #[serde(deserialize_with = "lenient")]
    pub no_responders: bool,
    #[serde(deserialize_with = "lenient")]
    pub name: String,
    #[serde(deserialize_with = "lenient")]
    pub lang: String,
    #[serde(deserialize_with = "lenient")]
    pub version: String,
    #[serde(deserialize_with = "lenient")]
    pub protocol: i64,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// An nkey user's public key, and its signature of INFO's nonce.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

impl Default for ConnectInfo {
    fn default() -> Self {
        ConnectInfo {
            verbose: false,
            pedantic: false,
            echo: true,
            headers: false,
            no_responders: false,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            protocol: 0,
            user: None,
            pass: None,
            auth_token: None,
            nkey: None,
            sig: None,
        }
    }
}

impl ConnectInfo {
    /// Reads CONNECT's JSON leniently, as nats-server does: unknown fields, nulls
    /// and mistyped fields are ignored; only a non-object is an error. A CONNECT
    /// that leaves out `verbose` or `pedantic` gets them on, as from nats-server
    /// (clients send both); the default (a client before its CONNECT) has them off.
    pub fn from_json(json: &[u8]) -> Result<ConnectInfo, String> {
        from_object(json)
    }
}

/// A route's CONNECT (nats-server's route `connectInfo`, plus natrix's pool slot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteConnect {
    pub echo: bool,
    pub verbose: bool,
    pub pedantic: bool,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub tls_required: bool,
    pub headers: bool,
    pub name: String,
    pub cluster: Option<String>,
    /// Whether the sender's cluster name is dynamic (a random one that gives way).
    pub cluster_dynamic: bool,
    pub lnoc: bool,
    /// natrix: the shard this pooled route connection belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub natrix_pool: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_is_read_leniently() {
        let c = ConnectInfo::from_json(
            br#"{"verbose":"yes","echo":null,"name":7,"lang":"rust","user":"u","x":1}"#,
        )
        .unwrap();
        assert!(
            c.verbose && c.pedantic && c.echo,
            "unreadable flags read as on"
        );
        assert_eq!((c.name.as_str(), c.lang.as_str()), ("", "rust"));
        assert_eq!(c.user.as_deref(), Some("u"));
        let c = ConnectInfo::from_json(br#"{"verbose":false,"pedantic":false}"#).unwrap();
        assert!(!c.verbose && !c.pedantic);
        assert!(ConnectInfo::from_json(b"[1]").is_err());
        assert!(from_object::<RouteConnect>(br#" ["N1"]"#).is_err());
        assert!(ConnectInfo::from_json(br#"{"echo":false}"#)
            .map(|c| !c.echo)
            .unwrap());
    }

    #[test]
    fn route_connect_round_trips() {
        let c: RouteConnect =
            serde_json::from_str(r#"{"cluster_dynamic":true,"natrix_pool":2}"#).unwrap();
        assert_eq!((c.cluster_dynamic, c.natrix_pool), (true, Some(2)));
        let back: RouteConnect = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
