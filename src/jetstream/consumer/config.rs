//! A consumer config as a create request gives it: checked, and with nats-server's
//! defaults filled in.

use crate::jetstream::api::errors;
use crate::jetstream::api::types::{
    AckPolicy, ApiError, ConsumerConfig, ConsumerLimits, DeliverPolicy, Retention, StreamConfig,
};
use crate::subject;

pub const ACK_WAIT_DEFAULT_NS: i64 = 30_000_000_000;
pub const MAX_ACK_PENDING_DEFAULT: i64 = 1000;
pub const MAX_WAITING_DEFAULT: i64 = 512;
pub const EPHEMERAL_INACTIVE_DEFAULT_NS: i64 = 5_000_000_000;
const HEARTBEAT_MIN_NS: i64 = 100_000_000;
const NAME_MAX: usize = 255;

/// Whether `name` may name a stream or consumer.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Some("length");
    }
    if name.contains(['/', '\\']) {
        return Some("path");
    }
    if name.contains(['.', '*', '>', ' ', '\t', '\r', '\n']) {
        return Some("token");
    }
    None
}

/// Fills in defaults as nats-server does, the stream's `consumer_limits` first.
pub fn with_defaults(mut c: ConsumerConfig, limits: &ConsumerLimits) -> ConsumerConfig {
    if c.max_ack_pending == 0 {
        c.max_ack_pending = limits.max_ack_pending;
    }
    if c.inactive_threshold == 0 {
        c.inactive_threshold = limits.inactive_threshold;
    }
    for field in [
        &mut c.durable_name,
        &mut c.name,
        &mut c.deliver_subject,
        &mut c.deliver_group,
        &mut c.filter_subject,
        &mut c.description,
    ] {
        if field.as_deref() == Some("") {
            *field = None;
        }
    }
    if c.ack_wait <= 0 {
        c.ack_wait = ACK_WAIT_DEFAULT_NS;
    }
    if c.max_deliver == 0 {
        c.max_deliver = -1;
    }
    if c.max_ack_pending == 0 && c.ack_policy != AckPolicy::None {
        c.max_ack_pending = match limits.max_ack_pending {
            l if l > 0 => l.min(MAX_ACK_PENDING_DEFAULT),
            _ => MAX_ACK_PENDING_DEFAULT,
        };
    }
    if c.deliver_subject.is_none() && c.max_waiting == 0 {
        c.max_waiting = MAX_WAITING_DEFAULT;
    }
    if c.durable_name.is_none() && c.inactive_threshold == 0 {
        c.inactive_threshold = EPHEMERAL_INACTIVE_DEFAULT_NS;
    }
    if c.filter_subject.as_deref() == Some("") {
        c.filter_subject = None;
    }
    if c.filter_subjects.as_ref().is_some_and(|f| f.is_empty()) {
        c.filter_subjects = None;
    }
    c
}

/// The filters of a config (one or many), for matching.
pub fn filters(c: &ConsumerConfig) -> Vec<String> {
    let mut out: Vec<String> = c.filter_subject.iter().cloned().collect();
    out.extend(c.filter_subjects.iter().flatten().cloned());
    out
}

/// Checks a config against its stream; `stream_consumers` are the others' configs.
pub fn validate(
    c: &ConsumerConfig,
    stream: &StreamConfig,
    others: &[ConsumerConfig],
) -> Result<(), ApiError> {
    let limits = &stream.consumer_limits;
    if limits.max_ack_pending > 0 && c.max_ack_pending > limits.max_ack_pending {
        return Err(errors::consumer_max_ack_pending_excess(
            limits.max_ack_pending,
        ));
    }
    if limits.inactive_threshold > 0 && c.inactive_threshold > limits.inactive_threshold {
        return Err(errors::consumer_inactive_threshold_excess(
            limits.inactive_threshold,
        ));
    }
    for name in c.durable_name.iter().chain(c.name.iter()) {
        match name_problem(name) {
            Some("path") => return Err(errors::consumer_name_path_separators()),
            Some(_) => return Err(errors::consumer_bad_durable_name()),
            None => {}
        }
    }
    if let (Some(d), Some(n)) = (&c.durable_name, &c.name) {
        if d != n {
            return Err(errors::consumer_durable_and_name_mismatch());
        }
    }
    let push = c.deliver_subject.is_some();
    if let Some(ds) = &c.deliver_subject {
        if !subject::is_valid_publish(ds.as_bytes()) {
            return Err(if subject::is_valid_filter(ds.as_bytes()) {
                errors::consumer_deliver_wildcards()
            } else {
                errors::consumer_invalid_deliver_subject()
            });
        }
        if stream
            .subjects
            .iter()
            .any(|s| subject::matches(s.as_bytes(), ds.as_bytes()))
        {
            return Err(errors::consumer_deliver_cycle());
        }
        if c.max_waiting != 0 {
            return Err(errors::consumer_push_max_waiting());
        }
    } else {
        if c.idle_heartbeat != 0 {
            return Err(errors::consumer_hb_requires_push());
        }
        if c.flow_control {
            return Err(errors::consumer_fc_requires_push());
        }
    }
    if push && c.flow_control && c.idle_heartbeat == 0 {
        return Err(errors::consumer_fc_needs_heartbeats());
    }
    if c.idle_heartbeat != 0 && c.idle_heartbeat < HEARTBEAT_MIN_NS {
        return Err(errors::consumer_small_heartbeat());
    }
    if c.ack_policy == AckPolicy::None && c.max_ack_pending > 0 {
        return Err(errors::consumer_max_pending_ack_policy());
    }
    if let Some(b) = &c.backoff {
        if c.max_deliver > 0 && c.max_deliver as usize <= b.len() {
            return Err(errors::consumer_backoff_max_deliver());
        }
    }
    check_deliver_policy(c)?;
    let fs = filters(c);
    for f in &fs {
        if !subject::is_valid_filter(f.as_bytes()) {
            return Err(errors::consumer_create(
                "consumer filter subject is not a valid subject",
            ));
        }
        let inside = stream.subjects.is_empty()
            || stream
                .subjects
                .iter()
                .any(|s| crate::jetstream::subjects_overlap(s, f));
        if !inside {
            return Err(errors::consumer_filter_not_subset());
        }
    }
    if stream.retention == Retention::Workqueue {
        check_workqueue(c, &fs, others)?;
    }
    Ok(())
}

