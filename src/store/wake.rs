//! Waking other nodes' workers once work has committed (Postgres `NOTIFY` on
//! [`super::WORK_CHANNEL`]), off the path of the write that queued the work.

use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::mpsc;

/// Sends the wake-ups of one store from a task of its own, on a connection of its own.
///
/// A wake-up is a hint: a node that misses it finds the work at its next poll. So it is never
/// waited for. The group-commit writer that queued work answers its pushes and takes the next
/// batch at once, instead of spending another round trip and another commit on telling other
/// nodes. Wake-ups asked for while one is being sent are sent as one once it is done: each
/// commit is still followed by a notification sent after it, however many commits there are.
///
/// The connection commits without waiting for its commit to reach the disk
/// (`synchronous_commit = off`). A `NOTIFY` gives its transaction an id, so each one would
/// otherwise be a commit that waits for a WAL flush. A wake-up lost in a crash costs nothing.
#[derive(Debug)]
pub(in crate::store) struct Waker {
    asked: mpsc::Sender<()>,
    pool: PgPool,
}

impl Waker {
    /// A waker using connections made like `main`'s, and its task on the current runtime.
    pub(in crate::store) fn start(main: &PgPool) -> Arc<Waker> {
        let options = (*main.connect_options())
            .clone()
            .options([("synchronous_commit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(main.options().get_acquire_timeout())
            .connect_lazy_with(options);
        let (asked, mut pending) = mpsc::channel::<()>(1);
        let sender = pool.clone();
        tokio::spawn(async move {
            // Ends when every handle of the store is gone (the channel closes).
            while pending.recv().await.is_some() {
                let notify = sqlx::query("SELECT pg_notify($1, '')").bind(super::WORK_CHANNEL);
                if let Err(e) = notify.execute(&sender).await {
                    tracing::debug!(error = %e, "could not wake other nodes' workers; their next poll finds the work");
                }
            }
        });
        Arc::new(Waker { asked, pool })
    }

    /// Asks for a wake-up sent after now. Returns at once: if one is already waiting to be
    /// sent, it is that one.
    pub(in crate::store) fn wake(&self) {
        // Full: a wake-up not yet sent covers this one. Closed: the task is gone with its
        // runtime; the workers' poll finds the work.
        let _ = self.asked.try_send(());
    }

    /// Its connection, closed with the store.
    pub(in crate::store) fn pool(&self) -> &PgPool {
        &self.pool
    }
}
