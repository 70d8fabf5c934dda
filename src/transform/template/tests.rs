//! Templates run directly on a unit: escaping per format, the ctx helpers, failures and limits.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

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

#[test]
fn skip_skips_whatever_was_rendered() {
    let out = run(
        "header\n{% if not record.paid %}{{ skip('not paid') }}{% endif %}{{ record.id }}",
        "text",
        json!({"id": 7, "paid": false}),
    );
    assert_eq!(out.unwrap(), Output::Skip("not paid".into()));
    let out = run("{{ skip() }}", "csv", json!({}));
    assert_eq!(
        out.unwrap(),
        Output::Skip("skipped by the transformation".into())
    );
    let out = run(
        "{% if not record.paid %}{{ skip('not paid') }}{% endif %}{{ record.id }}",
        "text",
        json!({"id": 7, "paid": true}),
    );
    assert_eq!(text(out), "7");
}

#[test]
fn helper_arguments_are_refused_as_transform_errors() {
    for code in [
        "{{ 'abc' | money }}",
        "{{ 'yesterday' | format_date('%Y') }}",
        "{{ '2024-01-01' | format_date('%Y', 'Mars/Base') }}",
    ] {
        let e = run(code, "text", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::TransformError, "{code}: {e:?}");
    }
}
