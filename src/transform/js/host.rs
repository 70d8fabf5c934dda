//! The host functions `prelude.js` wraps into `ctx`: each calls the one Rust implementation
//! of its helper (`helpers`, `Lookups::lookup`), so JavaScript and templates agree. The prelude
//! removes them from the global scope before user code runs.

use std::rc::Rc;

use rquickjs::{Ctx, Exception, Function, Object, Value as Js};

use super::Shared;
use crate::transform::helpers::{self, Layout, When};
use crate::transform::lookups::Found;
use crate::transform::Limits;

/// An exception whose `name` is the catalogue code it belongs to (see `errors::classify`).
fn throw(ctx: &Ctx<'_>, name: &str, message: &str) -> rquickjs::Error {
    match Exception::from_message(ctx.clone(), message) {
        Ok(e) => match e.as_object().set("name", name) {
            Ok(()) => e.throw(),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

/// A helper's refusal of its argument: TRANSFORM_ERROR with the helper's message, as in
/// templates.
fn refuse(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    throw(ctx, "TransformError", message)
}

pub(super) fn install_host<'js>(
    ctx: &Ctx<'js>,
    shared: &Rc<Shared>,
    limits: &Limits,
) -> rquickjs::Result<()> {
    let host = Object::new(ctx.clone())?;
    host.set("maxOutputs", limits.max_outputs as f64)?;
    let s = shared.clone();
    host.set(
        "lookup",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, table: String, key: String, has_default: bool| {
                let lookups = s.lookups.borrow();
                match lookups.lookup(&table, &key, has_default) {
                    Ok(Found::Entry(v) | Found::TableDefault(v)) => {
                        Ok(rquickjs::String::from_str(ctx, v)?.into_value())
                    }
                    // The prelude returns the call's own default, whatever its type.
                    Ok(Found::CallDefault) => Ok(Js::new_undefined(ctx)),
                    Err(m) => Err(throw(&ctx, "LookupNotFound", &m)),
                }
            },
        )?,
    )?;
    let s = shared.clone();
    host.set(
        "log",
        Function::new(ctx.clone(), move |line: String| {
            s.logs.borrow_mut().push(line);
        })?,
    )?;
    host.set(
        "skipReason",
        Function::new(ctx.clone(), |reason: Option<String>| {
            helpers::skip_reason(reason.as_deref())
        })?,
    )?;
    host.set(
        "formatDate",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, value: Js<'js>, pattern: String, tz: String| {
                let text;
                let when = match value.as_number() {
                    Some(ms) => When::Millis(ms),
                    None => {
                        text = value
                            .as_string()
                            .map(|s| s.to_string())
                            .transpose()?
                            .unwrap_or_default();
                        When::Text(&text)
                    }
                };
                helpers::format_when(when, &pattern, &tz).map_err(|m| refuse(&ctx, &m))
            },
        )?,
    )?;
    host.set(
        "parseDate",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, value: String, pattern: String, tz: String| {
                let pattern = (!pattern.is_empty()).then_some(pattern.as_str());
                helpers::parse_date(&value, pattern, &tz).map_err(|m| refuse(&ctx, &m))
            },
        )?,
    )?;
    host.set(
        "money",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, value: String, places: Option<u32>| {
                helpers::money(&value, places).map_err(|m| refuse(&ctx, &m))
            },
        )?,
    )?;
    let max_width = limits.max_pad_width;
    host.set(
        "pad",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  helper: String,
                  value: String,
                  width: f64,
                  fill: Option<String>,
                  layout: String| {
                let layout = match layout.as_str() {
                    "start" => Layout::Start,
                    "end" => Layout::End,
                    other => Layout::Fixed {
                        right: other == "right",
                    },
                };
                helpers::width_of_number(&helper, width, max_width)
                    .and_then(|w| {
                        helpers::padded(&helper, &value, w, fill.as_deref(), layout, max_width)
                    })
                    .map_err(|m| refuse(&ctx, &m))
            },
        )?,
    )?;
    // What these build is meant for the output, so the output limit bounds it.
    let most = limits.max_output_bytes;
    let too_long = move |ctx: &Ctx<'_>, helper: &str| {
        throw(
            ctx,
            "OutputTooLarge",
            &format!("{helper}: the text is longer than the output limit of {most} bytes"),
        )
    };
    host.set(
        "csv",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, fields: Vec<String>| {
            let mut row = String::new();
            for (i, f) in fields.iter().enumerate() {
                if !helpers::push_csv_field(&mut row, f, i == 0, most) {
                    return Err(too_long(&ctx, "csv"));
                }
            }
            Ok(row)
        })?,
    )?;
    host.set(
        "xml",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, text: String| {
            let mut out = String::new();
            if !helpers::xml_escape_within(&text, &mut out, most) {
                return Err(too_long(&ctx, "xml"));
            }
            Ok(out)
        })?,
    )?;
    ctx.globals().set("__wharf_host", host)?;
    Ok(())
}
