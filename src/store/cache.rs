//! Configuration read on every push and every event (sources, streams, destinations,
//! transformations, keys), kept in memory for at most a second. This node's own writes
//! through the store drop the whole cache at once, so a change made here applies to the next
//! push or event; a change made on another node applies within [`FRESH`]. Queue rows (jobs,
//! events) are never cached.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{on_pool, Record, Source, Store, StoreResult, Stream};

/// How long a cached read is used.
pub const FRESH: Duration = Duration::from_secs(1);

/// Entries beyond this drop the cache (it refills from what is in use).
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Record(&'static str, Uuid, Uuid),
    WebhookToken(String),
    ActiveStreams(Uuid),
}

type Entry = (Instant, Arc<dyn Any + Send + Sync>);

#[derive(Default)]
pub(super) struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

impl Cache {
    fn get<T: Any + Send + Sync>(&self, key: &Key) -> Option<Arc<T>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (at, value) = entries.get(key)?;
        if at.elapsed() > FRESH {
            return None;
        }
        value.clone().downcast::<T>().ok()
    }

    fn put<T: Any + Send + Sync>(&self, key: Key, value: Arc<T>, at: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (at, value));
    }

    /// Forgets everything: called by every write to configuration.
    pub(super) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Store {
    /// [`Store::get`], served from memory when read less than a second ago.
    pub async fn get_cached<R: Record + Send + Sync + 'static>(
        &self,
        org: Uuid,
        id: Uuid,
    ) -> StoreResult<Arc<R>> {
        let key = Key::Record(R::TABLE, org, id);
        if let Some(r) = self.shared.cache.get::<R>(&key) {
            return Ok(r);
        }
        // Stamped before the read: a write that lands during it is never hidden for longer.
        let at = Instant::now();
        let r = Arc::new(self.get::<R>(org, id).await?);
        self.shared.cache.put(key, r.clone(), at);
        Ok(r)
    }

    /// The webhook source with this URL token (any organisation: the token is the address).
    pub async fn source_by_webhook_token(&self, token: &str) -> StoreResult<Option<Arc<Source>>> {
        let key = Key::WebhookToken(token.to_string());
        if let Some(s) = self.shared.cache.get::<Source>(&key) {
            return Ok(Some(s));
        }
        let at = Instant::now();
        let row = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Source>("SELECT * FROM sources WHERE webhook_token = $1")
                .bind(token)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|s| {
            let s = Arc::new(s);
            self.shared.cache.put(key, s.clone(), at);
            s
        }))
    }

    /// The active streams reading from a source.
    pub async fn active_streams_of(&self, source_id: Uuid) -> StoreResult<Arc<Vec<Stream>>> {
        let key = Key::ActiveStreams(source_id);
        if let Some(s) = self.shared.cache.get::<Vec<Stream>>(&key) {
            return Ok(s);
        }
        let at = Instant::now();
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Stream>(
                "SELECT * FROM streams WHERE source_id = $1 AND active = $2 ORDER BY id",
            )
            .bind(source_id)
            .bind(true)
            .fetch_all(pool)
            .await?
        });
        let rows = Arc::new(rows);
        self.shared.cache.put(key, rows.clone(), at);
        Ok(rows)
    }

    /// Drops cached configuration (after a write that bypasses the generic record writes).
    pub(super) fn forget_config(&self) {
        self.shared.cache.clear();
    }
}
