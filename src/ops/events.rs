//! Events: create them, replicate them (one, or many at once), abort one, ignore one.

use std::collections::BTreeMap;

use serde_json::Value;
use uuid::Uuid;

use super::jobs::ABORTED_BY_A_USER;
use super::{new_events, Ops};
use crate::error::ApiError;
use crate::ingest::decode::DecodeLimits;
use crate::store::{AbortScope, Event, Job, NewJob};

/// An event to replicate, with the payload its replica sends.
pub type Replica = (Event, Value);

/// The jobs replicas were queued in: one per stream, with its new events' ids.
pub type ReplicaSet = Vec<(Uuid, Vec<Uuid>)>;

/// Why an event without its payload cannot be replicated as it was.
pub const CLEARED: &str =
    "The event's payload is no longer kept (the retention policy clears payloads \
     after payload_days); replicate it with the payload in the request: {\"payload\": …}.";

impl Ops<'_> {
    /// Stores `payloads` (each a JSON object) as the events of a new job of a stream. The
    /// payloads take the budget a push or upload of them would: a short body of many empty
    /// payloads must not become a million events.
    pub async fn create_events(
        &self,
        stream_id: Uuid,
        payloads: Vec<Value>,
    ) -> Result<(Job, Vec<Uuid>), ApiError> {
        if payloads.is_empty() {
            return Err(ApiError::invalid(
                "payloads",
                "must hold at least one payload",
            ));
        }
        if let Some(i) = payloads.iter().position(|p| !p.is_object()) {
            return Err(ApiError::invalid(
                format!("payloads[{i}]"),
                "must be a JSON object (a record), not a scalar, null or a list",
            ));
        }
        let text_len = serde_json::to_vec(&payloads).map_or(0, |v| v.len());
        DecodeLimits::from(&self.config.ingest).check_records(text_len, payloads.len())?;
        let (stream, path) = self.open_stream(stream_id).await.map_err(|e| match e {
            ApiError::NotFound(_) => {
                ApiError::invalid("stream_id", "names no stream of your organisation")
            }
            other => other,
        })?;
        let job = self.new_job(stream.id, "upload");
        self.queue_records(job, &stream, path.as_deref(), payloads, None)
            .await
    }

    /// Queues a replica of one event, sending `payload` instead of the original's if given.
    /// An event whose payload retention cleared needs one given.
    /// Returns the new job's id and the replica's id.
    pub async fn replicate_event(
        &self,
        id: Uuid,
        payload: Option<Value>,
    ) -> Result<(Uuid, Uuid), ApiError> {
        let original = self.store.get::<Event>(self.org, id).await?;
        let payload = match (payload, &original.payload_in) {
            (Some(p), _) => p,
            (None, Some(p)) => p.0.clone(),
            (None, None) => return Err(ApiError::Conflict(CLEARED.into())),
        };
        let made = self.replicate_events(vec![(original, payload)]).await?;
        let (job_id, ids) = made.into_iter().next().expect("one stream, one job");
        Ok((job_id, ids[0]))
    }

    /// Queues replicas of `originals` with their payloads, as one new job per stream, all in
    /// one transaction: either every stream's replica job is stored or none is.
    pub async fn replicate_events(&self, originals: Vec<Replica>) -> Result<ReplicaSet, ApiError> {
        let mut by_stream: BTreeMap<Uuid, Vec<Replica>> = BTreeMap::new();
        for (e, p) in originals {
            by_stream.entry(e.stream_id).or_default().push((e, p));
        }
        let mut jobs = Vec::with_capacity(by_stream.len());
        let mut streams = Vec::with_capacity(by_stream.len());
        for (stream_id, group) in by_stream {
            let (stream, path) = self.open_stream(stream_id).await?;
            let original_job_id = group.first().map(|(e, _)| e.job_id);
            let ids = group.iter().map(|(e, _)| e.id).collect();
            let payloads = group.into_iter().map(|(_, p)| p).collect();
            let job = NewJob {
                original_job_id,
                ..self.new_job(stream_id, "replicate")
            };
            jobs.push((job, new_events(payloads, path.as_deref(), Some(ids))));
            streams.push(stream);
        }
        let jobs = jobs
            .into_iter()
            .zip(&streams)
            .map(|((job, events), stream)| (job, stream.data_type.as_str(), events))
            .collect();
        let made = self.store.create_jobs_with_events(jobs).await?;
        self.wake.notify_one();
        Ok(made
            .into_iter()
            .map(|(job, event_ids)| (job.id, event_ids))
            .collect())
    }

    /// Aborts one open event and settles its job, in one transaction. An event that had
    /// already ended is a conflict. Returns the event as it is now.
    pub async fn abort_event(&self, id: Uuid) -> Result<Event, ApiError> {
        let ev = self.store.get::<Event>(self.org, id).await?;
        let aborted = self
            .store
            .abort(self.org, AbortScope::Event(ev.id), ABORTED_BY_A_USER)
            .await?;
        if aborted.events == 0 {
            return Err(ApiError::Conflict(format!(
                "The event has already ended ({}); replicate it to send it again.",
                ev.status
            )));
        }
        Ok(self.store.get::<Event>(self.org, id).await?)
    }

    /// Hides an event from issue reports, or shows it again; its status is unchanged.
    /// Returns the event as it is now.
    pub async fn ignore_event(&self, id: Uuid, ignored: bool) -> Result<Event, ApiError> {
        self.store.set_event_ignored(self.org, id, ignored).await?;
        Ok(self.store.get::<Event>(self.org, id).await?)
    }
}
