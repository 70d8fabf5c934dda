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
//! The queue is bounded: when it holds `capacity` events, further events are still inserted
//! claimed, but only their ids wait here (the spill, up to `spill` of them), and a worker
//! reads each one back by id when its turn comes — a read, not the claim's second write of
//! the wide row. An event is spilled only when it is expected to be reached within
//! [`MAX_SPILL_WAIT`] (the events ahead of it at the rate workers have been taking them), so
//! that the node holds no more than it expects to reach soon; its lease is written to cover
//! that wait and renewed only if that turns out too short. When the spill too is full (or the
//! wait too long), and with `spill` 0, pushes insert their events unclaimed, for workers to
//! claim from the store as before (other nodes included).

use std::collections::{HashMap, HashSet, VecDeque};
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
    /// Only the events' ids wait in memory (see the module's comment).
    pub(in crate::store) spilled: bool,
}

/// A spilled event waiting for a worker: read back by id when taken.
#[derive(Debug, Clone, Copy)]
pub struct Spilled {
    pub id: Uuid,
    pub stream_id: Uuid,
    /// The end of the lease written in its row (or renewed to since).
    pub lease_end: Timestamp,
}

/// Longest an event is spilled for: one expected to wait longer (slow workers, a long
/// spill) is stored unclaimed instead, for any node's workers.
const MAX_SPILL_WAIT: chrono::Duration = chrono::Duration::seconds(60);

/// Longest a renewal of spilled events' leases reaches beyond the usual lease (workers that
/// stopped taking events, a stalled destination).
const MAX_EXPECTED_WAIT: chrono::Duration = chrono::Duration::minutes(5);

/// Most waiting entries one take looks at while passing over streams at their share: the
/// rest wait (the store's claim looks no further either).
const TAKE_WINDOW: usize = 1000;

/// The rate assumed before workers have been seen taking events (events a second).
const FIRST_RATE: f64 = 100.0;

/// The lowest rate assumed (events a second): workers that took nothing for a while.
const MIN_RATE: f64 = 0.1;

/// An event waiting for a worker, with the job its transformation reads.
#[derive(Debug)]
pub struct Handed {
    pub event: Event,
    pub job: Arc<Job>,
}

/// An entry waiting in the handoff, of one stream.
trait OfStream {
    fn stream_id(&self) -> Uuid;
}

impl OfStream for Handed {
    fn stream_id(&self) -> Uuid {
        self.event.stream_id
    }
}

impl OfStream for Spilled {
    fn stream_id(&self) -> Uuid {
        self.stream_id
    }
}

/// Entries waiting for a worker, oldest first, and how many of them each stream has: a take
/// that would pass over every one of them (each of their streams at its share, as under a
/// backlog for one destination) is answered at once, instead of looking through the window.
#[derive(Debug)]
struct Waiting<T> {
    entries: VecDeque<T>,
    per_stream: HashMap<Uuid, usize>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting {
            entries: VecDeque::new(),
            per_stream: HashMap::new(),
        }
    }
}

impl<T: OfStream> Waiting<T> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut()
    }

    fn counted(&mut self, h: &T) {
        *self.per_stream.entry(h.stream_id()).or_default() += 1;
    }

    fn extend(&mut self, entries: impl IntoIterator<Item = T>) {
        for h in entries {
            self.counted(&h);
            self.entries.push_back(h);
        }
    }

    fn push_front(&mut self, h: T) {
        self.counted(&h);
        self.entries.push_front(h);
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.per_stream.clear();
    }

    /// Up to `max` entries from the front, passing over those of the streams in `skip` (see
    /// [`take_from`]).
    fn take(&mut self, max: usize, skip: &HashSet<Uuid>) -> Vec<T> {
        if max == 0 || self.per_stream.keys().all(|s| skip.contains(s)) {
            return Vec::new();
        }
        let taken = take_from(&mut self.entries, max, |h| skip.contains(&h.stream_id()));
        for h in &taken {
            let stream = h.stream_id();
            if let Some(n) = self.per_stream.get_mut(&stream) {
                *n -= 1;
                if *n == 0 {
                    self.per_stream.remove(&stream);
                }
            }
        }
        taken
    }
}

