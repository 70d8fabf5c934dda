//! JavaScript transformations run directly on a unit: the ctx helpers, failures and limits.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::transform::helpers;

fn limits() -> Limits {
    Limits {
        // Wall-clock: room for a loaded machine (a shared two-core one runs the suite at a
        // load of 20), so memory cases hit memory first.
        timeout: Duration::from_millis(3000),
        memory_bytes: 32 << 20,
        max_output_bytes: 1 << 20,
        ..Limits::default()
    }
}

fn ctx() -> RunContext {
    let mut lookups = Lookups::default();
    lookups.tables.insert(
        "carriers".into(),
        crate::transform::lookups::Table {
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
    let e = code(
        "function transform(r) { const a = []; while (true) a.push('x'.repeat(1000) + a.length); }",
    );
    assert_eq!(e.code, ErrorCode::TransformMemory, "{e:?}");
    let e = code("function f(n) { return f(n + 1) + 1; }\nfunction transform(r) { return f(0); }");
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
