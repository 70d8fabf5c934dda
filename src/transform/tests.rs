//! The pool, its queue and the compile cache, tested on their own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use super::cache::Cache;
use super::pool::{handle, Sizes};
use super::queue::{Queue, Request};
use super::*;
use crate::domain::Timestamp;

fn program(language: Language, format: &str, code: &str) -> Program {
    Program {
        id: Uuid::now_v7(),
        version: Timestamp::now(),
        language,
        format: format.into(),
        code: Arc::from(code),
    }
}

fn ctx() -> RunContext {
    RunContext {
        settings: json!({}),
        job: json!({}),
        lookups: Arc::default(),
    }
}

#[tokio::test]
async fn a_panic_fails_only_its_record_and_the_thread_serves_on() {
    let config = TransformConfig {
        threads: 1,
        ..TransformConfig::default()
    };
    let pool = Transformer::start(&config);
    let org = Uuid::now_v7();
    let bad = program(Language::Template, "text", PANICS);
    for _ in 0..3 {
        let out = pool.run(org, bad.clone(), json!({}), ctx()).await;
        let e = out.result.unwrap_err();
        assert_eq!(e.code, ErrorCode::TransformError, "{e:?}");
        assert!(e.message.contains("internal error"), "{e:?}");
        let e = pool.check(org, bad.clone()).await.unwrap().unwrap_err();
        assert_eq!(e.code, ErrorCode::TransformError, "{e:?}");
    }
    let good = program(Language::Template, "text", "{{ record.a }}!");
    let out = pool.run(Uuid::now_v7(), good, json!({"a": 1}), ctx()).await;
    assert_eq!(out.result.unwrap(), Output::Records(vec![json!("1!")]));
    pool.stop();
}

#[tokio::test]
async fn a_running_record_nobody_waits_for_is_stopped() {
    let config = TransformConfig {
        threads: 1,
        timeout_ms: 20_000,
        ..TransformConfig::default()
    };
    let pool = Transformer::start(&config);
    let org = Uuid::now_v7();
    let endless = program(
        Language::JavaScript,
        "json",
        "function transform(r) { for (;;) {} }",
    );
    let running = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.try_run(org, endless, json!({}), ctx()).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.abort();
    let started = Instant::now();
    let echo = program(
        Language::JavaScript,
        "json",
        "function transform(r) { return r; }",
    );
    let out = pool.run(org, echo, json!({"a": 1}), ctx()).await;
    assert_eq!(out.result.unwrap(), Output::Records(vec![json!({"a": 1})]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} for the abandoned loop",
        started.elapsed()
    );
    pool.stop();
}

fn waiting(n: usize) -> Vec<(Request, tokio::sync::oneshot::Receiver<Outcome>)> {
    (0..n)
        .map(|_| {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let request = Request::Run {
                program: program(Language::Template, "text", "x"),
                record: json!({}),
                ctx: ctx(),
                reply,
            };
            (request, answer)
        })
        .collect()
}

#[test]
fn organisations_are_served_in_turn() {
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut queue = Queue::default();
    let mut answers = Vec::new();
    let mut ids = HashMap::new();
    for (org, n) in [(a, 5), (b, 2), (c, 1)] {
        for (request, answer) in waiting(n) {
            let Request::Run { program, .. } = &request else {
                unreachable!()
            };
            ids.insert(program.id, org);
            queue.push(org, request);
            answers.push(answer);
        }
    }
    assert_eq!(queue.waiting, 8);
    assert_eq!(queue.waiting_for(a), 5);
    let mut order = Vec::new();
    while let Some(Request::Run { program, .. }) = queue.pop() {
        order.push(ids[&program.id]);
    }
    assert_eq!(order, vec![a, b, c, a, b, a, a, a]);
    assert_eq!(queue.waiting, 0);
    assert!(queue.lines.is_empty() && queue.turn.is_empty());
}

#[test]
fn work_nobody_waits_for_is_dropped() {
    let org = Uuid::now_v7();
    let mut queue = Queue::default();
    let mut kept = Vec::new();
    for (i, (request, answer)) in waiting(4).into_iter().enumerate() {
        queue.push(org, request);
        if i % 2 == 0 {
            kept.push(answer);
        }
    }
    queue.drop_abandoned(Some(org));
    assert_eq!(queue.waiting, 2);
    assert_eq!(queue.waiting_for(org), 2);
    drop(kept);
    queue.drop_abandoned(None);
    assert_eq!(queue.waiting, 0);
    assert!(queue.turn.is_empty());
    // A worker skips what was abandoned after it was taken.
    let (request, answer) = waiting(1).pop().unwrap();
    drop(answer);
    assert!(request.abandoned());
    let mut cache = Cache::new(Sizes {
        threads: 1,
        queue_per_org: 1,
        queue_total: 1,
        cache_units: 1,
        cache_bytes: usize::MAX,
    });
    handle(&mut cache, request, &Limits::default());
    assert!(cache.units.is_empty(), "nothing was compiled for it");
}

