//! A JavaScript failure as the error catalogue names it, with its position in the user's code.

use rquickjs::CaughtError;

use super::{Shared, FILE};
use crate::domain::error_code::ErrorCode;
use crate::transform::{Limits, TransformError};

/// A failure as the catalogue names it, with its position in the user's code.
pub(super) fn classify(e: CaughtError<'_>, shared: &Shared, limits: &Limits) -> TransformError {
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
