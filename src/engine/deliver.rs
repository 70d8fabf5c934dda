//! An event's way through its stream: its transformation, then delivery attempts on the
//! destination's retry schedule.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::run_job::credentials;
use super::Engine;
use crate::connectors::{Call, Outgoing, SendResult};
use crate::domain::aggregate::combine;
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Retry;
use crate::domain::retry::{next_delay, Verdict};
use crate::domain::{EventStatus, Timestamp};
use crate::store::{
    Destination, Event, EventChange, Job, NewAttempt, StoreResult, StoredJson, Stream,
    Transformation,
};
use crate::transform::{content_type, job_context, Output, Program, RunContext, TransformError};

/// Processes a claimed event; `job` is its job when the claim read it (NEW events).
pub async fn process(engine: &Engine, mut ev: Event, job: Option<Arc<Job>>, token: Uuid) {
    let job_id = ev.job_id;
    // A terminal change finishes the job in the store when it was the last open event.
    match step(engine, &mut ev, job, token).await {
        Ok(true) => engine.lookups.release_job(job_id),
        Ok(false) => {}
        // The claim runs out and another attempt picks the event up; nothing is lost.
        Err(e) => {
            tracing::warn!(event = %ev.id, error = %e, "storage failed while processing an event")
        }
    }
}

fn after(seconds: u64) -> Timestamp {
    Timestamp::from_datetime(Timestamp::now().0 + chrono::Duration::seconds(seconds as i64))
}

/// What a NEW event's transformation produced, to be written with its next step: the
/// output delivered now, kept here rather than in the event so that it is stored as it is,
/// without a copy.
struct Fresh {
    output: Value,
    logs: Vec<String>,
    siblings: Vec<Value>,
}

/// Runs the stream's transformation on a NEW event's record.
async fn transform(
    engine: &Engine,
    ev: &mut Event,
    job: Option<Arc<Job>>,
    stream: &Stream,
    transformation: &Transformation,
) -> StoreResult<(Result<Output, TransformError>, Vec<String>)> {
    let store = &engine.store;
    let program = match Program::of(transformation) {
        Ok(p) => p,
        Err(e) => return Ok((Err(e), Vec::new())),
    };
    let job = match job {
        Some(job) => job,
        None => Arc::new(store.get::<Job>(ev.org_id, ev.job_id).await?),
    };
    let mut settings = stream.settings.0.clone();
    if let (Some(base), Value::Object(run)) = (settings.as_object_mut(), &job.settings.0) {
        // Settings given for one run override the stream's, key by key.
        for (k, v) in run {
            base.insert(k.clone(), v.clone());
        }
    }
    let lookups = engine.lookups.for_job(store, ev.org_id, ev.job_id).await?;
    let ctx = RunContext {
        settings,
        job: job_context(job.id, &job.trigger, stream.id),
        lookups,
    };
    // The record is lent to the transformation, not copied (only the library's passthrough
    // copies it, into its output): the run gives it back, for the split records that carry
    // it (see `Rows::add_siblings`).
    let lent = ev.payload_in.take();
    let stored = lent.is_some();
    let record = lent.map_or(Value::Null, |j| j.0);
    let outcome = engine
        .transformer
        .run(ev.org_id, program, record, ctx)
        .await;
    ev.payload_in = outcome.record.filter(|_| stored).map(StoredJson);
    engine
        .metrics
        .observe_transform(outcome.duration, outcome.result.is_ok());
    Ok((outcome.result, outcome.logs))
}

