//! Template transformations in MiniJinja, for text outputs: CSV (each `{{ value }}` is one
//! correctly quoted field), XML (each `{{ value }}` escaped), fixed-width and plain text, and
//! JSON (each `{{ value }}` a JSON literal). Bounded by fuel (steps) and by output size.

use std::cell::RefCell;
use std::sync::Arc;

use minijinja::value::{Kwargs, Rest, Serde, Value as Jv};
use minijinja::{AutoEscape, Environment, Error, ErrorKind};
use serde_json::Value;

use super::helpers;
use super::lookups::{Lookups, Miss};
use super::{Limits, LogSink, Output, RunContext, TransformError, Unit};
use crate::domain::error_code::ErrorCode;

const NAME: &str = "transform";
/// Template steps allowed per millisecond of the CPU-time limit (a step is tens of ns).
const FUEL_PER_MS: u64 = 50_000;

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
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

fn environment(format: &str, limits: &Limits) -> Environment<'static> {
    let mut env = Environment::new();
    // Source snippets in errors are not needed: line and column are reported.
    env.set_debug(false);
    env.set_fuel(Some(limits.timeout.as_millis() as u64 * FUEL_PER_MS));
    env.set_recursion_limit(100);
    let escape = match format {
        "csv" => AutoEscape::Custom("csv".into()),
        "xml" => AutoEscape::Custom("xml".into()),
        "json" => AutoEscape::Json,
        _ => AutoEscape::None,
    };
    env.set_auto_escape_callback(move |_| escape.clone());
    env.set_formatter(|out, state, value| {
        let mut text = String::new();
        if value.is_undefined() || value.is_none() {
            // Missing values are empty fields, not the word "none".
        } else if value.is_safe() {
            text.push_str(value.as_str().unwrap_or_default());
        } else {
            match state.auto_escape() {
                AutoEscape::Custom(name) if name == "csv" => {
                    text = helpers::csv_field(&plain(value))
                }
                AutoEscape::Custom(name) if name == "xml" => {
                    helpers::xml_escape(&plain(value), &mut text)
                }
                AutoEscape::None => text = plain(value),
                _ => return minijinja::escape_formatter(out, state, value),
            }
        }
        let over = with_call(|c| {
            c.budget = c.budget.saturating_sub(text.len());
            c.budget == 0
        })
        .unwrap_or(false);
        if over {
            return Err(invalid("output limit".into()));
        }
        out.write_str(&text).map_err(Error::from)
    });
    env.add_function("lookup", |table: String, key: Jv, default: Option<Jv>| {
        let key = plain(&key);
        let found = with_call(|c| match c.lookups.entry(&table, &key) {
            Ok(Some(v)) => Ok(Some(v.to_string())),
            Ok(None) => Ok(c.lookups.tables.get(&table).and_then(|t| t.default.clone())),
            Err(m) => Err(m),
        })
        .unwrap_or(Err(Miss::NoTable));
        match (found, default) {
            (Ok(Some(v)), _) => Ok(Jv::from(v)),
            (Ok(None), Some(d)) => Ok(d),
            (Ok(None), None) => Err(invalid(format!(
                "LookupNotFound: {}",
                Lookups::miss_message(&table, &key, &Miss::NoKey)
            ))),
            (Err(_), Some(d)) => Ok(d),
            (Err(m), None) => Err(invalid(format!(
                "LookupNotFound: {}",
                Lookups::miss_message(&table, &key, &m)
            ))),
        }
    });
    env.add_function("log", |args: Rest<Jv>| {
        let line = args.iter().map(plain).collect::<Vec<_>>().join(" ");
        with_call(|c| c.logs.push(line));
        Jv::from_safe_string(String::new())
    });
    env.add_filter("money", |v: Jv, places: Option<u32>| {
        helpers::round_decimal(&plain(&v), places.unwrap_or(2)).map_err(invalid)
    });
    env.add_filter(
        "format_date",
        |v: Jv, pattern: Option<String>, tz: Option<String>| {
            helpers::format_date(
                &plain(&v),
                pattern.as_deref().unwrap_or(""),
                tz.as_deref().unwrap_or(""),
            )
            .map_err(invalid)
        },
    );
    env.add_filter(
        "parse_date",
        |v: Jv, pattern: Option<String>, tz: Option<String>| {
            helpers::parse_instant(&plain(&v), pattern.as_deref(), tz.as_deref().unwrap_or(""))
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .map_err(invalid)
        },
    );
    env.add_filter("pad_left", |v: Jv, width: usize, fill: Option<String>| {
        helpers::pad(&plain(&v), width, fill_char(fill), true, false)
    });
    env.add_filter("pad_right", |v: Jv, width: usize, fill: Option<String>| {
        helpers::pad(&plain(&v), width, fill_char(fill), false, false)
    });
    env.add_filter(
        "fixed",
        |v: Jv, width: usize, kwargs: Kwargs| -> Result<String, Error> {
            let fill: Option<String> = kwargs.get("fill")?;
            let align: Option<String> = kwargs.get("align")?;
            kwargs.assert_all_used()?;
            Ok(helpers::pad(
                &plain(&v),
                width,
                fill_char(fill),
                align.as_deref() == Some("right"),
                true,
            ))
        },
    );
    env.add_filter("csv", |v: Jv| {
        let row = match v.try_iter() {
            Ok(items) if v.as_str().is_none() => items
                .map(|i| helpers::csv_field(&plain(&i)))
                .collect::<Vec<_>>()
                .join(","),
            _ => helpers::csv_field(&plain(&v)),
        };
        // Already quoted: the CSV auto-escape must not quote it again.
        Jv::from_safe_string(row)
    });
    env.add_filter("xml", |v: Jv| {
        let mut s = String::new();
        helpers::xml_escape(&plain(&v), &mut s);
        Jv::from_safe_string(s)
    });
    env
}

fn fill_char(fill: Option<String>) -> char {
    fill.and_then(|f| f.chars().next()).unwrap_or(' ')
}

/// A value as plain text: strings as they are, none/undefined empty, others as printed.
fn plain(v: &Jv) -> String {
    if v.is_undefined() || v.is_none() {
        String::new()
    } else if let Some(s) = v.as_str() {
        s.to_string()
    } else {
        v.to_string()
    }
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
        })
    }
}

impl Unit for TemplateUnit {
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
        let rendered = template.render(minijinja::context! {
            record => Jv::from(Serde(record)),
            ctx => minijinja::context! {
                settings => Jv::from(Serde(&ctx.settings)),
                job => Jv::from(Serde(&ctx.job)),
            },
        });
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
            if e.kind() == ErrorKind::OutOfFuel {
                return TransformError::new(
                    ErrorCode::TransformTimeout,
                    "the template ran past its step limit (derived from transform.timeout_ms) and was stopped",
                )
                .at(e.line().map(|l| l as u32), None);
            }
            template_error(&e, template.source())
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
    let (code, message) = match detail.strip_prefix("LookupNotFound: ") {
        Some(m) => (ErrorCode::LookupNotFound, m.to_string()),
        None => (ErrorCode::TemplateError, format!("{}: {detail}", e.kind())),
    };
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
