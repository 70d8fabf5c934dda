//! The composition root. [`prepare`] builds what the process shares, in order: configuration
//! → store → the one outbound client → transformer → lookups; [`serve_on`] then starts the
//! parts the configuration switches on (API, webhook ingest, workers, scheduler, maintenance)
//! and stops them all through one shutdown signal.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::connectors::net::Outbound;
use crate::crypto::MasterKey;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::transform::lookups::LookupCache;
use crate::transform::{self, Transformer};
use crate::{api, engine, http, ingest};

/// What the parts of one process share; cheap to clone (one reference count: a request clones
/// it several times, and a dozen counts each clone and drop were 7 % of a webhook's time).
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl std::ops::Deref for AppState {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// The shared parts, reached through [`AppState`].
pub struct Parts {
    pub store: Store,
    pub config: Arc<Config>,
    pub master_key: MasterKey,
    /// Keys' credentials, opened once per stored key (for pushes and deliveries).
    pub keys: Arc<crate::connectors::OpenedKeys>,
    pub metrics: Arc<Metrics>,
    /// Wakes this process's workers when work is queued.
    pub wake: Arc<tokio::sync::Notify>,
    /// The threads that run transformations.
    pub transformer: Arc<Transformer>,
    /// Lookup-table snapshots transformations read.
    pub lookups: Arc<LookupCache>,
    /// The guarded client every call to another system goes through, built once so every
    /// part shares its connection pool and its guard.
    pub outbound: Outbound,
    /// The connectors, by `system.function`, each owning its state (e.g. DEAR's rate limit).
    pub connectors: Arc<crate::connectors::Registry>,
    /// The time sessions, sign-in throttles and links are judged by.
    pub clock: crate::clock::Clock,
    /// Password hashing with the configured parameters.
    pub passwords: Arc<crate::people::Passwords>,
}

/// Opens storage, applies migrations, creates the first organisation and token on an empty
/// database, writes the public library, and builds the shared pieces: everything the server
/// needs before it listens.
pub async fn prepare(config: Config) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let master_key = MasterKey::load_or_create(config.master_key.as_deref(), &config.data_dir)?;
    let store = Store::connect(&config)
        .await
        .context("cannot open the database")?;
    crate::bootstrap(&store, &config).await?;
    store
        .sync_public_transformations(&transform::library::public_transformations())
        .await?;
    let outbound = Outbound::new(&config.outbound, config.job_deadline())
        .map_err(anyhow::Error::msg)
        .context("cannot build the outbound client")?;
    let transformer = Transformer::start(&config.transform);
    let lookups = Arc::default();
    // Connectors that keep state (rate limits) are built here, once, and shared by every part.
    let connectors = Arc::new(crate::connectors::Registry::default());
    let passwords = crate::people::Passwords::new(&config.auth).map_err(anyhow::Error::msg)?;
    Ok(AppState(Arc::new(Parts {
        clock: crate::clock::Clock::default(),
        passwords: Arc::new(passwords),
        store,
        keys: Arc::new(crate::connectors::OpenedKeys::new(master_key.clone())),
        master_key,
        metrics: Arc::default(),
        wake: Arc::default(),
        transformer,
        lookups,
        outbound,
        connectors,
        config: Arc::new(config),
    })))
}

/// The HTTP routes of the parts this process serves.
fn routes(config: &Config) -> Router<AppState> {
    let mut routes = Router::new();
    if config.api.enabled {
        // The control panel is a client of the API: served where the API is.
        routes = routes.merge(api::router()).merge(crate::web::router());
    }
    if config.ingest.enabled {
        routes = routes.merge(ingest::router());
    }
    routes
}

/// Starts the background parts the configuration switches on; each stops when `stop` turns
/// true.
fn start_background(state: &AppState, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let config = &state.config;
    let mut parts = Vec::new();
    let mut workers = None;
    if config.workers.enabled {
        let engine = engine::Engine::new(engine::Deps {
            store: state.store.clone(),
            keys: state.keys.clone(),
            transformer: state.transformer.clone(),
            lookups: state.lookups.clone(),
            net: state.outbound.clone(),
            wake: state.wake.clone(),
            metrics: state.metrics.clone(),
            workers: config.workers.clone(),
            decode: ingest::decode::DecodeLimits::from(&config.ingest),
            database_url: config.effective_database_url(),
            connectors: state.connectors.clone(),
        });
        workers = Some(engine.clone());
        parts.push(tokio::spawn(engine.run(stop.clone())));
    }
    if config.scheduler.enabled {
        parts.push(tokio::spawn(engine::scheduler::run(
            state.store.clone(),
            state.wake.clone(),
            stop.clone(),
        )));
    }
    if config.maintenance.enabled {
        parts.push(tokio::spawn(engine::maintenance::run(
            state.store.clone(),
            workers,
            config.ingest.dedup_retention_hours,
            state.metrics.clone(),
            stop.clone(),
        )));
        parts.push(tokio::spawn(crate::retention::run(
            state.store.clone(),
            config.retention.clone(),
            config.auth.session_idle_minutes,
            state.metrics.clone(),
            stop.clone(),
        )));
        if config.alerts.enabled {
            parts.push(tokio::spawn(
                crate::alerts::Alerting::new(state).run(stop.clone()),
            ));
        }
    }
    parts
}

/// `listener`, its connections sending at once: without TCP_NODELAY, an answer written in two
/// parts waits for the client's acknowledgement of the first, which a client may delay up to
/// 40 ms.
fn without_delay(listener: TcpListener) -> axum::serve::TapIo<TcpListener, Nodelay> {
    axum::serve::ListenerExt::tap_io(listener, nodelay)
}

type Nodelay = fn(&mut tokio::net::TcpStream);

fn nodelay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
}

/// Serves HTTP on `listener` and runs the background parts switched on until `shutdown`
/// completes; then stops taking requests and claiming work, lets work in flight finish within
/// the grace period, releases the rest, and closes storage.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = state.store.clone();
    // The one stop signal every part watches.
    let (stop_tx, stop_rx) = watch::channel(false);
    let background = start_background(&state, &stop_rx);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut http_stop = stop_rx.clone();
    let app = http::app(routes(&state.config), state);
    axum::serve(
        without_delay(listener),
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    })
    .await
    .context("HTTP server failed")?;
    for part in background {
        let _ = part.await;
    }
    store.close().await;
    Ok(())
}

impl AppState {
    /// The actions of a caller in organisation `org`.
    pub fn ops(&self, org: uuid::Uuid) -> crate::ops::Ops<'_> {
        self.ops_with(&self.store, org)
    }

    /// The actions of a caller in organisation `org`, writing through `store` (a handle
    /// carrying the request's audit entry, see `Store::audited`).
    pub fn ops_with<'a>(&'a self, store: &'a Store, org: uuid::Uuid) -> crate::ops::Ops<'a> {
        crate::ops::Ops {
            store,
            wake: &self.wake,
            config: &self.config,
            connectors: &self.connectors,
            org,
        }
    }
}

#[cfg(test)]
mod listener_tests {
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = super::without_delay(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await;
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY on the server's side"
        );
    }
}
