//! JavaScript transformations in QuickJS: one runtime per compiled transformation per thread,
//! with a memory limit, a stack limit and an interrupt deadline. The runtime has the language
//! and nothing else: no file system, network, environment or process.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

mod errors;
mod host;
mod meter;
#[cfg(test)]
mod tests;

use rquickjs::{CatchResultExt, Context, Function, Object, Persistent, Runtime, Value as Js};
use serde_json::Value;

use super::lookups::Lookups;
use super::{Limits, LogSink, Output, RunContext, TransformError, Unit};
use crate::domain::error_code::ErrorCode;
use errors::classify;
use host::install_host;
use meter::{Meter, Metered};

/// The file name user code runs under; positions in errors refer to it.
const FILE: &str = "transform.js";
/// QuickJS's stack limit: deep recursion ends with a clear error long before the thread's
/// own stack (see `Transformer::start`) is at risk.
const STACK_BYTES: usize = 1 << 20;
/// Marks the skip answer of the prelude's `run`.
const SKIP: &str = "\u{0}skip:";

/// Runs before user code: builds `ctx` and checks what `transform` returns.
const PRELUDE: &str = include_str!("prelude.js");

/// What the runtime's host functions and interrupt handler share with the unit.
struct Shared {
    meter: Rc<Meter>,
    deadline: Cell<Option<Instant>>,
    interrupted: Cell<bool>,
    /// Stopped because nobody waits for the result any more.
    abandoned: Cell<bool>,
    lookups: RefCell<Arc<Lookups>>,
    logs: RefCell<LogSink>,
}

/// One compiled JavaScript transformation: its own runtime, context and `run` function.
pub struct JsUnit {
    // Dropped before the runtime that owns it.
    run: Persistent<Function<'static>>,
    context: Context,
    _runtime: Runtime,
    shared: Rc<Shared>,
    json_format: bool,
}

impl JsUnit {
    /// Compiles `code`; `json_format` says whether outputs must be JSON objects (text
    /// formats may return strings).
    pub fn compile(
        code: &str,
        limits: &Limits,
        json_format: bool,
    ) -> Result<JsUnit, TransformError> {
        let internal = |e: rquickjs::Error| {
            TransformError::new(ErrorCode::Unknown, format!("cannot start JavaScript: {e}"))
        };
        let meter = Rc::new(Meter {
            used: Cell::new(0),
            limit: limits.memory_bytes,
            refused: Cell::new(false),
        });
        let runtime = Runtime::new_with_alloc(Metered(meter.clone())).map_err(internal)?;
        runtime.set_max_stack_size(STACK_BYTES);
        let shared = Rc::new(Shared {
            meter,
            deadline: Cell::new(None),
            interrupted: Cell::new(false),
            abandoned: Cell::new(false),
            lookups: RefCell::new(Arc::default()),
            logs: RefCell::new(LogSink::default()),
        });
        let watch = shared.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || match watch.deadline.get() {
            Some(d) if Instant::now() >= d => {
                watch.interrupted.set(true);
                true
            }
            Some(_) if super::caller_gone() => {
                watch.abandoned.set(true);
                true
            }
            _ => false,
        })));
        let context = Context::full(&runtime).map_err(internal)?;
        shared.deadline.set(Some(Instant::now() + limits.timeout));
        let run = context.with(|ctx| -> Result<_, TransformError> {
            install_host(&ctx, &shared, limits).map_err(internal)?;
            ctx.eval::<(), _>(PRELUDE).map_err(internal)?;
            let mut opts = rquickjs::context::EvalOptions::default();
            opts.strict = false;
            opts.filename = Some(FILE.into());
            ctx.eval_with_options::<(), _>(code, opts)
                .catch(&ctx)
                .map_err(|e| classify(e, &shared, limits))?;
            let globals = ctx.globals();
            let transform: Js = globals.get("transform").map_err(internal)?;
            if !transform.is_function() {
                return Err(TransformError::new(
                    ErrorCode::TransformError,
                    "the code must define `function transform(record, ctx)`",
                ));
            }
            let wharf: Object = globals.get("__wharf").map_err(internal)?;
            let run: Function = wharf.get("run").map_err(internal)?;
            Ok(Persistent::save(&ctx, run))
        })?;
        shared.deadline.set(None);
        Ok(JsUnit {
            run,
            context,
            _runtime: runtime,
            shared,
            json_format,
        })
    }
}

impl Unit for JsUnit {
    fn memory(&self) -> usize {
        self.shared.meter.used.get()
    }

