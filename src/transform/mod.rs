//! Transformations: user code that turns one source record into the destination's format.
//!
//! JavaScript runs in QuickJS and templates in MiniJinja, on a small pool of dedicated threads
//! (CPU-bound work stays off the async runtime). Each thread compiles a transformation once
//! and keeps it while it is unchanged, within a bounded cache; every record runs under a
//! CPU-time limit, a memory limit and an output limit, and a failure, a panic included, ends
//! only that record. Records wait in one bounded line per organisation, served in turn, so one
//! organisation's backlog cannot hold up another's.

mod heap;
pub mod helpers;
mod js;
pub mod library;
pub mod lookups;
mod template;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::config::TransformConfig;
use crate::domain::error_code::ErrorCode;
use crate::domain::Timestamp;
use crate::store::Transformation;
pub use lookups::Lookups;

/// Limits applied to every record.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub max_output_bytes: usize,
    /// Most outputs one record may become.
    pub max_outputs: usize,
    /// Largest width the padding helpers accept.
    pub max_pad_width: usize,
}

impl Limits {
    pub fn from_config(c: &TransformConfig) -> Limits {
        let bytes = |n: u64, shift: u32| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << shift)
        };
        Limits {
            timeout: Duration::from_millis(c.timeout_ms),
            memory_bytes: bytes(c.memory_mib, 20),
            max_output_bytes: bytes(c.max_output_kib, 10),
            max_outputs: c.max_outputs,
            max_pad_width: c.max_pad_width,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_config(&TransformConfig::default())
    }
}

/// What a transformation sees besides the record: `ctx.settings`, `ctx.job` and the lookup
/// tables (one snapshot for the whole run).
#[derive(Debug, Clone)]
pub struct RunContext {
    pub settings: Value,
    pub job: Value,
    pub lookups: Arc<Lookups>,
}

/// The code to run, identified so that threads can keep it compiled.
#[derive(Debug, Clone)]
pub struct Program {
    pub id: Uuid,
    pub version: Timestamp,
    pub language: Language,
    pub format: String,
    pub code: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    JavaScript,
    Template,
}

impl Program {
    pub fn of(t: &Transformation) -> Result<Program, TransformError> {
        let language = match t.language.as_str() {
            "javascript" => Language::JavaScript,
            "template" => Language::Template,
            other => {
                return Err(TransformError::new(
                    ErrorCode::TransformError,
                    format!("unknown transformation language `{other}`"),
                ))
            }
        };
        Ok(Program {
            id: t.id,
            version: t.updated_at,
            language,
            format: t.format.clone(),
            code: Arc::from(t.code.as_str()),
        })
    }
}

/// The content type a transformation's declared format is delivered as.
pub fn content_type(format: &str) -> &'static str {
    match format {
        "csv" => "text/csv",
        "xml" => "application/xml",
        "text" => "text/plain",
        _ => "application/json",
    }
}

/// What one record became.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// One output per element: JSON values, or for text formats one string.
    Records(Vec<Value>),
    /// The transformation returned `null`: nothing to deliver, for this reason.
    Skip(String),
}

/// A run's result with what it logged and how long it took.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Result<Output, TransformError>,
    pub logs: Vec<String>,
    pub duration: Duration,
}

/// Why a record could not be transformed: a catalogue code and a message, with the position
/// in the code when there is one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransformError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

impl TransformError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> TransformError {
        TransformError {
            code,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    pub fn at(mut self, line: Option<u32>, column: Option<u32>) -> TransformError {
        self.line = line;
        self.column = column;
        self
    }

    /// The message with its position, as stored on the event.
    pub fn describe(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{} (line {l}, column {c})", self.message),
            (Some(l), None) => format!("{} (line {l})", self.message),
            _ => self.message.clone(),
        }
    }
}

/// Most log lines kept per record, and longest line.
const MAX_LOG_LINES: usize = 100;
const MAX_LOG_LINE: usize = 2000;

/// Collects `log()` lines of one record, bounded.
#[derive(Debug, Default)]
pub(crate) struct LogSink {
    pub lines: Vec<String>,
    pub dropped: usize,
}

