//! Each destination's share of this process's workers.
//!
//! Workers take due events oldest first, whatever their destination. A destination that
//! answers slowly would then fill every worker in turn — its backlog is always the oldest — and
//! the other destinations' events would wait behind it. So a destination may have at most three
//! quarters of the workers in flight (a burst to one that has not answered yet leaves the rest
//! to the others), and one whose deliveries have been taking more than a second of late at most
//! `workers.per_destination`. The claim leaves out the streams of a destination at its share
//! (they wait, claimable, in the store or in the handoff), and an event found over its
//! destination's share once claimed waits, held, until a place frees.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// A destination whose deliveries take longer than this, on a recent average, is slow.
const SLOW: Duration = Duration::from_secs(1);

/// How much each delivery moves the average of its destination's (the rest is the past's).
const WEIGHT: f64 = 0.2;

/// How long a stream's destination, as read, is trusted for leaving its events out of claims.
const FRESH: Duration = Duration::from_secs(10);

/// Streams and destinations not seen for this long are forgotten, once there are more than
/// [`PRUNE_AT`] streams known.
const FORGET: Duration = Duration::from_secs(600);
const PRUNE_AT: usize = 10_000;

pub(super) struct Lanes {
    /// What a slow destination may hold.
    share: usize,
    /// What any destination may hold.
    ceiling: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Events in flight by destination.
    busy: HashMap<Uuid, usize>,
    /// Each stream's destination, as last read, and when.
    streams: HashMap<Uuid, (Uuid, Instant)>,
    /// Each destination's recent time per delivery, in seconds (a moving average), and when
    /// it last delivered.
    pace: HashMap<Uuid, (f64, Instant)>,
}

impl State {
    fn limit(&self, lanes: &Lanes, destination: &Uuid) -> usize {
        match self.pace.get(destination) {
            Some((p, _)) if *p > SLOW.as_secs_f64() => lanes.share.min(lanes.ceiling),
            _ => lanes.ceiling,
        }
    }

    fn full(&self, lanes: &Lanes, destination: &Uuid) -> bool {
        self.busy
            .get(destination)
            .is_some_and(|n| *n >= self.limit(lanes, destination))
    }
}

impl Lanes {
    /// Shares of `workers`: three quarters (rounded up) for any destination, `share` for a
    /// slow one.
    pub(super) fn new(workers: usize, share: usize) -> Arc<Lanes> {
        Arc::new(Lanes {
            share: share.max(1),
            ceiling: (workers - workers / 4).max(1),
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The streams whose destination has its share in flight: claims leave them out.
    pub(super) fn full_streams(&self) -> HashSet<Uuid> {
        let s = self.state();
        let full: HashSet<Uuid> = s.busy.keys().filter(|d| s.full(self, d)).copied().collect();
        if full.is_empty() {
            return full;
        }
        // A stream not seen for a while may deliver elsewhere now: it is claimed again, and
        // its destination read afresh.
        s.streams
            .iter()
            .filter(|(_, (d, seen))| full.contains(d) && seen.elapsed() < FRESH)
            .map(|(stream, _)| *stream)
            .collect()
    }

    /// A place for one event of `stream`, which delivers to `destination`, until the returned
    /// lane is dropped; `None` when the destination has its share in flight.
    pub(super) fn enter(self: &Arc<Self>, stream: Uuid, destination: Uuid) -> Option<Lane> {
        let mut s = self.state();
        let now = Instant::now();
        s.streams.insert(stream, (destination, now));
        if s.streams.len() > PRUNE_AT {
            s.streams
                .retain(|_, (_, seen)| now.duration_since(*seen) < FORGET);
            let busy = std::mem::take(&mut s.busy);
            s.pace
                .retain(|d, (_, at)| busy.contains_key(d) || now.duration_since(*at) < FORGET);
            s.busy = busy;
        }
        if s.full(self, &destination) {
            return None;
        }
        *s.busy.entry(destination).or_default() += 1;
        Some(Lane {
            lanes: self.clone(),
            destination,
        })
    }

    /// One delivery to `destination` took `took`.
    pub(super) fn observe(&self, destination: Uuid, took: Duration) {
        let took = took.as_secs_f64();
        let mut s = self.state();
        let now = Instant::now();
        let (pace, at) = s.pace.entry(destination).or_insert((took, now));
        *pace += WEIGHT * (took - *pace);
        *at = now;
    }
}

/// One event's place in its destination's share.
pub(super) struct Lane {
    lanes: Arc<Lanes>,
    destination: Uuid,
}

impl Drop for Lane {
    fn drop(&mut self) {
        let mut s = self.lanes.state();
        if let Some(n) = s.busy.get_mut(&self.destination) {
            *n -= 1;
            if *n == 0 {
                s.busy.remove(&self.destination);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_takes_no_more_than_its_share() {
        // Eight workers: any destination may hold six, a slow one two.
        let lanes = Lanes::new(8, 2);
        let (slow, fast) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        // Streams a and b deliver to one destination, c to another. Before any answer, a
        // destination may hold three quarters of the workers.
        let burst: Vec<Lane> = (0..6).map(|_| lanes.enter(a, slow).unwrap()).collect();
        assert!(
            lanes.enter(b, slow).is_none(),
            "the rest is left to the others"
        );
        assert_eq!(lanes.full_streams(), HashSet::from([a, b]));
        let other = lanes
            .enter(c, fast)
            .expect("a place for another destination");
        drop(burst);
        drop(other);
        assert!(lanes.full_streams().is_empty());
        // Its deliveries take 10 s: from now on it holds two at most.
        lanes.observe(slow, Duration::from_secs(10));
        let first = lanes.enter(a, slow).expect("a place");
        assert!(lanes.full_streams().is_empty());
        let second = lanes.enter(b, slow).expect("a place");
        assert!(lanes.enter(a, slow).is_none(), "the share is taken");
        assert_eq!(lanes.full_streams(), HashSet::from([a, b]));
        // A fast destination is held to the ceiling only.
        lanes.observe(fast, Duration::from_millis(5));
        let others: Vec<Lane> = (0..6).map(|_| lanes.enter(c, fast).unwrap()).collect();
        assert_eq!(lanes.full_streams(), HashSet::from([a, b, c]));
        drop(others);
        drop(first);
        assert!(lanes.full_streams().is_empty());
        assert!(lanes.enter(a, slow).is_some());
        drop(second);
        // Answering fast again, it is soon no longer held to the share.
        for _ in 0..15 {
            lanes.observe(slow, Duration::from_millis(5));
        }
        let again: Vec<Lane> = (0..6).map(|_| lanes.enter(a, slow).unwrap()).collect();
        assert!(lanes.enter(a, slow).is_none());
        drop(again);
        // A stream moved to another destination counts there.
        let moved: Vec<Lane> = (0..6).map(|_| lanes.enter(b, fast).unwrap()).collect();
        assert_eq!(lanes.full_streams(), HashSet::from([b, c]));
        drop(moved);
        assert!(lanes.state().busy.is_empty());
    }
}
