//! The sections of the configuration, each with its defaults: what the parts (API, ingest,
//! workers, scheduler, maintenance), the transformations and the outbound client may do.

use serde::{Deserialize, Serialize};

/// Calls to other systems (`http.fetch`, `http.send`, DEAR reads, webhook installs): the guard
/// against internal addresses, and what one call or run may take.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Networks (`10.0.0.0/8`, `fd00::/8`, an address) and host names (`erp.internal`,
    /// `*.corp.example`) that may be called although they are internal. Empty: loopback,
    /// private, link-local, shared, multicast, reserved and cloud metadata addresses are refused.
    /// From the environment as a list (`WHARF_OUTBOUND__ALLOW='["10.0.0.0/8"]'`) or comma-separated.
    #[serde(deserialize_with = "list_or_commas")]
    pub allow: Vec<String>,
    /// Total time one request may take (connecting, waiting and reading the answer), in
    /// seconds, for reads and installs; a delivery uses its destination's `retry.timeout_seconds`.
    pub request_timeout_seconds: u64,
    /// Largest answer read whole (a fetched page, a DEAR record), in bytes; a larger one fails
    /// the job without being read on.
    pub max_response_bytes: u64,
    /// Most bytes of a delivery's answer kept as the attempt's excerpt; the rest is not read.
    pub excerpt_bytes: usize,
    /// Most time one job's source run (every page and record it reads) or one delivery may
    /// take, in seconds; past it the job fails with TIMEOUT. The worker renews its lease while
    /// the work runs, so it may be longer than `workers.lease_seconds`. Unset: 240.
    pub job_deadline_seconds: Option<u64>,
    /// Most records one source run (every page of an `http.fetch`) may read; past it the job
    /// fails, asking for a narrower query. A run's records are held until they are stored
    /// together, so this bounds a run's memory.
    pub max_records_per_run: usize,
    /// Largest file a file source (`ftp.files`) downloads, in bytes; it is streamed to a
    /// temporary file, never held whole in memory. A larger file fails the job unread.
    pub max_file_bytes: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allow: Vec::new(),
            request_timeout_seconds: 30,
            max_response_bytes: 16 * 1024 * 1024,
            excerpt_bytes: 64 * 1024,
            job_deadline_seconds: None,
            max_records_per_run: 100_000,
            max_file_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A list, or one string of comma-separated entries (an environment variable).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(items) => items,
        Form::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Limits on the user code transformations run, per record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// CPU time one record's transformation may take, in milliseconds; past it the event is
    /// ERROR with `TRANSFORM_TIMEOUT`.
    pub timeout_ms: u64,
    /// Memory one record's transformation may use, in MiB (`TRANSFORM_MEMORY` past it): what a
    /// JavaScript runtime holds, and the text and lists a template builds.
    pub memory_mib: u64,
    /// Largest output of one record, in KiB (`OUTPUT_TOO_LARGE` past it).
    pub max_output_kib: u64,
    /// Threads that run transformations; 0 means one per CPU core.
    pub threads: usize,
    /// Records one organisation may have waiting for a transformation thread. Past it a dry
    /// run or a save answers 503 with `Retry-After`; the engine's records wait their turn.
    pub queue_per_org: usize,
    /// Records all organisations together may have waiting (same answer past it).
    pub queue_total: usize,
    /// Compiled transformations each thread keeps, least recently used dropped first.
    pub cache_per_thread: usize,
    /// Memory the compiled transformations one thread keeps may hold together, in MiB; the
    /// least recently used are dropped past it.
    pub cache_mib_per_thread: u64,
    /// Most outputs (events) one record may become; a larger split is `OUTPUT_TOO_LARGE`.
    pub max_outputs: usize,
    /// Largest width, in characters, the padding helpers (`padStart`, `padEnd`, `fixed`,
    /// `pad_left`, `pad_right`) accept; a larger one is `TRANSFORM_ERROR`.
    pub max_pad_width: usize,
}

impl Default for TransformConfig {
    fn default() -> Self {
        TransformConfig {
            timeout_ms: 200,
            memory_mib: 64,
            max_output_kib: 4096,
            threads: 0,
            queue_per_org: 64,
            queue_total: 1024,
            cache_per_thread: 16,
            cache_mib_per_thread: 256,
            max_outputs: 1000,
            max_pad_width: 10_000,
        }
    }
}