#[tokio::test]
async fn a_full_queue_refuses_dry_runs_but_not_the_engine() {
    let config = TransformConfig {
        queue_per_org: 2,
        queue_total: 3,
        ..TransformConfig::default()
    };
    // No threads: everything queued stays queued.
    let pool = Transformer::with_threads(&config, 0);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let p = program(Language::Template, "text", "x");
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (pool, p) = (pool.clone(), p.clone());
        pending.spawn(async move { pool.try_run(a, p, json!({}), ctx()).await });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let busy = pool
        .try_run(a, p.clone(), json!({}), ctx())
        .await
        .unwrap_err();
    assert!(
        busy.message.contains("transform.queue_per_org = 2"),
        "{busy:?}"
    );
    assert!(busy.retry_after_seconds >= 1);
    let e = pool.check(a, p.clone()).await.unwrap_err();
    assert_eq!(e, busy);
    // Another organisation still has room, up to the total.
    {
        let (pool, p) = (pool.clone(), p.clone());
        pending.spawn(async move { pool.try_run(b, p, json!({}), ctx()).await });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let busy = pool
        .try_run(b, p.clone(), json!({}), ctx())
        .await
        .unwrap_err();
    assert!(
        busy.message.contains("transform.queue_total = 3"),
        "{busy:?}"
    );
    // The engine is never refused.
    let engine = {
        let (pool, p) = (pool.clone(), p.clone());
        tokio::spawn(async move { pool.run(a, p, json!({}), ctx()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.pool.lock().waiting, 4);
    // Callers that gave up free their places.
    pending.abort_all();
    while pending.join_next().await.is_some() {}
    let (pool2, p2) = (pool.clone(), p.clone());
    let admitted = tokio::spawn(async move { pool2.try_run(a, p2, json!({}), ctx()).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!admitted.is_finished(), "queued, not refused");
    // The engine's record, the new one, and another organisation's abandoned one (only
    // looked at when the total is reached).
    assert_eq!(pool.pool.lock().waiting, 3);
    pool.stop();
    engine.abort();
    admitted.abort();
}

#[test]
fn the_cache_is_bounded_in_count_and_memory() {
    let limits = Limits::default();
    let sizes = |units, bytes| Sizes {
        threads: 1,
        queue_per_org: 1,
        queue_total: 1,
        cache_units: units,
        cache_bytes: bytes,
    };
    let programs: Vec<Program> = (0..4)
        .map(|i| program(Language::Template, "text", &format!("{i}")))
        .collect();
    let mut cache = Cache::new(sizes(2, usize::MAX));
    for p in &programs {
        let mut logs = LogSink::default();
        cache
            .run(p, &json!({}), &ctx(), &limits, &mut logs)
            .unwrap();
    }
    assert_eq!(cache.units.len(), 2);
    assert!(cache
        .units
        .contains_key(&(programs[3].id, programs[3].version)));
    assert!(cache
        .units
        .contains_key(&(programs[2].id, programs[2].version)));
    // A template keeps at least 64 KiB by the estimate: one fits in 100 KiB, not two.
    let mut cache = Cache::new(sizes(16, 100 << 10));
    for p in &programs {
        let mut logs = LogSink::default();
        cache
            .run(p, &json!({}), &ctx(), &limits, &mut logs)
            .unwrap();
    }
    assert_eq!(cache.units.len(), 1);
    // Nothing is kept when one alone is over the bound.
    let mut cache = Cache::new(sizes(16, 1));
    let mut logs = LogSink::default();
    let js = program(
        Language::JavaScript,
        "json",
        "function transform(r) { return r; }",
    );
    cache
        .run(&js, &json!({"a": 1}), &ctx(), &limits, &mut logs)
        .unwrap();
    assert!(cache.units.is_empty());
}

#[test]
fn outputs_per_record_are_capped() {
    let limits = Limits {
        max_outputs: 3,
        ..Limits::default()
    };
    let three = Output::Records(vec![json!({}); 3]);
    assert_eq!(check_size(three.clone(), &limits).unwrap(), three);
    let e = check_size(Output::Records(vec![json!({}); 4]), &limits).unwrap_err();
    assert_eq!(e.code, ErrorCode::OutputTooLarge);
    assert!(
        e.message.contains("4 outputs") && e.message.contains("transform.max_outputs"),
        "{e:?}"
    );
}
