//! `jetstream: enabled`, `jetstream: true` or `jetstream { store_dir, ... }`.

use super::convert::{
    boolean, duration_ms, enabled_word, map, size, string, type_error, Notes, Result,
};
use crate::conf::{Item, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JetStreamConfig {
    pub store_dir: Option<String>,
    pub max_memory_store: Option<i64>,
    pub max_file_store: Option<i64>,
    pub domain: Option<String>,
    /// `sync_interval`; None is the default (fsync before every acknowledgement).
    pub sync_interval_ms: Option<u64>,
}

/// The JetStream config, or None when the block disables JetStream.
pub(crate) fn parse_jetstream(
    key: &str,
    item: &Item,
    notes: &mut Notes,
) -> Result<Option<JetStreamConfig>> {
    let enabled = match &item.value {
        Value::Bool(_) => boolean(key, item)?,
        Value::Str(word) => enabled_word(key, item, word)?,
        Value::Map(_) => return jetstream_block(key, item, notes),
        _ => {
            return Err(type_error(
                key,
                item,
                "a boolean, \"enabled\", \"disabled\" or a map",
            ))
        }
    };
    Ok(enabled.then(JetStreamConfig::default))
}

fn jetstream_block(key: &str, item: &Item, notes: &mut Notes) -> Result<Option<JetStreamConfig>> {
    let mut js = JetStreamConfig::default();
    let mut enabled = true;
    for (k, v) in map(key, item)? {
        match k.to_ascii_lowercase().as_str() {
            "store" | "store_dir" | "storedir" => js.store_dir = Some(string(k, v)?),
            "max_memory_store" | "max_mem_store" | "max_mem" => {
                js.max_memory_store = Some(size(k, v)?)
            }
            "max_file_store" | "max_file" => js.max_file_store = Some(size(k, v)?),
            "domain" => js.domain = Some(string(k, v)?),
            "sync" | "sync_interval" => js.sync_interval_ms = sync_interval_ms(k, v, notes)?,
            "enable" | "enabled" => enabled = boolean(k, v)?,
            // Encryption at rest: storing in clear what was meant to be encrypted is
            // not a choice to make for the operator.
            "key"
            | "ek"
            | "encryption_key"
            | "prev_key"
            | "prev_ek"
            | "prev_encryption_key"
            | "cipher"
            | "tpm" => notes.unsupported(format!("jetstream.{k}"), v),
            "strict"
            | "extension_hint"
            | "limits"
            | "unique_tag"
            | "max_outstanding_catchup"
            | "max_buffered_size"
            | "max_buffered_msgs"
            | "request_queue_limit"
            | "info_queue_limit"
            | "meta_compact"
            | "meta_compact_size"
            | "meta_compact_sync"
            | "max_concurrent_io" => notes.ignored(format!("jetstream.{k}"), v),
            _ => notes.unknown(k, v),
        }
    }
    Ok(enabled.then_some(js))
}

/// `sync_interval: "2m"`; `always` is the durable default, kept as None.
fn sync_interval_ms(key: &str, item: &Item, notes: &mut Notes) -> Result<Option<u64>> {
    match &item.value {
        Value::Str(s) if s.eq_ignore_ascii_case("always") => Ok(None),
        _ => duration_ms(key, item, &mut notes.warnings).map(Some),
    }
}
