//! The memory store (`storage: memory`): the same API as the file store, the
//! same index and retention logic, the messages kept in memory.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;

use crate::config::{Limits, PurgeRequest, StoredMsg};
use crate::core::{Core, Entry};
use crate::frame;
use crate::watch::{DurableWatch, Ticket};
use crate::{Result, StoreError};

type Body = Rc<(Bytes, Bytes)>;

struct Inner {
    core: Core<Option<Body>>,
    limits: Limits,
    record_max_bytes: usize,
    last_ts_ns: u64,
}

pub struct MemStore {
    inner: RefCell<Inner>,
    watch: Rc<DurableWatch>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl MemStore {
    pub fn new(limits: Limits) -> MemStore {
        MemStore {
            inner: RefCell::new(Inner {
                core: Core::new(),
                limits,
                record_max_bytes: 8 << 20,
                last_ts_ns: 0,
            }),
            watch: DurableWatch::new(0),
        }
    }

    fn put(
        &self,
        seq: u64,
        ts_ns: u64,
        term: u64,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<Ticket> {
        let mut i = self.inner.borrow_mut();
        let len = frame::record_len(subject.len(), headers.len(), payload.len());
        if len > i.record_max_bytes || subject.len() > u16::MAX as usize {
            return Err(StoreError::TooLarge {
                size_bytes: len,
                max_bytes: i.record_max_bytes,
            });
        }
        let size = frame::align_up(len) as u32;
        let id = i.core.intern(subject);
        let limits = i.limits.clone();
        i.core
            .admit(&limits, Some(id), size as u64)
            .map_err(StoreError::LimitReached)?;
        let ts = ts_ns.max(i.last_ts_ns);
        i.last_ts_ns = ts;
        i.core.push(
            seq,
            Entry {
                ts_ns: ts,
                term,
                subject: id,
                size_bytes: size,
                live: true,
                loc: Some(Rc::new((
                    Bytes::copy_from_slice(headers),
                    Bytes::copy_from_slice(payload),
                ))),
            },
        );
        i.core.enforce(&limits, ts, Some(id));
        drop(i);
        self.watch.advance(seq);
        Ok(self.watch.ticket(seq))
    }

    pub fn append(&self, subject: &str, headers: &[u8], payload: &[u8]) -> Result<Ticket> {
        self.append_at(now_ns(), subject, headers, payload)
    }

    pub fn append_at(
        &self,
        ts_ns: u64,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<Ticket> {
        let seq = self.inner.borrow().core.last_seq() + 1;
        self.put(seq, ts_ns, 0, subject, headers, payload)
    }

    pub fn append_entry(&self, index: u64, term: u64, data: &[u8]) -> Result<Ticket> {
        let last = self.inner.borrow().core.last_seq();
        if index != last + 1 {
            return Err(StoreError::Invalid(format!(
                "append at index {index}, last index is {last}"
            )));
        }
        self.put(index, now_ns(), term, "", b"", data)
    }

    pub fn watch(&self) -> Rc<DurableWatch> {
        self.watch.clone()
    }

    pub async fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        self.watch.wait(ticket).await
    }

    pub async fn commit(&self) -> Result<u64> {
        Ok(self.inner.borrow().core.last_seq())
    }

    pub async fn sync(&self) -> Result<u64> {
        self.commit().await
    }

    pub async fn commit_unsynced(&self) -> Result<u64> {
        self.commit().await
    }

    pub async fn get(&self, seq: u64) -> Result<Option<StoredMsg>> {
        let i = self.inner.borrow();
        Ok(i.core.live(seq).map(|e| {
            let body = e.loc.as_ref().expect("live entries have a body");
            StoredMsg {
                seq,
                subject: i.core.subject_name(e.subject).to_string(),
                headers: body.0.clone(),
                payload: body.1.clone(),
                timestamp_ns: e.ts_ns,
                term: e.term,
            }
        }))
    }

    crate::core::stream_reads!();

    pub fn delete(&self, seq: u64) -> Result<bool> {
        let mut i = self.inner.borrow_mut();
        let ok = i.core.remove(seq);
        if ok {
            if let Some(e) = i.core.entry_mut(seq) {
                e.loc = None;
            }
        }
        Ok(ok)
    }

    pub fn purge(&self, req: &PurgeRequest) -> Result<u64> {
        let mut i = self.inner.borrow_mut();
        let victims = i.core.purge_victims(req);
        if req.subject.is_none() {
            let floor = match (req.keep, req.up_to_seq) {
                (None, None) => i.core.last_seq() + 1,
                _ => victims.last().map_or(0, |v| v + 1),
            };
            let term = i.core.floor_term();
            i.core.compact(floor, term);
        } else {
            for &v in &victims {
                i.core.remove(v);
            }
        }
        Ok(victims.len() as u64)
    }

    pub fn expire(&self, now_ns: u64) -> Result<u64> {
        let mut i = self.inner.borrow_mut();
        let limits = i.limits.clone();
        Ok(i.core.enforce(&limits, now_ns, None).len() as u64)
    }

    pub fn set_limits(&self, limits: Limits) -> Result<u64> {
        self.inner.borrow_mut().limits = limits;
        self.expire(now_ns())
    }

    pub fn compact(&self, index: u64, term: u64) -> Result<()> {
        self.inner.borrow_mut().core.compact(index, term);
        Ok(())
    }

    pub async fn truncate_from(&self, index: u64) -> Result<()> {
        let mut i = self.inner.borrow_mut();
        if index < i.core.base_seq() {
            return Err(StoreError::Invalid(format!(
                "cannot truncate at {index}: first index is {}",
                i.core.base_seq()
            )));
        }
        i.core.truncate_from(index);
        drop(i);
        self.watch.rewind(index);
        Ok(())
    }
}
