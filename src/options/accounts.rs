//! `accounts { NAME { users: [...], jetstream: enabled } }` or `accounts: [A, B]`.

use super::auth::{apply_default_permissions, parse_permissions, parse_users, UserConfig};
use super::convert::{
    boolean, enabled_word, integer, invalid, map, size, string, type_error, Notes, Result,
};
use crate::conf::{Item, Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountConfig {
    pub name: String,
    pub users: Vec<UserConfig>,
    pub jetstream: bool,
    /// `jetstream { max_mem, max_file, max_streams, max_consumers }`; -1: unlimited.
    pub jetstream_limits: AccountJsLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountJsLimits {
    pub max_memory: i64,
    pub max_storage: i64,
    pub max_streams: i64,
    pub max_consumers: i64,
}

impl Default for AccountJsLimits {
    fn default() -> Self {
        AccountJsLimits {
            max_memory: -1,
            max_storage: -1,
            max_streams: -1,
            max_consumers: -1,
        }
    }
}

/// The global account's name, which a config may not define.
const RESERVED_ACCOUNT: &str = "$G";

pub(crate) fn parse_accounts(
    key: &str,
    item: &Item,
    notes: &mut Notes,
) -> Result<Vec<AccountConfig>> {
    let accounts = match &item.value {
        Value::Array(names) => names
            .iter()
            .map(|n| named_account(key, n))
            .collect::<Result<Vec<_>>>()?,
        Value::Map(entries) => account_map(entries, notes)?,
        _ => return Err(type_error(key, item, "a map or an array of account names")),
    };
    check_unique_names(&accounts, item)?;
    Ok(accounts)
}

fn named_account(key: &str, item: &Item) -> Result<AccountConfig> {
    let name = string(key, item)?;
    check_not_reserved(&name, item)?;
    Ok(AccountConfig {
        name,
        ..AccountConfig::default()
    })
}

fn account_map(entries: &Map, notes: &mut Notes) -> Result<Vec<AccountConfig>> {
    let mut accounts = Vec::new();
    for (name, item) in entries {
        // A variable defined inside the block and used elsewhere is not an account.
        if item.referenced {
            continue;
        }
        check_not_reserved(name, item)?;
        accounts.push(parse_account(name, item, notes)?);
    }
    Ok(accounts)
}

fn parse_account(name: &str, item: &Item, notes: &mut Notes) -> Result<AccountConfig> {
    let fields = map(name, item).map_err(|_| {
        invalid(
            item,
            format!(
                "expected a map for account {name:?}, got {}",
                item.value.type_name()
            ),
        )
    })?;
    let mut account = AccountConfig {
        name: name.to_string(),
        ..AccountConfig::default()
    };
    let mut default_permissions = None;
    for (k, v) in fields {
        match k.to_ascii_lowercase().as_str() {
            "users" => account.users = parse_users(k, v, Some(name), notes)?,
            "jetstream" => {
                (account.jetstream, account.jetstream_limits) = account_jetstream(k, v, notes)?
            }
            "default_permissions" => default_permissions = Some(parse_permissions(k, v, notes)?),
            "nkey" | "imports" | "exports" | "mappings" | "maps" => {
                notes.unsupported(format!("accounts.{name}.{k}"), v)
            }
            "limits" | "msg_trace" | "trace_dest" => {
                notes.ignored(format!("accounts.{name}.{k}"), v)
            }
            _ => notes.unknown(k, v),
        }
    }
    apply_default_permissions(&mut account.users, default_permissions.as_ref());
    Ok(account)
}

/// `jetstream` inside an account: a boolean, `enabled`/`disabled`, or a map of limits.
fn account_jetstream(key: &str, item: &Item, notes: &mut Notes) -> Result<(bool, AccountJsLimits)> {
    let unlimited = AccountJsLimits::default();
    match &item.value {
        Value::Bool(_) => Ok((boolean(key, item)?, unlimited)),
        Value::Str(word) => Ok((enabled_word(key, item, word)?, unlimited)),
        Value::Map(_) => {
            let mut limits = unlimited;
            for (k, v) in map(key, item)? {
                match k.to_ascii_lowercase().as_str() {
                    "max_mem" | "max_memory" | "max_memory_store" => {
                        limits.max_memory = size(k, v)?
                    }
                    "max_file" | "max_store" | "max_file_store" => limits.max_storage = size(k, v)?,
                    "max_streams" => limits.max_streams = integer(k, v)?,
                    "max_consumers" => limits.max_consumers = integer(k, v)?,
                    _ => notes.ignored(format!("accounts.jetstream.{k}"), v),
                }
            }
            Ok((true, limits))
        }
        _ => Err(type_error(
            key,
            item,
            "a boolean, \"enabled\", \"disabled\" or a map",
        )),
    }
}

fn check_not_reserved(name: &str, item: &Item) -> Result<()> {
    if name == RESERVED_ACCOUNT {
        return Err(invalid(item, format!("{name:?} is a reserved account")));
    }
    Ok(())
}

fn check_unique_names(accounts: &[AccountConfig], item: &Item) -> Result<()> {
    for (i, account) in accounts.iter().enumerate() {
        if accounts[..i].iter().any(|a| a.name == account.name) {
            return Err(invalid(
                item,
                format!("duplicate account {:?}", account.name),
            ));
        }
    }
    Ok(())
}
