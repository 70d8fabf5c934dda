//! The pool of transformation threads: admission to the queue, the threads' lives, and one
//! record's run on a thread, a panic included.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use super::cache::Cache;
use super::queue::{Pool, Queue, Request};
use super::{
    check_size, compile, library, Limits, LogSink, Outcome, Output, Program, RunContext,
    TransformError,
};
use crate::config::TransformConfig;
use crate::domain::error_code::ErrorCode;

/// A dry run or a check found the queue full: the caller should retry later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub message: String,
    /// A guess at when there will be room, from the work ahead.
    pub retry_after_seconds: u64,
}

/// Whether a caller may be refused when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Dry runs and checks: refused with `Busy` when full.
    Bounded,
    /// The engine's records: always queued. Each engine worker waits for one record at a
    /// time, so these are bounded by the worker count, and a record is never failed only
    /// because others were busy.
    Always,
}

/// How the pool is sized.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    pub(super) threads: usize,
    pub(super) queue_per_org: usize,
    pub(super) queue_total: usize,
    pub(super) cache_units: usize,
    pub(super) cache_bytes: usize,
}

/// The pool of transformation threads.
pub struct Transformer {
    pub(super) pool: Arc<Pool>,
    limits: Limits,
    sizes: Sizes,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("limits", &self.limits)
            .field("sizes", &self.sizes)
            .finish()
    }
}

fn stopped() -> TransformError {
    TransformError::new(
        ErrorCode::Unknown,
        "the transformation threads have stopped",
    )
}

impl Transformer {
    pub fn start(config: &TransformConfig) -> Arc<Transformer> {
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.threads
        };
        Transformer::with_threads(config, threads)
    }

    pub(super) fn with_threads(config: &TransformConfig, threads: usize) -> Arc<Transformer> {
        let limits = Limits::from_config(config);
        let sizes = Sizes {
            threads,
            queue_per_org: config.queue_per_org.max(1),
            queue_total: config.queue_total.max(1),
            cache_units: config.cache_per_thread.max(1),
            cache_bytes: usize::try_from(config.cache_mib_per_thread)
                .unwrap_or(usize::MAX >> 20)
                .saturating_mul(1 << 20),
        };
        let pool = Arc::new(Pool {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
        });
        for i in 0..threads {
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("wharf-transform-{i}"))
                // QuickJS's own stack limit (see js.rs) sits well inside this.
                .stack_size(16 << 20)
                .spawn(move || serve(&pool, limits, sizes))
                .expect("the transformation threads start");
        }
        Arc::new(Transformer {
            pool,
            limits,
            sizes,
        })
    }

    /// Queues a request unless it is bounded and there is no room.
    fn enqueue(&self, org: Uuid, request: Request, admission: Admission) -> Result<(), Queued> {
        let mut queue = self.pool.lock();
        if queue.closed {
            return Err(Queued::Stopped);
        }
        if admission == Admission::Bounded {
            if queue.waiting_for(org) >= self.sizes.queue_per_org {
                queue.drop_abandoned(Some(org));
            }
            if queue.waiting >= self.sizes.queue_total {
                queue.drop_abandoned(None);
            }
            let mine = queue.waiting_for(org);
            let full = if mine >= self.sizes.queue_per_org {
                Some(format!(
                    "your organisation already has {mine} records waiting for a transformation thread (the limit is transform.queue_per_org = {})",
                    self.sizes.queue_per_org
                ))
            } else if queue.waiting >= self.sizes.queue_total {
                Some(format!(
                    "{} records are waiting for a transformation thread (the limit is transform.queue_total = {})",
                    queue.waiting, self.sizes.queue_total
                ))
            } else {
                None
            };
            if let Some(why) = full {
                // Organisations are served in turn: this one's records ahead of a new one
                // take about one run each per thread.
                let ahead = mine.min(queue.waiting) as u64;
                let ms = ahead.saturating_mul(self.limits.timeout.as_millis() as u64)
                    / self.sizes.threads.max(1) as u64;
                return Err(Queued::Busy(Busy {
                    message: format!("{why}; nothing was run. Retry shortly."),
                    retry_after_seconds: ms.div_ceil(1000).clamp(1, 60),
                }));
            }
        }
        queue.push(org, request);
        drop(queue);
        self.pool.work.notify_one();
        Ok(())
    }

    /// Transforms one record for the engine: it waits its turn, however busy the threads are.
    pub async fn run(
        &self,
        org: Uuid,
        program: Program,
        record: Value,
        ctx: RunContext,
    ) -> Outcome {
        match self
            .run_with(org, program, record, ctx, Admission::Always)
            .await
        {
            Ok(outcome) => outcome,
            // Never refused (see `Admission::Always`); said for completeness.
            Err(busy) => Outcome {
                result: Err(TransformError::new(ErrorCode::Unknown, busy.message)),
                logs: Vec::new(),
                duration: Duration::ZERO,
                record: None,
            },
        }
    }

    /// Transforms one record for a dry run: refused with `Busy` when the queue is full.
    pub async fn try_run(
        &self,
        org: Uuid,
        program: Program,
        record: Value,
        ctx: RunContext,
    ) -> Result<Outcome, Busy> {
        self.run_with(org, program, record, ctx, Admission::Bounded)
            .await
    }

    async fn run_with(
        &self,
        org: Uuid,
        program: Program,
        record: Value,
        ctx: RunContext,
        admission: Admission,
    ) -> Result<Outcome, Busy> {
        if program.id == library::PASSTHROUGH_ID {
            // The library's passthrough is the identity, exactly: no engine round trip, and
            // numbers JavaScript could not hold (64-bit ids) pass through untouched.
            return Ok(Outcome {
                result: check_size(Output::Records(vec![record.clone()]), &self.limits),
                logs: Vec::new(),
                duration: Duration::ZERO,
                record: Some(record),
            });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let stopped = || Outcome {
            result: Err(stopped()),
            logs: Vec::new(),
            duration: Duration::ZERO,
            record: None,
        };
        let request = Request::Run {
            program,
            record,
            ctx,
            reply,
        };
        match self.enqueue(org, request, admission) {
            Ok(()) => Ok(answer.await.unwrap_or_else(|_| stopped())),
            Err(Queued::Busy(busy)) => Err(busy),
            Err(Queued::Stopped) => Ok(stopped()),
        }
    }

    /// Compiles a program (and, for JavaScript, runs its top level) to report syntax errors
    /// with their position before the code is saved; refused with `Busy` when the queue is full.
    pub async fn check(
        &self,
        org: Uuid,
        program: Program,
    ) -> Result<Result<(), TransformError>, Busy> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        match self.enqueue(org, Request::Check { program, reply }, Admission::Bounded) {
            Ok(()) => Ok(answer.await.unwrap_or_else(|_| Err(stopped()))),
            Err(Queued::Busy(busy)) => Err(busy),
            Err(Queued::Stopped) => Ok(Err(stopped())),
        }
    }

    /// Stops the threads once the queued work is done.
    pub fn stop(&self) {
        self.pool.lock().closed = true;
        self.pool.work.notify_all();
    }
}

