//! Template transformations in MiniJinja, for text outputs: CSV (each `{{ value }}` is one
//! correctly quoted field), XML (each `{{ value }}` escaped), fixed-width and plain text, and
//! JSON (each `{{ value }}` a JSON literal). Bounded by fuel, which pays for steps and for
//! every byte built (so also by the memory limit), by the output size, and by the padding width.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod budget;
mod env;
#[cfg(test)]
mod tests;

use minijinja::value::{Serde, Value as Jv};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value;

use super::heap;
use super::lookups::Lookups;
use super::{Limits, LogSink, Output, RunContext, TransformError, Unit};
use crate::domain::error_code::ErrorCode;

const NAME: &str = "transform";
/// Template steps allowed per millisecond of the CPU-time limit (a step is tens of ns).
const FUEL_PER_MS: u64 = 50_000;
/// Bytes of text or list one step of fuel pays for: MiniJinja charges every byte a render
/// builds (operators such as `~` and `*`, literals, filter and function results, the output)
/// against the same fuel as its steps, at this rate.
const BYTES_PER_STEP: usize = 64;
/// A step takes well over a nanosecond: a render stopped sooner than this per step of its
/// budget was refused an allocation, not stopped in a loop.
const MIN_NANOS_PER_STEP: u64 = 1;

/// A render's fuel, in steps: what the CPU-time limit allows, but never more than the memory
/// limit pays for, so that everything a render builds together stays within
/// `transform.memory_mib`.
pub(super) fn fuel(limits: &Limits) -> u64 {
    let time = (limits.timeout.as_millis() as u64).saturating_mul(FUEL_PER_MS);
    let memory = (limits.memory_bytes / BYTES_PER_STEP) as u64;
    time.min(memory).max(1)
}

/// What the helpers of the record being rendered read and write.
pub(super) struct Call {
    pub(super) lookups: Arc<Lookups>,
    pub(super) logs: LogSink,
    /// Output bytes still allowed; 0 once the limit is passed.
    pub(super) budget: usize,
    /// Set by `skip(reason)`: the record is skipped whatever was rendered.
    pub(super) skip: Option<String>,
}

thread_local! {
    static CALL: RefCell<Option<Call>> = const { RefCell::new(None) };
}

pub(super) fn with_call<R>(f: impl FnOnce(&mut Call) -> R) -> Option<R> {
    CALL.with(|c| c.borrow_mut().as_mut().map(f))
}

/// One compiled template transformation, in its own environment.
pub struct TemplateUnit {
    env: Environment<'static>,
    format: String,
    fuel: u64,
    code_bytes: usize,
}

impl TemplateUnit {
    pub fn compile(
        code: &str,
        format: &str,
        limits: &Limits,
    ) -> Result<TemplateUnit, TransformError> {
        let mut env = env::environment(format, limits);
        env.add_template_owned(NAME, code.to_string())
            .map_err(|e| template_error(&e, code))?;
        Ok(TemplateUnit {
            env,
            format: format.to_string(),
            fuel: fuel(limits),
            code_bytes: code.len(),
        })
    }
}

impl Unit for TemplateUnit {
    fn memory(&self) -> usize {
        // The source and its compiled instructions, a few times the source's size, plus the
        // environment's fixed part.
        self.code_bytes.saturating_mul(8) + (64 << 10)
    }

