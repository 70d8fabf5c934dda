//! Transformations: user code that turns one source record into the destination's format.
//!
//! JavaScript runs in QuickJS and templates in MiniJinja, on a small pool of dedicated threads
//! (CPU-bound work stays off the async runtime). Each thread compiles a transformation once
//! and keeps it while it is unchanged; every record runs under a CPU-time limit, a memory limit
//! and an output limit, and a failure ends only that record.

pub mod helpers;
mod js;
pub mod library;
pub mod lookups;
mod template;

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
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
}

impl Limits {
    pub fn from_config(c: &TransformConfig) -> Limits {
        Limits {
            timeout: Duration::from_millis(c.timeout_ms),
            memory_bytes: (c.memory_mib as usize) << 20,
            max_output_bytes: (c.max_output_kib as usize) << 10,
        }
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
}

pub(crate) fn compile(program: &Program, limits: &Limits) -> Result<Box<dyn Unit>, TransformError> {
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

/// Compiled programs one thread keeps.
const CACHE_PER_THREAD: usize = 64;

/// The pool of transformation threads.
pub struct Transformer {
    queue: Mutex<Option<mpsc::Sender<Request>>>,
    limits: Limits,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Transformer {
    pub fn start(config: &TransformConfig) -> Arc<Transformer> {
        let limits = Limits::from_config(config);
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.threads
        };
        let (tx, rx) = mpsc::channel::<Request>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("wharf-transform-{i}"))
                // QuickJS's own stack limit (see js.rs) sits well inside this.
                .stack_size(16 << 20)
                .spawn(move || worker(rx, limits))
                .expect("the transformation threads start");
        }
        Arc::new(Transformer {
            queue: Mutex::new(Some(tx)),
            limits,
        })
    }

    fn send(&self, request: Request) -> bool {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.as_ref() {
            Some(tx) => tx.send(request).is_ok(),
            None => false,
        }
    }

    /// Transforms one record.
    pub async fn run(&self, program: Program, record: Value, ctx: RunContext) -> Outcome {
        if program.id == library::PASSTHROUGH_ID {
            // The library's passthrough is the identity, exactly: no engine round trip, and
            // numbers JavaScript could not hold (64-bit ids) pass through untouched.
            return Outcome {
                result: check_size(Output::Records(vec![record]), &self.limits),
                logs: Vec::new(),
                duration: Duration::ZERO,
            };
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let stopped = || Outcome {
            result: Err(TransformError::new(
                ErrorCode::Unknown,
                "the transformation threads have stopped",
            )),
            logs: Vec::new(),
            duration: Duration::ZERO,
        };
        if !self.send(Request::Run {
            program,
            record,
            ctx,
            reply,
        }) {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }

    /// Compiles a program (and, for JavaScript, runs its top level) to report syntax errors
    /// with their position before the code is saved.
    pub async fn check(&self, program: Program) -> Result<(), TransformError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let stopped = || {
            Err(TransformError::new(
                ErrorCode::Unknown,
                "the transformation threads have stopped",
            ))
        };
        if !self.send(Request::Check { program, reply }) {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }

    /// Stops the threads once the queued work is done.
    pub fn stop(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn worker(rx: Arc<Mutex<mpsc::Receiver<Request>>>, limits: Limits) {
    let mut cache: HashMap<(Uuid, Timestamp), (Box<dyn Unit>, u64)> = HashMap::new();
    let mut tick: u64 = 0;
    loop {
        let request = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(request) = request else { return };
        match request {
            Request::Check { program, reply } => {
                let _ = reply.send(compile(&program, &limits).map(|_| ()));
            }
            Request::Run {
                program,
                record,
                ctx,
                reply,
            } => {
                tick += 1;
                let started = Instant::now();
                let key = (program.id, program.version);
                let mut logs = LogSink::default();
                if !cache.contains_key(&key) {
                    if cache.len() >= CACHE_PER_THREAD {
                        // Forget the least recently used.
                        if let Some(old) =
                            cache.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k)
                        {
                            cache.remove(&old);
                        }
                    }
                    match compile(&program, &limits) {
                        Ok(unit) => {
                            cache.insert(key, (unit, tick));
                        }
                        Err(e) => {
                            let _ = reply.send(Outcome {
                                result: Err(e),
                                logs: logs.take(),
                                duration: started.elapsed(),
                            });
                            continue;
                        }
                    }
                }
                let entry = cache.get_mut(&key).expect("compiled above");
                entry.1 = tick;
                let result = entry.0.run(&record, &ctx, &limits, &mut logs);
                if let Err(e) = &result {
                    if !entry.0.reusable_after(e) {
                        cache.remove(&key);
                    }
                }
                let result = result.and_then(|out| check_size(out, &limits));
                let _ = reply.send(Outcome {
                    result,
                    logs: logs.take(),
                    duration: started.elapsed(),
                });
            }
        }
    }
}

/// The output limit, measured on what would be stored and sent.
fn check_size(out: Output, limits: &Limits) -> Result<Output, TransformError> {
    if let Output::Records(records) = &out {
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
