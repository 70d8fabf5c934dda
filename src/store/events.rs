//! Events outside the worker's claims: marking one ignored, reading them. Aborting open ones is
//! an action of its own (`actions.rs`).

use serde_json::Value;
use uuid::Uuid;

use super::batch::sql_marks;
use super::{on_pool, Event, JsonText, Store, StoreResult};
use crate::domain::Timestamp;

/// An event a job's source produced.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub payload_in: Payload,
    pub entity_id: Option<String>,
    pub original_event_id: Option<Uuid>,
    /// Where the record came from, when its source says (the file it was read from).
    pub origin: Option<String>,
}

/// A new event's record.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A value, written as JSON text when stored.
    Value(Value),
    /// A whole body as received: valid JSON text, stored as it came (a webhook's body is an
    /// order's largest part; the sender's text keeps every digit a parsed number may round).
    /// It is parsed only if this process's workers take the event at once.
    Received(JsonText),
}

/// Which open events an abort ends.
#[derive(Debug, Clone, Copy)]
pub enum AbortScope {
    Event(Uuid),
    Job(Uuid),
    /// Every open event of a stream (it was deactivated).
    Stream(Uuid),
}

impl Store {
    /// Marks an event ignored (or not), for reports; its status is untouched.
    pub async fn set_event_ignored(&self, org: Uuid, id: Uuid, ignored: bool) -> StoreResult<()> {
        let n = self
            .write_one(
                "UPDATE events SET ignored = $3, updated_at = $4 WHERE id = $1 AND org_id = $2",
                &[
                    id.into(),
                    org.into(),
                    ignored.into(),
                    Timestamp::now().into(),
                ],
            )
            .await?;
        if n == 0 {
            return Err(super::StoreError::NotFound("event"));
        }
        Ok(())
    }

    /// The events of `org` with these ids, in no particular order (an id of another
    /// organisation, or of no event, is left out; duplicates are read once). One query per
    /// thousand ids.
    pub async fn events_by_id(&self, org: Uuid, ids: &[Uuid]) -> StoreResult<Vec<Event>> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut events = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "SELECT * FROM events WHERE org_id = $1 AND id IN ({})",
                sql_marks(2, chunk.len())
            );
            let found = on_pool!(self, pool, Db => {
                let mut q = sqlx::query_as::<Db, Event>(&sql).bind(org).persistent(false);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(pool).await?
            });
            events.extend(found);
        }
        Ok(events)
    }
}
