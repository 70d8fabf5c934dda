//! Group commit. Every write queued here is answered only after the transaction holding it
//! commits (synchronous commit stays on: a 2xx means durably stored), but writes arriving
//! together share that transaction and its one WAL flush, with one multi-row statement per
//! table where the rows allow. While a batch commits, the next one gathers, so a busy server
//! makes batches larger rather than queues longer; a lone write goes at once, with nothing to
//! wait for. Used for webhook pushes and for event status changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{Backend, Store, StoreError, StoreResult};

/// A batch's commit: one answer per write, in order, or the error that undid them all.
pub(super) type Committing<'a, A> = Pin<Box<dyn Future<Output = StoreResult<Vec<A>>> + Send + 'a>>;

/// Writes that commit together.
pub(super) trait Batch: Send + Sync + Sized + 'static {
    type Answer: Send + 'static;
    /// Most writes in one transaction.
    const MAX: usize;
    /// Commits `items` in one transaction; one answer per item, in order.
    fn commit<'a>(store: &'a Store, items: &'a [Self]) -> Committing<'a, Self::Answer>;
}

type Queued<B> = (B, oneshot::Sender<StoreResult<<B as Batch>::Answer>>);

/// The queue in front of one kind of write, its writers started with the first write.
pub(super) struct Queue<B: Batch> {
    queue: OnceLock<mpsc::Sender<Queued<B>>>,
}

impl<B: Batch> Default for Queue<B> {
    fn default() -> Self {
        Queue {
            queue: OnceLock::new(),
        }
    }
}

impl<B: Batch> std::fmt::Debug for Queue<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

impl<B: Batch> Queue<B> {
    /// Queues `item` and waits for its commit.
    pub(super) async fn submit(&self, store: &Store, item: B) -> StoreResult<B::Answer> {
        let queue = self.queue.get_or_init(|| start::<B>(store));
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the store's writer stopped".into());
        queue.send((item, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Starts the writers: two on Postgres (one gathers and builds its batch while the other
/// commits), one on SQLite (one writer at a time anyway). They stop when every handle to the
/// store is gone.
fn start<B: Batch>(store: &Store) -> mpsc::Sender<Queued<B>> {
    let (queue, receiver) = mpsc::channel::<Queued<B>>(4 * B::MAX);
    let receiver = Arc::new(Mutex::new(receiver));
    let writers = match store.backend() {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    };
    for _ in 0..writers {
        // The writers' own handle has queues of its own, never started: holding the shared
        // ones would keep the channel open for ever.
        let store = Store {
            pool: store.pool.clone(),
            shared: Arc::default(),
        };
        let receiver = receiver.clone();
        tokio::spawn(async move {
            loop {
                let mut batch = Vec::new();
                {
                    let mut receiver = receiver.lock().await;
                    match receiver.recv().await {
                        Some(q) => batch.push(q),
                        None => return,
                    }
                    while batch.len() < B::MAX {
                        match receiver.try_recv() {
                            Ok(q) => batch.push(q),
                            Err(_) => break,
                        }
                    }
                }
                let (items, replies): (Vec<B>, Vec<_>) = batch.into_iter().unzip();
                let answers = commit(&store, &items).await;
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that went away (its client hung up) is still committed; a
                    // webhook sender's retry is then answered as a duplicate.
                    let _ = reply.send(answer);
                }
            }
        });
    }
    queue
}

/// Commits `items` together; when that fails and there were several, each is committed alone,
/// so that one write's problem is never another's.
async fn commit<B: Batch>(store: &Store, items: &[B]) -> Vec<StoreResult<B::Answer>> {
    match B::commit(store, items).await {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(e) if items.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::debug!(error = %e, writes = items.len(), "batch failed; committing one by one");
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                let alone = B::commit(store, std::slice::from_ref(item)).await;
                answers.push(alone.and_then(|mut a| {
                    a.pop().ok_or_else(|| {
                        StoreError::Other(anyhow::anyhow!("a commit gave no answer"))
                    })
                }));
            }
            answers
        }
    }
}
