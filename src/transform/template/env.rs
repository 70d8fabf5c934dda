//! The template side of the `ctx` helper API: MiniJinja functions and filters that call the
//! one Rust implementation of each helper (`helpers`, `Lookups::lookup`), within the render's
//! budget.

use minijinja::value::{Kwargs, Rest, Value as Jv, ValueKind};
use minijinja::{AutoEscape, Environment, Error, State};

use super::budget::{
    charge, field, invalid, plain_within, refused, room, text, text_room, too_long,
};
use super::{fuel, with_call};
use crate::transform::helpers::{self, Layout, When};
use crate::transform::lookups::Found;
use crate::transform::Limits;

/// A MiniJinja environment for one format, with the `ctx` helpers as functions and filters.
pub(super) fn environment(format: &str, limits: &Limits) -> Environment<'static> {
    let limits = *limits;
    let mut env = Environment::new();
    // Source snippets in errors are not needed: line and column are reported.
    env.set_debug(false);
    env.set_fuel(Some(fuel(&limits)));
    env.set_recursion_limit(100);
    let escape = match format {
        "csv" => AutoEscape::Custom("csv".into()),
        "xml" => AutoEscape::Custom("xml".into()),
        "json" => AutoEscape::Json,
        _ => AutoEscape::None,
    };
    env.set_auto_escape_callback(move |_| escape.clone());
    env.set_formatter(|out, state, value| {
        if value.is_undefined() || value.is_none() {
            // Missing values are empty fields, not the word "none".
            return Ok(());
        }
        let escape = state.auto_escape();
        if matches!(escape, AutoEscape::Json | AutoEscape::Html) && !value.is_safe() {
            // Written straight to the output, which MiniJinja charges as it goes.
            return minijinja::escape_formatter(out, state, value);
        }
        // The field is built only up to what the output may still take.
        let budget = with_call(|c| c.budget).unwrap_or(usize::MAX);
        let text = field(value, escape, budget.saturating_sub(1));
        let over = with_call(|c| {
            c.budget = match &text {
                Some(t) => c.budget.saturating_sub(t.len()),
                None => 0,
            };
            c.budget == 0
        })
        .unwrap_or(text.is_none());
        match text {
            Some(t) if !over => out.write_str(&t).map_err(Error::from),
            _ => Err(invalid("output limit".into())),
        }
    });
    add_helpers(&mut env, limits);
    env
}