/// Moves the event as far as it can go now. Returns whether it reached a terminal status.
async fn step(
    engine: &Engine,
    ev: &mut Event,
    job: Option<Arc<Job>>,
    token: Uuid,
) -> StoreResult<bool> {
    let store = &engine.store;
    let stream = store.get_cached::<Stream>(ev.org_id, ev.stream_id).await?;
    let destination = store
        .get_cached::<Destination>(ev.org_id, stream.destination_id)
        .await?;
    let transformation = store
        .get_cached::<Transformation>(ev.org_id, stream.transformation_id)
        .await?;
    let content_type = content_type(&transformation.format);
    let retry = Retry::from_stored(&destination.retry.0);
    let attempts_total = retry.schedule_seconds.len() as i64;

    if !stream.active {
        let change = EventChange {
            to: Some(EventStatus::Aborted),
            error_code: Some(Some(ErrorCode::Aborted.as_str().into())),
            message: Some(Some("the stream is inactive".into())),
            next_attempt_at: Some(None),
            release: true,
            ..Default::default()
        };
        return store.change_event(ev, token, change, None).await;
    }

    if ev.status == EventStatus::New {
        let (result, logs) = transform(engine, ev, job, &stream, &transformation).await?;
        let mut outputs = match result {
            Err(e) => {
                let change = EventChange {
                    to: Some(EventStatus::Error),
                    error_code: Some(Some(e.code.as_str().into())),
                    message: Some(Some(e.describe())),
                    next_attempt_at: Some(None),
                    logs: Some(logs),
                    release: true,
                    ..Default::default()
                };
                return store.change_event(ev, token, change, None).await;
            }
            Ok(Output::Skip(reason)) => {
                let change = EventChange {
                    to: Some(EventStatus::Ok),
                    payload_out: Some(Value::Null),
                    message: Some(Some(format!("skipped: {reason}"))),
                    next_attempt_at: Some(None),
                    logs: Some(logs),
                    release: true,
                    ..Default::default()
                };
                return store.change_event(ev, token, change, None).await;
            }
            Ok(Output::Records(outputs)) => outputs,
        };
        let output = if outputs.is_empty() {
            Value::Null
        } else {
            outputs.remove(0)
        };
        let siblings = outputs;
        let split = !siblings.is_empty();
        let aggregate = destination.mode == "aggregate" && !stream.test_mode;
        let first = retry.schedule_seconds.first().copied().unwrap_or(0);
        // When the first delivery is due; `None` for aggregates, which wait for the job's
        // combined delivery (due once every event of the job is transformed).
        let due = if aggregate {
            None
        } else if stream.test_mode {
            Some(Timestamp::now())
        } else {
            Some(after(first))
        };
        if first == 0 && !stream.test_mode && !aggregate {
            // Due at once: the transformation's result is written with the first attempt's
            // outcome, in one commit (see `change_event`).
            ev.retries_remaining = Some(attempts_total);
            let fresh = Fresh {
                output,
                logs,
                siblings,
            };
            let done = deliver(
                engine,
                ev,
                token,
                &destination,
                &retry,
                content_type,
                Some(fresh),
            )
            .await;
            if split {
                engine.wake.notify_one();
            }
            return done;
        }
        let change = EventChange {
            to: Some(EventStatus::Transformed),
            payload_out: Some(output.clone()),
            retries_remaining: Some(Some(attempts_total)),
            next_attempt_at: Some(due),
            logs: Some(logs),
            siblings,
            siblings_due: due,
            siblings_retries: Some(attempts_total),
            // Test mode goes on to OK now; otherwise the event waits for its attempt.
            release: !stream.test_mode,
            ..Default::default()
        };
        if !store.change_event(ev, token, change, None).await? {
            return Ok(false);
        }
        if split {
            engine.wake.notify_one();
        }
        if aggregate {
            if store.mark_aggregate_ready(ev.job_id).await? {
                engine.wake.notify_one();
            }
            return Ok(false);
        }
        ev.status = EventStatus::Transformed;
        ev.payload_out = Some(StoredJson(output));
        if !stream.test_mode {
            return Ok(false);
        }
    }

    if stream.test_mode {
        let change = EventChange {
            to: Some(EventStatus::Ok),
            message: Some(Some("test mode: transformed, not sent".into())),
            next_attempt_at: Some(None),
            release: true,
            ..Default::default()
        };
        return store.change_event(ev, token, change, None).await;
    }
    deliver(engine, ev, token, &destination, &retry, content_type, None).await
}