impl LogSink {
    pub fn push(&mut self, mut line: String) {
        if self.lines.len() >= MAX_LOG_LINES {
            self.dropped += 1;
            return;
        }
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        self.lines.push(line);
    }

    pub fn take(&mut self) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.lines);
        if self.dropped > 0 {
            lines.push(format!("… {} more log lines dropped", self.dropped));
        }
        self.dropped = 0;
        lines
    }
}

/// A compiled program in one thread.
pub(crate) trait Unit {
    fn run(
        &mut self,
        record: &Value,
        ctx: &RunContext,
        limits: &Limits,
        logs: &mut LogSink,
    ) -> Result<Output, TransformError>;
    /// Whether the unit may be used again after this error (runtimes interrupted for time or
    /// memory are rebuilt, never trusted again).
    fn reusable_after(&self, error: &TransformError) -> bool {
        !matches!(
            error.code,
            ErrorCode::TransformTimeout | ErrorCode::TransformMemory
        )
    }
    /// Memory the unit holds between records, for the cache's bound.
    fn memory(&self) -> usize;
}

/// Code that makes `compile` panic, in unit tests only: how a panic on a transformation
/// thread is proven to fail just its record.
#[cfg(test)]
const PANICS: &str = "\u{0}panic";

pub(crate) fn compile(program: &Program, limits: &Limits) -> Result<Box<dyn Unit>, TransformError> {
    #[cfg(test)]
    if &*program.code == PANICS {
        panic!("a panic on purpose");
    }
    match program.language {
        Language::JavaScript => Ok(Box::new(js::JsUnit::compile(
            &program.code,
            limits,
            program.format == "json",
        )?)),
        Language::Template => Ok(Box::new(template::TemplateUnit::compile(
            &program.code,
            &program.format,
            limits,
        )?)),
    }
}

/// A transformation compiled for use on the calling thread (benchmarks and tools; the server
/// uses the `Transformer` pool).
pub struct Compiled {
    unit: Box<dyn Unit>,
    logs: LogSink,
}

impl Compiled {
    pub fn new(program: &Program, limits: &Limits) -> Result<Compiled, TransformError> {
        Ok(Compiled {
            unit: compile(program, limits)?,
            logs: LogSink::default(),
        })
    }

    pub fn run(
        &mut self,
        record: &Value,
        ctx: &RunContext,
        limits: &Limits,
    ) -> Result<Output, TransformError> {
        let out = self.unit.run(record, ctx, limits, &mut self.logs);
        self.logs.take();
        out.and_then(|o| check_size(o, limits))
    }
}