#[derive(Debug)]
struct State {
    queue: Waiting<Handed>,
    /// Places promised to pushes that have not committed yet.
    reserved: usize,
    spill: Waiting<Spilled>,
    /// Places in the spill promised to pushes that have not committed yet.
    reserved_spill: usize,
    closed: bool,
    /// Events taken since `window_start` while events were waiting, and the rate (events a
    /// second) workers took them at in the last windows.
    taken: usize,
    window_start: std::time::Instant,
    rate: f64,
    /// Events of committed pushes since start, by where they went.
    placed: Placed,
}

/// Received events of committed pushes, by where they went: held in memory for this
/// process's workers, spilled (ids held), or stored unclaimed for any node's workers to claim
/// (the queue and the spill were full, or the wait too long).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub queued: u64,
    pub spilled: u64,
    pub stored: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            queue: Waiting::default(),
            reserved: 0,
            spill: Waiting::default(),
            reserved_spill: 0,
            closed: false,
            taken: 0,
            window_start: std::time::Instant::now(),
            rate: FIRST_RATE,
            placed: Placed::default(),
        }
    }
}

impl State {
    fn waiting(&self) -> usize {
        self.queue.len() + self.spill.len()
    }

    /// Counts `n` events taken; every second of waiting events, the rate is measured again
    /// (each second in which events waited and none was taken halves it).
    fn count_taken(&mut self, n: usize) {
        self.taken += n;
        let elapsed = self.window_start.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            if self.waiting() > 0 && self.taken > 0 {
                let now = self.taken as f64 / elapsed;
                self.rate = (self.rate + now) / 2.0;
            } else if self.waiting() > 0 {
                self.rate = (self.rate * 0.5f64.powf(elapsed)).max(MIN_RATE);
            }
            self.taken = 0;
            self.window_start = std::time::Instant::now();
        }
    }

    /// How long the events ahead of `ahead` more are expected to wait, at the rate workers
    /// have been taking them (at most [`MAX_EXPECTED_WAIT`]).
    fn expected_wait(&self, ahead: usize) -> chrono::Duration {
        chrono::Duration::milliseconds((ahead as f64 / self.rate * 1000.0) as i64)
            .min(MAX_EXPECTED_WAIT)
    }
}

/// This process's queue of received events held for its workers (see the module's comment).
#[derive(Debug)]
pub struct Handoff {
    token: Uuid,
    capacity: usize,
    spill: usize,
    lease: chrono::Duration,
    state: Mutex<State>,
    /// Woken when the last reservation is settled (for [`Handoff::close`]).
    settled: Notify,
}