/// One delivery attempt of a transformed event (or a NEW one transformed in memory just now,
/// with what its transformation produced), recorded with its outcome.
async fn deliver(
    engine: &Engine,
    ev: &Event,
    token: Uuid,
    destination: &Destination,
    retry: &Retry,
    content_type: &str,
    fresh: Option<Fresh>,
) -> StoreResult<bool> {
    let started = Timestamp::now();
    let body = match &fresh {
        Some(f) => &f.output,
        None => ev.payload_out.as_ref().map_or(&Value::Null, |j| &j.0),
    };
    let key = credentials(engine, ev.org_id, destination.key_id).await?;
    let out = Outgoing {
        body,
        content_type,
        timeout: delivery_timeout(engine, retry),
        job_id: ev.job_id,
        stream_id: ev.stream_id,
        event: Some((ev.id, ev.entity_id.as_deref())),
        data_type: &ev.data_type,
    };
    let result = send_to(engine, destination, key.as_deref(), out).await;
    engine.lanes.observe(destination.id, result.duration);
    let (change, outcome) = judge(
        &result,
        &retry.schedule_seconds,
        ev.attempt_count as usize + 1,
    );
    let code = result.error_code.map(|c| c.as_str().to_string());
    engine.metrics.record_attempt(outcome, code.as_deref());
    let terminal = change.to.is_some();
    let attempt = NewAttempt {
        id: Uuid::now_v7(),
        destination_id: destination.id,
        started_at: started,
        finished_at: Timestamp::now(),
        outcome,
        error_code: code,
        http_status: result.http_status.map(i64::from),
        http_status_name: result.http_status_name,
        response_excerpt: result.excerpt,
        duration_ms: result.duration.as_millis() as i64,
    };
    let (payload_out, logs, siblings) = match fresh {
        Some(f) => (Some(f.output), Some(f.logs), f.siblings),
        None => (None, None, Vec::new()),
    };
    let change = EventChange {
        destination_ref: result
            .reference
            .filter(|_| result.verdict == Verdict::Success),
        attempted: true,
        release: true,
        payload_out,
        retries_remaining: change.retries_remaining,
        logs,
        siblings_due: Some(Timestamp::now()),
        siblings_retries: Some(retry.schedule_seconds.len() as i64),
        siblings,
        ..change
    };
    let changed = store_outcome(engine, ev, token, change, attempt).await?;
    Ok(changed && terminal)
}

/// Stores a delivery's outcome. The delivery happened, so its outcome is not given up when
/// storage fails: it is kept and stored again, with growing pauses, for up to
/// `workers.keep_outcome_seconds` (storage restarting, connections dropped). Stored late, it
/// still applies if no other worker has claimed the event since (see
/// `EventChange::or_unclaimed`), so what was delivered is not delivered again; and the attempt
/// is recorded once, whatever became of the event.
async fn store_outcome(
    engine: &Engine,
    ev: &Event,
    token: Uuid,
    mut change: EventChange,
    attempt: NewAttempt,
) -> StoreResult<bool> {
    let keep = std::time::Duration::from_secs(engine.workers.keep_outcome_seconds);
    let since = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        match engine
            .store
            .change_event(ev, token, &change, Some(attempt.clone()))
            .await
        {
            Ok(changed) => {
                if change.or_unclaimed {
                    tracing::info!(event = %ev.id, outcome = attempt.outcome, changed, "a delivery's outcome is stored after storage came back");
                }
                return Ok(changed);
            }
            // Only storage that is away is waited for; an error in the data (which no retry
            // mends) ends it as before: the lease runs out and the event is delivered again.
            Err(e @ crate::store::StoreError::Unavailable(_))
                if since.elapsed() + pause <= keep =>
            {
                if !change.or_unclaimed {
                    tracing::warn!(event = %ev.id, error = %e, "storing a delivery's outcome failed; it is kept and stored again when storage answers");
                }
                change.or_unclaimed = true;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(event = %ev.id, outcome = attempt.outcome, error = %e, "a delivery's outcome could not be stored; the event will be delivered again once its lease runs out");
                return Err(e);
            }
        }
    }
}

/// What an attempt's result means for the event(s): the change and the attempt's outcome.
/// `done` counts this attempt.
fn judge(result: &SendResult, schedule: &[u64], done: usize) -> (EventChange, &'static str) {
    let code = result.error_code.map(|c| c.as_str().to_string());
    let remaining = (schedule.len() as i64 - done as i64).max(0);
    match result.verdict {
        Verdict::Success => (
            EventChange {
                to: Some(EventStatus::Ok),
                error_code: Some(None),
                message: Some(None),
                retries_remaining: Some(Some(remaining)),
                next_attempt_at: Some(None),
                ..Default::default()
            },
            "SUCCESS",
        ),
        Verdict::Retry => match next_delay(schedule, done, result.retry_after) {
            Some(delay) => (
                EventChange {
                    to: None,
                    error_code: Some(code.clone()),
                    message: Some(result.message.clone()),
                    retries_remaining: Some(Some(remaining)),
                    next_attempt_at: Some(Some(Timestamp::from_datetime(
                        Timestamp::now().0 + chrono::Duration::from_std(delay).unwrap_or_default(),
                    ))),
                    ..Default::default()
                },
                "RETRY",
            ),
            None => (failed(code.clone(), result.message.clone()), "FAILED"),
        },
        Verdict::Final => (failed(code.clone(), result.message.clone()), "FAILED"),
    }
}

