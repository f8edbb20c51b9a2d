//! Server URLs: `nats://[user:pass@|token@]host[:port]`, or a bare `host[:port]`.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub token: Option<String>,
}

impl ServerUrl {
    pub fn parse(text: &str) -> Result<ServerUrl, String> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some(("nats", rest)) => rest,
            Some((scheme, _)) => return Err(format!("{text}: scheme {scheme} is not supported")),
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{text}: bad port {p:?}"))?,
            ),
            _ => (hostport, 4222),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text}: no host"));
        }
        let mut url = ServerUrl {
            host: host.to_string(),
            port,
            user: None,
            pass: None,
            token: None,
        };
        match auth.map(|a| a.split_once(':')) {
            Some(Some((u, p))) => {
                url.user = Some(u.to_string());
                url.pass = Some(p.to_string());
            }
            Some(None) => url.token = auth.map(str::to_string),
            None => {}
        }
        Ok(url)
    }

    /// `host:port`, for connecting and for reports (credentials left out).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let u = ServerUrl::parse("nats://127.0.0.1:4333").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 4333));
        let u = ServerUrl::parse("localhost").unwrap();
        assert_eq!(u.address(), "localhost:4222");
        let u = ServerUrl::parse("nats://bob:s3cret@h:1").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.pass.as_deref()),
            (Some("bob"), Some("s3cret"))
        );
        let u = ServerUrl::parse("nats://tok@h").unwrap();
        assert_eq!(u.token.as_deref(), Some("tok"));
        assert_eq!(ServerUrl::parse("[::1]:5").unwrap().address(), "[::1]:5");
        assert!(ServerUrl::parse("tls://h:1").is_err());
        assert!(ServerUrl::parse("h:x").is_err());
    }
}
