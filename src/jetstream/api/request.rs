//! Decoding an API request's subject into what it asks for; no execution here.

/// One `$JS.API.>` request, by subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiOp {
    AccountInfo,
    StreamCreate(String),
    StreamUpdate(String),
    StreamInfo(String),
    StreamDelete(String),
    StreamPurge(String),
    StreamNames,
    StreamList,
    MsgGet(String),
    MsgDelete(String),
    /// `DIRECT.GET.<stream>` (request in the body) or `DIRECT.GET.<stream>.<subject>`.
    DirectGet(String, Option<String>),
    StreamLeaderStepdown(String),
    StreamPeerRemove(String),
    /// `CONSUMER.CREATE.<stream>[.<name>[.<filter>]]` and `CONSUMER.DURABLE.CREATE.<stream>.<name>`.
    ConsumerCreate {
        stream: String,
        name: Option<String>,
        filter: Option<String>,
        durable_form: bool,
    },
    ConsumerInfo(String, String),
    ConsumerDelete(String, String),
    ConsumerNames(String),
    ConsumerList(String),
    ConsumerNext(String, String),
    ConsumerPause(String, String),
    ConsumerLeaderStepdown(String, String),
    MetaLeaderStepdown,
    ServerRemove,
}

impl ApiOp {
    /// The stream the request is about, when it is about one.
    pub fn stream(&self) -> Option<&str> {
        use ApiOp::*;
        match self {
            StreamCreate(s)
            | StreamUpdate(s)
            | StreamInfo(s)
            | StreamDelete(s)
            | StreamPurge(s)
            | MsgGet(s)
            | MsgDelete(s)
            | DirectGet(s, _)
            | StreamLeaderStepdown(s)
            | StreamPeerRemove(s)
            | ConsumerNames(s)
            | ConsumerList(s) => Some(s),
            ConsumerCreate { stream, .. } => Some(stream),
            ConsumerInfo(s, _)
            | ConsumerDelete(s, _)
            | ConsumerNext(s, _)
            | ConsumerPause(s, _)
            | ConsumerLeaderStepdown(s, _) => Some(s),
            AccountInfo | StreamNames | StreamList | MetaLeaderStepdown | ServerRemove => None,
        }
    }

    /// The response type nats-server gives this request (errors use it too).
    pub fn response_kind(&self) -> &'static str {
        use super::types::kind::*;
        use ApiOp::*;
        match self {
            AccountInfo => ACCOUNT_INFO,
            StreamCreate(_) => STREAM_CREATE,
            StreamUpdate(_) => STREAM_UPDATE,
            StreamInfo(_) => STREAM_INFO,
            StreamDelete(_) => STREAM_DELETE,
            StreamPurge(_) => STREAM_PURGE,
            StreamNames => STREAM_NAMES,
            StreamList => STREAM_LIST,
            MsgGet(_) | DirectGet(..) => MSG_GET,
            MsgDelete(_) => MSG_DELETE,
            StreamLeaderStepdown(_) => STREAM_LEADER_STEPDOWN,
            StreamPeerRemove(_) => "io.nats.jetstream.api.v1.stream_remove_peer_response",
            ConsumerCreate { .. } => CONSUMER_CREATE,
            ConsumerInfo(..) => CONSUMER_INFO,
            ConsumerDelete(..) => CONSUMER_DELETE,
            ConsumerNames(_) => CONSUMER_NAMES,
            ConsumerList(_) => CONSUMER_LIST,
            ConsumerNext(..) => ERROR,
            ConsumerPause(..) => CONSUMER_PAUSE,
            ConsumerLeaderStepdown(..) => CONSUMER_LEADER_STEPDOWN,
            MetaLeaderStepdown => "io.nats.jetstream.api.v1.meta_leader_stepdown_response",
            ServerRemove => "io.nats.jetstream.api.v1.meta_server_remove_response",
        }
    }
}

