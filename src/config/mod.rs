//! Configuration: defaults → config file (`--config` / `WHARF_CONFIG`) → `WHARF_*` environment →
//! command-line flags. Validated once at start; an invalid option stops start-up naming it.
//! Every field is documented in `config/wharf.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod sections;
pub use sections::*;

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
    pub smtp: SmtpConfig,
    pub alerts: AlertsConfig,
    pub retention: RetentionConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
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
            smtp: SmtpConfig::default(),
            alerts: AlertsConfig::default(),
            retention: RetentionConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
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
        if self.workers.handoff > 100_000 {
            return bad("workers.handoff", "must be between 0 and 100000");
        }
        if self.workers.handoff_spill > 1_000_000 {
            return bad("workers.handoff_spill", "must be between 0 and 1000000");
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
        if !(1..=3600).contains(&self.alerts.interval_seconds) {
            return bad("alerts.interval_seconds", "must be between 1 and 3600");
        }
        if self.alerts.condition_interval_seconds > 3600 {
            return bad(
                "alerts.condition_interval_seconds",
                "must be between 0 and 3600",
            );
        }
        if self.alerts.lease_seconds <= self.alerts.interval_seconds {
            return bad(
                "alerts.lease_seconds",
                "must be longer than alerts.interval_seconds",
            );
        }
        if self.alerts.retry_seconds.len() > 50
            || self.alerts.retry_seconds.iter().any(|s| *s > 7 * 24 * 3600)
        {
            return bad(
                "alerts.retry_seconds",
                "must hold at most 50 delays of at most 604800 s",
            );
        }
        if !(1..=300).contains(&self.alerts.timeout_seconds) {
            return bad("alerts.timeout_seconds", "must be between 1 and 300");
        }
        if let Some((field, why)) = self.retention.policy().problems().into_iter().next() {
            return bad(&format!("retention.{field}"), &why);
        }
        if !(1..=1440).contains(&self.retention.interval_minutes) {
            return bad("retention.interval_minutes", "must be between 1 and 1440");
        }
        if !(1..=100_000).contains(&self.retention.batch_size) {
            return bad("retention.batch_size", "must be between 1 and 100000");
        }
        if !(1..=100_000).contains(&self.retention.max_batches) {
            return bad("retention.max_batches", "must be between 1 and 100000");
        }
        let auth = &self.auth;
        if !(8..=4_194_304).contains(&auth.argon2_memory_kib) {
            return bad("auth.argon2_memory_kib", "must be between 8 and 4194304");
        }
        if !(1..=100).contains(&auth.argon2_iterations) {
            return bad("auth.argon2_iterations", "must be between 1 and 100");
        }
        if !(1..=16).contains(&auth.argon2_parallelism) {
            return bad("auth.argon2_parallelism", "must be between 1 and 16");
        }
        if !(8..=128).contains(&auth.password_min_length) {
            return bad("auth.password_min_length", "must be between 8 and 128");
        }
        if !(1..=720).contains(&auth.session_hours) {
            return bad("auth.session_hours", "must be between 1 and 720");
        }
        if !(1..=43_200).contains(&auth.session_idle_minutes) {
            return bad("auth.session_idle_minutes", "must be between 1 and 43200");
        }
        if !(1..=1000).contains(&auth.max_failures) {
            return bad("auth.max_failures", "must be between 1 and 1000");
        }
        if !(1..=100_000).contains(&auth.max_failures_per_ip) {
            return bad("auth.max_failures_per_ip", "must be between 1 and 100000");
        }
        if !(1..=900).contains(&auth.lockout_seconds) {
            return bad("auth.lockout_seconds", "must be between 1 and 900");
        }
        if !(1..=720).contains(&auth.link_hours) {
            return bad("auth.link_hours", "must be between 1 and 720");
        }
        if !(100..=1_000_000).contains(&auth.audit_value_chars) {
            return bad("auth.audit_value_chars", "must be between 100 and 1000000");
        }
        if let Some(security) = &self.smtp.security {
            if !matches!(security.as_str(), "starttls" | "tls" | "none") {
                return bad("smtp.security", "must be starttls, tls or none");
            }
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
        if self.outbound.max_file_bytes < 1024 {
            return bad("outbound.max_file_bytes", "must be at least 1024");
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
            .is_some_and(|d| !(1..=86_400).contains(&d))
        {
            return bad(
                "outbound.job_deadline_seconds",
                "must be between 1 and 86400 (a day)",
            );
        }
        if self.workers.per_destination == 0 {
            return bad(
                "workers.per_destination",
                "must be at least 1 (any destination holds at most three quarters of workers.count)",
            );
        }
        if !(1..=86_400).contains(&self.workers.keep_outcome_seconds) {
            return bad(
                "workers.keep_outcome_seconds",
                "must be between 1 and 86400 (a day)",
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad("log.level", "is not a valid filter such as `info`");
        }
        Ok(())
    }

    /// How long a job's source run or a delivery may take: `outbound.job_deadline_seconds`, or
    /// 240 s. Its worker renews its lease meanwhile (see `workers.lease_seconds`).
    pub fn job_deadline(&self) -> std::time::Duration {
        let seconds = self.outbound.job_deadline_seconds.unwrap_or(240).max(1);
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
    fn a_job_run_may_outlast_the_lease_its_worker_renews() {
        let mut c = Config::default();
        assert_eq!(c.job_deadline().as_secs(), 240);
        assert_eq!(c.workers.lease_seconds, 20);
        c.workers.lease_seconds = 5;
        assert_eq!(c.job_deadline().as_secs(), 240);
        c.validate().unwrap();
        c.outbound.job_deadline_seconds = Some(0);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("outbound.job_deadline_seconds"), "{e}");
        c.outbound.job_deadline_seconds = Some(86_401);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("outbound.job_deadline_seconds"), "{e}");
        c.outbound.job_deadline_seconds = Some(2);
        c.validate().unwrap();
        assert_eq!(c.job_deadline().as_secs(), 2);
        c.workers.keep_outcome_seconds = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("workers.keep_outcome_seconds"), "{e}");
        c.workers.keep_outcome_seconds = 900;
        c.workers.per_destination = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("workers.per_destination"), "{e}");
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
