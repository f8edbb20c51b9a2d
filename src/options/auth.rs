//! `authorization { ... }` blocks, user lists and permissions.

use super::convert::{
    array, integer, invalid, map, string, string_list, type_error, Notes, Result,
};
use crate::conf::{parse_duration, Item, Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub users: Vec<UserConfig>,
    /// `timeout`, in seconds in the file (may be a float or a duration string).
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConfig {
    /// Empty for an nkey user.
    pub user: String,
    /// A user's public nkey (`U...`): it logs in by signing the server's nonce.
    pub nkey: Option<String>,
    /// Plain text or a bcrypt hash (`$2a$...`), as written.
    pub password: Option<String>,
    pub permissions: Option<Permissions>,
    /// The account the user belongs to, when defined in an `accounts` block.
    pub account: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
    /// `allow_responses`: replies to requests received may be published.
    pub responses: Option<ResponsePermission>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectPermission {
    /// `None`: everything not denied; `Some([])`: nothing (as nats-server reads
    /// an empty allow list).
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

/// How many answers per request (0 or less: any number) and for how long (`None`:
/// forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePermission {
    pub max_msgs: i64,
    pub expires: Option<std::time::Duration>,
}

impl Default for ResponsePermission {
    /// nats-server's: one answer within two minutes.
    fn default() -> Self {
        ResponsePermission {
            max_msgs: 1,
            expires: Some(std::time::Duration::from_secs(120)),
        }
    }
}

/// An authorization timeout above this draws a warning, as in nats-server.
const HIGH_AUTH_TIMEOUT_MS: u64 = 60_000;

pub(crate) fn parse_authorization(
    key: &str,
    item: &Item,
    notes: &mut Notes,
) -> Result<Authorization> {
    let mut auth = Authorization::default();
    let mut default_permissions = None;
    let mut users_item = None;
    for (k, v) in map(key, item)? {
        match k.to_ascii_lowercase().as_str() {
            "user" | "username" => auth.user = Some(string(k, v)?),
            "pass" | "password" => auth.password = Some(string(k, v)?),
            "token" => auth.token = Some(string(k, v)?),
            "timeout" => auth.timeout_ms = Some(auth_timeout_ms(k, v, notes)?),
            "users" => {
                auth.users = parse_users(k, v, None, notes)?;
                users_item = Some(v);
            }
            "default_permission" | "default_permissions" | "permissions" => {
                default_permissions = Some(parse_permissions(k, v, notes)?);
            }
            "auth_callout" | "auth_hook" | "proxy_required" => {
                notes.unsupported(format!("{key}.{k}"), v)
            }
            _ => notes.unknown(k, v),
        }
    }
    apply_default_permissions(&mut auth.users, default_permissions.as_ref());
    check_authorization(&auth, item, users_item)?;
    Ok(auth)
}

fn check_authorization(auth: &Authorization, item: &Item, users_item: Option<&Item>) -> Result<()> {
    let has_user = auth.user.is_some() || auth.password.is_some();
    if has_user && auth.token.is_some() {
        return Err(invalid(item, "cannot have a user/password and a token"));
    }
    if let Some(users) = users_item {
        if auth.user.is_some() {
            return Err(invalid(
                users,
                "cannot have a single user/password and a users array",
            ));
        }
        if auth.token.is_some() {
            return Err(invalid(users, "cannot have a token and a users array"));
        }
    }
    Ok(())
}

/// `timeout` in seconds (integer or float) or as a duration string.
fn auth_timeout_ms(key: &str, item: &Item, notes: &mut Notes) -> Result<u64> {
    let secs = match &item.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Str(s) => parse_duration(s)
            .map_err(|reason| invalid(item, format!("{key:?}: {reason}")))?
            .as_secs_f64(),
        _ => return Err(type_error(key, item, "a number of seconds")),
    };
    if !(0.0..=1e12).contains(&secs) {
        return Err(invalid(
            item,
            format!("{key:?} must be a positive number of seconds, got {secs}"),
        ));
    }
    let ms = (secs * 1000.0).round() as u64;
    if ms > HIGH_AUTH_TIMEOUT_MS {
        notes.warn(
            item,
            format!("{key:?} of {secs} seconds is high, consider keeping it under 60 seconds (use '1m', quoted, for a duration)"),
        );
    }
    Ok(ms)
}

/// A `users: [ {user, password, permissions}, ... ]` array; `account` is the owning
/// account for users defined in an `accounts` block.
pub(crate) fn parse_users(
    key: &str,
    item: &Item,
    account: Option<&str>,
    notes: &mut Notes,
) -> Result<Vec<UserConfig>> {
    let mut users = Vec::new();
    for entry in array(key, item)? {
        if let Some(mut user) = parse_user(entry, notes)? {
            user.account = account.map(str::to_string);
            users.push(user);
        }
    }
    Ok(users)
}

/// One user entry: a user with a password, or an nkey user.
fn parse_user(entry: &Item, notes: &mut Notes) -> Result<Option<UserConfig>> {
    let fields = map("users", entry).map_err(|_| {
        invalid(
            entry,
            format!(
                "expected a map for a user entry, got {}",
                entry.value.type_name()
            ),
        )
    })?;
    let mut user = UserConfig::default();
    let mut name = None;
    for (k, v) in fields {
        match k.to_ascii_lowercase().as_str() {
            "user" | "username" => name = Some(string(k, v)?),
            "pass" | "password" => user.password = Some(string(k, v)?),
            "permission" | "permissions" | "authorization" => {
                user.permissions = Some(parse_permissions(k, v, notes)?)
            }
            "nkey" => {
                let key = string(k, v)?;
                if !is_user_nkey(&key) {
                    return Err(invalid(v, "Not a valid public nkey for a user".to_string()));
                }
                user.nkey = Some(key);
            }
            "allowed_connection_types" | "connection_types" | "clients" | "proxy_required" => {
                notes.unsupported(format!("users.{k}"), v)
            }
            _ => notes.unknown(k, v),
        }
    }
    match (name, &user.nkey) {
        (Some(name), None) => user.user = name,
        (None, Some(_)) => {}
        (Some(_), Some(_)) => return Err(invalid(entry, "user entry has both a user and an nkey")),
        (None, None) => return Err(invalid(entry, "user entry requires a user")),
    }
    Ok(Some(user))
}

/// A user's public nkey: `U` and a valid encoding (checksum included).
fn is_user_nkey(key: &str) -> bool {
    key.starts_with('U') && nkeys::KeyPair::from_public_key(key).is_ok()
}

/// Gives `defaults` to every user that has no permissions of its own.
pub(crate) fn apply_default_permissions(users: &mut [UserConfig], defaults: Option<&Permissions>) {
    let Some(defaults) = defaults else { return };
    for user in users.iter_mut().filter(|u| u.permissions.is_none()) {
        user.permissions = Some(defaults.clone());
    }
}

/// `{ publish: ..., subscribe: ... }`; each side a subject, a list, or `{allow, deny}`.
pub(crate) fn parse_permissions(key: &str, item: &Item, notes: &mut Notes) -> Result<Permissions> {
    let mut perms = Permissions::default();
    for (k, v) in map(key, item)? {
        match k.to_ascii_lowercase().as_str() {
            "pub" | "publish" | "import" => perms.publish = subject_permission(k, v, notes)?,
            "sub" | "subscribe" | "export" => perms.subscribe = subject_permission(k, v, notes)?,
            "allow_responses" | "publish_allow_responses" => {
                perms.responses = response_permission(k, v, notes)?
            }
            _ => notes.unknown(k, v),
        }
    }
    if perms.responses.is_some() {
        // Responses only: the blanket allow goes, as on nats-server.
        let publish = perms.publish.get_or_insert_with(SubjectPermission::default);
        publish.allow.get_or_insert_with(Vec::new);
    }
    Ok(perms)
}

/// `allow_responses: true`, or `{ max: N, expires: "1m" }` (0 keeps the
/// default, a negative value means no limit).
fn response_permission(
    key: &str,
    item: &Item,
    notes: &mut Notes,
) -> Result<Option<ResponsePermission>> {
    if let Value::Bool(on) = item.value {
        return Ok(on.then(ResponsePermission::default));
    }
    let Value::Map(fields) = &item.value else {
        return Err(invalid(
            item,
            "error parsing response permissions, expected a boolean or a map".to_string(),
        ));
    };
    let mut rule = ResponsePermission::default();
    for (k, v) in fields {
        match k.to_ascii_lowercase().as_str() {
            "max" | "max_msgs" | "max_messages" | "max_responses" => {
                let max = integer(k, v)?;
                if max != 0 {
                    rule.max_msgs = max;
                }
            }
            "expires" | "expiration" | "ttl" => {
                let Value::Str(text) = &v.value else {
                    return Err(invalid(
                        v,
                        "error parsing expires, not a duration string".to_string(),
                    ));
                };
                let text = text.trim();
                if let Some(negative) = text.strip_prefix('-') {
                    parse_duration(negative)
                        .map_err(|e| invalid(v, format!("error parsing expires: {e}")))?;
                    rule.expires = None;
                } else {
                    let ttl = parse_duration(text)
                        .map_err(|e| invalid(v, format!("error parsing expires: {e}")))?;
                    if !ttl.is_zero() {
                        rule.expires = Some(ttl);
                    }
                }
            }
            _ => notes.unknown(k, v),
        }
    }
    let _ = key;
    Ok(Some(rule))
}

fn subject_permission(
    key: &str,
    item: &Item,
    notes: &mut Notes,
) -> Result<Option<SubjectPermission>> {
    match &item.value {
        Value::Map(fields) => allow_deny(fields, notes),
        _ => Ok(Some(SubjectPermission {
            allow: Some(subjects(key, item)?),
            deny: Vec::new(),
        })),
    }
}

fn allow_deny(fields: &Map, notes: &mut Notes) -> Result<Option<SubjectPermission>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut perm = SubjectPermission::default();
    for (k, v) in fields {
        match k.to_ascii_lowercase().as_str() {
            "allow" => perm.allow = Some(subjects(k, v)?),
            "deny" => perm.deny = subjects(k, v)?,
            _ => notes.unknown(k, v),
        }
    }
    Ok(Some(perm))
}

fn subjects(key: &str, item: &Item) -> Result<Vec<String>> {
    let list = string_list(key, item)?;
    match list.iter().find(|s| s.trim().is_empty()) {
        Some(_) => Err(invalid(item, format!("{key:?}: a subject cannot be empty"))),
        None => Ok(list),
    }
}
