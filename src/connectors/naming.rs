//! The small templates in a destination's params — a file name, an e-mail's subject, body
//! and attachment name — rendered with what a delivery knows: `job.id`, `job.stream_id`,
//! `event.id`, `event.entity_id` (empty for a job's combined delivery), `data_type`, `now`
//! (UTC, RFC 3339) and the `format_date(pattern, tz)` filter, e.g.
//! `orders-{{ now | format_date("%Y%m%d%H%M%S") }}.csv`. MiniJinja without escaping, bounded
//! in steps and in the length of what it writes.

use minijinja::value::{Serde, Value as Jv};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::{json, Value};

use super::registry::Outgoing;
use crate::transform::helpers;

/// Steps one render may take: plenty for a name or a short text, never a loop's worth.
const FUEL: u64 = 200_000;

/// Why a template could not be rendered, worded for an attempt's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamingError(pub String);

impl std::fmt::Display for NamingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a delivery's templates may name, once per delivery.
pub struct Naming {
    env: Environment<'static>,
    context: Value,
}

impl Naming {
    /// The context of one delivery try, with `extra` variables (e.g. `filename`) beside it.
    pub fn of(out: &Outgoing<'_>, extra: &[(&str, Value)]) -> Naming {
        let mut env = Environment::new();
        env.set_debug(false);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(20);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter(
            "format_date",
            |v: Jv, pattern: String, tz: Option<String>| -> Result<Jv, Error> {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                helpers::format_date(&text, &pattern, tz.as_deref().unwrap_or("UTC"))
                    .map(Jv::from)
                    .map_err(|m| Error::new(ErrorKind::InvalidOperation, m))
            },
        );
        let (event_id, entity_id) = match out.event {
            Some((id, entity)) => (json!(id), json!(entity.unwrap_or_default())),
            None => (json!(""), json!("")),
        };
        let mut context = json!({
            "job": {"id": out.job_id, "stream_id": out.stream_id},
            "event": {"id": event_id, "entity_id": entity_id},
            "data_type": out.data_type,
            "now": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        if let Some(map) = context.as_object_mut() {
            for (k, v) in extra {
                map.insert(k.to_string(), v.clone());
            }
        }
        Naming { env, context }
    }

    /// Renders `template` (the param named `param`); the text may be at most `max` bytes.
    pub fn render(&self, param: &str, template: &str, max: usize) -> Result<String, NamingError> {
        let failed = |e: &dyn std::fmt::Display| {
            NamingError(format!("the destination's `{param}` template: {e}"))
        };
        let text = self
            .env
            .render_str(template, Jv::from(Serde(&self.context)))
            .map_err(|e| failed(&e))?;
        if text.len() > max {
            return Err(failed(&format!(
                "renders {} bytes, more than the {max} allowed",
                text.len()
            )));
        }
        Ok(text)
    }

    /// Renders a file name: one path segment, no control characters, not `.` or `..`.
    pub fn file_name(&self, param: &str, template: &str) -> Result<String, NamingError> {
        let name = self.render(param, template, MAX_FILE_NAME)?;
        let name = name.trim();
        let bad = name.is_empty()
            || name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control());
        if bad {
            return Err(NamingError(format!(
                "the destination's `{param}` template gave {name:?}, which is not a file name: \
                 a name may not be empty, `.` or `..`, or hold `/`, `\\` or control characters"
            )));
        }
        Ok(name.to_string())
    }
}

/// Longest file name written: most file systems allow 255 bytes, and a file is first written
/// as `.<name>.part`.
pub const MAX_FILE_NAME: usize = 249;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    fn out(event: Option<(Uuid, Option<&str>)>) -> Outgoing<'_> {
        Outgoing {
            body: &Value::Null,
            content_type: "text/csv",
            timeout: Duration::from_secs(1),
            job_id: Uuid::nil(),
            stream_id: Uuid::max(),
            event,
            data_type: "order",
        }
    }

    #[test]
    fn names_say_which_job_event_and_time() {
        let id = Uuid::now_v7();
        let n = Naming::of(&out(Some((id, Some("#1001")))), &[]);
        assert_eq!(
            n.render(
                "filename",
                "{{ data_type }}-{{ event.entity_id }}-{{ job.id }}",
                100
            )
            .unwrap(),
            format!("order-#1001-{}", Uuid::nil())
        );
        let stamp = n
            .render("filename", "{{ now | format_date(\"%Y%m%d\") }}", 100)
            .unwrap();
        assert_eq!(stamp, chrono::Utc::now().format("%Y%m%d").to_string());
        let combined = Naming::of(&out(None), &[("filename", json!("a.csv"))]);
        assert_eq!(
            combined
                .render("body", "[{{ event.entity_id }}]{{ filename }}", 100)
                .unwrap(),
            "[]a.csv"
        );
    }

    #[test]
    fn bad_templates_and_names_say_what_is_wrong() {
        let n = Naming::of(&out(None), &[]);
        let e = n.render("subject", "{{ nope.x }}", 100).unwrap_err();
        assert!(e.0.contains("`subject` template"), "{e}");
        let e = n.render("subject", "{% for i in range(100000) %}x{% endfor %}", 1000);
        assert!(e.is_err());
        let e = n.file_name("filename", "../{{ data_type }}").unwrap_err();
        assert!(e.0.contains("not a file name"), "{e}");
        assert!(n.file_name("filename", "  ").is_err());
        assert_eq!(n.file_name("filename", " a.csv ").unwrap(), "a.csv");
        let long = "x".repeat(300);
        assert!(n.file_name("filename", &long).is_err());
    }
}
