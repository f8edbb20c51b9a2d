//! What a sublist entry can be on a shard: a client's subscription, an internal
//! service, interest that a peer shard announced (as a route announces RS+), or, on
//! the shard that holds the routes, interest a route announced.

use crate::route::conn::Route;
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

/// Whose interest an entry stands for: this server's clients (and services), or
/// another server's, known by the slot the routes' shard gave that server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Origin {
    Clients,
    Server(u8),
}

/// Interest of another shard in a subject (and queue group, with its member count).
pub struct RemoteInterest {
    pub shard: usize,
    pub origin: Origin,
    pub weight: Cell<u32>,
}

/// Interest another server announced over a route.
pub struct RouteInterest {
    pub route: Weak<Route>,
    pub slot: u8,
    pub weight: Cell<u32>,
}

/// A service of the server itself that subscribes like a client.
pub enum InternalSub {
    Sys(SysService),
    JetStream(crate::jetstream::Service),
}

#[derive(Clone)]
pub enum Interest {
    Local(Rc<Subscription>),
    Internal(Rc<InternalSub>),
    Remote(Rc<RemoteInterest>),
    Route(Rc<RouteInterest>),
}

impl Interest {
    /// Members this entry stands for when a queue group picks one.
    pub fn weight(&self) -> u32 {
        match self {
            Interest::Remote(r) => r.weight.get(),
            Interest::Route(r) => r.weight.get(),
            _ => 1,
        }
    }

    /// A route's new weight for a queue group it already announced.
    pub fn set_weight(&self, weight: u32) {
        match self {
            Interest::Remote(r) => r.weight.set(weight),
            Interest::Route(r) => r.weight.set(weight),
            _ => {}
        }
    }

    pub fn origin(&self) -> Origin {
        match self {
            Interest::Route(r) => Origin::Server(r.slot),
            Interest::Remote(r) => r.origin,
            _ => Origin::Clients,
        }
    }

    /// Whether the entry is a client's or a service's of this very shard.
    pub fn is_own(&self) -> bool {
        matches!(self, Interest::Local(_) | Interest::Internal(_))
    }

    /// Whether the entry stands for another server's interest (directly or via a
    /// peer shard's routes).
    pub fn is_route_kind(&self) -> bool {
        self.origin() != Origin::Clients
    }
}

impl PartialEq for Interest {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Interest::Local(a), Interest::Local(b)) => Rc::ptr_eq(a, b),
            (Interest::Internal(a), Interest::Internal(b)) => Rc::ptr_eq(a, b),
            (Interest::Remote(a), Interest::Remote(b)) => Rc::ptr_eq(a, b),
            (Interest::Route(a), Interest::Route(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}
