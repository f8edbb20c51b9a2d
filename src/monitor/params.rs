//! What a monitoring request asks for: paging, subscription detail and connection
//! state, read from a URL query (`?subs=detail&state=all`) or from the JSON body of
//! a `$SYS` request (`{"subscriptions_detail":true,"state":2}`).

use serde::Deserialize;

/// Entries a list endpoint returns when the request names no limit (nats-server's
/// `DefaultConnListSize` and `DefaultSubListSize`).
pub const LIST_LIMIT_DEFAULT: usize = 1024;

/// How much of each connection's (or route's) subscriptions to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubsMode {
    #[default]
    Off,
    /// `subs=1`: `subscriptions_list`, subjects only.
    List,
    /// `subs=detail`: `subscriptions_list_detail`, one object per subscription.
    Detail,
}

impl SubsMode {
    pub fn any(self) -> bool {
        self != SubsMode::Off
    }
}

/// Which connections `/connz` lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnState {
    #[default]
    Open,
    Closed,
    All,
}

impl ConnState {
    pub fn open(self) -> bool {
        self != ConnState::Closed
    }

    pub fn closed(self) -> bool {
        self != ConnState::Open
    }
}

/// Paging and detail switches of `/connz`, `/routez` and `/subsz`.
#[derive(Clone, Debug)]
pub struct ListParams {
    pub subs: SubsMode,
    pub state: ConnState,
    pub offset: usize,
    pub limit: usize,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams {
            subs: SubsMode::Off,
            state: ConnState::Open,
            offset: 0,
            limit: LIST_LIMIT_DEFAULT,
        }
    }
}

/// A true value as Go's `strconv.ParseBool` reads one.
fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn state_of(v: &str) -> ConnState {
    match v.to_ascii_lowercase().as_str() {
        "closed" => ConnState::Closed,
        "all" | "any" => ConnState::All,
        _ => ConnState::Open,
    }
}

/// The body of a `$SYS` request, as nats-server's `ConnzOptions` and friends name it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SysRequest {
    subscriptions: bool,
    subscriptions_detail: bool,
    /// natrix's older spelling of `subscriptions`.
    subs: bool,
    offset: usize,
    limit: usize,
    /// 0 open, 1 closed, 2 all (nats-server's `ConnState`).
    state: u8,
}

impl ListParams {
    /// From a URL query string such as `subs=detail&limit=10&state=all`.
    pub fn from_query(query: &str) -> ListParams {
        let mut p = ListParams::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "subs" if v.eq_ignore_ascii_case("detail") => p.subs = SubsMode::Detail,
                "subs" if truthy(v) => p.subs = SubsMode::List,
                "offset" => p.offset = v.parse().unwrap_or(0),
                "limit" => p.limit = v.parse().unwrap_or(LIST_LIMIT_DEFAULT),
                "state" => p.state = state_of(v),
                _ => {}
            }
        }
        if p.limit == 0 {
            // nats-server reads a limit of 0 as "the default".
            p.limit = LIST_LIMIT_DEFAULT;
        }
        p
    }

    /// From the JSON body of a `$SYS` request; an empty or unreadable body asks for
    /// the defaults, as on nats-server.
    pub fn from_json(body: &[u8]) -> ListParams {
        let r: SysRequest = serde_json::from_slice(body).unwrap_or_default();
        ListParams {
            subs: if r.subscriptions_detail {
                SubsMode::Detail
            } else if r.subscriptions || r.subs {
                SubsMode::List
            } else {
                SubsMode::Off
            },
            state: match r.state {
                1 => ConnState::Closed,
                2 => ConnState::All,
                _ => ConnState::Open,
            },
            offset: r.offset,
            limit: if r.limit == 0 {
                LIST_LIMIT_DEFAULT
            } else {
                r.limit
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_switches() {
        let p = ListParams::from_query("subs=detail&state=all&offset=2&limit=5");
        assert_eq!(p.subs, SubsMode::Detail);
        assert_eq!(p.state, ConnState::All);
        assert_eq!((p.offset, p.limit), (2, 5));
        assert_eq!(ListParams::from_query("subs=1").subs, SubsMode::List);
        assert_eq!(ListParams::from_query("subs=false").subs, SubsMode::Off);
        assert_eq!(
            ListParams::from_query("state=closed").state,
            ConnState::Closed
        );
        assert_eq!(ListParams::from_query("").limit, LIST_LIMIT_DEFAULT);
        assert_eq!(ListParams::from_query("limit=0").limit, LIST_LIMIT_DEFAULT);
    }

    #[test]
    fn sys_body() {
        let p = ListParams::from_json(br#"{"subscriptions_detail":true,"state":1,"limit":3}"#);
        assert_eq!(p.subs, SubsMode::Detail);
        assert_eq!(p.state, ConnState::Closed);
        assert_eq!(p.limit, 3);
        let p = ListParams::from_json(b"");
        assert_eq!((p.subs, p.limit), (SubsMode::Off, LIST_LIMIT_DEFAULT));
        assert_eq!(
            ListParams::from_json(br#"{"subs":true}"#).subs,
            SubsMode::List
        );
    }
}
