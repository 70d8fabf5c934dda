//! Group commit. Every write queued here is answered only after the transaction holding it
//! commits (synchronous commit stays on: a 2xx means durably stored), but writes arriving
//! together share that transaction and its one WAL flush, with one multi-row statement per
//! table where the rows allow. While a batch commits, the next one gathers, so a busy server
//! makes batches larger rather than queues longer; a lone write goes at once, with nothing to
//! wait for. Used for webhook pushes and for event status changes.
//!
//! When storage is unavailable the whole batch fails at once (every caller is told 503 without
//! waiting for a connection write by write). A write may carry its request's [`CommitGate`]:
//! a request that gave up (timed out, answered 503) before its write reached COMMIT makes the
//! transaction roll back, and the others commit without it; one whose COMMIT is under way is
//! answered by that commit, not by a 503.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use sqlx::postgres::PgConnectOptions;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{Store, StoreError, StoreResult};

/// A batch's commit: one answer per write, in order, or the error that undid them all.
pub(super) type Committing<'a, A> = Pin<Box<dyn Future<Output = StoreResult<Vec<A>>> + Send + 'a>>;

/// Writes that commit together.
pub(super) trait Batch: Send + Sync + Sized + 'static {
    type Answer: Send + 'static;
    /// Most writes in one transaction.
    const MAX: usize;
    /// Commits `items` in one transaction; one answer per item, in order. Calls
    /// [`enter_commit`] with `gates` right before COMMIT.
    fn commit<'a>(
        store: &'a Store,
        items: &'a [Self],
        gates: &'a [Option<Arc<CommitGate>>],
    ) -> Committing<'a, Self::Answer>;
    /// The writers' connections (Postgres), made like the main pool's and then by this.
    fn connection(options: PgConnectOptions) -> PgConnectOptions {
        options
    }
}

type Queued<B> = (
    B,
    Option<Arc<CommitGate>>,
    oneshot::Sender<StoreResult<<B as Batch>::Answer>>,
);

/// Decides, once, whether a request is answered by its write's commit or by giving up: whichever
/// comes first, the writer reaching COMMIT or the request's timeout, holds.
#[derive(Debug, Default)]
pub struct CommitGate(AtomicU8);

const OPEN: u8 = 0;
const COMMITTING: u8 = 1;
const ABANDONED: u8 = 2;

impl CommitGate {
    /// The request gives up. True when nothing of it can commit any more (answer 503); false
    /// when its COMMIT is under way, so the commit's outcome must be awaited and answered.
    pub fn abandon(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(now) => now == ABANDONED,
        }
    }

    fn abandoned(&self) -> bool {
        self.0.load(Ordering::SeqCst) == ABANDONED
    }
}

/// Called right before COMMIT: marks every gated write as committing, or, when a request has
/// already given up, none of them, and fails so that the transaction rolls back (the writer
/// then commits the others again without that write). A write already marked (its batch's
/// COMMIT failed, and it is tried again) stays marked: its request awaits the outcome.
pub(super) fn enter_commit(gates: &[Option<Arc<CommitGate>>]) -> StoreResult<()> {
    enter(gates).map(drop)
}

/// [`enter_commit`], giving the gates it marked, to [`reopen`] if the commit is known not to
/// have happened (the database refused the statement).
pub(super) fn enter(gates: &[Option<Arc<CommitGate>>]) -> StoreResult<Vec<Arc<CommitGate>>> {
    let mut entered = Vec::new();
    for gate in gates.iter().flatten() {
        match gate
            .0
            .compare_exchange(OPEN, COMMITTING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => entered.push(gate.clone()),
            Err(COMMITTING) => {}
            Err(_) => {
                reopen(&entered);
                return Err(gave_up());
            }
        }
    }
    Ok(entered)
}

/// Lets the requests of `gates` give up again: what they were to commit was refused.
pub(super) fn reopen(gates: &[Arc<CommitGate>]) {
    for gate in gates {
        let _ = gate
            .0
            .compare_exchange(COMMITTING, OPEN, Ordering::SeqCst, Ordering::SeqCst);
    }
}

const GAVE_UP: &str = "the request gave up before its write committed";

