//! Wharf: a self-hosted integration platform server.
//!
//! [`app`] is the composition root that builds the process from its configuration; this file
//! holds what surrounds it: first-start bootstrap, the `serve` command, signals and logging.

pub mod alerts;
pub mod api;
pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod crypto;
pub mod domain;
pub mod engine;
pub mod error;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod ops;
pub mod people;
pub mod reports;
pub mod retention;
pub mod store;
pub mod transform;
pub mod web;

use anyhow::Context;
use tokio::net::TcpListener;

pub use crate::app::{prepare, serve_on, AppState};
use crate::config::Config;
use crate::crypto::{generate_token, hash_token, token_hint, write_private_file};
use crate::store::{Bootstrap, Store};

/// Name of the file the generated bootstrap token is written to, inside the data directory.
pub const BOOTSTRAP_TOKEN_FILE: &str = "bootstrap-token";

pub(crate) async fn bootstrap(store: &Store, config: &Config) -> anyhow::Result<()> {
    let token = config
        .bootstrap_token
        .clone()
        .unwrap_or_else(generate_token);
    match store
        .bootstrap(&hash_token(&token), &token_hint(&token))
        .await?
    {
        Bootstrap::AlreadyDone => forget_spent_bootstrap_file(store, &config.data_dir).await,
        Bootstrap::Created { .. } if config.bootstrap_token.is_some() => {
            tracing::info!("created organisation `default` with the configured owner token");
        }
        Bootstrap::Created { .. } => {
            let path = config.data_dir.join(BOOTSTRAP_TOKEN_FILE);
            write_private_file(&path, format!("{token}\n").as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("Created organisation `default`. Owner API token (shown once, also in {}):\n\n    {token}\n", path.display());
            tracing::info!(path = %path.display(), "created organisation `default` and its owner token");
        }
    }
    Ok(())
}

/// The bootstrap token file once its token was used or revoked: the owner has it by then, and
/// a copy on disk is one more place an owner token can leak from. Covers a token used by a
/// process that could not remove the file (another replica, a crash in between).
async fn forget_spent_bootstrap_file(store: &Store, data_dir: &std::path::Path) {
    let path = data_dir.join(BOOTSTRAP_TOKEN_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let spent = match store.authenticate(&hash_token(text.trim())).await {
        Ok(None) => true,
        Ok(Some(identity)) => identity.last_used_at.is_some(),
        Err(e) => {
            tracing::warn!(error = %e, "could not check whether the bootstrap token was used");
            false
        }
    };
    if spent {
        remove_bootstrap_file(&path);
    }
}

/// Removes the bootstrap token file if it holds the token with this hash: called on a token's
/// first use, so the file is gone as soon as the owner has used the token it carried.
pub fn forget_used_bootstrap_token(data_dir: &std::path::Path, token_hash: &str) {
    let path = data_dir.join(BOOTSTRAP_TOKEN_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    if hash_token(text.trim()) == token_hash {
        remove_bootstrap_file(&path);
    }
}

fn remove_bootstrap_file(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed the bootstrap token file: its token has been used")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the used bootstrap token file")
        }
    }
}

/// `wharf serve`: prepare, listen on the configured address, stop on SIGTERM/SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let state = prepare(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        store = ?state.store.backend(),
        "wharf listening; API at /api/v1, docs at /docs"
    );
    serve_on(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Sets up logging from the configuration (`RUST_LOG` wins when set).
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = match config.log.format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}
