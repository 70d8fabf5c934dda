//! Operations: the actions people take (run a stream, upload records, create events, replicate,
//! abort, deactivate a stream, ignore an event), each defined once here. The API's handlers
//! parse, authorise and shape answers around these; anything else that offers the same actions
//! (a control panel, an audit log) calls or extends them here rather than repeating them.

mod events;
mod jobs;
mod streams;

use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::Config;
use crate::connectors::{entity_id, Registry};
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::store::{Job, NewEvent, NewJob, Payload, Store, Stream};

pub use events::{Replica, ReplicaSet};

/// The actions of one organisation's caller, with what they act on.
pub struct Ops<'a> {
    pub store: &'a Store,
    /// Woken when an action queues work.
    pub wake: &'a Notify,
    pub config: &'a Config,
    /// Where each source function keeps its records' entity ids.
    pub connectors: &'a Registry,
    /// The organisation the caller acts in; every action stays inside it.
    pub org: Uuid,
}

impl Ops<'_> {
    /// A stream that may take new work, and the path of its records' entity ids.
    pub async fn open_stream(&self, id: Uuid) -> Result<(Stream, Option<String>), ApiError> {
        let stream = self.store.get::<Stream>(self.org, id).await?;
        if !stream.active {
            return Err(ApiError::Conflict(
                "The stream is inactive; activate it (PATCH {\"active\": true}) first.".into(),
            ));
        }
        let source = self
            .store
            .get::<crate::store::Source>(self.org, stream.source_id)
            .await?;
        let path = self
            .connectors
            .entity_id_path(&source.function, &source.params.0);
        Ok((stream, path))
    }

    /// A job of `stream_id` in this organisation, due now, with no settings, records or
    /// original: each action sets what it adds.
    fn new_job(&self, stream_id: Uuid, trigger: &'static str) -> NewJob {
        NewJob {
            org_id: self.org,
            stream_id,
            trigger,
            settings: no_settings(),
            payload: None,
            original_job_id: None,
            run_at: Timestamp::now(),
        }
    }

    /// Stores `job` with `records` (at least one) as its events, in one commit, and wakes the
    /// workers. Returns the job and its events' ids.
    async fn queue_records(
        &self,
        job: NewJob,
        stream: &Stream,
        path: Option<&str>,
        records: Vec<Value>,
        originals: Option<Vec<Uuid>>,
    ) -> Result<(Job, Vec<Uuid>), ApiError> {
        let made = self
            .store
            .create_job_with_events(job, &stream.data_type, new_events(records, path, originals))
            .await?;
        self.wake.notify_one();
        Ok(made)
    }
}

/// New events from payloads, with entity ids read at `path`.
pub fn new_events(
    payloads: Vec<Value>,
    path: Option<&str>,
    originals: Option<Vec<Uuid>>,
) -> Vec<NewEvent> {
    let mut originals = originals.map(|o| o.into_iter());
    payloads
        .into_iter()
        .map(|p| NewEvent {
            entity_id: entity_id(&p, path),
            payload_in: Payload::Value(p),
            original_event_id: originals.as_mut().and_then(|o| o.next()),
            origin: None,
        })
        .collect()
}

/// An empty settings object: what a run without settings carries.
fn no_settings() -> Value {
    Value::Object(Default::default())
}