fn gave_up() -> StoreError {
    StoreError::Unavailable(GAVE_UP.into())
}

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
    /// Queues `item` and waits for its commit. With a `gate`, the write commits only if its
    /// request has not given up by then.
    pub(super) async fn submit(
        &self,
        store: &Store,
        item: B,
        gate: Option<Arc<CommitGate>>,
    ) -> StoreResult<B::Answer> {
        let queue = self.queue.get_or_init(|| start::<B>(store));
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the store's writer stopped".into());
        queue
            .send((item, gate, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Starts the writers: two on Postgres (one gathers and builds its batch while the other
/// commits), one on SQLite (one writer at a time anyway). They stop when every handle to the
/// store is gone.
///
/// The writers run on a thread of their own: a commit is several round trips, and on the
/// server's runtime each answer of the database would wait its turn behind every request being
/// served, holding the transaction open, and every request of the batch waiting, for as long.
/// On Postgres they have connections of their own (the main pool's settings, one a writer),
/// which [`Store::close`] closes with the main pool; on SQLite they share the main pool, whose
/// connections each run on a thread of their own already.
fn start<B: Batch>(store: &Store) -> mpsc::Sender<Queued<B>> {
    let (queue, receiver) = mpsc::channel::<Queued<B>>(4 * B::MAX);
    let receiver = Arc::new(Mutex::new(receiver));
    let writers = store.backend().commit_writers();
    let pool = match &store.pool {
        super::Pool::Pg(main) => {
            // Under the lock `Store::close` takes after closing the main pool: a queue started
            // once the store is closed gets the closed pool (its writes fail, as any write
            // then), never connections nobody would close.
            let mut own = store
                .shared
                .writer_pools
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if main.is_closed() {
                super::Pool::Pg(main.clone())
            } else {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(u32::try_from(writers).unwrap_or(u32::MAX))
                    .acquire_timeout(main.options().get_acquire_timeout())
                    // As the main pool: never reuse a connection left inside a transaction.
                    .before_acquire(|conn, _| {
                        Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
                    })
                    .connect_lazy_with(B::connection((*main.connect_options()).clone()));
                own.push(pool.clone());
                super::Pool::Pg(pool)
            }
        }
        sqlite => sqlite.clone(),
    };
    // The writers' own handle has queues of its own, never started: holding the shared ones
    // would keep the channel open for ever. It wakes other nodes with the store's waker.
    let writer = Store {
        pool,
        shared: Arc::new(super::Shared {
            waker: store.shared.waker.clone(),
            ..Default::default()
        }),
        audit: None,
    };
    let (on_thread, here) = (writer.clone(), receiver.clone());
    let caller = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("wharf-commit".into())
        .spawn(move || commit_thread::<B>(on_thread, writers, here, caller));
    if let Err(e) = spawned {
        // Slower, but every write is still committed: the writers run on the caller's runtime.
        tracing::warn!(error = %e, "cannot start the commit writers' thread; they run as tasks");
        for _ in 0..writers {
            tokio::spawn(write_loop::<B>(writer.clone(), receiver.clone()));
        }
    }
    queue
}

/// The writers' thread: its own runtime, `writers` writers on `store`, until the queue closes
/// (on the `caller`'s runtime if this thread cannot have one).
fn commit_thread<B: Batch>(
    store: Store,
    writers: usize,
    receiver: Arc<Mutex<mpsc::Receiver<Queued<B>>>>,
    caller: tokio::runtime::Handle,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the commit writers' runtime; they run as tasks");
            for _ in 0..writers {
                caller.spawn(write_loop::<B>(store.clone(), receiver.clone()));
            }
            return;
        }
    };
    runtime.block_on(async move {
        let loops: Vec<_> = (0..writers)
            .map(|_| tokio::spawn(write_loop::<B>(store.clone(), receiver.clone())))
            .collect();
        for l in loops {
            let _ = l.await;
        }
        if let super::Pool::Pg(own) = &store.pool {
            super::close_pool(own).await;
        }
    });
}

/// One writer: gathers what is queued, commits it, answers each write.
async fn write_loop<B: Batch>(store: Store, receiver: Arc<Mutex<mpsc::Receiver<Queued<B>>>>) {
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
        // A caller that went away without a gate (its client hung up) is still
        // committed; a webhook sender's retry is then answered as a duplicate.
        let (mut items, mut gates, mut replies) = (Vec::new(), Vec::new(), Vec::new());
        for (item, gate, reply) in batch {
            if gate.as_ref().is_some_and(|g| g.abandoned()) {
                let _ = reply.send(Err(gave_up()));
                continue;
            }
            items.push(item);
            gates.push(gate);
            replies.push(reply);
        }
        while !items.is_empty() {
            let answers = commit(&store, &items, &gates).await;
            let (mut again, mut again_gates, mut again_replies) =
                (Vec::new(), Vec::new(), Vec::new());
            for (((item, gate), reply), answer) in
                items.into_iter().zip(gates).zip(replies).zip(answers)
            {
                match answer {
                    // Rolled back because another request of the batch gave up.
                    Err(Retry) => {
                        again.push(item);
                        again_gates.push(gate);
                        again_replies.push(reply);
                    }
                    Ok(answer) => {
                        let _ = reply.send(answer);
                    }
                }
            }
            (items, gates, replies) = (again, again_gates, again_replies);
        }
    }
}

/// A write to commit again: its batch rolled back for another write's sake.
struct Retry;

/// Commits `items` together. When storage is unavailable, every write fails at once; when a
/// request gave up, its write fails and the others are to be committed again; when one write's
/// data fails the batch, each is committed alone, so that one write's problem is never another's.
async fn commit<B: Batch>(
    store: &Store,
    items: &[B],
    gates: &[Option<Arc<CommitGate>>],
) -> Vec<Result<StoreResult<B::Answer>, Retry>> {
    match B::commit(store, items, gates).await {
        Ok(answers) => answers.into_iter().map(|a| Ok(Ok(a))).collect(),
        Err(StoreError::Unavailable(why)) if why == GAVE_UP => gates
            .iter()
            .map(|g| match g {
                Some(g) if g.abandoned() => Ok(Err(gave_up())),
                _ => Err(Retry),
            })
            .collect(),
        Err(e) => {
            match e {
                StoreError::Unavailable(why) => {
                    tracing::warn!(error = %why, writes = items.len(), "storage unavailable; the batch fails");
                    items
                        .iter()
                        .map(|_| Ok(Err(StoreError::Unavailable(why.clone()))))
                        .collect()
                }
                e if items.len() == 1 => vec![Ok(Err(e))],
                e => {
                    tracing::debug!(error = %e, writes = items.len(), "batch failed; committing one by one");
                    let mut answers = Vec::with_capacity(items.len());
                    for (item, gate) in items.iter().zip(gates) {
                        // Storage went away meanwhile: the rest fail without waiting. (One
                        // request that gave up says nothing about storage.)
                        if let Some(Ok(Err(StoreError::Unavailable(why)))) = answers.last().filter(
                            |a| !matches!(a, Ok(Err(StoreError::Unavailable(w))) if w == GAVE_UP),
                        ) {
                            let why = why.clone();
                            answers.push(Ok(Err(StoreError::Unavailable(why))));
                            continue;
                        }
                        let alone = B::commit(
                            store,
                            std::slice::from_ref(item),
                            std::slice::from_ref(gate),
                        )
                        .await;
                        answers.push(Ok(alone.and_then(|mut a| {
                            a.pop().ok_or_else(|| {
                                StoreError::Other(anyhow::anyhow!("a commit gave no answer"))
                            })
                        })));
                    }
                    answers
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(n: usize) -> Vec<Option<Arc<CommitGate>>> {
        (0..n)
            .map(|_| Some(Arc::new(CommitGate::default())))
            .collect()
    }

    #[test]
    fn a_request_that_gave_up_keeps_the_batch_from_committing() {
        let g = gates(3);
        assert!(g[1].as_ref().unwrap().abandon());
        assert!(enter_commit(&g).is_err());
        // The others are open again: they may give up, or commit in the next try.
        assert!(g[0].as_ref().unwrap().abandon());
        let rest = vec![g[2].clone(), None];
        assert!(enter_commit(&rest).is_ok());
    }

    #[test]
    fn once_committing_a_request_cannot_give_up_and_may_be_tried_again() {
        let g = gates(2);
        enter_commit(&g).unwrap();
        assert!(!g[0].as_ref().unwrap().abandon(), "its commit answers it");
        assert!(enter_commit(&g[..1]).is_ok());
    }
}
