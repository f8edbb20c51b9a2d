//! `listen`-style addresses: a port (`4222`) or `host:port` (`0.0.0.0:4222`, `[::1]:4222`).

use super::convert::{invalid, type_error, Result};
use crate::conf::{Item, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// None when only a port was given (or the host part was empty).
    pub host: Option<String>,
    /// 0 means a random port (written `-1`).
    pub port: u16,
}

pub(crate) fn host_port(key: &str, item: &Item) -> Result<HostPort> {
    match &item.value {
        Value::Int(port) => Ok(HostPort {
            host: None,
            port: port_number(key, item, *port)?,
        }),
        Value::Str(text) => split_host_port(text)
            .ok_or_else(|| {
                invalid(
                    item,
                    format!(
                        "could not parse address {text:?} for {key:?}: expected port or host:port"
                    ),
                )
            })
            .and_then(|(host, port)| {
                let port: i64 = port.parse().map_err(|_| {
                    invalid(item, format!("could not parse port {port:?} for {key:?}"))
                })?;
                Ok(HostPort {
                    host: (!host.is_empty()).then(|| host.to_string()),
                    port: port_number(key, item, port)?,
                })
            }),
        _ => Err(type_error(key, item, "a port or host:port")),
    }
}

fn port_number(key: &str, item: &Item, port: i64) -> Result<u16> {
    match port {
        -1 => Ok(0),
        _ => u16::try_from(port)
            .map_err(|_| invalid(item, format!("{key:?}: port {port} is out of range"))),
    }
}

/// Splits `host:port`; an IPv6 host must be bracketed (`[::1]:4222`).
fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        return Some((host, tail.strip_prefix(':')?));
    }
    let (host, port) = text.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::Pos;

    fn hp(value: Value) -> Result<HostPort> {
        host_port("listen", &Item::new(value, Pos::new("t", 1, 1)))
    }

    #[test]
    fn ports_and_host_ports() {
        assert_eq!(
            hp(Value::Int(4222)).unwrap(),
            HostPort {
                host: None,
                port: 4222
            }
        );
        assert_eq!(
            hp(Value::Str("127.0.0.1:4248".into())).unwrap(),
            HostPort {
                host: Some("127.0.0.1".into()),
                port: 4248
            }
        );
        assert_eq!(
            hp(Value::Str("[::1]:-1".into())).unwrap(),
            HostPort {
                host: Some("::1".into()),
                port: 0
            }
        );
        assert_eq!(
            hp(Value::Str(":5222".into())).unwrap(),
            HostPort {
                host: None,
                port: 5222
            }
        );
    }

    #[test]
    fn bad_addresses() {
        assert!(hp(Value::Str("localhost".into())).is_err());
        assert!(hp(Value::Str("::1:4222".into())).is_err());
        assert!(hp(Value::Str("h:port".into())).is_err());
        assert!(hp(Value::Str("h:70000".into())).is_err());
        assert!(hp(Value::Bool(true)).is_err());
    }
}