/// Webhook ingest, and what one push, upload or bulk replication may bring in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Take webhook pushes (`/hooks/…`) in this process; off, they are answered 404.
    pub enabled: bool,
    /// How long a sender's delivery id is remembered: a repeat within this window is
    /// acknowledged without a second job. Shopify retries for 4 hours; the default is a week.
    pub dedup_retention_hours: u64,
    /// Most columns a CSV push or upload may have; a wider header row is refused (422).
    pub csv_max_columns: usize,
    /// Longest CSV column name, in bytes; a longer one is refused (422). Every record repeats
    /// every column name, so long names multiply what one upload stores.
    pub csv_max_header_bytes: usize,
    /// How many times its body's size the records of one push or upload may take once decoded
    /// (a CSV row becomes a JSON object naming every column); past it the body is refused (413).
    pub max_decoded_ratio: u64,
    /// Most bytes the decoded records of one push or upload may take, whatever the ratio allows
    /// (413 past it).
    pub max_decoded_bytes: u64,
    /// Most ids one `POST /events/replicate` may list (422 past it).
    pub replicate_max_ids: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            enabled: true,
            dedup_retention_hours: 168,
            csv_max_columns: 500,
            csv_max_header_bytes: 256,
            max_decoded_ratio: 32,
            max_decoded_bytes: 64 * 1024 * 1024,
            replicate_max_ids: 1000,
        }
    }
}

/// The management API (`/api/v1`) and its documentation (`/docs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API in this process; off, its routes are answered 404 (health, metrics and
    /// webhook ingest stay).
    pub enabled: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: true }
    }
}

/// The scheduler: queues the runs of scheduled sources when they are due.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Fire due schedules from this process. Safe on several nodes at once (each run fires
    /// once); at least one node must have it on for scheduled sources to run.
    pub enabled: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { enabled: true }
    }
}

/// Maintenance: taking over work whose worker died, finishing jobs left unfinished, forgetting
/// old webhook receipts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Run maintenance in this process. Safe on several nodes at once; at least one node must
    /// have it on, or the event log stops advancing and work of a dead worker is never resumed.
    pub enabled: bool,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig { enabled: true }
    }
}

/// Background work: running jobs and delivering events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Run jobs and deliveries in this process; off for API-only nodes.
    pub enabled: bool,
    /// Jobs and deliveries in flight at once.
    pub count: usize,
    /// Events of a slow destination (its deliveries have been taking over a second) in flight
    /// at once in this process, so that the other destinations' work goes on beside it. Any
    /// destination may hold at most three quarters of the workers.
    pub per_destination: usize,
    /// How often idle workers look for due work, in milliseconds (jittered ±20%); new work
    /// wakes them at once.
    pub poll_interval_ms: u64,
    /// How long a claim holds unless renewed: workers renew the leases of the work in their
    /// hands every quarter of it, so work of any length stays held while its worker lives,
    /// and work of a worker that died or was cut off from storage is taken over after this
    /// (a spilled event's, see `handoff_spill`, after its longer lease).
    pub lease_seconds: u64,
    /// On shutdown, how long work in flight may take to finish before it is released.
    pub shutdown_grace_seconds: u64,
    /// Received events this process keeps for its own workers, stored already claimed (no
    /// claim query and no second write of each event); beyond it, see `handoff_spill`; with
    /// 0, neither: every event is stored for any node's workers to claim.
    pub handoff: usize,
    /// Received events beyond `handoff` this process still keeps for its own workers, as ids
    /// only, each read back when its turn comes (no claim query, no second write). An event
    /// is spilled only when this process expects to reach it within a minute (at the rate
    /// its workers have been taking events), and its lease covers that wait; beyond, events
    /// are stored for any node. Other nodes' workers cannot take spilled events while this
    /// process lives (their leases are renewed), nor until their leases end if it dies;
    /// 0: none.
    pub handoff_spill: usize,
    /// How long a delivery's outcome whose commit failed (storage down) is kept and stored
    /// again, in seconds, so that a delivery that happened is on record and not repeated.
    pub keep_outcome_seconds: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            enabled: true,
            count: 32,
            per_destination: 16,
            poll_interval_ms: 500,
            lease_seconds: 20,
            shutdown_grace_seconds: 30,
            handoff: 512,
            handoff_spill: 50_000,
            keep_outcome_seconds: 900,
        }
    }
}

/// HTTP server limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest accepted request body in bytes; bigger requests get 413.
    pub body_limit_bytes: usize,
    /// Time after which a request that is still being handled is answered 503.
    pub request_timeout_seconds: u64,
}

/// Database connection pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Most connections held open (Postgres; SQLite uses this for readers).
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout_seconds: u64,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `wharf=debug,tower_http=info`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: 10 * 1024 * 1024,
            request_timeout_seconds: 30,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 16,
            acquire_timeout_seconds: 5,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// How long records are kept (each organisation may set its own; these are the defaults), and