enum Request {
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
    fn abandoned(&self) -> bool {
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
struct Queue {
    lines: HashMap<Uuid, VecDeque<Request>>,
    /// Organisations with waiting records, in the order they are served next.
    turn: VecDeque<Uuid>,
    waiting: usize,
    closed: bool,
}

impl Queue {
    fn push(&mut self, org: Uuid, request: Request) {
        let line = self.lines.entry(org).or_default();
        if line.is_empty() {
            self.turn.push_back(org);
        }
        line.push_back(request);
        self.waiting += 1;
    }

    fn pop(&mut self) -> Option<Request> {
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
    fn drop_abandoned(&mut self, org: Option<Uuid>) {
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

    fn waiting_for(&self, org: Uuid) -> usize {
        self.lines.get(&org).map_or(0, VecDeque::len)
    }
}

struct Pool {
    queue: Mutex<Queue>,
    work: Condvar,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next record to run, waiting for one; `None` once stopped and drained.
    fn next(&self) -> Option<Request> {
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
struct Sizes {
    threads: usize,
    queue_per_org: usize,
    queue_total: usize,
    cache_units: usize,
    cache_bytes: usize,
}

/// The pool of transformation threads.
pub struct Transformer {
    pool: Arc<Pool>,
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

    fn with_threads(config: &TransformConfig, threads: usize) -> Arc<Transformer> {
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
                result: check_size(Output::Records(vec![record]), &self.limits),
                logs: Vec::new(),
                duration: Duration::ZERO,
            });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let stopped = || Outcome {
            result: Err(stopped()),
            logs: Vec::new(),
            duration: Duration::ZERO,
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
fn panicked(panic: Box<dyn std::any::Any + Send>) -> TransformError {
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

fn handle(cache: &mut Cache, request: Request, limits: &Limits) {
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
            });
        }
    }
}

/// The compiled programs one thread keeps, bounded in number and in memory.
struct Cache {
    units: HashMap<(Uuid, Timestamp), Cached>,
    tick: u64,
    sizes: Sizes,
}

struct Cached {
    unit: Box<dyn Unit>,
    used: u64,
    bytes: usize,
}

impl Cache {
    fn new(sizes: Sizes) -> Cache {
        Cache {
            units: HashMap::new(),
            tick: 0,
            sizes,
        }
    }

    fn run(
        &mut self,
        program: &Program,
        record: &Value,
        ctx: &RunContext,
        limits: &Limits,
        logs: &mut LogSink,
    ) -> Result<Output, TransformError> {
        self.tick += 1;
        let key = (program.id, program.version);
        let tick = self.tick;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let entry = match self.units.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(Cached {
                    unit: compile(program, limits)?,
                    used: tick,
                    bytes: 0,
                }),
            };
            entry.used = tick;
            let result = entry.unit.run(record, ctx, limits, logs);
            Ok((result, entry.unit.memory()))
        }));
        let result = match outcome {
            Ok(Ok((result, bytes))) => {
                let keep = match &result {
                    Err(e) => self
                        .units
                        .get(&key)
                        .is_some_and(|c| c.unit.reusable_after(e)),
                    Ok(_) => true,
                };
                if keep {
                    if let Some(c) = self.units.get_mut(&key) {
                        c.bytes = bytes;
                    }
                } else {
                    self.units.remove(&key);
                }
                result
            }
            // Compilation failed: nothing was kept.
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                // The unit may be half-way through anything: never used again.
                self.units.remove(&key);
                Err(panicked(panic))
            }
        };
        self.trim(key);
        result
    }

    /// Drops the least recently used units past the count and memory bounds; the one just
    /// used goes last, and also when it alone is over the memory bound.
    fn trim(&mut self, current: (Uuid, Timestamp)) {
        loop {
            let total: usize = self.units.values().map(|c| c.bytes).sum();
            if self.units.len() <= self.sizes.cache_units && total <= self.sizes.cache_bytes {
                return;
            }
            let victim = self
                .units
                .iter()
                .filter(|(k, _)| **k != current || self.units.len() == 1)
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    self.units.remove(&k);
                }
                None => return,
            }
        }
    }
}

/// The output limit, measured on what would be stored and sent.
fn check_size(out: Output, limits: &Limits) -> Result<Output, TransformError> {
    if let Output::Records(records) = &out {
        if records.len() > limits.max_outputs {
            return Err(TransformError::new(
                ErrorCode::OutputTooLarge,
                format!(
                    "the record split into {} outputs, over the limit of {} (transform.max_outputs)",
                    records.len(),
                    limits.max_outputs
                ),
            ));
        }
        let mut size = 0usize;
        for r in records {
            size += match r {
                Value::String(s) => s.len(),
                other => serde_json::to_string(other).map_or(0, |s| s.len()),
            };
        }
        if size > limits.max_output_bytes {
            return Err(TransformError::new(
                ErrorCode::OutputTooLarge,
                format!(
                    "the output is {size} bytes, over the limit of {} bytes",
                    limits.max_output_bytes
                ),
            ));
        }
    }
    Ok(out)
}

