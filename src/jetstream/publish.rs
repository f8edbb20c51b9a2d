//! A message published to a stream's subjects: the checks a publish header may
//! ask for, the append, de-duplication, roll-ups, and the PubAck that waits for
//! durability (sent by the stream's ack loop).

use crate::jetstream::api::errors;
use crate::jetstream::api::types::{ApiError, PubAck, PubError};
use crate::jetstream::headers::{self, *};
use crate::jetstream::now_ns;
use crate::jetstream::registry;
use crate::jetstream::stream::{AckWait, Republished, Stream, ACKS_WAITING_MAX};
use crate::jetstream::transform;
use crate::server::shard::{Msg, Shard};
use bytes::Bytes;
use natrix_storage::{PurgeRequest, StoreError};

pub fn error_body(stream: &str, error: ApiError) -> Vec<u8> {
    serde_json::to_vec(&PubError {
        error,
        stream: Some(stream.to_string()),
    })
    .expect("serializable")
}

fn ack_body(stream: &str, seq: u64, duplicate: bool) -> Vec<u8> {
    serde_json::to_vec(&PubAck {
        stream: stream.to_string(),
        seq,
        domain: None,
        duplicate,
    })
    .expect("serializable")
}

/// Handles one publish on the stream's shard. Never blocks: the PubAck is queued.
pub fn on_publish(shard: &Shard, stream: &Stream, msg: &Msg) {
    let reply = msg.reply.map(Bytes::copy_from_slice);
    let no_ack = stream.config.borrow().no_ack;
    let size = (msg.subject.len() + msg.payload.len()) as u64;
    let outcome = match registry::over_storage_limit(shard, stream, size) {
        Some(e) => Err(e),
        None => store(stream, msg),
    };
    if matches!(
        outcome,
        Ok(Stored {
            ticket: Some(_),
            ..
        })
    ) {
        let medium = registry::medium(stream);
        let usage = &shard.server.js_usage;
        usage.add(shard.id, stream.account, medium, size);
    }
    let wait = match outcome {
        Ok(stored) => AckWait {
            ticket: stored.ticket,
            reply: reply.filter(|_| !no_ack),
            body: ack_body(&stream.name, stored.seq, stored.ticket.is_none()),
            republish: stored.republish,
        },
        Err(e) => AckWait {
            ticket: None,
            reply,
            body: error_body(&stream.name, e),
            republish: None,
        },
    };
    stream.acks.borrow_mut().push_back(wait);
    stream.acks_ready.notify();
    stream.commit_needed.notify();
}

/// What storing one message gave.
struct Stored {
    /// None for a duplicate.
    ticket: Option<natrix_storage::Ticket>,
    seq: u64,
    republish: Option<Republished>,
}

/// Stores the message (or finds it a duplicate).
fn store(stream: &Stream, msg: &Msg) -> Result<Stored, ApiError> {
    let config = stream.config.borrow();
    if config.sealed {
        return Err(errors::sealed());
    }
    if stream.acks.borrow().len() >= ACKS_WAITING_MAX {
        return Err(errors::store_failed(
            "too many publishes waiting for storage",
        ));
    }
    let published = std::str::from_utf8(msg.subject).map_err(|_| errors::bad_request())?;
    let subject = match &config.subject_transform {
        Some(t) => transform::apply(&t.src, &t.dest, published).unwrap_or_else(|| published.into()),
        None => published.to_string(),
    };
    let subject = subject.as_str();
    let (hdrs, payload) = msg.payload.split_at(msg.header_len);
    if config.max_msg_size >= 0 && payload.len() as i64 > config.max_msg_size {
        return Err(errors::message_too_large());
    }
    let msg_id = headers::get(hdrs, MSG_ID).filter(|id| !id.is_empty());
    if let Some(id) = msg_id {
        if let Some(seq) = stream.dedupe.borrow().seen(id) {
            return Ok(Stored {
                ticket: None,
                seq,
                republish: None,
            });
        }
    }
    check_expectations(stream, hdrs, subject)?;
    let rollup = headers::get(hdrs, ROLLUP);
    if rollup.is_some() && !config.allow_rollup_hdrs {
        return Err(errors::rollup_failed("rollup not permitted"));
    }
    if rollup.is_some_and(|r| r != "sub" && r != "all") {
        return Err(errors::rollup_failed("rollup value invalid"));
    }
    let republish_cfg = config.republish.clone();
    drop(config);
    // The sequence before this one, for a republish only (not read per publish otherwise).
    let last_seq = republish_cfg
        .as_ref()
        .map_or(0, |_| stream.store.state().last_seq);
    let ticket = stream
        .store
        .append(subject, hdrs, payload)
        .map_err(store_error)?;
    let seq = ticket.seq;
    if let Some(id) = msg_id {
        stream.dedupe.borrow_mut().record(id, seq, now_ns());
    }
    if let Some(kind) = rollup {
        let req = PurgeRequest {
            subject: (kind == "sub").then(|| subject.to_string()),
            up_to_seq: Some(seq),
            keep: None,
        };
        stream.store.purge(&req).map_err(store_error)?;
    }
    let republish = republish_cfg.and_then(|r| {
        let to = transform::apply(&r.src, &r.dest, subject)?;
        let mut extra = vec![
            ("Nats-Stream", stream.name.clone()),
            ("Nats-Subject", subject.to_string()),
            ("Nats-Sequence", seq.to_string()),
            ("Nats-Last-Sequence", last_seq.to_string()),
        ];
        if r.headers_only {
            extra.push(("Nats-Msg-Size", payload.len().to_string()));
        }
        Some(Republished {
            subject: to,
            headers: headers::with_added(hdrs, &extra),
            payload: if r.headers_only {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(payload)
            },
        })
    });
    Ok(Stored {
        ticket: Some(ticket),
        seq,
        republish,
    })
}

fn check_expectations(stream: &Stream, hdrs: &[u8], subject: &str) -> Result<(), ApiError> {
    if hdrs.is_empty() {
        return Ok(());
    }
    if let Some(name) = headers::get(hdrs, EXPECTED_STREAM) {
        if name != stream.name {
            return Err(errors::stream_not_match());
        }
    }
    if let Some(v) = headers::get(hdrs, EXPECTED_LAST_SEQ) {
        let want: u64 = v.parse().map_err(|_| errors::bad_request())?;
        let last = stream.store.state().last_seq;
        if want != last {
            return Err(errors::wrong_last_sequence(last));
        }
    }
    if let Some(v) = headers::get(hdrs, EXPECTED_LAST_SUBJ_SEQ) {
        let want: u64 = v.parse().map_err(|_| errors::bad_request())?;
        let last = stream.store.last_seq_of_subject(subject).unwrap_or(0);
        if want != last {
            return Err(errors::wrong_last_sequence(last));
        }
    }
    // An empty expectation is none, as on nats-server.
    if let Some(id) = headers::get(hdrs, EXPECTED_LAST_MSG_ID).filter(|id| !id.is_empty()) {
        let last = stream.dedupe.borrow().last_id().unwrap_or_default();
        if id != last {
            return Err(errors::wrong_last_msg_id(&last));
        }
    }
    Ok(())
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::LimitReached(what) => errors::store_failed(format!("maximum {what} exceeded")),
        StoreError::TooLarge { .. } => errors::message_too_large(),
        e if e.is_disk_full() => errors::insufficient_storage(),
        e => errors::store_failed(e.to_string()),
    }
}
