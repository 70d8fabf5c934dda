//! Running a job: read its records (from the source function, or the records the job carries)
//! and store them as NEW events in one transaction with the job's progress.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::Engine;
use crate::connectors::{self, Call, Reading, Settle};
use crate::store::{
    Completion, Job, NewEvent, Payload, Source, SourceCursor, SourceRead, StoreError, Stream,
};

enum Failure {
    /// The source itself failed: the job ends FAILED with this message.
    Source(String),
    /// Our storage failed: leave the claim to run out so the job is tried again.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

pub async fn run(engine: &Engine, job: Job, token: Uuid) {
    let store = &engine.store;
    // Bounded below the claim's lease: past it another worker would run the same job. The read
    // stores nothing until it is complete, so stopping it loses nothing.
    let deadline = engine.net.deadline;
    let read = match tokio::time::timeout(deadline, read(engine, &job)).await {
        Ok(read) => read,
        Err(_) => Err(Failure::Source(format!(
            "{}: the source run took longer than outbound.job_deadline_seconds ({} s); nothing was stored. Check the source (slow answers, endless pagination), then replicate the job.",
            crate::domain::error_code::ErrorCode::Timeout.as_str(),
            deadline.as_secs()
        ))),
    };
    match read {
        Ok(run) => {
            let n = run.events.len();
            let stored = store
                .complete_source_read(&job, token, &run.data_type, run.events, run.read)
                .await;
            match stored {
                Ok(Completion::Stored) => {
                    tracing::info!(job = %job.id, events = n, "source read");
                    engine.wake.notify_one();
                    if let Some(settle) = run.settle {
                        settle_read(engine, &job, &run.params, run.key.as_deref(), settle).await;
                    }
                }
                Ok(Completion::Lost) => {
                    tracing::warn!(job = %job.id, "lost the job's claim; another worker has it")
                }
                Ok(Completion::Stale) => {
                    let message = "another run of this source stored what it read first (the same files); this run stored nothing. Nothing is lost: what the other run did not read is read by the next run.";
                    if let Err(e) = store.fail_job(&job, token, message).await {
                        tracing::warn!(job = %job.id, error = %e, "could not mark the job failed");
                    }
                }
                // Data the store refuses is refused again on every retry: the job fails,
                // saying why, instead of running again and again.
                Err(StoreError::Invalid(why)) => {
                    let message = format!("what the source read could not be stored: {why}");
                    if let Err(e) = store.fail_job(&job, token, &message).await {
                        tracing::warn!(job = %job.id, error = %e, "could not mark the job failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "could not store the job's events; it will be retried")
                }
            }
        }
        Err(Failure::Source(message)) => {
            tracing::info!(job = %job.id, %message, "source failed");
            if let Err(e) = store.fail_job(&job, token, &message).await {
                tracing::warn!(job = %job.id, error = %e, "could not mark the job failed");
            }
        }
        Err(Failure::Store(e)) => {
            tracing::warn!(job = %job.id, error = %e, "storage failed while running the job; it will be retried");
        }
    }
}

/// The after-commit step of a read (archive or delete the files read), bounded like a run.
/// A failure leaves the files where they are; the next run knows them from the stored state.
async fn settle_read(
    engine: &Engine,
    job: &Job,
    params: &Value,
    key: Option<&Value>,
    settle: Box<dyn Settle>,
) {
    let call = Call {
        net: &engine.net,
        params,
        key,
        decode: &engine.decode,
    };
    match tokio::time::timeout(engine.net.deadline, settle.settle(call)).await {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            tracing::warn!(job = %job.id, %message, "could not finish with what the source read; the next run tries again")
        }
        Err(_) => {
            tracing::warn!(job = %job.id, "finishing with what the source read took too long; the next run tries again")
        }
    }
}

/// The key's full credentials, if the thing has a key.
pub async fn credentials(
    engine: &Engine,
    org: Uuid,
    key_id: Option<Uuid>,
) -> Result<Option<Arc<Value>>, StoreError> {
    let Some(id) = key_id else { return Ok(None) };
    engine.keys.open(&engine.store, org, id).await
}

/// What a job's read gives: its events, what the source stores besides them, and what is
/// done once they are stored (with the source's params and key it needs).
struct Run {
    data_type: String,
    events: Vec<NewEvent>,
    read: SourceRead,
    settle: Option<Box<dyn Settle>>,
    params: Value,
    key: Option<Arc<Value>>,
}

async fn read(engine: &Engine, job: &Job) -> Result<Run, Failure> {
    let store = &engine.store;
    let registry = &engine.connectors;
    let stream = store.get::<Stream>(job.org_id, job.stream_id).await?;
    let source = store.get::<Source>(job.org_id, stream.source_id).await?;
    let params = &source.params.0;
    let decode = &engine.decode;
    let webhook = registry.webhook(&source.function);
    let given = job.payload.as_ref().map(|payload| match &payload.0 {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    });
    // Records given with the job (an upload, a webhook, a replica) are not read again, only
    // completed where the system pushes ids alone; only then, or for a read, is the key opened.
    let thin = webhook.filter(|hook| hook.thin());
    let source_function = registry.source(&source.function);
    let calls_system = match &given {
        Some(_) => thin.is_some(),
        None => source_function.is_some(),
    };
    let key = if calls_system {
        credentials(engine, job.org_id, source.key_id).await?
    } else {
        None
    };
    let call = Call {
        net: &engine.net,
        params,
        key: key.as_deref(),
        decode,
    };
    let reading = match (given, thin, source_function) {
        (Some(records), Some(hook), _) => Reading::from(
            hook.expand(call, records)
                .await
                .map_err(Failure::Source)?,
        ),
        (Some(records), None, _) => Reading::from(records),
        (None, _, Some(function)) => {
            let state = source.read_state.as_ref().map(|s| &s.0);
            function
                .read(call, state)
                .await
                .map_err(Failure::Source)?
        }
        (None, _, None) => {
            return Err(Failure::Source(format!(
                "the source function `{}` cannot be run on demand yet; use an http.fetch source or send records to the stream",
                source.function
            )))
        }
    };
    let id_path = registry.entity_id_path(&source.function, params);
    let mut origins = reading.origins.into_iter();
    let events = reading
        .records
        .into_iter()
        .map(|record| NewEvent {
            entity_id: connectors::entity_id(&record, id_path.as_deref()),
            payload_in: Payload::Value(record),
            original_event_id: None,
            origin: origins.next(),
        })
        .collect();
    let cursor = reading.state.map(|state| SourceCursor {
        source_id: source.id,
        version: source.read_version,
        state,
    });
    Ok(Run {
        data_type: stream.data_type,
        events,
        read: SourceRead {
            cursor,
            summary: reading.summary,
        },
        settle: reading.settle,
        params: source.params.0.clone(),
        key,
    })
}
