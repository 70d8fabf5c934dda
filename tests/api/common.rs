//! Test harness: a real Wharf server on a loopback port, over SQLite (a fresh data directory)
//! or Postgres (a fresh database on the local server), and an HTTP client for it.

use std::net::SocketAddr;
use std::path::PathBuf;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wharf::config::Config;

/// The public library's passthrough transformation.
pub const PASSTHROUGH: &str = "01900000-0000-7000-8000-000000000001";

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Token every test server bootstraps with.
pub const OWNER_TOKEN: &str = "wharf_test_owner_token_0123456789";

/// The Postgres server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("WHARF_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL with a path");
    format!("{base}/{name}")
}

/// A database of the test's own, dropped when the test ends.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        use sqlx::Executor;
        let name = format!("wharf_t_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("Postgres at {admin} is required for this test: {e}"));
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        PgDatabase {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// Drops the database now, closing any connection to it (simulates storage loss).
    pub async fn drop_now(&self) {
        use sqlx::Executor;
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url())
            .await
            .expect("connect to Postgres");
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await;
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    use sqlx::Executor;
                    if let Ok(mut c) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url()).await
                    {
                        let _ = c
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Where a test server keeps its state; survives restarts of the server.
pub struct Env {
    pub db: Db,
    pub data: TempDir,
    pub pg: Option<PgDatabase>,
}

impl Env {
    pub async fn new(db: Db) -> Env {
        let pg = match db {
            Db::Postgres => Some(PgDatabase::create().await),
            Db::Sqlite => None,
        };
        Env {
            db,
            data: tempfile::tempdir().expect("temp dir"),
            pg,
        }
    }

    pub fn config(&self) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: self.data.path().to_path_buf(),
            database_url: self.pg.as_ref().map(|p| p.url.clone()),
            bootstrap_token: Some(OWNER_TOKEN.into()),
            database: wharf::config::DatabaseConfig {
                max_connections: 5,
                acquire_timeout_seconds: 3,
            },
            // The tests' peers (sources, sinks, vendor APIs) listen on loopback, which the
            // outbound guard refuses unless allowed.
            outbound: wharf::config::OutboundConfig {
                allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
                ..Default::default()
            },
            // Cheap hashing: the tests check behaviour, not the cost of guessing.
            auth: wharf::config::AuthConfig {
                argon2_memory_kib: 256,
                argon2_iterations: 1,
                ..Default::default()
            },
            ..Config::default()
        }
    }

    pub fn data_path(&self) -> PathBuf {
        self.data.path().to_path_buf()
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub token: String,
    /// The server's clock for sessions, sign-in throttles and links; tests move it.
    pub clock: wharf::clock::Clock,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        // The server's warnings and errors go to the test's output, which is shown when it
        // fails: a rescue, a failed renewal or a storage error then explains what went wrong.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("wharf=warn"))
            .with_test_writer()
            .try_init();
        let token = config.bootstrap_token.clone().unwrap_or_default();
        let state = wharf::prepare(config).await.expect("server prepares");
        let clock = state.clock.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(wharf::serve_on(listener, state, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            client: reqwest::Client::new(),
            token,
            clock,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has closed storage.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request to `/api/v1{path}` with the owner token.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_as(&self.token, method, path)
    }

    pub fn req_as(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(&format!("/api/v1{path}")))
            .bearer_auth(token)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.req(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.req(Method::POST, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.req(Method::PATCH, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        send(self.req(Method::DELETE, path)).await
    }

    /// Creates something and returns its body, failing the test unless the answer is 201.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, out) = self.post(path, body).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {out}");
        out
    }

    /// An `http.webhook` source (records identified by their `entity_id_path`) and a
    /// passthrough stream from it to `url`; returns the source's webhook path.
    pub async fn webhook_stream(&self, title: &str, entity_id_path: &str, url: &str) -> String {
        let source = self
            .create(
                "/sources",
                serde_json::json!({"title": title, "system": "http", "function": "http.webhook",
                    "trigger": "webhook", "params": {"entity_id_path": entity_id_path}}),
            )
            .await;
        self.passthrough_stream(title, "stock", &source, url).await;
        source["webhook_url"].as_str().unwrap().to_string()
    }

    /// A stream from `source` through the public passthrough transformation to an `http.send`
    /// destination at `url`; returns the stream.
    pub async fn passthrough_stream(
        &self,
        title: &str,
        data_type: &str,
        source: &Value,
        url: &str,
    ) -> Value {
        let dest = self
            .create(
                "/destinations",
                serde_json::json!({"title": "Sink", "system": "http", "function": "http.send",
                    "params": {"url": url}}),
            )
            .await;
        self.create(
            "/streams",
            serde_json::json!({"title": title, "data_type": data_type, "source_id": source["id"],
                "transformation_id": PASSTHROUGH, "destination_id": dest["id"]}),
        )
        .await
    }

    /// A destination made from `destination` (the body of `POST /destinations`) and a stream
    /// from `source` to it through the passthrough transformation; the stream's id.
    pub async fn stream_to(&self, source: &Value, destination: Value) -> String {
        let title = destination["title"].clone();
        let dest = self.create("/destinations", destination).await;
        let stream = self
            .create(
                "/streams",
                serde_json::json!({"title": title, "data_type": "update", "source_id": source["id"],
                    "transformation_id": PASSTHROUGH, "destination_id": dest["id"]}),
            )
            .await;
        stream["id"].as_str().unwrap().to_string()
    }

    /// A token of the given role in this server's organisation.
    pub async fn token_with_role(&self, role: &str) -> String {
        let out = self
            .create(
                "/tokens",
                serde_json::json!({"name": format!("{role} token"), "role": role}),
            )
            .await;
        out["token"].as_str().unwrap().to_string()
    }
}

/// Sends and reads the answer as JSON (or `null` for an empty body).
pub async fn send(req: RequestBuilder) -> (StatusCode, Value) {
    let res: Response = req.send().await.expect("request is answered");
    read(res).await
}

pub async fn read(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    let problem = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    let bytes = res.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    if status.is_client_error() || status.is_server_error() {
        assert!(problem, "error answers are problem+json: {status} {body}");
        assert_eq!(body["status"], status.as_u16(), "{body}");
    }
    (status, body)
}

/// The field names of a 422 problem.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs each listed `async fn(Db)` as a test on SQLite and on Postgres.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Postgres).await
                }
            )*
        }
    };
}

