//! What a render may still build: its fuel pays for steps and for bytes, and every helper
//! reads and writes text only within what is left (and within the output limit).

use minijinja::value::Value as Jv;
use minijinja::{AutoEscape, Error, ErrorKind, State};

use super::BYTES_PER_STEP;
use crate::transform::helpers;
use crate::transform::Limits;

/// A helper's error, its message tagged with the catalogue code (see `template_error`).
pub(super) fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// A helper's refusal of its argument: TRANSFORM_ERROR with the helper's message, as in
/// JavaScript.
pub(super) fn refused(message: String) -> Error {
    invalid(format!("TransformError: {message}"))
}

/// Bytes the render may still build: what its fuel left pays for.
pub(super) fn room(state: &State) -> usize {
    state.fuel_levels().map_or(usize::MAX, |(_, left)| {
        usize::try_from(left)
            .unwrap_or(usize::MAX)
            .saturating_mul(BYTES_PER_STEP)
    })
}

/// Charges the text one of our helpers built, as MiniJinja charges what it builds.
pub(super) fn charge(state: &State, bytes: usize) -> Result<(), Error> {
    state.consume_fuel((bytes / BYTES_PER_STEP) as u64 + 1)
}

/// The most text a helper reads or writes: what the render can still pay for, and never
/// more than the output limit (a helper's text is meant for the output).
pub(super) fn text_room(state: &State, limits: &Limits) -> usize {
    room(state).min(limits.max_output_bytes)
}

pub(super) fn too_long(helper: &str, limit: usize, limits: &Limits) -> Error {
    if limit >= limits.max_output_bytes {
        invalid(format!(
            "OutputTooLarge: {helper}: the text is longer than the output limit of {} bytes",
            limits.max_output_bytes
        ))
    } else {
        invalid(format!(
            "TransformMemory: {helper}: the text does not fit in the memory left to this record (transform.memory_mib = {} MiB)",
            limits.memory_bytes >> 20
        ))
    }
}

/// Collects formatted text and fails once it would pass `limit` bytes, so that printing a
/// value never builds more than that (a list repeated a million times prints lazily).
struct Bounded {
    text: String,
    limit: usize,
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len().saturating_add(s.len()) > self.limit {
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// A value as plain text (strings as they are, none/undefined empty, others as printed), or
/// `None` when that text would be longer than `limit` bytes; never built past it.
pub(super) fn plain_within(v: &Jv, limit: usize) -> Option<String> {
    if v.is_undefined() || v.is_none() {
        return Some(String::new());
    }
    if let Some(s) = v.as_str() {
        return (s.len() <= limit).then(|| s.to_string());
    }
    let mut out = Bounded {
        text: String::new(),
        limit,
    };
    std::fmt::write(&mut out, format_args!("{v}")).ok()?;
    Some(out.text)
}

/// `plain_within` for a helper's input, charged, with a clear error when it is too long.
pub(super) fn text(state: &State, v: &Jv, helper: &str, limits: &Limits) -> Result<String, Error> {
    let limit = text_room(state, limits);
    let t = plain_within(v, limit).ok_or_else(|| too_long(helper, limit, limits))?;
    charge(state, t.len())?;
    Ok(t)
}

/// How one `{{ value }}` is written in the template's format, or `None` when that text
/// would be longer than `limit` bytes.
pub(super) fn field(value: &Jv, escape: &AutoEscape, limit: usize) -> Option<String> {
    if value.is_safe() {
        let s = value.as_str().unwrap_or_default();
        return (s.len() <= limit).then(|| s.to_string());
    }
    match escape {
        AutoEscape::Custom(name) if name == "csv" => {
            // Quoting at most doubles a text, plus its two quotes.
            let f = helpers::csv_field(&plain_within(value, limit)?);
            (f.len() <= limit).then_some(f)
        }
        AutoEscape::Custom(name) if name == "xml" => {
            let mut out = String::new();
            helpers::xml_escape_within(&plain_within(value, limit)?, &mut out, limit).then_some(out)
        }
        _ => plain_within(value, limit),
    }
}
