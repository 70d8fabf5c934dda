//! Configuration: defaults → config file (`--config` / `WHARF_CONFIG`) → `WHARF_*` environment →
//! command-line flags. Validated once at start; an invalid option stops start-up naming it.
//! Every field is documented in `config/wharf.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole configuration of one `wharf` process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server (API, webhooks, metrics) listens on.
    pub listen: SocketAddr,
    /// Directory for the embedded SQLite database, the generated master key and the bootstrap token.
    pub data_dir: PathBuf,
    /// `postgres://…` to use Postgres, `sqlite://…` for another SQLite file; unset means
    /// `<data_dir>/wharf.db`.
    pub database_url: Option<String>,
    /// Base64 of 32 random bytes that encrypt key secrets at rest. Unset: generated once into
    /// `<data_dir>/master.key`. Every node sharing one database needs the same key.
    pub master_key: Option<String>,
    /// The owner token created on first start with an empty database. Unset: generated and printed.
    pub bootstrap_token: Option<String>,
    /// Public base URL at which senders reach this server (e.g. `https://wharf.example.com`);
    /// webhook URLs are shown relative to it, or as paths when unset.
    pub public_base_url: Option<String>,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub workers: WorkersConfig,
    pub scheduler: SchedulerConfig,
    pub maintenance: MaintenanceConfig,
    pub ingest: IngestConfig,
    pub transform: TransformConfig,
    pub outbound: OutboundConfig,
    pub log: LogConfig,
}

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
    /// take, in seconds; past it the job fails with TIMEOUT. Below `workers.lease_seconds`, so
    /// no second worker takes the work over while it still runs. Unset: four fifths of the lease.
    pub job_deadline_seconds: Option<u64>,
    /// Most records one source run (every page of an `http.fetch`) may read; past it the job
    /// fails, asking for a narrower query. A run's records are held until they are stored
    /// together, so this bounds a run's memory.
    pub max_records_per_run: usize,
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

/// Maintenance: taking over work whose worker died, publishing the event log, finishing jobs
/// left unfinished, forgetting old webhook receipts.
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
    /// How often idle workers look for due work, in milliseconds (jittered ±20%); new work
    /// wakes them at once.
    pub poll_interval_ms: u64,
    /// How long a claim holds; work whose worker died is taken over after this.
    pub lease_seconds: u64,
    /// On shutdown, how long work in flight may take to finish before it is released.
    pub shutdown_grace_seconds: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            enabled: true,
            count: 32,
            poll_interval_ms: 500,
            lease_seconds: 300,
            shutdown_grace_seconds: 30,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            master_key: None,
            bootstrap_token: None,
            public_base_url: None,
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            api: ApiConfig::default(),
            workers: WorkersConfig::default(),
            scheduler: SchedulerConfig::default(),
            maintenance: MaintenanceConfig::default(),
            ingest: IngestConfig::default(),
            transform: TransformConfig::default(),
            outbound: OutboundConfig::default(),
            log: LogConfig::default(),
        }
    }
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

/// Values given on the command line; they override everything else.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

