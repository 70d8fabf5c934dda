//! The line records wait in for a transformation thread: one line per organisation, served
//! in turn.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};

use serde_json::Value;
use uuid::Uuid;

use super::{Outcome, Program, RunContext, TransformError};

/// Work for a transformation thread, with where its answer goes.
pub(super) enum Request {
    Run {
        program: Program,
        record: Value,
        ctx: RunContext,
        reply: tokio::sync::oneshot::Sender<Outcome>,
    },
    Check {
        program: Program,
        reply: tokio::sync::oneshot::Sender<Result<(), TransformError>>,
    },
}

impl Request {
    /// Whether whoever queued it has stopped waiting (a dry run's client went away or timed
    /// out): its work would be thrown away.
    pub(super) fn abandoned(&self) -> bool {
        match self {
            Request::Run { reply, .. } => reply.is_closed(),
            Request::Check { reply, .. } => reply.is_closed(),
        }
    }
}

/// Records waiting for a thread, one line per organisation, served in turn: a thread takes the
/// next record of the next organisation, so one organisation's backlog delays another's by at
/// most one record per thread, never by the whole backlog.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) lines: HashMap<Uuid, VecDeque<Request>>,
    /// Organisations with waiting records, in the order they are served next.
    pub(super) turn: VecDeque<Uuid>,
    pub(super) waiting: usize,
    pub(super) closed: bool,
}

impl Queue {
    pub(super) fn push(&mut self, org: Uuid, request: Request) {
        let line = self.lines.entry(org).or_default();
        if line.is_empty() {
            self.turn.push_back(org);
        }
        line.push_back(request);
        self.waiting += 1;
    }

    pub(super) fn pop(&mut self) -> Option<Request> {
        while let Some(org) = self.turn.pop_front() {
            let Some(line) = self.lines.get_mut(&org) else {
                continue;
            };
            let request = line.pop_front();
            if line.is_empty() {
                self.lines.remove(&org);
            } else {
                self.turn.push_back(org);
            }
            if let Some(request) = request {
                self.waiting -= 1;
                return Some(request);
            }
        }
        None
    }

    /// Forgets the records nobody waits for any more, in one organisation's line or in all.
    pub(super) fn drop_abandoned(&mut self, org: Option<Uuid>) {
        let orgs: Vec<Uuid> = match org {
            Some(o) => vec![o],
            None => self.lines.keys().copied().collect(),
        };
        for o in orgs {
            if let Some(line) = self.lines.get_mut(&o) {
                let before = line.len();
                line.retain(|r| !r.abandoned());
                self.waiting -= before - line.len();
                if line.is_empty() {
                    self.lines.remove(&o);
                    self.turn.retain(|t| *t != o);
                }
            }
        }
    }

    pub(super) fn waiting_for(&self, org: Uuid) -> usize {
        self.lines.get(&org).map_or(0, VecDeque::len)
    }
}

/// The queue the threads share, and the signal that work arrived.
pub(super) struct Pool {
    pub(super) queue: Mutex<Queue>,
    pub(super) work: Condvar,
}

impl Pool {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next record to run, waiting for one; `None` once stopped and drained.
    pub(super) fn next(&self) -> Option<Request> {
        let mut queue = self.lock();
        loop {
            if let Some(request) = queue.pop() {
                return Some(request);
            }
            if queue.closed {
                return None;
            }
            queue = self.work.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }
}
