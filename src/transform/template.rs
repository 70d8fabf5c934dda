//! Template transformations in MiniJinja, for text outputs: CSV (each `{{ value }}` is one
//! correctly quoted field), XML (each `{{ value }}` escaped), fixed-width and plain text, and
//! JSON (each `{{ value }}` a JSON literal). Bounded by fuel, which pays for steps and for
//! every byte built (so also by the memory limit), by the output size, and by the padding width.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::value::{Kwargs, Rest, Serde, Value as Jv};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};
use serde_json::Value;

use super::heap;
use super::helpers;
use super::lookups::{Lookups, Miss};
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
fn fuel(limits: &Limits) -> u64 {
    let time = (limits.timeout.as_millis() as u64).saturating_mul(FUEL_PER_MS);
    let memory = (limits.memory_bytes / BYTES_PER_STEP) as u64;
    time.min(memory).max(1)
}

/// What the helpers of the record being rendered read and write.
struct Call {
    lookups: Arc<Lookups>,
    logs: LogSink,
    /// Output bytes still allowed; 0 once the limit is passed.
    budget: usize,
}

thread_local! {
    static CALL: RefCell<Option<Call>> = const { RefCell::new(None) };
}

fn with_call<R>(f: impl FnOnce(&mut Call) -> R) -> Option<R> {
    CALL.with(|c| c.borrow_mut().as_mut().map(f))
}

