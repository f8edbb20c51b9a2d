//! JetStream scenarios (`--js`): publish into a stream natrix-bench creates
//! (`--replicas`, `--storage`, `--stream`), synchronously or with `--window` acks in
//! flight, and consume it with a pull or push consumer. The flags are settled; the
//! scenarios land with natrix's JetStream. Until then a server without JetStream is
//! refused with a clear message.

use crate::conn::ServerInfo;
use crate::url::ServerUrl;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

pub const NOT_YET: &str = "JetStream scenarios are not implemented in natrix-bench yet";

/// Reads the INFO a server sends first, over a plain blocking socket.
pub fn probe_info(url: &ServerUrl) -> Result<ServerInfo, String> {
    let address = url.address();
    let stream = TcpStream::connect(address.as_str())
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("{address}: no INFO: {e}"))?;
    let json = line
        .trim_end()
        .strip_prefix("INFO ")
        .ok_or_else(|| format!("{address}: expected INFO, got {line:?}"))?;
    ServerInfo::from_json(json.as_bytes())
}

/// Refuses a server whose INFO does not say `"jetstream": true`.
pub fn require(info: &ServerInfo) -> Result<(), String> {
    if info.jetstream {
        Ok(())
    } else {
        Err(format!(
            "JetStream scenarios need a JetStream server: {} {} does not announce \
             \"jetstream\": true in its INFO (start it with -js)",
            if info.server_name.is_empty() {
                "the server"
            } else {
                &info.server_name
            },
            info.version
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_without_jetstream() {
        let info = ServerInfo::from_json(br#"{"server_name":"n1","version":"2.9.10"}"#).unwrap();
        let e = require(&info).unwrap_err();
        assert!(
            e.contains("JetStream scenarios need a JetStream server"),
            "{e}"
        );
        let info = ServerInfo::from_json(br#"{"jetstream":true}"#).unwrap();
        assert!(require(&info).is_ok());
    }
}
