//! JavaScript transformations in QuickJS: one runtime per compiled transformation per thread,
//! with a memory limit, a stack limit and an interrupt deadline. The runtime has the language
//! and nothing else: no file system, network, environment or process.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rquickjs::{
    allocator::{Allocator, RustAllocator},
    CatchResultExt, CaughtError, Context, Ctx, Function, Object, Persistent, Runtime, Value as Js,
};
use serde_json::Value;

use super::helpers;
use super::lookups::{Lookups, Miss};
use super::{Limits, LogSink, Output, RunContext, TransformError, Unit};
use crate::domain::error_code::ErrorCode;

/// The file name user code runs under; positions in errors refer to it.
const FILE: &str = "transform.js";
/// QuickJS's stack limit: deep recursion ends with a clear error long before the thread's
/// own stack (see `Transformer::start`) is at risk.
const STACK_BYTES: usize = 1 << 20;
/// Marks the skip answer of the prelude's `run`.
const SKIP: &str = "\u{0}skip:";

/// Runs before user code: builds `ctx` and checks what `transform` returns.
const PRELUDE: &str = r#"
"use strict";
globalThis.__wharf = (() => {
  const host = globalThis.__wharf_host;
  delete globalThis.__wharf_host;
  let skipReason = null;
  const text = (v) => {
    if (typeof v === "string") return v;
    if (v === undefined) return "undefined";
    if (v instanceof Error) return String(v);
    try { const s = JSON.stringify(v); return s === undefined ? String(v) : s; } catch (e) { return String(v); }
  };
  const instant = (v) => {
    if (v instanceof Date) return v.toISOString();
    if (typeof v === "number") return new Date(v).toISOString();
    if (typeof v !== "string") throw new TypeError("a date must be a string, a number of milliseconds or a Date, not " + typeof v);
    return v;
  };
  const fail = (name, message) => { const e = new Error(message); e.name = name; return e; };
  // Widths are checked before any padding is built: a huge one is a clear error, not an
  // allocation of that size.
  const maxWidth = host.maxWidth;
  const maxOutputs = host.maxOutputs;
  const width = (helper, w) => {
    if (Number(w) > maxWidth) throw fail("TransformError", helper + ": width " + String(w) + " is over the limit of " + maxWidth + " characters (transform.max_pad_width)");
    return w;
  };
  const proto = {
    lookup(table, key, ...rest) {
      table = String(table);
      key = key === null || key === undefined ? "" : String(key);
      const v = host.lookup(table, key);
      if (typeof v === "string") return v;
      if (rest.length > 0 && (v === null || v === undefined)) return rest[0];
      if (v === null) throw fail("LookupNotFound", host.missMessage(table, key, true));
      const d = host.tableDefault(table);
      if (typeof d === "string") return d;
      throw fail("LookupNotFound", host.missMessage(table, key, false));
    },
    log(...args) { host.log(args.map(text).join(" ")); },
    skip(reason) { skipReason = reason === undefined ? "skipped by the transformation" : String(reason); return null; },
    formatDate(value, pattern, timeZone) { return host.formatDate(instant(value), pattern ?? "", timeZone ?? ""); },
    parseDate(value, pattern, timeZone) { return host.parseDate(String(value), pattern ?? "", timeZone ?? ""); },
    money(value, places) { return host.round(String(value), places ?? 2); },
    round(value, places) { return Number(host.round(String(value), places ?? 2)); },
    padStart(value, w, fill) { return String(value ?? "").padStart(width("padStart", w), fill ?? " "); },
    padEnd(value, w, fill) { return String(value ?? "").padEnd(width("padEnd", w), fill ?? " "); },
    fixed(value, w, fill, align) {
      w = width("fixed", w);
      const s = String(value ?? "").slice(0, w);
      return align === "right" ? s.padStart(w, fill ?? " ") : s.padEnd(w, fill ?? " ");
    },
  };
  return {
    run(record, settings, job) {
      skipReason = null;
      const ctx = Object.create(proto);
      ctx.settings = JSON.parse(settings);
      ctx.job = JSON.parse(job);
      const out = transform(JSON.parse(record), ctx);
      if (out === null) return "\u0000skip:" + (skipReason ?? "the transformation returned null");
      if (out === undefined) throw fail("TransformError", "transform() returned undefined: return the output (an object or an array), or null to skip the record");
      if (typeof out === "function" || typeof out === "symbol" || typeof out === "bigint") throw fail("InvalidSchema", "transform() returned a " + typeof out + "; return an object, an array or null");
      // Counted before anything is copied out of the runtime.
      if (Array.isArray(out) && out.length > maxOutputs) throw fail("OutputTooLarge", "the record split into " + out.length + " outputs, over the limit of " + maxOutputs + " (transform.max_outputs)");
      return JSON.stringify(out);
    },
  };
})();
"#;

