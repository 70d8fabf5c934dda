//! Lookup tables as transformations see them: one in-memory snapshot of an organisation's
//! tables, shared by every record of a job, never a database query per record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::domain::Timestamp;
use crate::store::{Store, StoreResult};

/// One lookup table in memory.
#[derive(Debug, Default, Clone)]
pub struct Table {
    pub default: Option<String>,
    pub entries: HashMap<String, String>,
}

/// An organisation's lookup tables at one moment.
#[derive(Debug, Default, Clone)]
pub struct Lookups {
    pub tables: HashMap<String, Table>,
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    NoTable,
    NoKey,
}

/// What `lookup(table, key[, default])` answers when it does not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    /// The table's entry for the key.
    Entry(&'a str),
    /// No entry: the default the call gave (kept by the runtime, as any value of its own).
    CallDefault,
    /// No entry and no default in the call: the table's `default_value`.
    TableDefault(&'a str),
}

impl Lookups {
    /// The `ctx` helper `lookup(table, key[, default])`, for both languages: the entry, else
    /// the call's default (`has_default`, also when there is no such table), else the table's
    /// `default_value`; otherwise the LOOKUP_NOT_FOUND message.
    pub fn lookup(&self, table: &str, key: &str, has_default: bool) -> Result<Found<'_>, String> {
        match self.entry(table, key) {
            Ok(Some(v)) => Ok(Found::Entry(v)),
            _ if has_default => Ok(Found::CallDefault),
            Ok(None) => self
                .tables
                .get(table)
                .and_then(|t| t.default.as_deref())
                .map(Found::TableDefault)
                .ok_or_else(|| Lookups::miss_message(table, key, &Miss::NoKey)),
            Err(miss) => Err(Lookups::miss_message(table, key, &miss)),
        }
    }

    /// The entry itself (`None`: no such key; the caller applies defaults).
    pub fn entry(&self, table: &str, key: &str) -> Result<Option<&str>, Miss> {
        let t = self.tables.get(table).ok_or(Miss::NoTable)?;
        Ok(t.entries.get(key).map(String::as_str))
    }

    /// The message a transformation's error carries for a miss.
    pub fn miss_message(table: &str, key: &str, miss: &Miss) -> String {
        match miss {
            Miss::NoTable => format!(
                "there is no lookup table named `{table}`; create it under /lookup-tables or fix the name"
            ),
            Miss::NoKey => format!(
                "lookup table `{table}` has no key `{key}` and no default; add the key, give the table a default_value, or pass a default to lookup()"
            ),
        }
    }
}

/// How long a cached snapshot is used before its tables are checked for changes (changes
/// made through this process are seen at once; other nodes' after at most this long).
const REVALIDATE: Duration = Duration::from_secs(2);
/// How long a job keeps the snapshot its first record saw.
const PIN: Duration = Duration::from_secs(15 * 60);

struct Cached {
    stamp: (i64, Option<Timestamp>),
    checked: Instant,
    snapshot: Arc<Lookups>,
}

/// Snapshots per organisation, and the snapshot each running job saw first.
#[derive(Default)]
pub struct LookupCache {
    orgs: Mutex<HashMap<Uuid, Cached>>,
    jobs: Mutex<HashMap<Uuid, (Arc<Lookups>, Instant)>>,
}

impl std::fmt::Debug for LookupCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LookupCache")
    }
}

impl LookupCache {
    /// The snapshot for a record of `job`: the one the job already uses, else the
    /// organisation's current one.
    pub async fn for_job(&self, store: &Store, org: Uuid, job: Uuid) -> StoreResult<Arc<Lookups>> {
        if let Some((snap, _)) = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job)
        {
            return Ok(snap.clone());
        }
        let snap = self.current(store, org).await?;
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.len() > 10_000 {
            jobs.retain(|_, (_, at)| at.elapsed() < PIN);
        }
        Ok(jobs
            .entry(job)
            .or_insert_with(|| (snap, Instant::now()))
            .0
            .clone())
    }

    /// Forgets a finished job's snapshot.
    pub fn release_job(&self, job: Uuid) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job);
    }

    /// The organisation's current snapshot (checked against the store every few seconds).
    pub async fn current(&self, store: &Store, org: Uuid) -> StoreResult<Arc<Lookups>> {
        let stale_stamp = {
            let orgs = self.orgs.lock().unwrap_or_else(|e| e.into_inner());
            match orgs.get(&org) {
                Some(c) if c.checked.elapsed() < REVALIDATE => return Ok(c.snapshot.clone()),
                Some(c) => Some(c.stamp),
                None => None,
            }
        };
        let stamp = store.lookup_stamp(org).await?;
        if stale_stamp == Some(stamp) {
            let mut orgs = self.orgs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = orgs.get_mut(&org) {
                c.checked = Instant::now();
                return Ok(c.snapshot.clone());
            }
        }
        let mut lookups = Lookups::default();
        for (name, default, key, value) in store.lookup_snapshot(org).await? {
            let table = lookups.tables.entry(name).or_insert_with(|| Table {
                default,
                entries: HashMap::new(),
            });
            if let (Some(k), Some(v)) = (key, value) {
                table.entries.insert(k, v);
            }
        }
        let snapshot = Arc::new(lookups);
        self.orgs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            org,
            Cached {
                stamp,
                checked: Instant::now(),
                snapshot: snapshot.clone(),
            },
        );
        Ok(snapshot)
    }

    /// Drops an organisation's snapshot after a change made through this process.
    pub fn invalidate(&self, org: Uuid) {
        self.orgs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&org);
    }
}
