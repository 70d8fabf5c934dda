//! Rows of the configuration tables, as the store reads and writes them.

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::resources::Record;
use super::{StoredJson, Val};
use crate::domain::{EventStatus, JobStatus, Timestamp};

/// Implements [`Record`] from a table name, a display name and the written columns.
macro_rules! record {
    ($ty:ident, $table:literal, $name:literal, shared = $shared:literal, [$($col:ident),* $(,)?]
     $(, stepped = $stepped:expr)?) => {
        impl Record for $ty {
            $(const STEPPED: &'static [&'static str] = $stepped;)?
            const TABLE: &'static str = $table;
            const NAME: &'static str = $name;
            const SHARED: bool = $shared;
            fn id(&self) -> Uuid {
                self.id
            }
            fn values(&self) -> Vec<(&'static str, Val)> {
                vec![$((stringify!($col), Val::from(self.$col.clone()))),*]
            }
        }
    };
}
pub(super) use record;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Organisation {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The organisation's own retention policy; `None` keeps the configured defaults.
    pub retention: Option<Json<Value>>,
    /// Members must turn on 2FA before anything but enrolment.
    pub require_2fa: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    User,
    "users",
    "user",
    shared = false,
    [id, org_id, email, name, role, created_at, updated_at]
);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiToken {
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    pub name: String,
    pub role: String,
    pub token_hash: String,
    pub hint: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}
record!(
    ApiToken,
    "api_tokens",
    "token",
    shared = false,
    [
        id,
        org_id,
        user_id,
        name,
        role,
        token_hash,
        hint,
        created_at,
        updated_at,
        last_used_at,
        expires_at
    ]
);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Key {
    pub id: Uuid,
    pub org_id: Uuid,
    pub system: String,
    pub title: String,
    /// The non-secret credential fields.
    pub credentials: Json<Value>,
    /// The secret fields, sealed under the master key with the key's id as context.
    pub sealed_secrets: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Key,
    "keys",
    "key",
    shared = false,
    [
        id,
        org_id,
        system,
        title,
        credentials,
        sealed_secrets,
        created_at,
        updated_at
    ]
);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Source {
    pub id: Uuid,
    pub org_id: Uuid,
    pub title: String,
    pub system: String,
    pub function: String,
    pub key_id: Option<Uuid>,
    pub trigger: String,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub params: Json<Value>,
    pub webhook_token: Option<String>,
    pub active: bool,
    pub next_run_at: Option<Timestamp>,
    /// Subscriptions installed at the system; written only by install/uninstall (not by
    /// generic updates, which would overwrite them).
    pub webhook_state: Json<Value>,
    /// Pushes refused by verification; counted in place, never by generic updates.
    pub rejected_count: i64,
    /// What a file source remembers between runs (the files read); written only with a run's
    /// events, never by generic updates.
    pub read_state: Option<Json<Value>>,
    /// Bumped with every write of `read_state`: the fence between two runs of the source.
    pub read_version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Source,
    "sources",
    "source",
    shared = false,
    [
        id,
        org_id,
        title,
        system,
        function,
        key_id,
        trigger,
        schedule,
        timezone,
        params,
        webhook_token,
        active,
        next_run_at,
        created_at,
        updated_at
    ]
);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Transformation {
    pub id: Uuid,
    /// `None` for the public library.
    pub org_id: Option<Uuid>,
    pub visibility: String,
    pub title: String,
    pub description: String,
    pub data_type: String,
    pub language: String,
    pub format: String,
    pub code: String,
    pub copied_from: Option<Uuid>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Transformation,
    "transformations",
    "transformation",
    shared = true,
    [
        id,
        org_id,
        visibility,
        title,
        description,
        data_type,
        language,
        format,
        code,
        copied_from,
        created_at,
        updated_at
    ]
);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LookupTable {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    pub default_value: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    LookupTable,
    "lookup_tables",
    "lookup table",
    shared = false,
    [
        id,
        org_id,
        name,
        description,
        default_value,
        created_at,
        updated_at
    ]
);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Destination {
    pub id: Uuid,
    pub org_id: Uuid,
    pub title: String,
    pub system: String,
    pub function: String,
    pub key_id: Option<Uuid>,
    pub mode: String,
    pub params: Json<Value>,
    pub retry: Json<Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Destination,
    "destinations",
    "destination",
    shared = false,
    [id, org_id, title, system, function, key_id, mode, params, retry, created_at, updated_at]
);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stream {
    pub id: Uuid,
    pub org_id: Uuid,
    pub title: String,
    pub data_type: String,
    pub source_id: Uuid,
    pub transformation_id: Uuid,
    pub destination_id: Uuid,
    pub active: bool,
    pub test_mode: bool,
    pub settings: Json<Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Stream,
    "streams",
    "stream",
    shared = false,
    [
        id,
        org_id,
        title,
        data_type,
        source_id,
        transformation_id,
        destination_id,
        active,
        test_mode,
        settings,
        created_at,
        updated_at
    ]
);