    fn run(
        &mut self,
        record: &Value,
        ctx: &RunContext,
        limits: &Limits,
        logs: &mut LogSink,
    ) -> Result<Output, TransformError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| TransformError::new(ErrorCode::TemplateError, e.to_string()))?;
        CALL.with(|c| {
            *c.borrow_mut() = Some(Call {
                lookups: ctx.lookups.clone(),
                logs: std::mem::take(logs),
                budget: limits.max_output_bytes.saturating_add(1),
                skip: None,
            })
        });
        let context = minijinja::context! {
            record => Jv::from(Serde(record)),
            ctx => minijinja::context! {
                settings => Jv::from(Serde(&ctx.settings)),
                job => Jv::from(Serde(&ctx.job)),
            },
        };
        let started = Instant::now();
        let (rendered, held) = heap::peak(|| template.render(context));
        let spent = started.elapsed();
        let call = CALL.with(|c| c.borrow_mut().take()).expect("set above");
        *logs = call.logs;
        if call.budget == 0 {
            return Err(TransformError::new(
                ErrorCode::OutputTooLarge,
                format!(
                    "the output is over the limit of {} bytes",
                    limits.max_output_bytes
                ),
            ));
        }
        let text = rendered.map_err(|e| {
            if e.kind() != ErrorKind::OutOfFuel {
                return template_error(&e, template.source());
            }
            let line = e.line().map(|l| l as u32);
            // One budget pays for steps and for what is built (see `fuel`): a render stopped
            // while holding a good part of the memory limit, or stopped at once by an
            // allocation the whole budget could not pay for, was building too much; one that
            // held little for a long time was looping.
            let built = held >= limits.memory_bytes / 8
                || spent < Duration::from_nanos(self.fuel.saturating_mul(MIN_NANOS_PER_STEP));
            if built {
                TransformError::new(
                    ErrorCode::TransformMemory,
                    format!(
                        "the template built more text and lists than its memory limit allows (transform.memory_mib = {} MiB) and was stopped",
                        limits.memory_bytes >> 20
                    ),
                )
                .at(line, None)
            } else {
                TransformError::new(
                    ErrorCode::TransformTimeout,
                    format!(
                        "the template ran past its step limit ({} steps, derived from transform.timeout_ms and transform.memory_mib) and was stopped",
                        self.fuel
                    ),
                )
                .at(line, None)
            }
        })?;
        if text.len() > limits.max_output_bytes {
            return Err(TransformError::new(
                ErrorCode::OutputTooLarge,
                format!(
                    "the output is over the limit of {} bytes",
                    limits.max_output_bytes
                ),
            ));
        }
        if let Some(reason) = call.skip {
            return Ok(Output::Skip(reason));
        }
        if text.trim().is_empty() {
            return Ok(Output::Skip("the template rendered nothing".into()));
        }
        if self.format == "json" {
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                TransformError::new(
                    ErrorCode::InvalidSchema,
                    format!("the template's output is not valid JSON: {e}"),
                )
            })?;
            return match value {
                Value::Array(items) if items.is_empty() => {
                    Ok(Output::Skip("the template rendered an empty array".into()))
                }
                Value::Array(items) => Ok(Output::Records(items)),
                Value::Object(_) => Ok(Output::Records(vec![value])),
                _ => Err(TransformError::new(
                    ErrorCode::InvalidSchema,
                    "a json template must render an object or an array",
                )),
            };
        }
        Ok(Output::Records(vec![Value::String(text)]))
    }
}

/// A MiniJinja error as TEMPLATE_ERROR (or LOOKUP_NOT_FOUND), with line and column.
fn template_error(e: &Error, source: &str) -> TransformError {
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    // Our helpers name the catalogue code their error belongs to.
    let tagged = [
        ("LookupNotFound: ", ErrorCode::LookupNotFound),
        ("TransformError: ", ErrorCode::TransformError),
        ("TransformMemory: ", ErrorCode::TransformMemory),
        ("OutputTooLarge: ", ErrorCode::OutputTooLarge),
    ];
    let (code, message) = tagged
        .iter()
        .find_map(|(tag, code)| detail.strip_prefix(tag).map(|m| (*code, m.to_string())))
        .unwrap_or_else(|| (ErrorCode::TemplateError, format!("{}: {detail}", e.kind())));
    let line = e.line().map(|l| l as u32);
    let column = e.range().and_then(|r| {
        let before = source.get(..r.start)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Some(before[line_start..].chars().count() as u32 + 1)
    });
    TransformError::new(code, message).at(line, column)
}
