//! What a sublist entry can be on a shard: a client's subscription, interest that a
//! peer shard announced (as a route announces RS+), or an internal service.

use crate::server::client::Client;
use crate::server::sys::SysService;
use bytes::Bytes;
use std::cell::Cell;
use std::rc::{Rc, Weak};

pub struct Subscription {
    pub client: Weak<Client>,
    pub sid: Bytes,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    /// Deliveries after which the subscription ends; 0 for none.
    pub max: Cell<u64>,
    pub delivered: Cell<u64>,
}

/// Interest of another shard in a subject (and queue group, with its member count).
pub struct RemoteInterest {
    pub shard: usize,
    pub weight: Cell<u32>,
}

pub struct InternalSub {
    pub service: SysService,
}

#[derive(Clone)]
pub enum Interest {
    Local(Rc<Subscription>),
    Remote(Rc<RemoteInterest>),
    Internal(Rc<InternalSub>),
}

impl Interest {
    /// Members this entry stands for when a queue group picks one.
    pub fn weight(&self) -> u32 {
        match self {
            Interest::Remote(r) => r.weight.get(),
            _ => 1,
        }
    }
}

impl PartialEq for Interest {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Interest::Local(a), Interest::Local(b)) => Rc::ptr_eq(a, b),
            (Interest::Remote(a), Interest::Remote(b)) => Rc::ptr_eq(a, b),
            (Interest::Internal(a), Interest::Internal(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}
