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

pub fn ack_body(stream: &str, seq: u64, duplicate: bool) -> Vec<u8> {
    serde_json::to_vec(&PubAck {
        stream,
        seq,
        domain: None,
        duplicate,
    })
    .expect("serializable")
}

/// Handles one publish on the stream's shard. Never blocks: the PubAck is queued.
/// A replicated stream's leader proposes the message instead (`cluster::stream`).
pub fn on_publish(shard: &Shard, stream: &std::rc::Rc<Stream>, msg: &Msg) {
    if stream.cluster.get().is_some() {
        crate::jetstream::cluster::stream::on_publish(shard, stream, msg);
        return;
    }
    let reply = msg.reply.map(Bytes::copy_from_slice);
    let size = stored_size(msg.subject, msg.payload);
    let outcome = match registry::over_storage_limit(shard, stream, size) {
        Some(e) => Err(e),
        None => store(stream, msg),
    };
    queue_ack(shard, stream, reply, size, outcome);
}

/// Bytes a message counts against storage limits.
pub fn stored_size(subject: &[u8], payload: &[u8]) -> u64 {
    (subject.len() + payload.len()) as u64
}

/// Counts a stored message and queues its PubAck (or error) for the ack loop,
/// which sends it once the message is durable.
pub fn queue_ack(
    shard: &Shard,
    stream: &Stream,
    reply: Option<Bytes>,
    size: u64,
    outcome: Result<Stored, ApiError>,
) {
    let no_ack = stream.config.borrow().no_ack;
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
    let replicated = stream.cluster.get().is_some();
    let wait = match outcome {
        Ok(stored) => AckWait {
            // A replicated message is durable already, in its group's log on a
            // quorum (that log is compacted only past what the store made
            // durable): its PubAck does not wait for the store's own sync.
            ticket: stored.ticket.filter(|_| !replicated),
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
pub struct Stored {
    /// None for a duplicate.
    pub ticket: Option<natrix_storage::Ticket>,
    pub seq: u64,
    pub republish: Option<Republished>,
}

/// Stores the message (or finds it a duplicate).
fn store(stream: &Stream, msg: &Msg) -> Result<Stored, ApiError> {
    match accept(stream, msg, None)? {
        Accepted::Duplicate(seq) => Ok(Stored {
            ticket: None,
            seq,
            republish: None,
        }),
        Accepted::New { subject } => {
            let (hdrs, payload) = msg.payload.split_at(msg.header_len);
            append(stream, &subject, hdrs, payload, None)
        }
    }
}

/// What the checks before an append found.
pub enum Accepted {
    /// A `Nats-Msg-Id` seen in the window: the sequence it got then.
    Duplicate(u64),
    /// A new message, to store on `subject` (after the stream's transform).
    New { subject: String },
}

/// What a clustered stream's leader has proposed and not yet applied: the checks
/// of a new publish count it as stored.
#[derive(Default)]
pub struct InFlight {
    /// The sequence the last proposed message expects.
    pub last_seq: u64,
    /// Proposed messages per subject.
    pub subjects: ahash::AHashMap<String, u32>,
    /// Their `Nats-Msg-Id`s.
    pub ids: ahash::AHashSet<String>,
}

impl InFlight {
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    pub fn add(&mut self, seq: u64, subject: &str, msg_id: Option<&str>) {
        self.last_seq = seq;
        *self.subjects.entry(subject.to_string()).or_default() += 1;
        if let Some(id) = msg_id {
            self.ids.insert(id.to_string());
        }
    }

    pub fn remove(&mut self, subject: &str, msg_id: Option<&str>) {
        if let Some(n) = self.subjects.get_mut(subject) {
            *n -= 1;
            if *n == 0 {
                self.subjects.remove(subject);
            }
        }
        if let Some(id) = msg_id {
            self.ids.remove(id);
        }
    }

    pub fn clear(&mut self) {
        *self = InFlight::default();
    }
}

/// The checks a publish passes before its append: seal, size, de-duplication,
/// expectation headers, roll-up permission. A clustered stream's leader runs them
/// before it proposes the message, counting what it has in flight.
pub fn accept(
    stream: &Stream,
    msg: &Msg,
    in_flight: Option<&InFlight>,
) -> Result<Accepted, ApiError> {
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
    let (hdrs, payload) = msg.payload.split_at(msg.header_len);
    if config.max_msg_size >= 0 && payload.len() as i64 > config.max_msg_size {
        return Err(errors::message_too_large());
    }
    let msg_id = headers::get(hdrs, MSG_ID).filter(|id| !id.is_empty());
    if let Some(id) = msg_id {
        if let Some(seq) = stream.dedupe.borrow().seen(id) {
            return Ok(Accepted::Duplicate(seq));
        }
        if in_flight.is_some_and(|f| f.ids.contains(id)) {
            // Its first copy is being replicated: the client tries again and then
            // gets the duplicate ack (or the first copy failed, and this one goes).
            return Err(errors::general("duplicate message id is in process"));
        }
    }
    check_expectations(stream, hdrs, &subject, in_flight.filter(|f| !f.is_empty()))?;
    let rollup = headers::get(hdrs, ROLLUP);
    if rollup.is_some() && !config.allow_rollup_hdrs {
        return Err(errors::rollup_failed("rollup not permitted"));
    }
    if rollup.is_some_and(|r| r != "sub" && r != "all") {
        return Err(errors::rollup_failed("rollup value invalid"));
    }
    Ok(Accepted::New { subject })
}

/// Appends an accepted message (at `ts_ns` when a replicated entry names its
/// time), records its Msg-Id, applies a roll-up and prepares a republish.
pub fn append(
    stream: &Stream,
    subject: &str,
    hdrs: &[u8],
    payload: &[u8],
    ts_ns: Option<u64>,
) -> Result<Stored, ApiError> {
    let republish_cfg = stream.config.borrow().republish.clone();
    // The sequence before this one, for a republish only (not read per publish otherwise).
    let last_seq = republish_cfg
        .as_ref()
        .map_or(0, |_| stream.store.state().last_seq);
    let ticket = match ts_ns {
        Some(ts) => stream.store.append_at(ts, subject, hdrs, payload),
        None => stream.store.append(subject, hdrs, payload),
    }
    .map_err(store_error)?;
    let seq = ticket.seq;
    if let Some(id) = headers::get(hdrs, MSG_ID).filter(|id| !id.is_empty()) {
        stream.dedupe.borrow_mut().record(id, seq, now_ns());
        stream.expiry_needed.notify();
    }
    if let Some(kind) = headers::get(hdrs, ROLLUP) {
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

fn check_expectations(
    stream: &Stream,
    hdrs: &[u8],
    subject: &str,
    in_flight: Option<&InFlight>,
) -> Result<(), ApiError> {
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
        let last = in_flight.map_or_else(|| stream.store.state().last_seq, |f| f.last_seq);
        if want != last {
            return Err(errors::wrong_last_sequence(last));
        }
    }
    if let Some(v) = headers::get(hdrs, EXPECTED_LAST_SUBJ_SEQ) {
        let want: u64 = v.parse().map_err(|_| errors::bad_request())?;
        if in_flight.is_some_and(|f| f.subjects.contains_key(subject)) {
            // A message on this subject is being replicated: its sequence is not
            // the subject's last yet, and neither is the stored one.
            let stored = stream.store.last_seq_of_subject(subject).unwrap_or(0);
            return Err(errors::wrong_last_sequence(stored));
        }
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

pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::LimitReached(what) => errors::store_failed(format!("maximum {what} exceeded")),
        StoreError::TooLarge { .. } => errors::message_too_large(),
        e if e.is_disk_full() => errors::insufficient_storage(),
        e => errors::store_failed(e.to_string()),
    }
}