/// Counts what QuickJS holds and refuses allocations past the limit, noting that it did: an
/// out-of-memory exception cannot always be told from a thrown `null` otherwise.
struct Meter {
    used: Cell<usize>,
    limit: usize,
    refused: Cell<bool>,
}

struct Metered(Rc<Meter>);

impl Metered {
    fn admit(&self, more: usize) -> bool {
        if self.0.used.get().saturating_add(more) > self.0.limit {
            self.0.refused.set(true);
            return false;
        }
        true
    }
}

// SAFETY: every call is delegated to `RustAllocator`; this type only counts sizes.
unsafe impl Allocator for Metered {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.admit(size) {
            return std::ptr::null_mut();
        }
        let p = RustAllocator.alloc(size);
        if !p.is_null() {
            // SAFETY: `p` was just allocated by RustAllocator.
            let got = unsafe { RustAllocator::usable_size(p) };
            self.0.used.set(self.0.used.get() + got);
        }
        p
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        if !self.admit(count.saturating_mul(size)) {
            return std::ptr::null_mut();
        }
        let p = RustAllocator.calloc(count, size);
        if !p.is_null() {
            // SAFETY: `p` was just allocated by RustAllocator.
            let got = unsafe { RustAllocator::usable_size(p) };
            self.0.used.set(self.0.used.get() + got);
        }
        p
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if !ptr.is_null() {
            let size = RustAllocator::usable_size(ptr);
            self.0.used.set(self.0.used.get().saturating_sub(size));
        }
        RustAllocator.dealloc(ptr)
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        let old = if ptr.is_null() {
            0
        } else {
            RustAllocator::usable_size(ptr)
        };
        if new_size > old && !self.admit(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = RustAllocator.realloc(ptr, new_size);
        if !p.is_null() {
            let got = RustAllocator::usable_size(p);
            self.0.used.set(self.0.used.get().saturating_sub(old) + got);
        } else if new_size == 0 {
            self.0.used.set(self.0.used.get().saturating_sub(old));
        }
        p
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        RustAllocator::usable_size(ptr)
    }
}

struct Shared {
    meter: Rc<Meter>,
    deadline: Cell<Option<Instant>>,
    interrupted: Cell<bool>,
    /// Stopped because nobody waits for the result any more.
    abandoned: Cell<bool>,
    lookups: RefCell<Arc<Lookups>>,
    logs: RefCell<LogSink>,
}

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

/// The host functions the prelude wraps; removed from the global scope by the prelude.
fn install_host<'js>(ctx: &Ctx<'js>, shared: &Rc<Shared>, limits: &Limits) -> rquickjs::Result<()> {
    let host = Object::new(ctx.clone())?;
    host.set("maxWidth", limits.max_pad_width as f64)?;
    host.set("maxOutputs", limits.max_outputs as f64)?;
    let s = shared.clone();
    host.set(
        "lookup",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, table: String, key: String| {
                let lookups = s.lookups.borrow();
                Ok::<_, rquickjs::Error>(match lookups.entry(&table, &key) {
                    Ok(Some(v)) => rquickjs::String::from_str(ctx, v)?.into_value(),
                    Ok(None) => Js::new_undefined(ctx),
                    Err(_) => Js::new_null(ctx),
                })
            },
        )?,
    )?;
    let s = shared.clone();
    host.set(
        "tableDefault",
        Function::new(ctx.clone(), move |table: String| {
            s.lookups
                .borrow()
                .tables
                .get(&table)
                .and_then(|t| t.default.clone())
        })?,
    )?;
    host.set(
        "missMessage",
        Function::new(ctx.clone(), |table: String, key: String, no_table: bool| {
            let miss = if no_table { Miss::NoTable } else { Miss::NoKey };
            Lookups::miss_message(&table, &key, &miss)
        })?,
    )?;
    let s = shared.clone();
    host.set(
        "log",
        Function::new(ctx.clone(), move |line: String| {
            s.logs.borrow_mut().push(line);
        })?,
    )?;
    host.set(
        "formatDate",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, value: String, pattern: String, tz: String| {
                helpers::format_date(&value, &pattern, &tz)
                    .map_err(|m| rquickjs::Exception::throw_range(&ctx, &m))
            },
        )?,
    )?;
    host.set(
        "parseDate",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, value: String, pattern: String, tz: String| {
                let pattern = (!pattern.is_empty()).then_some(pattern.as_str());
                helpers::parse_instant(&value, pattern, &tz)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                    .map_err(|m| rquickjs::Exception::throw_range(&ctx, &m))
            },
        )?,
    )?;
    host.set(
        "round",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, value: String, places: u32| {
            helpers::round_decimal(&value, places)
                .map_err(|m| rquickjs::Exception::throw_range(&ctx, &m))
        })?,
    )?;
    ctx.globals().set("__wharf_host", host)?;
    Ok(())
}