pub struct TemplateUnit {
    env: Environment<'static>,
    format: String,
    fuel: u64,
    code_bytes: usize,
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// Bytes the render may still build: what its fuel left pays for.
fn room(state: &State) -> usize {
    state.fuel_levels().map_or(usize::MAX, |(_, left)| {
        usize::try_from(left)
            .unwrap_or(usize::MAX)
            .saturating_mul(BYTES_PER_STEP)
    })
}

/// Charges the text one of our helpers built, as MiniJinja charges what it builds.
fn charge(state: &State, bytes: usize) -> Result<(), Error> {
    state.consume_fuel((bytes / BYTES_PER_STEP) as u64 + 1)
}

/// The most text a helper reads or writes: what the render can still pay for, and never
/// more than the output limit (a helper's text is meant for the output).
fn text_room(state: &State, limits: &Limits) -> usize {
    room(state).min(limits.max_output_bytes)
}

fn too_long(helper: &str, limit: usize, limits: &Limits) -> Error {
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
fn plain_within(v: &Jv, limit: usize) -> Option<String> {
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
fn text(state: &State, v: &Jv, helper: &str, limits: &Limits) -> Result<String, Error> {
    let limit = text_room(state, limits);
    let t = plain_within(v, limit).ok_or_else(|| too_long(helper, limit, limits))?;
    charge(state, t.len())?;
    Ok(t)
}

/// A padded field, its width checked before anything is built.
fn padded(
    state: &State,
    helper: &str,
    v: &Jv,
    width: usize,
    fill: Option<String>,
    (left, truncate): (bool, bool),
    limits: &Limits,
) -> Result<String, Error> {
    helpers::check_width(helper, width, limits.max_pad_width)
        .map_err(|m| invalid(format!("TransformError: {m}")))?;
    let fill = fill_char(fill);
    let value = text(state, v, helper, limits)?;
    if width.saturating_mul(fill.len_utf8()) > room(state) {
        return Err(too_long(helper, 0, limits));
    }
    Ok(helpers::pad(&value, width, fill, left, truncate))
}

/// How one `{{ value }}` is written in the template's format, or `None` when that text
/// would be longer than `limit` bytes.
fn field(value: &Jv, escape: &AutoEscape, limit: usize) -> Option<String> {
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

fn environment(format: &str, limits: &Limits) -> Environment<'static> {
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
    env.add_function(
        "lookup",
        move |state: &State, table: String, key: Jv, default: Option<Jv>| {
            let key = text(state, &key, "lookup", &limits)?;
            // The entry, else the call's default, else the table's: as in JavaScript.
            let found = with_call(|c| match c.lookups.entry(&table, &key) {
                Ok(Some(v)) => Ok((Some(v.to_string()), None)),
                Ok(None) => Ok((
                    None,
                    c.lookups.tables.get(&table).and_then(|t| t.default.clone()),
                )),
                Err(m) => Err(m),
            })
            .unwrap_or(Err(Miss::NoTable));
            match (found, default) {
                (Ok((Some(v), _)), _) => Ok(Jv::from(v)),
                (Ok((None, _)), Some(d)) => Ok(d),
                (Ok((None, Some(table_default))), None) => Ok(Jv::from(table_default)),
                (Ok((None, None)), None) => Err(invalid(format!(
                    "LookupNotFound: {}",
                    Lookups::miss_message(&table, &key, &Miss::NoKey)
                ))),
                (Err(_), Some(d)) => Ok(d),
                (Err(m), None) => Err(invalid(format!(
                    "LookupNotFound: {}",
                    Lookups::miss_message(&table, &key, &m)
                ))),
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
    env.add_filter("money", move |state: &State, v: Jv, places: Option<u32>| {
        helpers::round_decimal(&text(state, &v, "money", &limits)?, places.unwrap_or(2))
            .map_err(invalid)
    });
    env.add_filter(
        "format_date",
        move |state: &State, v: Jv, pattern: Option<String>, tz: Option<String>| {
            helpers::format_date(
                &text(state, &v, "format_date", &limits)?,
                pattern.as_deref().unwrap_or(""),
                tz.as_deref().unwrap_or(""),
            )
            .map_err(invalid)
        },
    );
    env.add_filter(
        "parse_date",
        move |state: &State, v: Jv, pattern: Option<String>, tz: Option<String>| {
            helpers::parse_instant(
                &text(state, &v, "parse_date", &limits)?,
                pattern.as_deref(),
                tz.as_deref().unwrap_or(""),
            )
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .map_err(invalid)
        },
    );
    env.add_filter(
        "pad_left",
        move |state: &State, v: Jv, width: usize, fill: Option<String>| {
            padded(state, "pad_left", &v, width, fill, (true, false), &limits)
        },
    );
    env.add_filter(
        "pad_right",
        move |state: &State, v: Jv, width: usize, fill: Option<String>| {
            padded(state, "pad_right", &v, width, fill, (false, false), &limits)
        },
    );
    env.add_filter(
        "fixed",
        move |state: &State, v: Jv, width: usize, kwargs: Kwargs| -> Result<String, Error> {
            let fill: Option<String> = kwargs.get("fill")?;
            let align: Option<String> = kwargs.get("align")?;
            kwargs.assert_all_used()?;
            let left = align.as_deref() == Some("right");
            padded(state, "fixed", &v, width, fill, (left, true), &limits)
        },
    );
    env.add_filter("csv", move |state: &State, v: Jv| -> Result<Jv, Error> {
        let limit = text_room(state, &limits);
        let row = match v.try_iter() {
            Ok(items) if v.as_str().is_none() => {
                let mut row = String::new();
                for (i, item) in items.enumerate() {
                    // Each item is a step: a list repeated lazily a million times is
                    // stopped by the step limit, not walked to its end.
                    state.consume_fuel(1)?;
                    let left = limit.saturating_sub(row.len() + 1);
                    let f = plain_within(&item, left)
                        .map(|p| helpers::csv_field(&p))
                        .filter(|f| f.len() <= left)
                        .ok_or_else(|| too_long("csv", limit, &limits))?;
                    if i > 0 {
                        row.push(',');
                    }
                    row.push_str(&f);
                }
                row
            }
            _ => {
                let f = helpers::csv_field(&text(state, &v, "csv", &limits)?);
                if f.len() > limit {
                    return Err(too_long("csv", limit, &limits));
                }
                f
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
    env
}

/// Longest text of one argument to `log(...)` (the line is cut shorter still).
const LOG_TEXT: usize = 4096;

fn fill_char(fill: Option<String>) -> char {
    fill.and_then(|f| f.chars().next()).unwrap_or(' ')
}

impl TemplateUnit {
    pub fn compile(
        code: &str,
        format: &str,
        limits: &Limits,
    ) -> Result<TemplateUnit, TransformError> {
        let mut env = environment(format, limits);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            timeout: Duration::from_millis(200),
            memory_bytes: 32 << 20,
            max_output_bytes: 64 << 10,
            ..Limits::default()
        }
    }

    fn run(code: &str, format: &str, record: Value) -> Result<Output, TransformError> {
        let mut unit = TemplateUnit::compile(code, format, &limits())?;
        let mut logs = LogSink::default();
        let ctx = RunContext {
            settings: json!({"sep": ";"}),
            job: json!({"id": "j"}),
            lookups: Arc::default(),
        };
        unit.run(&record, &ctx, &limits(), &mut logs)
    }

    fn text(out: Result<Output, TransformError>) -> String {
        match out.unwrap() {
            Output::Records(r) => r[0].as_str().unwrap().to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn csv_fields_are_quoted() {
        let out = run(
            "name,note\n{% for i in record.items %}{{ i.name }},{{ i.note }}\n{% endfor %}",
            "csv",
            json!({"items": [{"name": "Tee, blue", "note": "say \"hi\""}, {"name": "Cap", "note": null}]}),
        );
        assert_eq!(
            text(out),
            "name,note\n\"Tee, blue\",\"say \"\"hi\"\"\"\nCap,\n"
        );
    }

    #[test]
    fn xml_is_escaped() {
        let out = run("<n>{{ record.n }}</n>", "xml", json!({"n": "A & <B>"}));
        assert_eq!(text(out), "<n>A &amp; &lt;B&gt;</n>");
    }

    #[test]
    fn fixed_width_and_money() {
        let out = run(
            "{{ record.sku | fixed(8) }}{{ record.qty | fixed(4, fill='0', align='right') }}{{ record.price | money }}",
            "text",
            json!({"sku": "ABCDEFGHIJ", "qty": 7, "price": "2.675"}),
        );
        assert_eq!(text(out), "ABCDEFGH00072.68");
    }

    #[test]
    fn failures() {
        let e = run("{% for x in record %}\n{{ x }", "text", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::TemplateError);
        assert_eq!(e.line, Some(2), "{e:?}");
        let e = run(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "text",
            json!({}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::TransformTimeout, "{e:?}");
        let e = run(
            "{% for i in range(50000) %}xxxxxxxxxx{{ i }}{% endfor %}",
            "text",
            json!({}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputTooLarge, "{e:?}");
        let e = run("{{ lookup('nope', 'k') }}", "text", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::LookupNotFound, "{e:?}");
        let e = run("{{ record.x }", "json", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::TemplateError);
        let e = run("{\"a\": {{ record.x }}", "json", json!({"x": 1})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSchema);
    }

    #[test]
    fn padding_widths_are_bounded() {
        for width in ["18446744073709551615", "1099511627776", "10001"] {
            for filter in ["pad_left", "pad_right", "fixed"] {
                let code = format!("{{{{ '' | {filter}({width}) }}}}");
                let e = run(&code, "text", json!({})).unwrap_err();
                assert_eq!(e.code, ErrorCode::TransformError, "{code}: {e:?}");
                assert!(
                    e.message.contains(filter)
                        && e.message.contains("over the limit of 10000 characters")
                        && e.message.contains("transform.max_pad_width"),
                    "{e:?}"
                );
            }
        }
        let out = run("{{ 7 | pad_left(10000, '0') | length }}", "text", json!({}));
        assert_eq!(text(out), "10000");
    }

    #[test]
    fn what_a_render_builds_is_bounded_by_the_memory_limit() {
        let memory = |code: &str| {
            let started = std::time::Instant::now();
            let e = run(code, "text", json!({})).unwrap_err();
            assert_eq!(e.code, ErrorCode::TransformMemory, "{code}: {e:?}");
            assert!(e.message.contains("transform.memory_mib"), "{e:?}");
            assert!(started.elapsed() < Duration::from_secs(10), "{code}");
        };
        // Doubling a string until the budget cannot pay for the next copy.
        memory(
            "{% set a = 'x' * 4000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}\
             {% set e = d ~ d %}{% set f = e ~ e %}{% set g = f ~ f %}{{ g | length }}",
        );
        memory(
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        );
        // One allocation larger than the whole budget is refused before it is made.
        memory("{% set s = 'x' * 90000000 %}{{ s | length }}");
        memory("{{ (['x' * 1000000] * 100) | join('') | length }}");
        // Printing a lazily repeated list stops at the output limit, never builds it all.
        let e = run("{{ ['abc'] * 10000000 }}", "text", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputTooLarge, "{e:?}");
        let e = run("{{ (['abc'] * 10000000) | csv }}", "csv", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputTooLarge, "{e:?}");
        let e = run(
            "{{ (['abc' * 20000] * 10) | join | xml }}",
            "xml",
            json!({}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::OutputTooLarge, "{e:?}");
        // An endless loop that builds nothing is still a timeout.
        let e = run(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% set k = i ~ j %}{% endfor %}{% endfor %}",
            "text",
            json!({}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::TransformTimeout, "{e:?}");
    }

    #[test]
    fn json_templates_emit_literals() {
        let out = run(
            "{\"name\": {{ record.name }}, \"n\": {{ record.n }}}",
            "json",
            json!({"name": "a \"b\"", "n": 2}),
        )
        .unwrap();
        assert_eq!(
            out,
            Output::Records(vec![json!({"name": "a \"b\"", "n": 2})])
        );
    }
}
