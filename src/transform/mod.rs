//! Transformations: user code that turns one source record into the destination's format.
//!
//! JavaScript runs in QuickJS and templates in MiniJinja, on a small pool of dedicated threads
//! (CPU-bound work stays off the async runtime). Each thread compiles a transformation once
//! and keeps it while it is unchanged, within a bounded cache; every record runs under a
//! CPU-time limit, a memory limit and an output limit, and a failure, a panic included, ends
//! only that record. Records wait in one bounded line per organisation, served in turn, so one
//! organisation's backlog cannot hold up another's.

mod cache;
pub mod heap;
pub mod helpers;
mod js;
pub mod library;
pub mod lookups;
mod pool;
mod queue;
mod template;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::config::TransformConfig;
use crate::domain::error_code::ErrorCode;
use crate::domain::Timestamp;
use crate::store::Transformation;
pub use lookups::Lookups;
pub(crate) use pool::caller_gone;
pub use pool::{Busy, Transformer};

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
    /// The record, given back: a run reads it and does not keep it, so the caller need not
    /// copy it to keep it. `None` only when it never reached a thread (the result is then an
    /// error: the pool stopped, or the caller stopped waiting).
    pub record: Option<Value>,
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
pub(crate) const PANICS: &str = "\u{0}panic";

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