/// A failure as the catalogue names it, with its position in the user's code.
fn classify(e: CaughtError<'_>, shared: &Shared, limits: &Limits) -> TransformError {
    if shared.abandoned.get() {
        // Interrupted like a timeout (the runtime is rebuilt); nobody reads this.
        return TransformError::new(
            ErrorCode::TransformTimeout,
            "the transformation was stopped: its caller stopped waiting for the result",
        );
    }
    if shared.interrupted.get() {
        return TransformError::new(
            ErrorCode::TransformTimeout,
            format!(
                "the transformation ran longer than {} ms and was stopped",
                limits.timeout.as_millis()
            ),
        );
    }
    let (name, message, stack) = match &e {
        CaughtError::Exception(ex) => {
            let name: Option<String> = ex.get("name").ok();
            (
                name.unwrap_or_else(|| "Error".into()),
                ex.message().unwrap_or_default(),
                ex.stack(),
            )
        }
        CaughtError::Value(v) => {
            let shown = match v.as_string() {
                Some(s) => s.to_string().unwrap_or_default(),
                None => format!("{v:?}"),
            };
            (
                "Error".into(),
                format!("transform threw a non-error value: {shown}"),
                None,
            )
        }
        CaughtError::Error(rquickjs::Error::Allocation) => {
            ("InternalError".into(), "out of memory".into(), None)
        }
        CaughtError::Error(other) => ("Error".into(), other.to_string(), None),
    };
    let (line, column) = stack.as_deref().map(position).unwrap_or((None, None));
    let lower = message.to_ascii_lowercase();
    if shared.meter.refused.get() || lower.contains("out of memory") {
        return TransformError::new(
            ErrorCode::TransformMemory,
            format!(
                "the transformation used more than {} MiB of memory and was stopped",
                limits.memory_bytes >> 20
            ),
        );
    }
    if lower.contains("stack overflow")
        || lower.contains("too much recursion")
        || lower.contains("maximum call stack")
    {
        return TransformError::new(
            ErrorCode::TransformMemory,
            "the transformation recursed too deeply (stack limit reached)",
        )
        .at(line, column);
    }
    let code = match name.as_str() {
        "LookupNotFound" => ErrorCode::LookupNotFound,
        "InvalidSchema" => ErrorCode::InvalidSchema,
        "OutputTooLarge" => ErrorCode::OutputTooLarge,
        _ => ErrorCode::TransformError,
    };
    let text = match name.as_str() {
        "LookupNotFound" | "InvalidSchema" | "TransformError" | "OutputTooLarge" => message,
        _ => format!("{name}: {message}"),
    };
    TransformError::new(code, text).at(line, column)
}