/// The `ctx` helpers, each calling its one Rust implementation.
fn add_helpers(env: &mut Environment<'static>, limits: Limits) {
    env.add_function(
        "lookup",
        move |state: &State, table: String, key: Jv, default: Option<Jv>| {
            let key = text(state, &key, "lookup", &limits)?;
            let found = with_call(
                |c| match c.lookups.lookup(&table, &key, default.is_some()) {
                    Ok(Found::Entry(v) | Found::TableDefault(v)) => Ok(Some(v.to_string())),
                    Ok(Found::CallDefault) => Ok(None),
                    Err(m) => Err(m),
                },
            )
            .unwrap_or_else(|| Err(String::new()));
            match found {
                Ok(Some(v)) => Ok(Jv::from(v)),
                // The call's own default, whatever its type.
                Ok(None) => Ok(default.unwrap_or_default()),
                Err(m) => Err(invalid(format!("LookupNotFound: {m}"))),
            }
        },
    );
    env.add_function("log", |args: Rest<Jv>| {
        // A log line is cut at a few KiB anyway; no argument is printed past that.
        let line = args
            .iter()
            .map(|a| plain_within(a, LOG_TEXT).unwrap_or_else(|| "…".into()))
            .collect::<Vec<_>>()
            .join(" ");
        with_call(|c| c.logs.push(line));
        Jv::from_safe_string(String::new())
    });
    env.add_function("skip", |reason: Option<Jv>| {
        let reason = reason
            .filter(|r| !r.is_undefined() && !r.is_none())
            .map(|r| plain_within(&r, LOG_TEXT).unwrap_or_else(|| "…".into()));
        with_call(|c| c.skip = Some(helpers::skip_reason(reason.as_deref())));
        Jv::from_safe_string(String::new())
    });
    env.add_filter("money", move |state: &State, v: Jv, places: Option<u32>| {
        helpers::money(&text(state, &v, "money", &limits)?, places).map_err(refused)
    });
    env.add_filter(
        "format_date",
        move |state: &State, v: Jv, pattern: Option<String>, tz: Option<String>| {
            let (pattern, tz) = (pattern.unwrap_or_default(), tz.unwrap_or_default());
            // A number is milliseconds since 1970, as a JavaScript Date's time is.
            let millis = (v.kind() == ValueKind::Number)
                .then(|| f64::try_from(v.clone()).ok())
                .flatten();
            match millis {
                Some(ms) => helpers::format_when(When::Millis(ms), &pattern, &tz),
                None => {
                    let value = text(state, &v, "format_date", &limits)?;
                    helpers::format_when(When::Text(&value), &pattern, &tz)
                }
            }
            .map_err(refused)
        },
    );
    env.add_filter(
        "parse_date",
        move |state: &State, v: Jv, pattern: Option<String>, tz: Option<String>| {
            helpers::parse_date(
                &text(state, &v, "parse_date", &limits)?,
                pattern.as_deref(),
                tz.as_deref().unwrap_or(""),
            )
            .map_err(refused)
        },
    );
    env.add_filter(
        "pad_left",
        move |state: &State, v: Jv, width: usize, fill: Option<String>| {
            padded(state, "pad_left", &v, width, fill, Layout::Start, &limits)
        },
    );
    env.add_filter(
        "pad_right",
        move |state: &State, v: Jv, width: usize, fill: Option<String>| {
            padded(state, "pad_right", &v, width, fill, Layout::End, &limits)
        },
    );
    env.add_filter(
        "fixed",
        move |state: &State, v: Jv, width: usize, kwargs: Kwargs| -> Result<String, Error> {
            let fill: Option<String> = kwargs.get("fill")?;
            let align: Option<String> = kwargs.get("align")?;
            kwargs.assert_all_used()?;
            let layout = Layout::Fixed {
                right: align.as_deref() == Some("right"),
            };
            padded(state, "fixed", &v, width, fill, layout, &limits)
        },
    );
    env.add_filter("csv", move |state: &State, v: Jv| -> Result<Jv, Error> {
        let limit = text_room(state, &limits);
        let mut row = String::new();
        match v.try_iter() {
            Ok(items) if v.as_str().is_none() => {
                for (i, item) in items.enumerate() {
                    // Each item is a step: a list repeated lazily a million times is
                    // stopped by the step limit, not walked to its end.
                    state.consume_fuel(1)?;
                    let left = limit.saturating_sub(row.len() + 1);
                    let fits = plain_within(&item, left)
                        .is_some_and(|p| helpers::push_csv_field(&mut row, &p, i == 0, limit));
                    if !fits {
                        return Err(too_long("csv", limit, &limits));
                    }
                }
            }
            _ => {
                let t = text(state, &v, "csv", &limits)?;
                if !helpers::push_csv_field(&mut row, &t, true, limit) {
                    return Err(too_long("csv", limit, &limits));
                }
            }
        };
        charge(state, row.len())?;
        // Already quoted: the CSV auto-escape must not quote it again.
        Ok(Jv::from_safe_string(row))
    });
    env.add_filter("xml", move |state: &State, v: Jv| -> Result<Jv, Error> {
        let limit = text_room(state, &limits);
        let mut s = String::new();
        if !helpers::xml_escape_within(&text(state, &v, "xml", &limits)?, &mut s, limit) {
            return Err(too_long("xml", limit, &limits));
        }
        charge(state, s.len())?;
        Ok(Jv::from_safe_string(s))
    });
}

/// A padded field, its width checked before anything is built.
fn padded(
    state: &State,
    helper: &str,
    v: &Jv,
    width: usize,
    fill: Option<String>,
    layout: Layout,
    limits: &Limits,
) -> Result<String, Error> {
    helpers::check_width(helper, width, limits.max_pad_width).map_err(refused)?;
    let value = text(state, v, helper, limits)?;
    let fill_bytes = fill
        .as_deref()
        .and_then(|f| f.chars().next())
        .map_or(1, char::len_utf8);
    if width.saturating_mul(fill_bytes) > room(state) {
        return Err(too_long(helper, 0, limits));
    }
    helpers::padded(
        helper,
        &value,
        width,
        fill.as_deref(),
        layout,
        limits.max_pad_width,
    )
    .map_err(refused)
}

/// Longest text of one argument to `log(...)` or `skip(...)` (the line is cut shorter still).
const LOG_TEXT: usize = 4096;