/// Decodes `subject` (with the `$JS.API.` prefix); None for an unknown request.
pub fn decode(subject: &str) -> Option<ApiOp> {
    let rest = subject.strip_prefix("$JS.API.")?;
    let t: Vec<&str> = rest.split('.').collect();
    let s = |i: usize| t[i].to_string();
    use ApiOp::*;
    Some(match t.as_slice() {
        ["INFO"] => AccountInfo,
        ["STREAM", "CREATE", _] => StreamCreate(s(2)),
        ["STREAM", "UPDATE", _] => StreamUpdate(s(2)),
        ["STREAM", "INFO", _] => StreamInfo(s(2)),
        ["STREAM", "DELETE", _] => StreamDelete(s(2)),
        ["STREAM", "PURGE", _] => StreamPurge(s(2)),
        ["STREAM", "NAMES"] => StreamNames,
        ["STREAM", "LIST"] => StreamList,
        ["STREAM", "MSG", "GET", _] => MsgGet(s(3)),
        ["STREAM", "MSG", "DELETE", _] => MsgDelete(s(3)),
        ["STREAM", "LEADER", "STEPDOWN", _] => StreamLeaderStepdown(s(3)),
        ["STREAM", "PEER", "REMOVE", _] => StreamPeerRemove(s(3)),
        ["DIRECT", "GET", _] => DirectGet(s(2), None),
        ["DIRECT", "GET", _, tail @ ..] if !tail.is_empty() => {
            DirectGet(s(2), Some(tail.join(".")))
        }
        ["CONSUMER", "CREATE", _] => ConsumerCreate {
            stream: s(2),
            name: None,
            filter: None,
            durable_form: false,
        },
        ["CONSUMER", "CREATE", _, _] => ConsumerCreate {
            stream: s(2),
            name: Some(s(3)),
            filter: None,
            durable_form: false,
        },
        ["CONSUMER", "CREATE", _, _, tail @ ..] if !tail.is_empty() => ConsumerCreate {
            stream: s(2),
            name: Some(s(3)),
            filter: Some(tail.join(".")),
            durable_form: false,
        },
        ["CONSUMER", "DURABLE", "CREATE", _, _] => ConsumerCreate {
            stream: s(3),
            name: Some(s(4)),
            filter: None,
            durable_form: true,
        },
        ["CONSUMER", "INFO", _, _] => ConsumerInfo(s(2), s(3)),
        ["CONSUMER", "DELETE", _, _] => ConsumerDelete(s(2), s(3)),
        ["CONSUMER", "NAMES", _] => ConsumerNames(s(2)),
        ["CONSUMER", "LIST", _] => ConsumerList(s(2)),
        ["CONSUMER", "MSG", "NEXT", _, _] => ConsumerNext(s(3), s(4)),
        ["CONSUMER", "PAUSE", _, _] => ConsumerPause(s(2), s(3)),
        ["CONSUMER", "LEADER", "STEPDOWN", _, _] => ConsumerLeaderStepdown(s(3), s(4)),
        ["META", "LEADER", "STEPDOWN"] => MetaLeaderStepdown,
        ["SERVER", "REMOVE"] => ServerRemove,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_form_clients_send() {
        assert_eq!(decode("$JS.API.INFO"), Some(ApiOp::AccountInfo));
        assert_eq!(
            decode("$JS.API.STREAM.CREATE.ORDERS"),
            Some(ApiOp::StreamCreate("ORDERS".into()))
        );
        assert_eq!(
            decode("$JS.API.DIRECT.GET.KV_a.$KV.a.k"),
            Some(ApiOp::DirectGet("KV_a".into(), Some("$KV.a.k".into())))
        );
        assert_eq!(
            decode("$JS.API.CONSUMER.CREATE.S.C.f.>"),
            Some(ApiOp::ConsumerCreate {
                stream: "S".into(),
                name: Some("C".into()),
                filter: Some("f.>".into()),
                durable_form: false
            })
        );
        assert_eq!(
            decode("$JS.API.CONSUMER.DURABLE.CREATE.S.C"),
            Some(ApiOp::ConsumerCreate {
                stream: "S".into(),
                name: Some("C".into()),
                filter: None,
                durable_form: true
            })
        );
        assert_eq!(
            decode("$JS.API.CONSUMER.MSG.NEXT.S.C"),
            Some(ApiOp::ConsumerNext("S".into(), "C".into()))
        );
        assert_eq!(decode("$JS.API.STREAM.BOGUS.X.Y"), None);
        assert_eq!(decode("$JS.API.NOPE"), None);
    }
}