/// The first `transform.js:line:column` in a stack trace.
fn position(stack: &str) -> (Option<u32>, Option<u32>) {
    let Some(i) = stack.find(&format!("{FILE}:")) else {
        return (None, None);
    };
    let rest = &stack[i + FILE.len() + 1..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let line = parts.next().and_then(|p| p.parse().ok());
    let column = parts.next().and_then(|p| p.parse().ok());
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            // Wall-clock: room for a loaded machine, so memory cases hit memory first.
            timeout: Duration::from_millis(1000),
            memory_bytes: 32 << 20,
            max_output_bytes: 1 << 20,
            ..Limits::default()
        }
    }

    fn ctx() -> RunContext {
        let mut lookups = Lookups::default();
        lookups.tables.insert(
            "carriers".into(),
            super::super::lookups::Table {
                default: None,
                entries: [("DHL Express".to_string(), "DHL".to_string())].into(),
            },
        );
        RunContext {
            settings: json!({"warehouse": "LON1"}),
            job: json!({"id": "j1", "trigger": "webhook"}),
            lookups: Arc::new(lookups),
        }
    }

    fn run(code: &str, record: Value) -> (Result<Output, TransformError>, Vec<String>) {
        let mut unit = JsUnit::compile(code, &limits(), true).expect("compiles");
        let mut logs = LogSink::default();
        let out = unit.run(&record, &ctx(), &limits(), &mut logs);
        (out, logs.take())
    }

    #[test]
    fn transforms_with_ctx_helpers() {
        let (out, logs) = run(
            r#"function transform(r, ctx) {
                 ctx.log("order", r.id, {n: 1});
                 return { id: r.id, wh: ctx.settings.warehouse, job: ctx.job.trigger,
                          carrier: ctx.lookup("carriers", r.carrier), other: ctx.lookup("carriers", "x", "?"),
                          total: ctx.money("1.005"), day: ctx.formatDate(r.at, "%d/%m/%Y", "Europe/London"),
                          padded: ctx.padStart(r.id, 6, "0") };
               }"#,
            json!({"id": 42, "carrier": "DHL Express", "at": "2024-07-01T23:30:00Z"}),
        );
        assert_eq!(
            out.unwrap(),
            Output::Records(vec![
                json!({"id": 42, "wh": "LON1", "job": "webhook", "carrier": "DHL",
                "other": "?", "total": "1.01", "day": "02/07/2024", "padded": "000042"})
            ])
        );
        assert_eq!(logs, vec!["order 42 {\"n\":1}"]);
    }

    #[test]
    fn arrays_split_and_null_skips() {
        let (out, _) = run(
            "function transform(r) { return r.items; }",
            json!({"items": [{"a": 1}, {"a": 2}]}),
        );
        assert_eq!(
            out.unwrap(),
            Output::Records(vec![json!({"a": 1}), json!({"a": 2})])
        );
        let (out, _) = run(
            "function transform(r, ctx) { return ctx.skip('not paid'); }",
            json!({}),
        );
        assert_eq!(out.unwrap(), Output::Skip("not paid".into()));
        let (out, _) = run("function transform(r) { return null; }", json!({}));
        assert_eq!(
            out.unwrap(),
            Output::Skip("the transformation returned null".into())
        );
    }

    #[test]
    fn failures_are_classified() {
        let code = |c: &str| {
            let (out, _) = run(c, json!({"a": 1}));
            out.unwrap_err()
        };
        let e = code("function transform(r) {\n  while (true) {}\n}");
        assert_eq!(e.code, ErrorCode::TransformTimeout, "{e:?}");
        let e = code("function transform(r) { const a = []; while (true) a.push('x'.repeat(1000) + a.length); }");
        assert_eq!(e.code, ErrorCode::TransformMemory, "{e:?}");
        let e =
            code("function f(n) { return f(n + 1) + 1; }\nfunction transform(r) { return f(0); }");
        assert_eq!(e.code, ErrorCode::TransformMemory, "{e:?}");
        let e = code("function transform(r) {\n  throw new Error('no sku');\n}");
        assert_eq!(e.code, ErrorCode::TransformError);
        assert_eq!(e.message, "Error: no sku");
        assert_eq!(e.line, Some(2), "{e:?}");
        let e = code("function transform(r, ctx) { return ctx.lookup('carriers', 'Royal Mail'); }");
        assert_eq!(e.code, ErrorCode::LookupNotFound);
        let e = code("function transform(r) { return 5; }");
        assert_eq!(e.code, ErrorCode::InvalidSchema);
        let e = code("function transform(r) { }");
        assert_eq!(e.code, ErrorCode::TransformError);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = JsUnit::compile(
            "function transform(r) {\n  return {a: };\n}",
            &limits(),
            true,
        )
        .err()
        .unwrap();
        assert_eq!(e.code, ErrorCode::TransformError);
        assert_eq!(e.line, Some(2), "{e:?}");
        assert!(e.column.is_some(), "{e:?}");
        let e = JsUnit::compile("function other() {}", &limits(), true)
            .err()
            .unwrap();
        assert!(e.message.contains("function transform"), "{e:?}");
        let e = JsUnit::compile("while (true) {}", &limits(), true)
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::TransformTimeout);
    }

    #[test]
    fn no_host_access() {
        let (out, _) = run(
            "function transform(r) { return { req: typeof require, proc: typeof process, std: typeof std, os: typeof os, host: typeof __wharf_host, fetch: typeof fetch }; }",
            json!({}),
        );
        assert_eq!(
            out.unwrap(),
            Output::Records(vec![
                json!({"req": "undefined", "proc": "undefined", "std": "undefined", "os": "undefined", "host": "undefined", "fetch": "undefined"})
            ])
        );
    }

    #[test]
    fn money_rounds_like_the_rust_helper() {
        let cases = [
            ("1.005", 2),
            ("2.675", 2),
            ("-2.5", 0),
            ("9.999", 2),
            ("12", 2),
            (".5", 0),
            ("-0.001", 2),
            ("1e-7", 2),
            ("199.995", 2),
            ("0", 3),
            ("+3.14159", 4),
            ("-19.995", 2),
        ];
        for (value, places) in cases {
            let code = format!(
                "function transform(r, ctx) {{ return {{ v: ctx.money({value:?}, {places}) }}; }}"
            );
            let (out, _) = run(&code, json!({}));
            let expected = helpers::round_decimal(value, places).unwrap();
            assert_eq!(
                out.unwrap(),
                Output::Records(vec![json!({"v": expected})]),
                "{value}"
            );
        }
        let (out, _) = run("function transform(r, ctx) { return { v: ctx.money(0.1 + 0.2), n: ctx.round(2.345, 2) }; }", json!({}));
        assert_eq!(
            out.unwrap(),
            Output::Records(vec![json!({"v": "0.30", "n": 2.35})])
        );
        let (out, _) = run(
            "function transform(r, ctx) { return { v: ctx.money('abc') }; }",
            json!({}),
        );
        assert_eq!(out.unwrap_err().code, ErrorCode::TransformError);
    }

    #[test]
    fn big_integers_keep_every_digit() {
        let (out, _) = run(
            "function transform(r) { return r; }",
            json!({"id": 820982911946154508u64, "small": 5781543927000u64, "neg": -9007199254740993i64}),
        );
        assert_eq!(
            out.unwrap(),
            Output::Records(vec![
                json!({"id": "820982911946154508", "small": 5781543927000u64, "neg": "-9007199254740993"})
            ])
        );
    }

    #[test]
    fn padding_widths_are_bounded() {
        for helper in ["padStart", "padEnd", "fixed"] {
            for w in ["1099511627776", "18446744073709551615", "Infinity", "10001"] {
                let (out, _) = run(
                    &format!(
                        "function transform(r, ctx) {{ return {{ v: ctx.{helper}('7', {w}) }}; }}"
                    ),
                    json!({}),
                );
                let e = out.unwrap_err();
                assert_eq!(e.code, ErrorCode::TransformError, "{helper}({w}): {e:?}");
                assert!(
                    e.message.contains("transform.max_pad_width")
                        && e.message.contains("10000")
                        && e.message.contains(helper),
                    "{e:?}"
                );
            }
        }
        let (out, _) = run(
            "function transform(r, ctx) { return { a: ctx.padStart(7, 10000, '0').length, b: ctx.fixed('abc', 2), c: ctx.padEnd('x', undefined) }; }",
            json!({}),
        );
        assert_eq!(
            out.unwrap(),
            Output::Records(vec![json!({"a": 10000, "b": "ab", "c": "x"})])
        );
    }

    #[test]
    fn outputs_are_counted_and_measured_before_they_are_parsed() {
        let (out, _) = run(
            "function transform(r) { return Array.from({ length: 1001 }, () => ({})); }",
            json!({}),
        );
        let e = out.unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputTooLarge, "{e:?}");
        assert_eq!(
            e.message,
            "the record split into 1001 outputs, over the limit of 1000 (transform.max_outputs)"
        );
        // 8 MiB of JSON against the 1 MiB limit of these tests.
        let (out, _) = run(
            "function transform(r) { return { s: '\\u0001'.repeat(1400000) }; }",
            json!({}),
        );
        let e = out.unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputTooLarge, "{e:?}");
        assert!(e.message.contains("bytes of JSON"), "{e:?}");
    }

    #[test]
    fn the_unit_survives_a_throw() {
        let mut unit = JsUnit::compile(
            "function transform(r) { if (r.bad) throw new Error('bad'); return r; }",
            &limits(),
            true,
        )
        .unwrap();
        let mut logs = LogSink::default();
        assert!(unit
            .run(&json!({"bad": true}), &ctx(), &limits(), &mut logs)
            .is_err());
        assert!(unit
            .run(&json!({"ok": 1}), &ctx(), &limits(), &mut logs)
            .is_ok());
    }
}