/// The `ctx.job` a transformation sees.
pub fn job_context(job_id: Uuid, trigger: &str, stream_id: Uuid) -> Value {
    serde_json::json!({"id": job_id, "trigger": trigger, "stream_id": stream_id})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn program(language: Language, format: &str, code: &str) -> Program {
        Program {
            id: Uuid::now_v7(),
            version: Timestamp::now(),
            language,
            format: format.into(),
            code: Arc::from(code),
        }
    }

    fn ctx() -> RunContext {
        RunContext {
            settings: json!({}),
            job: json!({}),
            lookups: Arc::default(),
        }
    }

    #[tokio::test]
    async fn a_panic_fails_only_its_record_and_the_thread_serves_on() {
        let config = TransformConfig {
            threads: 1,
            ..TransformConfig::default()
        };
        let pool = Transformer::start(&config);
        let org = Uuid::now_v7();
        let bad = program(Language::Template, "text", PANICS);
        for _ in 0..3 {
            let out = pool.run(org, bad.clone(), json!({}), ctx()).await;
            let e = out.result.unwrap_err();
            assert_eq!(e.code, ErrorCode::TransformError, "{e:?}");
            assert!(e.message.contains("internal error"), "{e:?}");
            let e = pool.check(org, bad.clone()).await.unwrap().unwrap_err();
            assert_eq!(e.code, ErrorCode::TransformError, "{e:?}");
        }
        let good = program(Language::Template, "text", "{{ record.a }}!");
        let out = pool.run(Uuid::now_v7(), good, json!({"a": 1}), ctx()).await;
        assert_eq!(out.result.unwrap(), Output::Records(vec![json!("1!")]));
        pool.stop();
    }

    #[tokio::test]
    async fn a_running_record_nobody_waits_for_is_stopped() {
        let config = TransformConfig {
            threads: 1,
            timeout_ms: 20_000,
            ..TransformConfig::default()
        };
        let pool = Transformer::start(&config);
        let org = Uuid::now_v7();
        let endless = program(
            Language::JavaScript,
            "json",
            "function transform(r) { for (;;) {} }",
        );
        let running = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.try_run(org, endless, json!({}), ctx()).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        running.abort();
        let started = Instant::now();
        let echo = program(
            Language::JavaScript,
            "json",
            "function transform(r) { return r; }",
        );
        let out = pool.run(org, echo, json!({"a": 1}), ctx()).await;
        assert_eq!(out.result.unwrap(), Output::Records(vec![json!({"a": 1})]));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited {:?} for the abandoned loop",
            started.elapsed()
        );
        pool.stop();
    }

    fn waiting(n: usize) -> Vec<(Request, tokio::sync::oneshot::Receiver<Outcome>)> {
        (0..n)
            .map(|_| {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let request = Request::Run {
                    program: program(Language::Template, "text", "x"),
                    record: json!({}),
                    ctx: ctx(),
                    reply,
                };
                (request, answer)
            })
            .collect()
    }

    #[test]
    fn organisations_are_served_in_turn() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut queue = Queue::default();
        let mut answers = Vec::new();
        let mut ids = HashMap::new();
        for (org, n) in [(a, 5), (b, 2), (c, 1)] {
            for (request, answer) in waiting(n) {
                let Request::Run { program, .. } = &request else {
                    unreachable!()
                };
                ids.insert(program.id, org);
                queue.push(org, request);
                answers.push(answer);
            }
        }
        assert_eq!(queue.waiting, 8);
        assert_eq!(queue.waiting_for(a), 5);
        let mut order = Vec::new();
        while let Some(Request::Run { program, .. }) = queue.pop() {
            order.push(ids[&program.id]);
        }
        assert_eq!(order, vec![a, b, c, a, b, a, a, a]);
        assert_eq!(queue.waiting, 0);
        assert!(queue.lines.is_empty() && queue.turn.is_empty());
    }

    #[test]
    fn work_nobody_waits_for_is_dropped() {
        let org = Uuid::now_v7();
        let mut queue = Queue::default();
        let mut kept = Vec::new();
        for (i, (request, answer)) in waiting(4).into_iter().enumerate() {
            queue.push(org, request);
            if i % 2 == 0 {
                kept.push(answer);
            }
        }
        queue.drop_abandoned(Some(org));
        assert_eq!(queue.waiting, 2);
        assert_eq!(queue.waiting_for(org), 2);
        drop(kept);
        queue.drop_abandoned(None);
        assert_eq!(queue.waiting, 0);
        assert!(queue.turn.is_empty());
        // A worker skips what was abandoned after it was taken.
        let (request, answer) = waiting(1).pop().unwrap();
        drop(answer);
        assert!(request.abandoned());
        let mut cache = Cache::new(Sizes {
            threads: 1,
            queue_per_org: 1,
            queue_total: 1,
            cache_units: 1,
            cache_bytes: usize::MAX,
        });
        handle(&mut cache, request, &Limits::default());
        assert!(cache.units.is_empty(), "nothing was compiled for it");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_dry_runs_but_not_the_engine() {
        let config = TransformConfig {
            queue_per_org: 2,
            queue_total: 3,
            ..TransformConfig::default()
        };
        // No threads: everything queued stays queued.
        let pool = Transformer::with_threads(&config, 0);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let p = program(Language::Template, "text", "x");
        let mut pending = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (pool, p) = (pool.clone(), p.clone());
            pending.spawn(async move { pool.try_run(a, p, json!({}), ctx()).await });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let busy = pool
            .try_run(a, p.clone(), json!({}), ctx())
            .await
            .unwrap_err();
        assert!(
            busy.message.contains("transform.queue_per_org = 2"),
            "{busy:?}"
        );
        assert!(busy.retry_after_seconds >= 1);
        let e = pool.check(a, p.clone()).await.unwrap_err();
        assert_eq!(e, busy);
        // Another organisation still has room, up to the total.
        {
            let (pool, p) = (pool.clone(), p.clone());
            pending.spawn(async move { pool.try_run(b, p, json!({}), ctx()).await });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let busy = pool
            .try_run(b, p.clone(), json!({}), ctx())
            .await
            .unwrap_err();
        assert!(
            busy.message.contains("transform.queue_total = 3"),
            "{busy:?}"
        );
        // The engine is never refused.
        let engine = {
            let (pool, p) = (pool.clone(), p.clone());
            tokio::spawn(async move { pool.run(a, p, json!({}), ctx()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.pool.lock().waiting, 4);
        // Callers that gave up free their places.
        pending.abort_all();
        while pending.join_next().await.is_some() {}
        let (pool2, p2) = (pool.clone(), p.clone());
        let admitted = tokio::spawn(async move { pool2.try_run(a, p2, json!({}), ctx()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!admitted.is_finished(), "queued, not refused");
        // The engine's record, the new one, and another organisation's abandoned one (only
        // looked at when the total is reached).
        assert_eq!(pool.pool.lock().waiting, 3);
        pool.stop();
        engine.abort();
        admitted.abort();
    }

    #[test]
    fn the_cache_is_bounded_in_count_and_memory() {
        let limits = Limits::default();
        let sizes = |units, bytes| Sizes {
            threads: 1,
            queue_per_org: 1,
            queue_total: 1,
            cache_units: units,
            cache_bytes: bytes,
        };
        let programs: Vec<Program> = (0..4)
            .map(|i| program(Language::Template, "text", &format!("{i}")))
            .collect();
        let mut cache = Cache::new(sizes(2, usize::MAX));
        for p in &programs {
            let mut logs = LogSink::default();
            cache
                .run(p, &json!({}), &ctx(), &limits, &mut logs)
                .unwrap();
        }
        assert_eq!(cache.units.len(), 2);
        assert!(cache
            .units
            .contains_key(&(programs[3].id, programs[3].version)));
        assert!(cache
            .units
            .contains_key(&(programs[2].id, programs[2].version)));
        // A template keeps at least 64 KiB by the estimate: one fits in 100 KiB, not two.
        let mut cache = Cache::new(sizes(16, 100 << 10));
        for p in &programs {
            let mut logs = LogSink::default();
            cache
                .run(p, &json!({}), &ctx(), &limits, &mut logs)
                .unwrap();
        }
        assert_eq!(cache.units.len(), 1);
        // Nothing is kept when one alone is over the bound.
        let mut cache = Cache::new(sizes(16, 1));
        let mut logs = LogSink::default();
        let js = program(
            Language::JavaScript,
            "json",
            "function transform(r) { return r; }",
        );
        cache
            .run(&js, &json!({"a": 1}), &ctx(), &limits, &mut logs)
            .unwrap();
        assert!(cache.units.is_empty());
    }

    #[test]
    fn outputs_per_record_are_capped() {
        let limits = Limits {
            max_outputs: 3,
            ..Limits::default()
        };
        let three = Output::Records(vec![json!({}); 3]);
        assert_eq!(check_size(three.clone(), &limits).unwrap(), three);
        let e = check_size(Output::Records(vec![json!({}); 4]), &limits).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputTooLarge);
        assert!(
            e.message.contains("4 outputs") && e.message.contains("transform.max_outputs"),
            "{e:?}"
        );
    }
}