/// how the maintenance task that removes older ones works.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Event payloads, transformation logs, attempts' response excerpts and uploaded files
    /// are cleared after this many days (the rows stay).
    pub payload_days: u32,
    /// Jobs, events and attempts are deleted after this many days.
    pub records_days: u32,
    /// Event-log entries and alert notifications are deleted after this many days.
    pub log_days: u32,
    /// Audit-log entries are deleted after this many days.
    pub audit_days: u32,
    /// Minutes between sweeps.
    pub interval_minutes: u64,
    /// Rows changed or removed per statement: small, so no lock is held long (and SQLite's
    /// one writer is free between batches).
    pub batch_size: u64,
    /// Most batches per table in one sweep; the rest waits for the next.
    pub max_batches: u64,
}

impl RetentionConfig {
    /// The default policy.
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            payload_days: self.payload_days,
            records_days: self.records_days,
            log_days: self.log_days,
            audit_days: self.audit_days,
        }
    }
}

/// How many days each kind of data is kept.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Event payloads, transformation logs, attempts' response excerpts and uploaded files
    /// are cleared after this many days (the rows stay).
    pub payload_days: u32,
    /// Jobs, events and attempts are deleted after this many days.
    pub records_days: u32,
    /// Event-log entries and alert notifications are deleted after this many days.
    pub log_days: u32,
    /// Audit-log entries are deleted after this many days.
    pub audit_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            payload_days: 30,
            records_days: 60,
            log_days: 60,
            audit_days: 365,
            interval_minutes: 10,
            batch_size: 500,
            max_batches: 200,
        }
    }
}

impl RetentionPolicy {
    /// What is wrong with it, as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (field, days) in [
            ("payload_days", self.payload_days),
            ("records_days", self.records_days),
            ("log_days", self.log_days),
            ("audit_days", self.audit_days),
        ] {
            if !(1..=3650).contains(&days) {
                out.push((
                    field.to_string(),
                    "must be between 1 and 3650 days".to_string(),
                ));
            }
        }
        if self.payload_days > self.records_days {
            out.push((
                "payload_days".into(),
                "cannot be longer than records_days: the records go first".into(),
            ));
        }
        out
    }
}

/// The mail server alerts are sent through (alert channels of kind `email`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Unset: e-mail channels cannot send (each try fails and says so in `/notifications`).
    pub host: Option<String>,
    /// Default by `security`: 587 (starttls), 465 (tls), 25 (none).
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (TLS from the first byte) or `none`.
    pub security: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, e.g. `Wharf <wharf@example.com>`.
    pub from: Option<String>,
    /// A PEM certificate to trust for the server besides the public roots.
    pub tls_ca: Option<String>,
}

/// Alert evaluation and notification sending (part of maintenance; one node at a time).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate rules and send notifications in this process (when maintenance runs here).
    pub enabled: bool,
    /// Seconds between evaluations.
    pub interval_seconds: u64,
    /// Seconds between judgements of condition rules (error rate, silence, stuck), which read
    /// event counts; status-change rules are followed at every evaluation.
    pub condition_interval_seconds: u64,
    /// How long one node holds the evaluation before another may take over.
    pub lease_seconds: u64,
    /// Delays before each retry of a failed notification; after the last it is failed.
    pub retry_seconds: Vec<u64>,
    /// Most time one message may take to send.
    pub timeout_seconds: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            interval_seconds: 10,
            condition_interval_seconds: 60,
            lease_seconds: 60,
            retry_seconds: vec![30, 120, 600, 1800, 3600],
            timeout_seconds: 15,
        }
    }
}

/// People signing in: password hashing and rules, sessions, throttling, links and the audit
/// log's values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// argon2id memory in KiB, passes and lanes (OWASP's minimum is 19 MiB, 2 passes, 1 lane).
    /// Stored hashes keep the parameters they were made with.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Shortest password accepted, in characters.
    pub password_min_length: usize,
    /// A session ends this many hours after sign-in, whatever happens.
    pub session_hours: u64,
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u64,
    /// Wrong sign-ins in a row for one e-mail address before it has to wait.
    pub max_failures: u32,
    /// Wrong sign-ins in a row from one client address before it has to wait.
    pub max_failures_per_ip: u32,
    /// The first wait, in seconds; it doubles with each further failure, up to 15 minutes.
    pub lockout_seconds: u64,
    /// Hours an invitation or password-reset link stays valid.
    pub link_hours: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (only behind a proxy
    /// that sets it).
    pub trust_forwarded_for: bool,
    /// Longest text kept for one changed field in an audit entry; longer values are cut.
    pub audit_value_chars: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            password_min_length: 10,
            session_hours: 10,
            session_idle_minutes: 60,
            max_failures: 5,
            max_failures_per_ip: 50,
            lockout_seconds: 30,
            link_hours: 72,
            trust_forwarded_for: false,
            audit_value_chars: 2000,
        }
    }
}