enum Queued {
    Busy(Busy),
    Stopped,
}

/// A thread's life: runs records until the pool stops. A panic ends only the record it
/// happened on (see `handle`); should one escape even so, the thread starts over with an
/// empty cache rather than leave the pool a thread short.
fn serve(pool: &Pool, limits: Limits, sizes: Sizes) {
    loop {
        let mut cache = Cache::new(sizes);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while let Some(request) = pool.next() {
                handle(&mut cache, request, &limits);
            }
        }));
        match run {
            Ok(()) => return,
            Err(panic) => tracing::error!(
                panic = panic_text(&*panic),
                "a transformation thread recovered from a panic"
            ),
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}

/// What a panic while compiling or running a transformation becomes: that record's error.
pub(super) fn panicked(panic: Box<dyn std::any::Any + Send>) -> TransformError {
    let text = panic_text(&*panic);
    tracing::error!(
        panic = text,
        "a transformation panicked; only its record failed"
    );
    TransformError::new(
        ErrorCode::TransformError,
        format!(
            "the transformation stopped on an internal error ({text}); only this record failed"
        ),
    )
}

thread_local! {
    /// Tells whether the caller of the record running on this thread has stopped waiting.
    static CALLER_GONE: RefCell<Option<Box<dyn Fn() -> bool>>> = const { RefCell::new(None) };
}

/// Whether nobody waits any more for the record running on this thread: JavaScript checks it
/// as it checks its deadline, and stops work whose answer would be thrown away.
pub(crate) fn caller_gone() -> bool {
    CALLER_GONE.with(|c| {
        c.try_borrow()
            .is_ok_and(|probe| probe.as_ref().is_some_and(|gone| gone()))
    })
}

pub(super) fn handle(cache: &mut Cache, request: Request, limits: &Limits) {
    if request.abandoned() {
        // Nobody would read the answer.
        return;
    }
    match request {
        Request::Check { program, reply } => {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compile(&program, limits).map(|_| ())
            }))
            .unwrap_or_else(|panic| Err(panicked(panic)));
            let _ = reply.send(result);
        }
        Request::Run {
            program,
            record,
            ctx,
            reply,
        } => {
            let started = Instant::now();
            let mut logs = LogSink::default();
            let reply = Rc::new(reply);
            let probe = Rc::clone(&reply);
            CALLER_GONE.with(|c| *c.borrow_mut() = Some(Box::new(move || probe.is_closed())));
            let result = cache.run(&program, &record, &ctx, limits, &mut logs);
            CALLER_GONE.with(|c| c.borrow_mut().take());
            let Ok(reply) = Rc::try_unwrap(reply) else {
                return;
            };
            let _ = reply.send(Outcome {
                result: result.and_then(|out| check_size(out, limits)),
                logs: logs.take(),
                duration: started.elapsed(),
                record: Some(record),
            });
        }
    }
}
