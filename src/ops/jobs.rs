//! Runs of streams: run now, upload records, replicate a job, abort a job.

use serde_json::Value;
use uuid::Uuid;

use super::{no_settings, Ops};
use crate::error::ApiError;
use crate::store::{AbortScope, Job, NewJob, Stream};

/// Why a user's abort ends a job's work.
pub(super) const ABORTED_BY_A_USER: &str = "aborted by a user";

impl Ops<'_> {
    /// Queues a run of an active stream's source with `settings` (an object; `None` for none).
    pub async fn run_stream(
        &self,
        stream_id: Uuid,
        settings: Option<Value>,
    ) -> Result<Job, ApiError> {
        let stream = self.store.get::<Stream>(self.org, stream_id).await?;
        if !stream.active {
            return Err(ApiError::Conflict(
                "The stream is inactive; activate it (PATCH {\"active\": true}) before running it."
                    .into(),
            ));
        }
        let settings = settings.unwrap_or_else(no_settings);
        if !settings.is_object() {
            return Err(ApiError::invalid("settings", "must be a JSON object"));
        }
        let job = self
            .store
            .create_job(NewJob {
                settings,
                ..self.new_job(stream.id, "manual")
            })
            .await?;
        self.wake.notify_one();
        Ok(job)
    }

    /// Stores `records` (already parsed, at least one) as a new upload job of a stream, with
    /// its events, at once. Returns the job and its events' ids.
    pub async fn upload(
        &self,
        stream_id: Uuid,
        records: Vec<Value>,
    ) -> Result<(Job, Vec<Uuid>), ApiError> {
        let (stream, path) = self.open_stream(stream_id).await?;
        let job = self.new_job(stream.id, "upload");
        self.queue_records(job, &stream, path.as_deref(), records, None)
            .await
    }

    /// Queues a replica of a job: its records again (or `payload` instead: an array, or one
    /// record), with its settings (or `settings` instead). A job that never got records (its
    /// source failed) reads its source again. Returns the new job's id.
    pub async fn replicate_job(
        &self,
        job_id: Uuid,
        payload: Option<Value>,
        settings: Option<Value>,
    ) -> Result<Uuid, ApiError> {
        let original = self.store.get::<Job>(self.org, job_id).await?;
        let (stream, path) = self.open_stream(original.stream_id).await?;
        let settings = settings.unwrap_or_else(|| original.settings.0.clone());
        if !settings.is_object() {
            return Err(ApiError::invalid("settings", "must be a JSON object"));
        }
        let new = NewJob {
            settings,
            original_job_id: Some(original.id),
            ..self.new_job(stream.id, "replicate")
        };
        let (records, originals) = match payload {
            Some(Value::Array(items)) => (items, None),
            Some(one) => (vec![one], None),
            None => {
                let rows = self.store.job_payloads(original.id).await?;
                if rows.iter().any(|(_, p)| p.is_null()) {
                    return Err(ApiError::Conflict(
                        "Some of the job's events no longer have their payloads (the retention \
                         policy clears them after payload_days); replicate it with the records \
                         in the request: {\"payload\": [...]}."
                            .into(),
                    ));
                }
                let ids = rows.iter().map(|(id, _)| *id).collect();
                (
                    rows.into_iter().map(|(_, p)| p).collect::<Vec<_>>(),
                    Some(ids),
                )
            }
        };
        let job_id = if records.is_empty() {
            // Records that came with the original job (a thin push) come with the replica.
            let new = NewJob {
                payload: original.payload.as_ref().map(|p| p.0.clone()),
                ..new
            };
            let id = self.store.create_job(new).await?.id;
            self.wake.notify_one();
            id
        } else {
            self.queue_records(new, &stream, path.as_deref(), records, originals)
                .await?
                .0
                .id
        };
        Ok(job_id)
    }

    /// Aborts a job: its source run if still going, and its open events, in one transaction.
    /// Returns how many events were aborted; a job that had already ended is a conflict.
    pub async fn abort_job(&self, job_id: Uuid) -> Result<usize, ApiError> {
        let job = self.store.get::<Job>(self.org, job_id).await?;
        let aborted = self
            .store
            .abort(self.org, AbortScope::Job(job.id), ABORTED_BY_A_USER)
            .await?;
        if !aborted.source_ended && aborted.events == 0 {
            return Err(ApiError::Conflict(
                "The job has already ended; nothing was aborted.".into(),
            ));
        }
        Ok(aborted.events)
    }
}