/// One run of a stream; also the queue row the job workers claim.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub org_id: Uuid,
    pub stream_id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub trigger: String,
    pub message: Option<String>,
    pub settings: Json<Value>,
    pub payload: Option<StoredJson>,
    pub original_job_id: Option<Uuid>,
    pub run_at: Timestamp,
    pub attempt: i64,
    pub claim_token: Option<Uuid>,
    pub claimed_by: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub source_done_at: Option<Timestamp>,
    /// Aggregate destinations: when the combined delivery is due.
    pub aggregate_next_at: Option<Timestamp>,
    /// Aggregate destinations: combined deliveries tried so far.
    pub aggregate_attempts: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}
record!(
    Job,
    "jobs",
    "job",
    shared = false,
    [
        id,
        org_id,
        stream_id,
        status,
        trigger,
        message,
        settings,
        payload,
        original_job_id,
        run_at,
        attempt,
        claim_token,
        claimed_by,
        lease_expires_at,
        source_done_at,
        aggregate_next_at,
        aggregate_attempts,
        created_at,
        updated_at,
        started_at,
        finished_at
    ],
    stepped = &["status"]
);

/// One record moving through a stream; also the queue row the delivery workers claim.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub id: Uuid,
    pub org_id: Uuid,
    pub stream_id: Uuid,
    pub job_id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: EventStatus,
    pub data_type: String,
    pub entity_id: Option<String>,
    pub payload_in: Option<StoredJson>,
    pub payload_out: Option<StoredJson>,
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub retries_remaining: Option<i64>,
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub attempt_count: i64,
    pub claim_token: Option<Uuid>,
    pub lease_expires_at: Option<Timestamp>,
    pub original_event_id: Option<Uuid>,
    /// Where the record came from, when its source says (the file it was read from).
    pub origin: Option<String>,
    /// The id the destination system gave what the delivery created or changed.
    pub destination_ref: Option<String>,
    pub ignored: bool,
    /// Lines the transformation logged for this record.
    pub transform_logs: Option<StoredJson>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Event,
    "events",
    "event",
    shared = false,
    [
        id,
        org_id,
        stream_id,
        job_id,
        status,
        data_type,
        entity_id,
        payload_in,
        payload_out,
        error_code,
        message,
        retries_remaining,
        next_attempt_at,
        last_attempt_at,
        attempt_count,
        claim_token,
        lease_expires_at,
        original_event_id,
        origin,
        destination_ref,
        ignored,
        transform_logs,
        created_at,
        updated_at
    ],
    stepped = &["status"]
);

/// One try at delivering an event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub id: Uuid,
    pub org_id: Uuid,
    pub event_id: Uuid,
    pub job_id: Uuid,
    pub destination_id: Uuid,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: String,
    pub error_code: Option<String>,
    pub http_status: Option<i64>,
    pub http_status_name: Option<String>,
    pub response_excerpt: Option<String>,
    pub duration_ms: Option<i64>,
}
record!(
    Attempt,
    "delivery_attempts",
    "attempt",
    shared = false,
    [
        id,
        org_id,
        event_id,
        job_id,
        destination_id,
        started_at,
        finished_at,
        outcome,
        error_code,
        http_status,
        http_status_name,
        response_excerpt,
        duration_ms
    ]
);

/// A place in the event log: the row's place (its `horizon`, then its `id`), then the entry
/// within the row (see `migrations/postgres/0012_log_horizon.sql`). Entries are read in this
/// order. SQLite rows, and rows from before horizons, have horizon 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub horizon: i64,
    pub id: i64,
    pub k: i64,
}

impl LogPosition {
    /// The first entry of the row at (`horizon`, `id`).
    pub fn row(horizon: i64, id: i64) -> LogPosition {
        LogPosition { horizon, id, k: 0 }
    }
}

impl std::fmt::Display for LogPosition {
    /// `horizon.id.k` for a row with a horizon; else `id` for a row's first entry (and so for
    /// every entry from before rows held several: a cursor given out then still reads on),
    /// `id.k` for the others.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.horizon != 0 {
            write!(f, "{}.{}.{}", self.horizon, self.id, self.k)
        } else if self.k == 0 {
            write!(f, "{}", self.id)
        } else {
            write!(f, "{}.{}", self.id, self.k)
        }
    }
}

impl std::str::FromStr for LogPosition {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let number = |t: &str| t.parse::<i64>().ok().filter(|n| *n >= 0).ok_or(());
        let parts: Vec<&str> = s.split('.').collect();
        match parts[..] {
            [id] => Ok(LogPosition::row(0, number(id)?)),
            [id, k] => Ok(LogPosition {
                horizon: 0,
                id: number(id)?,
                k: number(k)?,
            }),
            [horizon, id, k] => Ok(LogPosition {
                horizon: number(horizon)?,
                id: number(id)?,
                k: number(k)?,
            }),
            _ => Err(()),
        }
    }
}

