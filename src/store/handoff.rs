//! Events handed to this process's workers as they are received, already claimed.
//!
//! A pushed event would otherwise be written twice before its delivery: inserted unclaimed,
//! then claimed by an UPDATE of its wide row (a second row version, a dead one, and a query
//! per claim). When this process runs workers, a push instead inserts its events claimed under
//! the handoff's token with a lease, and once the push has committed they wait here, in
//! memory, for a free worker. Everything the claim promised still holds, because the row says
//! it: the lease runs out if this process dies (the maintenance rescue frees the events for any
//! node), a completion names the token (a worker whose lease ran out and whose work was taken
//! over changes nothing), and on shutdown the token's claims are released.
//!
//! The queue is bounded: when it holds `capacity` events, pushes insert their events
//! unclaimed, for workers to claim from the store as before (other nodes included).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use super::{Event, Job};
use crate::domain::Timestamp;

/// A claim written into new event rows: whose, and until when.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) struct Claim {
    pub(in crate::store) token: Uuid,
    pub(in crate::store) lease_end: Timestamp,
}

/// An event waiting for a worker, with the job its transformation reads.
#[derive(Debug)]
pub struct Handed {
    pub event: Event,
    pub job: Arc<Job>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Handed>,
    /// Places promised to pushes that have not committed yet.
    reserved: usize,
    closed: bool,
}

/// This process's queue of received events held for its workers (see the module's comment).
#[derive(Debug)]
pub struct Handoff {
    token: Uuid,
    capacity: usize,
    lease: chrono::Duration,
    state: Mutex<State>,
    /// Woken when the last reservation is settled (for [`Handoff::close`]).
    settled: Notify,
}

impl Handoff {
    /// A queue of at most `capacity` events, claimed for `lease` from their receipt.
    pub fn new(capacity: usize, lease: chrono::Duration) -> Arc<Handoff> {
        Arc::new(Handoff {
            token: Uuid::now_v7(),
            capacity,
            lease,
            state: Mutex::default(),
            settled: Notify::new(),
        })
    }

    /// The claim token of every event handed over.
    pub fn token(&self) -> Uuid {
        self.token
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Promises places for `n` events about to be stored; `None` when the queue is full or
    /// closed (the events are then stored unclaimed).
    pub(in crate::store) fn reserve(&self, n: usize) -> Option<Claim> {
        let mut s = self.state();
        if n == 0 || s.closed || s.queue.len() + s.reserved + n > self.capacity {
            return None;
        }
        s.reserved += n;
        Some(Claim {
            token: self.token,
            lease_end: Timestamp::from_datetime(Timestamp::now().0 + self.lease),
        })
    }

    /// The push holding `n` reserved places committed: its events wait for a worker.
    fn fill(&self, n: usize, events: Vec<Handed>) {
        let mut s = self.state();
        s.reserved -= n;
        // Closed: the workers stopped; the events' claims are released with the token.
        if !s.closed {
            s.queue.extend(events);
        }
        if s.reserved == 0 {
            self.settled.notify_waiters();
        }
    }

    /// The push holding `n` reserved places stored nothing.
    fn cancel(&self, n: usize) {
        let mut s = self.state();
        s.reserved -= n;
        if s.reserved == 0 {
            self.settled.notify_waiters();
        }
    }

    /// Up to `max` waiting events, oldest first.
    pub fn take(&self, max: usize) -> Vec<Handed> {
        self.take_except(max, &HashSet::new())
    }

    /// Up to `max` waiting events, oldest first, passing over those of the streams in `skip`
    /// (they keep their places).
    pub fn take_except(&self, max: usize, skip: &HashSet<Uuid>) -> Vec<Handed> {
        let mut s = self.state();
        if skip.is_empty() {
            let n = max.min(s.queue.len());
            return s.queue.drain(..n).collect();
        }
        let mut taken = Vec::new();
        let mut passed = VecDeque::new();
        while taken.len() < max {
            let Some(h) = s.queue.pop_front() else { break };
            if skip.contains(&h.event.stream_id) {
                passed.push_back(h);
            } else {
                taken.push(h);
            }
        }
        passed.append(&mut s.queue);
        s.queue = passed;
        taken
    }

    /// The ids of the events waiting for a worker (their leases are renewed while they wait).
    pub fn waiting_ids(&self) -> Vec<Uuid> {
        self.state().queue.iter().map(|h| h.event.id).collect()
    }

    /// Events waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.state().queue.len()
    }

    /// Takes no more events and forgets the waiting ones, once the pushes that reserved a
    /// place have committed or failed (for at most `wait`): after this, releasing the token's
    /// claims in the store frees every event handed over. Returns how many were waiting.
    pub async fn close(&self, wait: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + wait;
        self.state().closed = true;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.state().reserved == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                tracing::warn!("pushes still committing at shutdown; their leases will run out");
                break;
            }
        }
        let mut s = self.state();
        let n = s.queue.len();
        s.queue.clear();
        n
    }
}

/// Places a push holds in the handoff, with the events to hand over once it commits; a push
/// that stores nothing (a duplicate, a failed or abandoned commit) gives them back when
/// dropped.
#[derive(Debug)]
pub(in crate::store) struct Reservation {
    handoff: Arc<Handoff>,
    n: usize,
    events: Mutex<Option<Vec<Handed>>>,
}

impl Reservation {
    pub(in crate::store) fn new(handoff: Arc<Handoff>, n: usize, events: Vec<Handed>) -> Self {
        Reservation {
            handoff,
            n,
            events: Mutex::new(Some(events)),
        }
    }

    /// The push committed: its events go to the workers.
    pub(in crate::store) fn fill(&self) {
        let taken = self.events.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(events) = taken {
            self.handoff.fill(self.n, events);
        }
    }

    /// The push stored nothing (a repeated delivery): its places are free again.
    pub(in crate::store) fn cancel(&self) {
        let left = self.events.lock().unwrap_or_else(|e| e.into_inner()).take();
        if left.is_some() {
            self.handoff.cancel(self.n);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.cancel();
    }
}