    fn run(
        &mut self,
        record: &Value,
        ctx: &RunContext,
        limits: &Limits,
        logs: &mut LogSink,
    ) -> Result<Output, TransformError> {
        let invalid = |m: String| TransformError::new(ErrorCode::InvalidSchema, m);
        let record = match exact_numbers(record) {
            Some(safe) => serde_json::to_string(&safe),
            None => serde_json::to_string(record),
        }
        .map_err(|e| invalid(e.to_string()))?;
        let settings = serde_json::to_string(&ctx.settings).map_err(|e| invalid(e.to_string()))?;
        let job = serde_json::to_string(&ctx.job).map_err(|e| invalid(e.to_string()))?;
        *self.shared.lookups.borrow_mut() = ctx.lookups.clone();
        self.shared.interrupted.set(false);
        self.shared.abandoned.set(false);
        self.shared.meter.refused.set(false);
        self.shared
            .deadline
            .set(Some(Instant::now() + limits.timeout));
        let shared = &self.shared;
        let answer = self.context.with(|js| -> Result<String, TransformError> {
            let run = self.run.clone().restore(&js).map_err(|e| {
                TransformError::new(ErrorCode::Unknown, format!("JavaScript runtime: {e}"))
            })?;
            run.call::<_, String>((record, settings, job))
                .catch(&js)
                .map_err(|e| classify(e, shared, limits))
        });
        self.shared.deadline.set(None);
        std::mem::swap(logs, &mut self.shared.logs.borrow_mut());
        let answer = answer?;
        if let Some(reason) = answer.strip_prefix(SKIP) {
            return Ok(Output::Skip(reason.to_string()));
        }
        // Past this the outputs cannot fit the limits (escaping makes a text at most six
        // times longer; each output adds at most three bytes of punctuation): refused before
        // it is parsed, which takes many times its size.
        let most = limits
            .max_output_bytes
            .saturating_mul(6)
            .saturating_add(limits.max_outputs.saturating_mul(3))
            .saturating_add(2);
        if answer.len() > most {
            return Err(TransformError::new(
                ErrorCode::OutputTooLarge,
                format!(
                    "the output is {} bytes of JSON, over the limit of {} bytes",
                    answer.len(),
                    limits.max_output_bytes
                ),
            ));
        }
        let value: Value = serde_json::from_str(&answer).map_err(|e| {
            invalid(format!(
                "transform() returned something that is not JSON: {e}"
            ))
        })?;
        outputs(value, self.json_format)
    }
}

/// Largest integer a JavaScript number holds exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// A copy of `v` with every integer JavaScript cannot hold exactly (beyond ±2^53, such as
/// some 64-bit ids) as a string of its digits, so no digit is lost; `None` when there are none.
fn exact_numbers(v: &Value) -> Option<Value> {
    fn unsafe_number(n: &serde_json::Number) -> bool {
        n.as_u64().is_some_and(|u| u > MAX_SAFE)
            || n.as_i64().is_some_and(|i| i.unsigned_abs() > MAX_SAFE)
    }
    fn any(v: &Value) -> bool {
        match v {
            Value::Number(n) => unsafe_number(n),
            Value::Array(a) => a.iter().any(any),
            Value::Object(o) => o.values().any(any),
            _ => false,
        }
    }
    fn fix(v: &Value) -> Value {
        match v {
            Value::Number(n) if unsafe_number(n) => Value::String(n.to_string()),
            Value::Array(a) => Value::Array(a.iter().map(fix).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), fix(v))).collect()),
            other => other.clone(),
        }
    }
    any(v).then(|| fix(v))
}

/// The records a returned value stands for.
fn outputs(value: Value, json_format: bool) -> Result<Output, TransformError> {
    let invalid = |m: &str| Err(TransformError::new(ErrorCode::InvalidSchema, m));
    let records = match value {
        Value::Array(items) if items.is_empty() => {
            return Ok(Output::Skip(
                "the transformation returned an empty array".into(),
            ))
        }
        Value::Array(items) => items,
        other => vec![other],
    };
    for r in &records {
        match r {
            Value::Object(_) | Value::Array(_) => {}
            Value::String(_) if !json_format => {}
            Value::String(_) => {
                return invalid("transform() returned a string, but this transformation's format is json: return an object, or declare a text format (csv, xml, text)")
            }
            Value::Null => return invalid("an array returned by transform() holds null; leave skipped records out of the array"),
            _ => return invalid("transform() must return an object, an array of outputs, or null to skip the record"),
        }
    }
    Ok(Output::Records(records))
}