/// One entry of the event log, at its position.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub position: LogPosition,
    pub kind: String,
    pub stream_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub event_id: Option<Uuid>,
    pub from_status: Option<String>,
    pub to_status: String,
    pub details: Value,
    pub event_at: Timestamp,
    pub created_at: Timestamp,
}

/// The business object events are about (`sales_order` `#1001`), with its last status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entity {
    pub id: Uuid,
    pub org_id: Uuid,
    pub data_type: String,
    pub entity_id: String,
    pub last_status: String,
    pub last_event_id: Option<Uuid>,
    pub last_error_code: Option<String>,
    pub last_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Entity,
    "entities",
    "entity",
    shared = false,
    [
        id,
        org_id,
        data_type,
        entity_id,
        last_status,
        last_event_id,
        last_error_code,
        last_message,
        created_at,
        updated_at
    ]
);

/// Where alert messages go: an e-mail address (sent through `[smtp]`) or a signed webhook.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertChannel {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub kind: String,
    pub target: String,
    /// A webhook channel's signing secret, sealed under the master key; empty for e-mail.
    pub sealed_secret: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    AlertChannel,
    "alert_channels",
    "alert channel",
    shared = false,
    [
        id,
        org_id,
        name,
        kind,
        target,
        sealed_secret,
        created_at,
        updated_at
    ]
);

/// When to tell people; the kind's settings are in `definition` (see `alerts::Definition`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRule {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub kind: String,
    pub definition: Json<Value>,
    pub digest: String,
    pub enabled: bool,
    /// When the last digest was sent; written only by alert evaluation.
    pub digest_sent_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    AlertRule,
    "alert_rules",
    "alert rule",
    shared = false,
    [
        id,
        org_id,
        name,
        kind,
        definition,
        digest,
        enabled,
        digest_sent_at,
        created_at,
        updated_at
    ],
    stepped = &["digest_sent_at"]
);

/// One incident: a rule matched on a stream (for one error code); repeats add to its count.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Alert {
    pub id: Uuid,
    pub org_id: Uuid,
    pub rule_id: Uuid,
    pub stream_id: Uuid,
    /// Empty when the rule does not split by code.
    pub error_code: String,
    pub status: String,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub count: i64,
    pub summary: String,
    pub sample_event_ids: Json<Value>,
    pub notified_count: i64,
    pub flood_started_at: Option<Timestamp>,
    pub flood_sent: i64,
    pub clear_since: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Alert,
    "alerts",
    "alert",
    shared = false,
    [
        id,
        org_id,
        rule_id,
        stream_id,
        error_code,
        status,
        first_seen_at,
        last_seen_at,
        count,
        summary,
        sample_event_ids,
        notified_count,
        flood_started_at,
        flood_sent,
        clear_since,
        resolved_at,
        created_at,
        updated_at
    ]
);

/// One message to one channel, with how sending it went.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Notification {
    pub id: Uuid,
    pub org_id: Uuid,
    pub channel_id: Uuid,
    pub alert_id: Option<Uuid>,
    pub rule_id: Option<Uuid>,
    /// `opened`, `repeated`, `resolved` or `digest`.
    pub kind: String,
    pub subject: String,
    /// The message: what a webhook channel receives, and what an e-mail's text is made from.
    pub body: Json<Value>,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub tries: i64,
    pub next_try_at: Option<Timestamp>,
    pub sent_at: Option<Timestamp>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
record!(
    Notification,
    "notifications",
    "notification",
    shared = false,
    [
        id,
        org_id,
        channel_id,
        alert_id,
        rule_id,
        kind,
        subject,
        body,
        status,
        tries,
        next_try_at,
        sent_at,
        error,
        created_at,
        updated_at
    ]
);

#[cfg(test)]
mod tests {
    use super::LogPosition;

    #[test]
    fn log_cursors_read_every_form_and_old_ones_read_on() {
        let at = |horizon, id, k| LogPosition { horizon, id, k };
        // A cursor from before rows held several entries is a plain row number.
        let first = LogPosition::row(0, 12);
        assert_eq!("12".parse::<LogPosition>(), Ok(first));
        assert_eq!(first.to_string(), "12");
        let later = at(0, 7, 3);
        assert_eq!("7.3".parse::<LogPosition>(), Ok(later));
        assert_eq!(later.to_string(), "7.3");
        assert!(first > later && later > at(0, 7, 2));
        // Rows with a horizon come after every row from before horizons, whatever their id.
        let newer = at(900, 3, 0);
        assert_eq!("900.3.0".parse::<LogPosition>(), Ok(newer));
        assert_eq!(newer.to_string(), "900.3.0");
        let next = at(900, 3, 4);
        assert_eq!(next.to_string().parse::<LogPosition>(), Ok(next));
        assert!(newer > first && next > newer && LogPosition::row(901, 1) > next);
        for bad in [
            "", "-1", "1.", ".1", "a", "1.-2", "1.x", "1.2.", "1.2.3.4", "-1.2.3", "1..3",
        ] {
            assert!(bad.parse::<LogPosition>().is_err(), "{bad}");
        }
    }
}
