//! DIRECT.GET on a stream with `allow_direct`: the message itself with its stream
//! headers (no JSON), one by subject or request, a batch from a sequence, or the
//! last message of each of several subjects (`multi_last`). A batch ends with a
//! `204 EOB` status; nothing found is a `404 Message Not Found`.

use crate::jetstream::api::types::MsgGetRequest;
use crate::jetstream::api::Reply;
use crate::jetstream::headers;
use crate::jetstream::registry::get_msg;
use crate::jetstream::stream::Stream;
use crate::jetstream::{persist, send, time_string};
use crate::server::shard::Shard;
use bytes::Bytes;
use natrix_storage::StoredMsg;
use std::rc::Rc;

/// Messages one batch request may ask for at most.
pub const BATCH_MAX: usize = 1000;

pub async fn answer(
    shard: &Rc<Shard>,
    stream: &Rc<Stream>,
    subject: Option<String>,
    reply: Option<Bytes>,
    body: &[u8],
) -> Option<Reply> {
    let req = match subject {
        Some(s) => MsgGetRequest {
            last_by_subj: Some(s),
            ..Default::default()
        },
        None => match serde_json::from_slice::<MsgGetRequest>(body) {
            Ok(r) => r,
            Err(_) => return Some(Reply::status(408, "Bad Request")),
        },
    };
    if req.batch.is_none() && req.multi_last.is_none() {
        return Some(match get_msg(shard, stream, &req).await {
            Ok(m) => Reply {
                headers: message_headers(stream, &m, &[]),
                body: m.payload.to_vec(),
                failed: false,
            },
            Err(_) => Reply::status(404, "Message Not Found"),
        });
    }
    let reply = reply?;
    let seqs = match &req.multi_last {
        Some(subjects) => last_of_each(stream, subjects, req.up_to_seq),
        None => batch_seqs(stream, &req),
    };
    send_batch(shard, stream, &reply, &seqs, req.max_bytes.unwrap_or(0)).await;
    None
}

/// Sequences of a batch: from `seq` on, on `next_by_subj` when given.
fn batch_seqs(stream: &Stream, req: &MsgGetRequest) -> Vec<u64> {
    let filters: Vec<String> = req.next_by_subj.iter().cloned().collect();
    let limit = req.batch.unwrap_or(1).clamp(1, BATCH_MAX);
    let mut out = Vec::with_capacity(limit);
    let mut from = req.seq.unwrap_or(1).max(1);
    while out.len() < limit {
        match stream.store.next_matching(from, &filters) {
            Some(seq) => {
                out.push(seq);
                from = seq + 1;
            }
            None => break,
        }
    }
    out
}

/// The newest message of each subject matching `subjects`, at or below `up_to_seq`.
fn last_of_each(stream: &Stream, subjects: &[String], up_to_seq: Option<u64>) -> Vec<u64> {
    let mut seqs = match up_to_seq {
        None => stream.store.last_per_subject(subjects),
        Some(up_to) => {
            let mut last = std::collections::BTreeMap::new();
            let mut from = 1;
            while let Some(seq) = stream.store.next_matching(from, subjects) {
                if seq > up_to {
                    break;
                }
                if let Some(subject) = stream.store.subject_of(seq) {
                    last.insert(subject, seq);
                }
                from = seq + 1;
            }
            last.into_values().collect()
        }
    };
    seqs.sort_unstable();
    seqs.truncate(BATCH_MAX);
    seqs
}

async fn send_batch(
    shard: &Rc<Shard>,
    stream: &Rc<Stream>,
    reply: &[u8],
    seqs: &[u64],
    max_bytes: usize,
) {
    let mut last = 0;
    let mut sent_bytes = 0;
    let mut sent = 0;
    for (i, &seq) in seqs.iter().enumerate() {
        let Ok(m) = get_msg(
            shard,
            stream,
            &MsgGetRequest {
                seq: Some(seq),
                ..Default::default()
            },
        )
        .await
        else {
            continue;
        };
        let size = m.headers.len() + m.payload.len();
        if max_bytes > 0 && sent > 0 && sent_bytes + size > max_bytes {
            break;
        }
        let pending = (seqs.len() - i - 1).to_string();
        let extra = [
            ("Nats-Num-Pending", pending),
            ("Nats-Last-Sequence", last.to_string()),
        ];
        let hdr = message_headers(stream, &m, &extra);
        send(shard, stream.account, reply, None, &hdr, &m.payload);
        sent_bytes += size;
        sent += 1;
        last = seq;
    }
    let hdr = if sent == 0 {
        headers::status(404, "Message Not Found", &[])
    } else {
        let left = seqs.len().saturating_sub(sent).to_string();
        headers::status(
            204,
            "EOB",
            &[
                ("Nats-Num-Pending", left),
                ("Nats-Last-Sequence", last.to_string()),
            ],
        )
    };
    send(shard, stream.account, reply, None, &hdr, b"");
}

fn message_headers(stream: &Stream, m: &StoredMsg, extra: &[(&str, String)]) -> Vec<u8> {
    let mut all = vec![
        ("Nats-Stream", stream.name.clone()),
        ("Nats-Subject", m.subject.clone()),
        ("Nats-Sequence", m.seq.to_string()),
        (
            "Nats-Time-Stamp",
            time_string(persist::from_ns(m.timestamp_ns)),
        ),
    ];
    all.extend(extra.iter().cloned());
    headers::with_added(&m.headers, &all)
}
