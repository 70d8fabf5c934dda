//! Configuration read on every push and every event (sources, streams, destinations,
//! transformations, keys), kept in memory for at most a second. This node's own writes
//! through the store drop the whole cache at once, so a change made here applies to the next
//! push or event; a change made on another node applies within [`FRESH`]. Queue rows (jobs,
//! events) are never cached.
//!
//! A value is read once however many requests want it at the same moment: when it is missing
//! or has gone stale, the first request reads it and the others wait for that read. Without
//! it, every push arriving in the moment an entry runs out (hundreds a second under load, and
//! every push of a burst that starts after a quiet second) would read the same rows at once,
//! each on a connection of its own, and the database would answer them all late.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
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

type Value = Arc<dyn Any + Send + Sync>;
type Entry = (Instant, Value);

/// What a read under way gives those waiting for it: `None` until it is done, then the value
/// (`Some(None)`: it found nothing, or failed; each waiter then reads for itself).
type Flight = watch::Receiver<Option<Option<Value>>>;

#[derive(Default)]
pub(super) struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
    /// The reads under way, by key.
    reading: Mutex<HashMap<Key, Flight>>,
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

    fn put(&self, key: Key, value: Value, at: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (at, value));
    }

    /// Forgets everything: called by every write to configuration. Reads under way when it
    /// is called may have read before the write: nobody arriving from now on waits for them.
    pub(super) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.reading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The value of `key`: cached, or read by `read` — once for all who ask while it is being
    /// read. `None` (nothing found) is not kept.
    async fn read<T, F, Fut>(&self, key: Key, read: F) -> StoreResult<Option<Arc<T>>>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<Option<T>>>,
    {
        if let Some(v) = self.get::<T>(&key) {
            return Ok(Some(v));
        }
        let (done, flight) = {
            let mut reading = self.reading.lock().unwrap_or_else(|e| e.into_inner());
            match reading.get(&key) {
                Some(flight) => (None, flight.clone()),
                None => {
                    let (done, flight) = watch::channel(None);
                    reading.insert(key.clone(), flight.clone());
                    (Some(done), flight)
                }
            }
        };
        let Some(done) = done else {
            let mut flight = flight;
            // The reader found it: the same value, read since this request arrived or just
            // before. It found nothing, failed, or went away (its request was dropped): read.
            if let Ok(got) = flight.wait_for(Option::is_some).await {
                if let Some(Some(value)) = got.clone() {
                    if let Ok(v) = value.downcast::<T>() {
                        return Ok(Some(v));
                    }
                }
            }
            return Ok(read().await?.map(Arc::new));
        };
        // Whatever happens to this request (it may be dropped mid-read), the flight is
        // over when it is: those waiting then read for themselves.
        let landed = Landed {
            cache: self,
            key,
            flight,
            done,
        };
        // Stamped before the read: a write that lands during it is never hidden for longer.
        let at = Instant::now();
        let found = read().await?.map(Arc::new);
        if let Some(v) = &found {
            let value: Value = v.clone();
            self.put(landed.key.clone(), value.clone(), at);
            let _ = landed.done.send(Some(Some(value)));
        }
        Ok(found)
    }
}