fn check_deliver_policy(c: &ConsumerConfig) -> Result<(), ApiError> {
    let seq = c.opt_start_seq.unwrap_or(0) > 0;
    let time = c.opt_start_time.is_some();
    let name = |p: DeliverPolicy| {
        serde_json::to_value(p)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let filtered = c.filter_subject.as_deref().is_some_and(|f| !f.is_empty())
        || c.filter_subjects.as_ref().is_some_and(|f| !f.is_empty());
    match c.deliver_policy {
        DeliverPolicy::LastPerSubject if !filtered => Err(errors::consumer_invalid_policy(
            "consumer delivery policy is deliver last per subject, but optional filter subject is not set",
        )),
        DeliverPolicy::ByStartSequence if !seq => Err(errors::consumer_invalid_policy(
            "consumer delivery policy is deliver by start sequence, but optional start sequence is not set",
        )),
        DeliverPolicy::ByStartTime if !time => Err(errors::consumer_invalid_policy(
            "consumer delivery policy is deliver by start time, but optional start time is not set",
        )),
        DeliverPolicy::ByStartSequence | DeliverPolicy::ByStartTime => Ok(()),
        p if seq => Err(errors::consumer_invalid_policy(format!(
            "consumer delivery policy is deliver {}, but optional start sequence is also set",
            name(p).replace('_', " ")
        ))),
        p if time => Err(errors::consumer_invalid_policy(format!(
            "consumer delivery policy is deliver {}, but optional start time is also set",
            name(p).replace('_', " ")
        ))),
        _ => Ok(()),
    }
}

fn check_workqueue(
    c: &ConsumerConfig,
    fs: &[String],
    others: &[ConsumerConfig],
) -> Result<(), ApiError> {
    if c.ack_policy != AckPolicy::Explicit {
        return Err(errors::consumer_wq_requires_explicit_ack());
    }
    if c.deliver_policy != DeliverPolicy::All {
        return Err(errors::consumer_wq_deliver_all());
    }
    for other in others {
        let of = filters(other);
        if fs.is_empty() || of.is_empty() {
            return Err(errors::consumer_wq_multiple_unfiltered());
        }
        let clash = fs
            .iter()
            .any(|a| of.iter().any(|b| crate::jetstream::subjects_overlap(a, b)));
        if clash {
            return Err(errors::consumer_wq_not_unique());
        }
    }
    Ok(())
}

/// Whether an existing consumer may take `new` as its config (an update).
pub fn update_allowed(old: &ConsumerConfig, new: &ConsumerConfig) -> Result<(), ApiError> {
    let fixed = |what: &str| {
        Err(errors::consumer_create(format!(
            "{what} can not be updated"
        )))
    };
    if old.deliver_policy != new.deliver_policy {
        return fixed("deliver policy");
    }
    if old.opt_start_seq != new.opt_start_seq {
        return fixed("start sequence");
    }
    if old.ack_policy != new.ack_policy {
        return fixed("ack policy");
    }
    if old.replay_policy != new.replay_policy {
        return fixed("replay policy");
    }
    if old.deliver_subject.is_some() != new.deliver_subject.is_some() {
        return fixed("consumer type");
    }
    Ok(())
}