impl Handoff {
    /// A queue of at most `capacity` events and `spill` ids beyond them, claimed for `lease`
    /// from their receipt (spilled ones for longer, see the module's comment).
    pub fn new(capacity: usize, spill: usize, lease: chrono::Duration) -> Arc<Handoff> {
        Arc::new(Handoff {
            token: Uuid::now_v7(),
            capacity,
            spill,
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

    /// Promises places for `n` events about to be stored: in the queue while it has room and
    /// nothing is spilled (the events keep their order), else in the spill. `None` when both
    /// are full, or closed (the events are then stored unclaimed).
    pub(in crate::store) fn reserve(&self, n: usize) -> Option<Claim> {
        let mut s = self.state();
        if n == 0 || s.closed {
            return None;
        }
        let now = Timestamp::now().0;
        let spilling = !s.spill.is_empty() || s.reserved_spill > 0;
        if !spilling && s.queue.len() + s.reserved + n <= self.capacity {
            s.reserved += n;
            return Some(Claim {
                token: self.token,
                lease_end: Timestamp::from_datetime(now + self.lease),
                spilled: false,
            });
        }
        let spilled = s.spill.len() + s.reserved_spill;
        if spilled + n > self.spill {
            return None;
        }
        let wait = s.expected_wait(s.queue.len() + s.reserved + spilled + n);
        if wait > MAX_SPILL_WAIT {
            return None;
        }
        s.reserved_spill += n;
        Some(Claim {
            token: self.token,
            lease_end: Timestamp::from_datetime(now + self.lease + wait),
            spilled: true,
        })
    }

    /// The push holding `n` reserved places in the queue and `m` in the spill committed: its
    /// events wait for a worker (and `unclaimed` more of its events were stored for any
    /// node's workers).
    fn fill(
        &self,
        (n, m): (usize, usize),
        events: Vec<Handed>,
        spilled: Vec<Spilled>,
        unclaimed: usize,
    ) {
        let mut s = self.state();
        s.reserved -= n;
        s.reserved_spill -= m;
        s.placed.queued += n as u64;
        s.placed.spilled += m as u64;
        s.placed.stored += unclaimed as u64;
        // Closed: the workers stopped; the events' claims are released with the token.
        if !s.closed {
            s.queue.extend(events);
            s.spill.extend(spilled);
        }
        if s.reserved + s.reserved_spill == 0 {
            self.settled.notify_waiters();
        }
    }

    /// The push holding `n` reserved places in the queue and `m` in the spill stored nothing.
    pub(in crate::store) fn cancel(&self, (n, m): (usize, usize)) {
        let mut s = self.state();
        s.reserved -= n;
        s.reserved_spill -= m;
        if s.reserved + s.reserved_spill == 0 {
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
        let taken = s.queue.take(max, skip);
        s.count_taken(taken.len());
        taken
    }

    /// Up to `max` ids of spilled events, oldest first, passing over those of the streams in
    /// `skip`: the taker reads each back, if its row is still held under [`Handoff::token`].
    pub fn take_spilled(&self, max: usize, skip: &HashSet<Uuid>) -> Vec<Spilled> {
        let mut s = self.state();
        let taken = s.spill.take(max, skip);
        s.count_taken(taken.len());
        taken
    }

    /// Spilled events taken but not read back (storage failed): they wait again, first.
    pub fn restore_spilled(&self, taken: Vec<Spilled>) {
        let mut s = self.state();
        if s.closed {
            return;
        }
        for h in taken.into_iter().rev() {
            s.spill.push_front(h);
        }
    }

    /// The ids of the events waiting in the queue, whose leases are renewed while they wait
    /// (the store writes only those ending within three quarters of a lease).
    pub fn waiting_ids(&self) -> Vec<Uuid> {
        self.state().queue.iter().map(|h| h.event.id).collect()
    }

    /// Which of `ids` wait here, in the queue or spilled (held under [`Handoff::token`]).
    pub fn holds(&self, ids: &HashSet<Uuid>) -> HashSet<Uuid> {
        let s = self.state();
        let queued = s.queue.iter().map(|h| h.event.id);
        let spilled = s.spill.iter().map(|h| h.id);
        queued
            .chain(spilled)
            .filter(|id| ids.contains(id))
            .collect()
    }

    /// The spilled events whose leases end within three quarters of a lease, and the lease
    /// to renew them for: long enough for the whole spill to be reached at the rate workers
    /// have been taking events (a stalled destination stops them: the rate falls, the lease
    /// grows to its bound), so that waiting events are not written again and again. Once
    /// the store has renewed them, [`Handoff::spill_renewed`] says so.
    pub fn spill_renewals(&self) -> (Vec<Uuid>, chrono::Duration) {
        let mut s = self.state();
        s.count_taken(0);
        let lease = self.lease + s.expected_wait(s.waiting());
        let soon = Timestamp::now().0 + self.lease * 3 / 4;
        let ids = s
            .spill
            .iter()
            .filter(|h| h.lease_end.0 < soon)
            .map(|h| h.id)
            .collect();
        (ids, lease)
    }

    /// The leases of the spilled events `ids` were renewed to at least `until`.
    pub fn spill_renewed(&self, ids: &[Uuid], until: Timestamp) {
        let ids: HashSet<&Uuid> = ids.iter().collect();
        let mut s = self.state();
        for h in s.spill.iter_mut().filter(|h| ids.contains(&h.id)) {
            h.lease_end = until;
        }
    }

    /// Events waiting for a worker, in the queue and spilled.
    pub fn waiting(&self) -> usize {
        self.state().waiting()
    }

    /// Spilled events waiting for a worker.
    pub fn spilled(&self) -> usize {
        self.state().spill.len()
    }

    /// Where the events of committed pushes went, since this process started.
    pub fn placed(&self) -> Placed {
        self.state().placed
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
            let reserved = {
                let s = self.state();
                s.reserved + s.reserved_spill
            };
            if reserved == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                tracing::warn!("pushes still committing at shutdown; their leases will run out");
                break;
            }
        }
        let mut s = self.state();
        let n = s.waiting();
        s.queue.clear();
        s.spill.clear();
        n
    }
}

/// Takes up to `max` of `queue` from its front, passing over (and keeping in order) those
/// `skip` says; looks at no more than [`TAKE_WINDOW`] entries.
fn take_from<T>(queue: &mut VecDeque<T>, max: usize, skip: impl Fn(&T) -> bool) -> Vec<T> {
    let mut taken = Vec::new();
    let mut passed = Vec::new();
    while taken.len() < max && taken.len() + passed.len() < TAKE_WINDOW {
        let Some(h) = queue.pop_front() else { break };
        if skip(&h) {
            passed.push(h);
        } else {
            taken.push(h);
        }
    }
    for h in passed.into_iter().rev() {
        queue.push_front(h);
    }
    taken
}

/// Places a push holds in the handoff, with the events to hand over once it commits (and the
/// count of its events stored unclaimed, for [`Handoff::placed`]); a push that stores nothing
/// (a duplicate, a failed or abandoned commit) gives them back when dropped.
#[derive(Debug)]
pub(in crate::store) struct Reservation {
    handoff: Arc<Handoff>,
    /// The events for the queue and the ids for the spill, one per place reserved.
    events: Mutex<Option<(Vec<Handed>, Vec<Spilled>)>>,
    unclaimed: usize,
}

impl Reservation {
    pub(in crate::store) fn new(
        handoff: Arc<Handoff>,
        events: Vec<Handed>,
        spilled: Vec<Spilled>,
        unclaimed: usize,
    ) -> Self {
        Reservation {
            handoff,
            events: Mutex::new(Some((events, spilled))),
            unclaimed,
        }
    }

    /// The push committed: its events go to the workers.
    pub(in crate::store) fn fill(&self) {
        let taken = self.events.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((events, spilled)) = taken {
            self.handoff.fill(
                (events.len(), spilled.len()),
                events,
                spilled,
                self.unclaimed,
            );
        }
    }

    /// The push stored nothing (a repeated delivery): its places are free again.
    pub(in crate::store) fn cancel(&self) {
        let left = self.events.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((events, spilled)) = left {
            self.handoff.cancel((events.len(), spilled.len()));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_expected_to_wait_past_the_bound_is_stored_unclaimed() {
        let lease = chrono::Duration::seconds(20);
        let h = Handoff::new(0, 100_000, lease);
        // At the first rate assumed (100 a second), 6,000 events ahead is a minute's wait.
        let first = h.reserve(5_000).expect("spilled");
        assert!(first.spilled);
        assert!(h.reserve(1_500).is_none(), "past a minute's wait");
        let last = h.reserve(900).expect("spilled");
        assert!(last.spilled);
        // Its lease covers its wait: 5,900 ahead at 100 a second.
        let wait = last.lease_end.0 - Timestamp::now().0 - lease;
        assert!(wait > chrono::Duration::seconds(58), "{wait:?}");
        assert!(wait <= MAX_SPILL_WAIT, "{wait:?}");
    }

    #[test]
    fn committed_pushes_count_where_their_events_went() {
        let lease = chrono::Duration::seconds(20);
        let h = Handoff::new(2, 3, lease);
        // Two events fit the queue, three the spill; a third push's event is stored unclaimed.
        let queued = h.reserve(2).expect("queued");
        assert!(!queued.spilled);
        let spilled = h.reserve(3).expect("spilled");
        assert!(spilled.spilled);
        assert!(h.reserve(1).is_none(), "queue and spill full");
        let spill = |n: u128| Spilled {
            id: Uuid::from_u128(n),
            stream_id: Uuid::nil(),
            lease_end: spilled.lease_end,
        };
        // A push that stored nothing (a repeated delivery) counts none of its events, those
        // it would have stored unclaimed included.
        h.cancel((2, 0));
        Reservation::new(h.clone(), vec![], vec![], 4).cancel();
        assert_eq!(h.placed(), Placed::default());
        Reservation::new(h.clone(), vec![], vec![spill(1), spill(2), spill(3)], 1).fill();
        assert_eq!(
            h.placed(),
            Placed {
                queued: 0,
                spilled: 3,
                stored: 1
            }
        );
        assert_eq!(h.spilled(), 3);
    }

    #[test]
    fn a_take_that_would_pass_over_every_waiting_entry_answers_at_once() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let spilled = |n: u128, stream_id: Uuid| Spilled {
            id: Uuid::from_u128(100 + n),
            stream_id,
            lease_end: Timestamp::now(),
        };
        let mut w: Waiting<Spilled> = Waiting::default();
        w.extend((0..5).map(|n| spilled(n, a)));
        assert_eq!(w.per_stream, HashMap::from([(a, 5)]));
        // Stream a at its share: nothing taken, nothing moved.
        assert!(w.take(3, &HashSet::from([a])).is_empty());
        assert!(w
            .iter()
            .map(|h| h.id)
            .eq((0..5).map(|n| Uuid::from_u128(100 + n))));
        w.extend([spilled(5, b)]);
        // Now a b entry waits behind them: it is taken, a's keep their places and counts.
        let taken = w.take(3, &HashSet::from([a]));
        assert_eq!(
            taken.iter().map(|h| h.id).collect::<Vec<_>>(),
            [Uuid::from_u128(105)]
        );
        assert_eq!(w.per_stream, HashMap::from([(a, 5)]));
        let taken = w.take(2, &HashSet::new());
        assert_eq!(taken.len(), 2);
        w.push_front(taken.into_iter().next().expect("taken"));
        assert_eq!(w.per_stream, HashMap::from([(a, 4)]));
        assert_eq!(w.take(10, &HashSet::new()).len(), 4);
        assert!(
            w.per_stream.is_empty(),
            "a stream with nothing waiting is not counted"
        );
        assert!(w.take(10, &HashSet::new()).is_empty());
        w.extend([spilled(6, b)]);
        w.clear();
        assert!(w.is_empty() && w.per_stream.is_empty());
    }

    #[test]
    fn a_take_passes_over_skipped_entries_within_its_window_and_keeps_their_order() {
        let mut queue: VecDeque<usize> = (0..TAKE_WINDOW + 500).collect();
        // Everything within the window is passed over: nothing is taken, nothing moves.
        let taken = take_from(&mut queue, 10, |i| *i < TAKE_WINDOW + 100);
        assert!(taken.is_empty());
        assert!(queue.iter().copied().eq(0..TAKE_WINDOW + 500));
        // Odd entries passed over, even ones taken, in order.
        let taken = take_from(&mut queue, 3, |i| i % 2 == 1);
        assert_eq!(taken, vec![0, 2, 4]);
        assert_eq!(
            queue.iter().take(4).copied().collect::<Vec<_>>(),
            [1, 3, 5, 6]
        );
        assert_eq!(queue.len(), TAKE_WINDOW + 497);
    }
}