/// Ends a read under way (see [`Cache::read`]).
struct Landed<'a> {
    cache: &'a Cache,
    key: Key,
    flight: Flight,
    done: watch::Sender<Option<Option<Value>>>,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        let mut reading = self.cache.reading.lock().unwrap_or_else(|e| e.into_inner());
        // Only this read's own entry: after a `clear`, a newer read may hold the key.
        if reading
            .get(&self.key)
            .is_some_and(|f| f.same_channel(&self.flight))
        {
            reading.remove(&self.key);
        }
        // Dropping `done` tells those still waiting that nothing more comes (if nothing was
        // sent).
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
        let read = || async { self.get::<R>(org, id).await.map(Some) };
        // (`get` answers a missing record with an error, never with nothing.)
        self.shared
            .cache
            .read(key, read)
            .await?
            .ok_or(super::StoreError::NotFound(R::TABLE))
    }

    /// The webhook source with this URL token (any organisation: the token is the address).
    pub async fn source_by_webhook_token(&self, token: &str) -> StoreResult<Option<Arc<Source>>> {
        let key = Key::WebhookToken(token.to_string());
        let read = || async {
            Ok(on_pool!(self, pool, Db => {
                sqlx::query_as::<Db, Source>("SELECT * FROM sources WHERE webhook_token = $1")
                    .bind(token)
                    .fetch_optional(pool)
                    .await?
            }))
        };
        self.shared.cache.read(key, read).await
    }

    /// The active streams reading from a source.
    pub async fn active_streams_of(&self, source_id: Uuid) -> StoreResult<Arc<Vec<Stream>>> {
        let key = Key::ActiveStreams(source_id);
        let read = || async {
            Ok(Some(on_pool!(self, pool, Db => {
                sqlx::query_as::<Db, Stream>(
                    "SELECT * FROM streams WHERE source_id = $1 AND active = $2 ORDER BY id",
                )
                .bind(source_id)
                .bind(true)
                .fetch_all(pool)
                .await?
            })))
        };
        Ok(self.shared.cache.read(key, read).await?.unwrap_or_default())
    }

    /// Drops cached configuration (after a write that bypasses the generic record writes).
    pub(super) fn forget_config(&self) {
        self.shared.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn key() -> Key {
        Key::ActiveStreams(Uuid::nil())
    }

    /// A read that takes a while, counting how often it runs.
    async fn slow_read(reads: &AtomicUsize, value: u32) -> StoreResult<Option<u32>> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Some(value))
    }

    #[tokio::test]
    async fn requests_arriving_together_share_one_read() {
        let cache = Cache::default();
        let reads = AtomicUsize::new(0);
        let all = (0..20).map(|_| cache.read(key(), || slow_read(&reads, 7)));
        let got = futures_util::future::join_all(all).await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "one read for twenty requests"
        );
        let first = got[0].as_ref().unwrap().clone().unwrap();
        for g in &got {
            let g = g.as_ref().unwrap().as_ref().unwrap();
            assert!(Arc::ptr_eq(g, &first), "every request has the value read");
        }
        // Kept: the next request reads nothing.
        let again = cache.read(key(), || slow_read(&reads, 8)).await.unwrap();
        assert_eq!(*again.unwrap(), 7);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_reader_that_goes_away_leaves_the_others_to_read() {
        let cache = Cache::default();
        let reads = AtomicUsize::new(0);
        let mut leader = Box::pin(cache.read(key(), || slow_read(&reads, 1)));
        let wait = Duration::from_millis(10);
        assert!(
            tokio::time::timeout(wait, &mut leader).await.is_err(),
            "reading"
        );
        let mut follower = Box::pin(cache.read(key(), || slow_read(&reads, 2)));
        assert!(
            tokio::time::timeout(wait, &mut follower).await.is_err(),
            "waiting"
        );
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the second waits for the first"
        );
        // The first request is dropped mid-read (its client hung up); the second still gets a
        // value, read by itself.
        drop(leader);
        let got = follower.await;
        assert_eq!(*got.unwrap().unwrap(), 2);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nothing_found_or_a_failure_is_not_shared_nor_kept() {
        let cache = Cache::default();
        let reads = AtomicUsize::new(0);
        let none = |reads: &'_ AtomicUsize| {
            reads.fetch_add(1, Ordering::SeqCst);
            async { Ok::<Option<u32>, super::super::StoreError>(None) }
        };
        assert!(cache.read(key(), || none(&reads)).await.unwrap().is_none());
        assert!(cache.read(key(), || none(&reads)).await.unwrap().is_none());
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "nothing found is read again"
        );
        let failed = cache
            .read::<u32, _, _>(key(), || async {
                Err(super::super::StoreError::Unavailable("down".into()))
            })
            .await;
        assert!(failed.is_err());
        let later = cache.read(key(), || slow_read(&reads, 3)).await.unwrap();
        assert_eq!(*later.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_write_during_a_read_sends_later_requests_to_a_read_of_their_own() {
        let cache = Cache::default();
        let reads = AtomicUsize::new(0);
        let before = cache.read(key(), || slow_read(&reads, 1));
        let after = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            // A configuration write on this node: what is being read may predate it.
            cache.clear();
            cache.read(key(), || slow_read(&reads, 2)).await
        };
        let (before, after) = tokio::join!(before, after);
        assert_eq!(*before.unwrap().unwrap(), 1);
        assert_eq!(
            *after.unwrap().unwrap(),
            2,
            "read after the write, not shared"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }
}