/// A configuration problem, worded for the operator.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads the layers in order and validates the result.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig
            .merge(
                Env::prefixed("WHARF_")
                    .split("__")
                    // Not options: the config file's path and the test suite's database.
                    .filter(|k| k != "config" && !k.as_str().starts_with("test_")),
            )
            .merge(Serialized::defaults(overrides));
        let mut config: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        // An empty value (`WHARF_MASTER_KEY=` from a compose file) means unset.
        for opt in [
            &mut config.database_url,
            &mut config.master_key,
            &mut config.bootstrap_token,
            &mut config.public_base_url,
        ] {
            if opt.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *opt = None;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, why: &str| Err(ConfigError(format!("`{field}` {why}")));
        if let Some(url) = &self.database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                return bad(
                    "database_url",
                    "must start with postgres://, postgresql:// or sqlite:",
                );
            }
        }
        if let Some(key) = &self.master_key {
            if crate::crypto::MasterKey::from_base64(key).is_none() {
                return bad(
                    "master_key",
                    "must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)",
                );
            }
        }
        if let Some(token) = &self.bootstrap_token {
            if token.len() < 16 {
                return bad("bootstrap_token", "must be at least 16 characters");
            }
        }
        if let Some(url) = &self.public_base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad("public_base_url", "must start with http:// or https://");
            }
        }
        if self.http.body_limit_bytes < 1024 {
            return bad("http.body_limit_bytes", "must be at least 1024");
        }
        if self.http.request_timeout_seconds == 0 {
            return bad("http.request_timeout_seconds", "must be at least 1");
        }
        if self.transform.timeout_ms == 0 {
            return bad("transform.timeout_ms", "must be at least 1");
        }
        if self.transform.memory_mib < 4 {
            return bad("transform.memory_mib", "must be at least 4");
        }
        if self.transform.max_output_kib == 0 {
            return bad("transform.max_output_kib", "must be at least 1");
        }
        if !(1..=1024).contains(&self.transform.threads) && self.transform.threads != 0 {
            return bad(
                "transform.threads",
                "must be between 0 (one per core) and 1024",
            );
        }
        if !(1..=100_000).contains(&self.transform.queue_per_org) {
            return bad("transform.queue_per_org", "must be between 1 and 100000");
        }
        if !(self.transform.queue_per_org..=1_000_000).contains(&self.transform.queue_total) {
            return bad(
                "transform.queue_total",
                "must be at least transform.queue_per_org and at most 1000000",
            );
        }
        if !(1..=1024).contains(&self.transform.cache_per_thread) {
            return bad("transform.cache_per_thread", "must be between 1 and 1024");
        }
        if self.transform.cache_mib_per_thread == 0 {
            return bad("transform.cache_mib_per_thread", "must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.transform.max_outputs) {
            return bad("transform.max_outputs", "must be between 1 and 1000000");
        }
        if !(1..=1_000_000).contains(&self.transform.max_pad_width) {
            return bad("transform.max_pad_width", "must be between 1 and 1000000");
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        if self.database.acquire_timeout_seconds == 0 {
            return bad("database.acquire_timeout_seconds", "must be at least 1");
        }
        if !(1..=1024).contains(&self.workers.count) {
            return bad("workers.count", "must be between 1 and 1024");
        }
        if !(10..=60_000).contains(&self.workers.poll_interval_ms) {
            return bad("workers.poll_interval_ms", "must be between 10 and 60000");
        }
        if self.workers.lease_seconds < 5 {
            return bad("workers.lease_seconds", "must be at least 5");
        }
        if self.ingest.dedup_retention_hours == 0 {
            return bad("ingest.dedup_retention_hours", "must be at least 1");
        }
        if !(1..=100_000).contains(&self.ingest.csv_max_columns) {
            return bad("ingest.csv_max_columns", "must be between 1 and 100000");
        }
        if !(1..=65_536).contains(&self.ingest.csv_max_header_bytes) {
            return bad("ingest.csv_max_header_bytes", "must be between 1 and 65536");
        }
        if !(1..=1024).contains(&self.ingest.max_decoded_ratio) {
            return bad("ingest.max_decoded_ratio", "must be between 1 and 1024");
        }
        if self.ingest.max_decoded_bytes < 1024 {
            return bad("ingest.max_decoded_bytes", "must be at least 1024");
        }
        if !(1..=10_000).contains(&self.ingest.replicate_max_ids) {
            return bad("ingest.replicate_max_ids", "must be between 1 and 10000");
        }
        if let Err(e) = crate::connectors::net::addr::Allow::parse(&self.outbound.allow) {
            return bad("outbound.allow", &format!("has a bad entry: {e}"));
        }
        if !(1..=3600).contains(&self.outbound.request_timeout_seconds) {
            return bad(
                "outbound.request_timeout_seconds",
                "must be between 1 and 3600",
            );
        }
        if !(1..=10_000_000).contains(&self.outbound.max_records_per_run) {
            return bad(
                "outbound.max_records_per_run",
                "must be between 1 and 10000000",
            );
        }
        if self.outbound.max_response_bytes < 1024 {
            return bad("outbound.max_response_bytes", "must be at least 1024");
        }
        if !(64..=16 * 1024 * 1024).contains(&self.outbound.excerpt_bytes) {
            return bad("outbound.excerpt_bytes", "must be between 64 and 16777216");
        }
        if self
            .outbound
            .job_deadline_seconds
            .is_some_and(|d| d == 0 || d >= self.workers.lease_seconds)
        {
            return bad(
                "outbound.job_deadline_seconds",
                "must be at least 1 and below workers.lease_seconds",
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad("log.level", "is not a valid filter such as `info`");
        }
        Ok(())
    }

    /// How long a job's source run or a delivery may take: `outbound.job_deadline_seconds`, or
    /// four fifths of the lease so the work ends before another worker may claim it.
    pub fn job_deadline(&self) -> std::time::Duration {
        let seconds = self
            .outbound
            .job_deadline_seconds
            .unwrap_or(self.workers.lease_seconds * 4 / 5)
            .max(1);
        std::time::Duration::from_secs(seconds)
    }

    /// The database URL in force: the configured one, or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("wharf.db").display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_documents_every_option_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/wharf.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let from_file: Config = Figment::from(Toml::string(&text)).extract().unwrap();
        assert_eq!(from_file, Config::default());
        let defaults = toml_keys(&serde_json::to_value(Config::default()).unwrap(), "");
        for key in defaults {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.contains(leaf),
                "config/wharf.toml does not mention {key}"
            );
        }
    }

    fn toml_keys(v: &serde_json::Value, prefix: &str) -> Vec<String> {
        match v {
            serde_json::Value::Object(m) => m
                .iter()
                .flat_map(|(k, v)| toml_keys(v, &format!("{prefix}{k}.")))
                .collect(),
            _ => vec![prefix.trim_end_matches('.').to_string()],
        }
    }

    #[test]
    fn the_allow_list_is_read_as_a_list_or_as_commas() {
        for text in [r#"["127.0.0.0/8", "::1/128"]"#, "127.0.0.0/8, ::1/128"] {
            // The environment provider parses a variable's text like this.
            let value: figment::value::Value = text.parse().unwrap();
            let c: Config = Figment::from(Serialized::defaults(Config::default()))
                .merge(Serialized::default("outbound.allow", value))
                .extract()
                .unwrap();
            assert_eq!(c.outbound.allow, ["127.0.0.0/8", "::1/128"], "{text}");
            c.validate().unwrap();
        }
    }

    #[test]
    fn a_job_run_ends_before_its_lease() {
        let mut c = Config::default();
        assert_eq!(c.job_deadline().as_secs(), 240);
        c.workers.lease_seconds = 5;
        assert_eq!(c.job_deadline().as_secs(), 4);
        c.validate().unwrap();
        c.outbound.job_deadline_seconds = Some(5);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("outbound.job_deadline_seconds"), "{e}");
        c.outbound.job_deadline_seconds = Some(2);
        c.validate().unwrap();
        assert_eq!(c.job_deadline().as_secs(), 2);
    }

    #[test]
    fn invalid_values_are_named() {
        let mut c = Config::default();
        c.http.body_limit_bytes = 10;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("http.body_limit_bytes"));
        let c = Config {
            database_url: Some("mysql://x".into()),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("database_url"));
    }
}