/// A started server on a fresh store, with the environment that keeps it.
pub async fn fresh(db: Db) -> (Env, Server) {
    let env = Env::new(db).await;
    let server = Server::start(env.config()).await;
    (env, server)
}

impl Env {
    /// Sets a source's next scheduled run directly in the store (a stand-in for a clock).
    pub async fn set_next_run(&self, source_id: &str, at: chrono::DateTime<chrono::Utc>) {
        let id = uuid::Uuid::parse_str(source_id).unwrap();
        let at = wharf::domain::Timestamp::from_datetime(at);
        let sql = "UPDATE sources SET next_run_at = $1 WHERE id = $2";
        match &self.pg {
            Some(pg) => {
                let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
                sqlx::query(sql)
                    .bind(at)
                    .bind(id)
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            None => {
                let url = format!("sqlite://{}", self.data_path().join("wharf.db").display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                sqlx::query(sql)
                    .bind(at)
                    .bind(id)
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
    }
}

impl Env {
    /// Runs `sql`, binding `id` as `$1`, directly on the store's database: a stand-in for a
    /// crash at a chosen moment. (Only the store suite uses it.)
    #[allow(dead_code)]
    pub async fn execute_on_store(&self, sql: &str, id: uuid::Uuid) {
        self.try_on_store(sql, id).await.unwrap();
    }

    /// Runs `sql` with `id` bound as `$1` on the server's database; what the database said.
    pub async fn try_on_store(&self, sql: &str, id: uuid::Uuid) -> Result<u64, sqlx::Error> {
        match &self.pg {
            Some(pg) => {
                let pool = sqlx::PgPool::connect(&pg.url).await?;
                let done = sqlx::query(sql).bind(id).execute(&pool).await;
                pool.close().await;
                Ok(done?.rows_affected())
            }
            None => {
                let url = format!("sqlite://{}", self.data_path().join("wharf.db").display());
                let pool = sqlx::SqlitePool::connect(&url).await?;
                let done = sqlx::query(sql).bind(id).execute(&pool).await;
                pool.close().await;
                Ok(done?.rows_affected())
            }
        }
    }
}

/// Connections named `wharf` open on the database `look` is connected to.
#[allow(dead_code)]
pub async fn wharf_connections(look: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'wharf'",
    )
    .fetch_one(look)
    .await
    .unwrap()
}

/// Waits until no connection named `wharf` is left on `look`'s database (a backend leaves the
/// list a moment after its client said goodbye); fails after 5 s, saying `after` what.
#[allow(dead_code)]
pub async fn no_wharf_connection_left(look: &mut sqlx::PgConnection, after: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = wharf_connections(look).await;
        if left == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} connections still open after {after}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