fn failed(code: Option<String>, message: Option<String>) -> EventChange {
    EventChange {
        to: Some(EventStatus::Failed),
        error_code: Some(code),
        message: Some(message),
        retries_remaining: Some(Some(0)),
        next_attempt_at: Some(None),
        ..Default::default()
    }
}

/// Delivers a job's transformed events in one request and applies the result to each.
pub async fn aggregate(engine: &Engine, job: Job, token: Uuid) {
    let id = job.id;
    match deliver_aggregate(engine, job, token).await {
        Ok(true) => {
            if let Err(e) = engine.store.finish_job(id).await {
                tracing::warn!(job = %id, error = %e, "could not finish the job; maintenance will");
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "storage failed during a combined delivery")
        }
    }
}

async fn deliver_aggregate(engine: &Engine, job: Job, token: Uuid) -> StoreResult<bool> {
    let store = &engine.store;
    let stream = store
        .get_cached::<Stream>(job.org_id, job.stream_id)
        .await?;
    let destination = store
        .get_cached::<Destination>(job.org_id, stream.destination_id)
        .await?;
    let transformation = store
        .get_cached::<Transformation>(job.org_id, stream.transformation_id)
        .await?;
    let retry = Retry::from_stored(&destination.retry.0);
    let members = store.aggregate_members(job.id).await?;
    let outputs: Vec<Value> = members
        .iter()
        .map(|e| {
            e.payload_out
                .as_ref()
                .map(|j| j.0.clone())
                .unwrap_or(Value::Null)
        })
        .collect();
    let (body, content_type) = combine(&outputs, &transformation.format);
    let key = credentials(engine, job.org_id, destination.key_id).await?;
    let started = Timestamp::now();
    let out = Outgoing {
        body: &body,
        content_type,
        timeout: delivery_timeout(engine, &retry),
        job_id: job.id,
        stream_id: job.stream_id,
        event: None,
        data_type: &stream.data_type,
    };
    let result = send_to(engine, &destination, key.as_deref(), out).await;
    let (change, outcome) = judge(
        &result,
        &retry.schedule_seconds,
        job.aggregate_attempts as usize + 1,
    );
    let next_at = change.next_attempt_at.flatten();
    engine
        .metrics
        .record_attempt(outcome, result.error_code.map(|c| c.as_str()));
    let attempt = NewAttempt {
        id: Uuid::now_v7(),
        destination_id: destination.id,
        started_at: started,
        finished_at: Timestamp::now(),
        outcome,
        error_code: result.error_code.map(|c| c.as_str().to_string()),
        http_status: result.http_status.map(i64::from),
        http_status_name: result.http_status_name.clone(),
        response_excerpt: result.excerpt.clone(),
        duration_ms: result.duration.as_millis() as i64,
    };
    let terminal = change.to.is_some();
    let held = store
        .complete_aggregate(&job, token, &members, &change, next_at, &attempt)
        .await?;
    Ok(held && terminal)
}

/// The time one try may take: the destination's, held below the claim's lease too, so no
/// second worker delivers the event again.
fn delivery_timeout(engine: &Engine, retry: &Retry) -> std::time::Duration {
    std::time::Duration::from_secs(retry.timeout_seconds).min(engine.net.deadline)
}

/// One delivery through the destination's function.
async fn send_to(
    engine: &Engine,
    destination: &Destination,
    key: Option<&Value>,
    out: Outgoing<'_>,
) -> SendResult {
    let Some(function) = engine.connectors.destination(&destination.function) else {
        return SendResult::refused(
            ErrorCode::Unknown,
            format!(
                "the destination function `{}` cannot deliver yet",
                destination.function
            ),
        );
    };
    let call = Call {
        net: &engine.net,
        params: &destination.params.0,
        key,
        decode: &engine.decode,
    };
    function.send(call, out).await
}
