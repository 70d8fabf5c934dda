//! The engine: workers that run jobs (a stream's source) and move events through their
//! transformation and delivery; beside them, the scheduler that queues due runs and the
//! maintenance that keeps claims and the event log healthy, each a task of its own so a
//! process can run any of them alone. Work is claimed from the store with a lease; a worker
//! never holds a database transaction across a call to another system.

mod deliver;
mod lanes;
pub mod maintenance;
mod run_job;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::config::WorkersConfig;
use crate::connectors::net::Outbound;
use crate::connectors::Registry as Connectors;
use crate::domain::Timestamp;
use crate::ingest::decode::DecodeLimits;
use crate::metrics::Metrics;
use crate::store::{Event, Handed, Handoff, Job, Store};
use crate::transform::lookups::LookupCache;
use crate::transform::Transformer;
use lanes::{Lane, Lanes};

/// What the workers use, handed over by the composition root.
pub struct Deps {
    pub store: Store,
    /// Keys' credentials, opened once per stored key (shared with webhook ingest).
    pub keys: Arc<crate::connectors::OpenedKeys>,
    pub transformer: Arc<Transformer>,
    pub lookups: Arc<LookupCache>,
    /// The process's one guarded client for calls to other systems.
    pub net: Outbound,
    /// Woken when work is queued in this process (other nodes hear Postgres NOTIFY).
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub workers: WorkersConfig,
    /// What a source run's fetched bodies may decode to.
    pub decode: DecodeLimits,
    /// Where Postgres LISTEN connects to hear other nodes queue work.
    pub database_url: String,
    /// The connectors jobs and deliveries run through.
    pub connectors: Arc<Connectors>,
}

/// Shared by the workers of one process.
pub struct Engine {
    pub store: Store,
    keys: Arc<crate::connectors::OpenedKeys>,
    transformer: Arc<Transformer>,
    lookups: Arc<LookupCache>,
    /// The guarded client every call to another system goes through.
    pub net: Outbound,
    /// Woken when work is queued in this process (other nodes hear Postgres NOTIFY).
    pub wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    workers: WorkersConfig,
    decode: DecodeLimits,
    database_url: String,
    /// The connectors jobs and deliveries run through.
    pub connectors: Arc<Connectors>,
    /// The last claim filled every free slot, so more work is probably waiting: a finishing
    /// task then wakes the claim loop at once instead of leaving its slot idle until the poll.
    backlog: std::sync::atomic::AtomicBool,
    /// Claim tokens with work in flight (and how much), released on shutdown.
    held: Mutex<HashMap<Uuid, usize>>,
    /// The rows this process's workers have in hand, with the token each is held under and
    /// whether it is a job (a source run or combined delivery) rather than an event: the
    /// heartbeat renews their leases, so a short lease covers work of any length while its
    /// worker lives (see [`Engine::heartbeat`]).
    live: Mutex<HashMap<Uuid, (Uuid, bool)>>,
    worker_id: String,
    /// Events this process received, stored already claimed for these workers.
    handoff: Arc<Handoff>,
    /// Alternates which of the handoff and the store fills free slots first, so that neither
    /// starves the other under load.
    store_first: std::sync::atomic::AtomicBool,
    /// Each destination's share of the workers (see [`lanes`]).
    lanes: Arc<Lanes>,
    /// Events taken or claimed whose destination had its share in flight: they wait here,
    /// held (their leases renewed), and start before any other event is taken.
    parked: Mutex<std::collections::VecDeque<Parked>>,
    /// When the store was last asked for events while some streams were left out: such a
    /// claim reads past their backlog, so it runs once a poll interval, not on every wake.
    skipping_since: Mutex<Option<std::time::Instant>>,
    /// When jobs (source runs and combined deliveries) were last claimed: while events keep
    /// the workers busy, jobs are looked for once a poll interval, not on every wake (see
    /// [`Engine::claim_and_spawn`]).
    jobs_claimed_at: Mutex<Option<std::time::Instant>>,
}

impl Engine {
    pub fn new(deps: Deps) -> Arc<Engine> {
        let lease = chrono::Duration::seconds(deps.workers.lease_seconds as i64);
        let handoff = Handoff::new(deps.workers.handoff, deps.workers.handoff_spill, lease);
        let lanes = Lanes::new(deps.workers.count, deps.workers.per_destination);
        Arc::new(Engine {
            store: deps.store,
            keys: deps.keys,
            transformer: deps.transformer,
            lookups: deps.lookups,
            net: deps.net,
            wake: deps.wake,
            metrics: deps.metrics,
            workers: deps.workers,
            decode: deps.decode,
            database_url: deps.database_url,
            connectors: deps.connectors,
            backlog: Default::default(),
            held: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            worker_id: format!("{}-{}", hostname(), std::process::id()),
            handoff,
            store_first: Default::default(),
            lanes,
            parked: Default::default(),
            skipping_since: Default::default(),
            jobs_claimed_at: Default::default(),
        })
    }

    fn hold(&self, token: Uuid, n: usize) {
        if n > 0 {
            *self
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(token)
                .or_default() += n;
        }
    }

    /// One piece of work under `token` is finished (its claim is settled in the store).
    fn settle(&self, token: Uuid) {
        if self.backlog.load(std::sync::atomic::Ordering::Relaxed) {
            self.wake.notify_one();
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&token) {
            *n -= 1;
            if *n == 0 {
                held.remove(&token);
            }
        }
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.workers.lease_seconds as i64)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Uuid, bool)>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The jobs (source runs and combined deliveries) in this process's workers' hands.
    fn jobs_in_hand(&self) -> Vec<Uuid> {
        self.live()
            .iter()
            .filter(|(_, (_, job))| *job)
            .map(|(id, _)| *id)
            .collect()
    }

    /// `id` is in a worker's hands under `token` until the returned guard is dropped (when
    /// the work ends, however it ends: a panicking task drops it too).
    fn in_hand(self: &Arc<Self>, id: Uuid, token: Uuid, job: bool) -> InHand {
        self.live().insert(id, (token, job));
        InHand {
            engine: self.clone(),
            id,
            token,
        }
    }

    /// Every quarter of the lease, renews the leases of the work this process has in hand (in
    /// flight, and received events waiting in the handoff) that would end within three quarters of one.
    /// The lease can then be short — work of a process that died or was cut off from storage
    /// is taken over soon after it ends — while a long source run or a slow delivery stays
    /// held as long as its worker lives. Only what is in hand is renewed: a row left claimed
    /// by a worker that gave up on it (its commit failed) runs out and is rescued.
    async fn heartbeat(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every =
            (Duration::from_secs(self.workers.lease_seconds) / 4).max(Duration::from_millis(250));
        // A round that took longer than its interval (storage stalled: a renewal waiting
        // behind a lock) wrote lease ends computed before it waited, perhaps already past:
        // the next round runs at once.
        let mut late = false;
        loop {
            if !late {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
            } else if *shutdown.borrow() {
                return;
            }
            let started = std::time::Instant::now();
            let mut held: Vec<(Uuid, Uuid, bool)> = self
                .live()
                .iter()
                .map(|(id, (t, j))| (*id, *t, *j))
                .collect();
            let token = self.handoff.token();
            held.extend(
                self.handoff
                    .waiting_ids()
                    .into_iter()
                    .map(|id| (id, token, false)),
            );
            let (spilled, spill_lease) = self.handoff.spill_renewals();
            let spilled_at = Timestamp::now();
            let spilled: Vec<_> = spilled.into_iter().map(|id| (id, token, false)).collect();
            for (held, lease, spill) in [(held, self.lease(), false), (spilled, spill_lease, true)]
            {
                if held.is_empty() {
                    continue;
                }
                match self.store.renew_leases(&held, lease).await {
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!(renewed = n, "leases renewed");
                        }
                        // Only once the store has them: a failed renewal is tried again.
                        if spill {
                            let ids: Vec<Uuid> = held.iter().map(|(id, _, _)| *id).collect();
                            let until = Timestamp::from_datetime(spilled_at.0 + lease);
                            self.handoff.spill_renewed(&ids, until);
                        }
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "renewing leases failed; work in hand may be taken over when they run out"
                    ),
                }
            }
            // Once: a round that is slow every time (storage slow for long) keeps its pace.
            late = !late && started.elapsed() > every;
        }
    }

    /// For the maintenance rescue at `now` (see `maintenance`): renews the leases of the
    /// events this process still has in hand whose lease ran out at `now` — the heartbeat was
    /// late (storage stalled, the process was starved) — so that the rescue does not free
    /// them for a second delivery while their worker lives. Events held under this process's
    /// tokens but no longer in hand (a worker gave up on them) are left to the rescue. `Err`
    /// when they could not be renewed: the rescue waits for the next round.
    pub async fn renew_late(&self, now: Timestamp) -> crate::store::StoreResult<u64> {
        let mut tokens: Vec<Uuid> = self.live().values().map(|(t, _)| *t).collect();
        tokens.push(self.handoff.token());
        tokens.sort();
        tokens.dedup();
        let expired = self.store.expired_claims(&tokens, now).await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let ids: std::collections::HashSet<Uuid> = expired.iter().map(|(id, _)| *id).collect();
        let waiting = self.handoff.holds(&ids);
        let late: Vec<(Uuid, Uuid, bool)> = {
            let live = self.live();
            expired
                .into_iter()
                .filter(|(id, token)| {
                    live.get(id).is_some_and(|(t, job)| t == token && !job)
                        || (*token == self.handoff.token() && waiting.contains(id))
                })
                .map(|(id, token)| (id, token, false))
                .collect()
        };
        if late.is_empty() {
            return Ok(0);
        }
        self.store.renew_leases(&late, self.lease()).await
    }

    /// Runs until `shutdown` turns true: claims as much work as there are free workers,
    /// then waits for a wake-up or the next poll.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let cfg = self.workers.clone();
        let slots = Arc::new(Semaphore::new(cfg.count));
        let mut tasks = JoinSet::new();
        if self.store.backend() == crate::store::Backend::Postgres {
            tokio::spawn(listen_for_work(self.clone(), shutdown.clone()));
        }
        // The heartbeat runs until the work in flight has drained and been released, past the
        // stop signal: the grace period may be longer than a lease.
        let (heartbeat_stop, heartbeat_stopped) = watch::channel(false);
        tokio::spawn(self.clone().heartbeat(heartbeat_stopped));
        // Held for as long as these workers run (see `take_over_sqlite`).
        let _sqlite_lock = if self.store.backend() == crate::store::Backend::Sqlite {
            self.take_over_sqlite().await
        } else {
            None
        };
        if cfg.handoff > 0 {
            self.store.set_handoff(Some(self.handoff.clone()));
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let claimed = self.claim_and_spawn(&slots, &mut tasks).await;
            // Claimed a full batch and slots remain: look again at once.
            if claimed > 0 && slots.available_permits() > 0 {
                continue;
            }
            let jitter = rand::thread_rng().gen_range(0.8..1.2);
            let pause = Duration::from_millis(cfg.poll_interval_ms).mul_f64(jitter);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
        // Stop claiming and taking received events (those waiting are released below, with
        // the handoff's token); let work in flight finish within the grace period, then
        // release it.
        let grace = Duration::from_secs(cfg.shutdown_grace_seconds);
        self.store.set_handoff(None);
        let (waiting, drained) = tokio::join!(
            self.handoff.close(grace),
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        );
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        // Parked events are released with their tokens below.
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let mut held: Vec<Uuid> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(t, _)| t)
            .collect();
        if cfg.handoff > 0 && !held.contains(&self.handoff.token()) {
            held.push(self.handoff.token());
        }
        if !held.is_empty() {
            if let Err(e) = self.store.release_claims(&held).await {
                tracing::warn!(error = %e, "could not release claims; their leases will run out");
            }
        }
        let _ = heartbeat_stop.send(true);
        tracing::info!(released = held.len(), waiting, "workers stopped");
    }

    /// SQLite is used by one process at a time: whatever is claimed when its workers start was
    /// held by a process that is gone (killed, or its machine restarted), so it is freed at
    /// once instead of when its leases run out. A lock file beside the database makes sure:
    /// while another process's workers hold it, nothing is freed. Returns the lock, held
    /// until the workers stop.
    async fn take_over_sqlite(&self) -> Option<std::fs::File> {
        let path = sqlite_path(&self.database_url)?;
        let lock_path = format!("{path}.workers-lock");
        let file = match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(path = %lock_path, error = %e, "cannot open the workers' lock file; claims of a previous process are freed when their leases run out");
                return None;
            }
        };
        if file.try_lock().is_err() {
            tracing::warn!(path = %lock_path, "another process runs workers on this SQLite database; its claims are left alone");
            return None;
        }
        match self.store.release_all_claims().await {
            Ok((0, 0)) => {}
            Ok((events, jobs)) => {
                tracing::warn!(
                    events,
                    jobs,
                    "took back the work a previous process held when it stopped"
                );
                // The jobs are counted when they are claimed again.
                self.metrics.record_rescue("events", events);
            }
            Err(e) => {
                tracing::warn!(error = %e, "freeing a previous process's claims failed; their leases will run out")
            }
        }
        Some(file)
    }

    /// Claims jobs, then events, up to the free slots; returns how many were claimed.
    async fn claim_and_spawn(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) -> usize {
        let mut claimed = 0;
        if slots.available_permits() == 0 {
            return 0;
        }
        if self.jobs_due() {
            claimed += self.claim_jobs(slots, tasks).await;
        }
        // Events: those this process received and holds, and those waiting in the store
        // (retries, events other nodes received, events received while the handoff was
        // full), each taking the free slots first every other time.
        claimed += self.unpark(slots, tasks).await;
        let store_first = !self
            .store_first
            .fetch_xor(true, std::sync::atomic::Ordering::Relaxed);
        if store_first {
            claimed += self.claim_stored_events(slots, tasks).await;
            claimed += self.take_handed(slots, tasks).await;
        } else {
            claimed += self.take_handed(slots, tasks).await;
            claimed += self.claim_stored_events(slots, tasks).await;
        }
        claimed
    }

    /// Whether to look for jobs in this round. A wake comes with each finished delivery
    /// while events are waiting, and asking for jobs every time cost two queries per round
    /// for nothing: while events keep the workers busy, a queued job (a run, a combined
    /// delivery) is found at the first round a poll interval after the last look (within
    /// about two intervals), and while a look finds as many as it asked for, the next round
    /// looks again.
    fn jobs_due(&self) -> bool {
        if self.backlog.load(std::sync::atomic::Ordering::Relaxed) {
            return self.poll_due(&self.jobs_claimed_at);
        }
        *self
            .jobs_claimed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        true
    }

    /// Whether a poll interval has passed since `last` (or it was never set); if so, `last`
    /// becomes now. For the lookups that run once a poll interval under load.
    fn poll_due(&self, last: &Mutex<Option<std::time::Instant>>) -> bool {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let every = Duration::from_millis(self.workers.poll_interval_ms);
        if last.is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    /// Claims due source runs and combined deliveries, up to half the free slots each.
    async fn claim_jobs(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) -> usize {
        let store = &self.store;
        let mut claimed = 0;
        // A claim that got all it asked for leaves more due: look again next round.
        let mut more = false;
        let free = slots.available_permits() as u32;
        // The jobs this process is running are never claimed again, even once their lease
        // ran out (the heartbeat was late): their runs are under way.
        let held = self.jobs_in_hand();
        // Source runs are long; leave most slots to deliveries.
        let token = Uuid::now_v7();
        match store
            .claim_jobs(
                &self.worker_id,
                token,
                free.div_ceil(2),
                self.lease(),
                &held,
            )
            .await
        {
            Ok(jobs) => {
                more |= jobs.len() as u32 == free.div_ceil(2);
                self.hold(token, jobs.len());
                let rescued = jobs.iter().filter(|j| j.attempt > 1).count();
                if rescued > 0 {
                    tracing::warn!(
                        jobs = rescued,
                        "took over source runs whose worker stopped or whose lease ran out; they run again"
                    );
                    self.metrics.record_rescue("jobs", rescued as u64);
                }
                for job in jobs {
                    claimed += 1;
                    let permit = slots.clone().acquire_owned().await.expect("semaphore open");
                    let engine = self.clone();
                    let hand = engine.in_hand(job.id, token, true);
                    tasks.spawn(async move {
                        run_job::run(&engine, job, token).await;
                        drop(hand);
                        engine.settle(token);
                        drop(permit);
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
        }
        let free = slots.available_permits() as u32;
        if free > 0 {
            let token = Uuid::now_v7();
            match store
                .claim_aggregates(token, free.div_ceil(2), self.lease(), &held)
                .await
            {
                Ok(jobs) => {
                    more |= jobs.len() as u32 == free.div_ceil(2);
                    claimed += jobs.len();
                    self.hold(token, jobs.len());
                    for job in jobs {
                        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
                        let engine = self.clone();
                        let hand = engine.in_hand(job.id, token, true);
                        tasks.spawn(async move {
                            deliver::aggregate(&engine, job, token).await;
                            drop(hand);
                            engine.settle(token);
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming combined deliveries failed"),
            }
        } else {
            // No slot was left to ask for combined deliveries with.
            more = true;
        }
        if more {
            *self
                .jobs_claimed_at
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
        }
        claimed
    }

    /// Spawns the received events waiting in the handoff, up to the free slots, passing over
    /// those whose destination has its share of the workers.
    async fn take_handed(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) -> usize {
        let token = self.handoff.token();
        let free = slots.available_permits();
        if free == 0 {
            return 0;
        }
        let skip = self.lanes.full_streams();
        let handed = self.checked(self.handoff.take_except(free, &skip)).await;
        let mut events: Vec<(Event, Option<Arc<Job>>)> =
            handed.into_iter().map(|h| (h.event, Some(h.job))).collect();
        // Then spilled events, read back by id: those no longer held (an abort, or a rescue
        // after their lease ran out) are not read.
        let left = free.saturating_sub(events.len());
        let spilled = self.handoff.take_spilled(left, &skip);
        if !spilled.is_empty() {
            match self.read_back(token, &spilled).await {
                Ok(read) => events.extend(self.with_jobs(read).await),
                Err(e) => {
                    // They wait again, their leases renewed, for storage to answer.
                    tracing::warn!(error = %e, "reading spilled events failed");
                    self.handoff.restore_spilled(spilled);
                }
            }
        }
        let n = self.start_events(slots, tasks, token, events).await;
        if self.handoff.waiting() > 0 {
            self.backlog
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        n
    }

    /// Reads back the spilled events `taken` still held under `token`. Their leases are renewed
    /// first where they end within three quarters of a lease (or have run out and not been
    /// rescued): renewed after the read, one about to run out could be freed by a rescue in
    /// between and delivered twice; dropped as about to run out, it could be renewed by a
    /// heartbeat round that listed it before it was taken, and then wait for no one. So what
    /// is read back has most of a lease left, and what is not is no longer held under
    /// `token`. Which leases end soon is known here (each one written or renewed), so the
    /// renewal is asked for only when one does.
    async fn read_back(
        &self,
        token: Uuid,
        taken: &[crate::store::Spilled],
    ) -> crate::store::StoreResult<Vec<Event>> {
        let soon = Timestamp::now().0 + self.lease() * 3 / 4;
        let near: Vec<(Uuid, Uuid, bool)> = taken
            .iter()
            .filter(|h| h.lease_end.0 < soon)
            .map(|h| (h.id, token, false))
            .collect();
        if !near.is_empty() {
            self.store.renew_leases(&near, self.lease()).await?;
        }
        let ids: Vec<Uuid> = taken.iter().map(|h| h.id).collect();
        self.store.held_events(token, &ids).await
    }

    /// Starts the events just taken under `token`, each in a slot of its own and in its
    /// destination's share; those over their destination's share are parked (see
    /// [`Engine::unpark`]). Returns how many started.
    async fn start_events(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        token: Uuid,
        events: Vec<(Event, Option<Arc<Job>>)>,
    ) -> usize {
        self.hold(token, events.len());
        let mut started = 0;
        let mut parked = Vec::new();
        for (ev, job) in events {
            let hand = self.in_hand(ev.id, token, false);
            // An unreadable stream is the event's own step to report; it takes no share.
            let destination = match self
                .store
                .get_cached::<crate::store::Stream>(ev.org_id, ev.stream_id)
                .await
            {
                Ok(stream) => Some(stream.destination_id),
                Err(_) => None,
            };
            let lane = match destination {
                Some(d) => match self.lanes.enter(ev.stream_id, d) {
                    Some(lane) => Some(lane),
                    None => {
                        parked.push(Parked {
                            // Its wait counts from now (a received event that waited before
                            // was checked when it was taken): checking every parked event
                            // against its receipt cost a query per event under load.
                            since: Timestamp::now(),
                            ev,
                            job,
                            token,
                            destination: d,
                            hand,
                        });
                        continue;
                    }
                },
                None => None,
            };
            self.spawn_event(slots, tasks, token, ev, job, lane, hand)
                .await;
            started += 1;
        }
        self.park(parked).await;
        started
    }

    /// Processes one held event in a slot of its own.
    #[allow(clippy::too_many_arguments)]
    async fn spawn_event(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        token: Uuid,
        ev: Event,
        job: Option<Arc<Job>>,
        lane: Option<Lane>,
        hand: InHand,
    ) {
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let engine = self.clone();
        tasks.spawn(async move {
            deliver::process(&engine, ev, job, token).await;
            drop(lane);
            drop(hand);
            // Woken while this slot is still taken, the claim loop often finds none free and
            // waits for more to finish: claims then come in batches, not one per event.
            engine.settle(token);
            drop(permit);
        });
    }

    fn any_parked(&self) -> bool {
        !self
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Keeps events whose destination had its share in flight until it has room. At most
    /// `workers.count` wait so; beyond that their claims are given back to the store.
    async fn park(&self, events: Vec<Parked>) {
        if events.is_empty() {
            return;
        }
        // A finishing delivery wakes the claim loop, which starts them when there is room.
        self.backlog
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let over = {
            let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            parked.extend(events);
            let keep = self.workers.count.max(1);
            if parked.len() > keep {
                parked.split_off(keep)
            } else {
                Default::default()
            }
        };
        let mut by_token: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for p in &over {
            by_token.entry(p.token).or_default().push(p.ev.id);
        }
        for (token, ids) in by_token {
            // Left claimed if this fails: the lease runs out and the rescue frees them.
            if let Err(e) = self.store.release_events(token, &ids).await {
                tracing::warn!(error = %e, "giving back events over their destination's share failed");
            }
        }
        for p in over {
            self.settle(p.token);
        }
    }

    /// Starts parked events whose destination has room now, up to the free slots, oldest
    /// first. Those parked a while are checked first, as waiting received events are (see
    /// [`Engine::checked`]): an abort or a rescue may have taken them meanwhile.
    async fn unpark(self: &Arc<Self>, slots: &Arc<Semaphore>, tasks: &mut JoinSet<()>) -> usize {
        let ready: Vec<(Parked, Lane)> = {
            let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            let mut free = slots.available_permits();
            let mut ready = Vec::new();
            let mut left = std::collections::VecDeque::with_capacity(parked.len());
            while let Some(p) = parked.pop_front() {
                if free > 0 {
                    if let Some(lane) = self.lanes.enter(p.ev.stream_id, p.destination) {
                        free -= 1;
                        ready.push((p, lane));
                        continue;
                    }
                }
                left.push_back(p);
            }
            *parked = left;
            ready
        };
        if ready.is_empty() {
            return 0;
        }
        let now = Timestamp::now();
        let mut waited: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for (p, _) in &ready {
            if now.0 - p.since.0 > HANDOFF_FRESH {
                waited.entry(p.token).or_default().push(p.ev.id);
            }
        }
        let mut gone = std::collections::HashSet::new();
        for (token, ids) in waited {
            match self.store.still_held(token, &ids).await {
                Ok(held) => gone.extend(ids.into_iter().filter(|id| !held.contains(id))),
                Err(e) => {
                    // Left claimed: the lease runs out and the rescue frees them.
                    tracing::warn!(error = %e, "checking parked events failed");
                    gone.extend(ids);
                }
            }
        }
        let mut started = 0;
        for (p, lane) in ready {
            if gone.contains(&p.ev.id) {
                self.settle(p.token);
                continue;
            }
            self.spawn_event(slots, tasks, p.token, p.ev, p.job, Some(lane), p.hand)
                .await;
            started += 1;
        }
        started
    }

    /// What of `handed` may still be delivered. Events taken soon after their receipt are, as
    /// any claimed work is. Those that waited (a slow destination keeps the workers busy) are
    /// checked in one query first: an abort, or a rescue after the lease ran out (the
    /// heartbeat renews waiting events' leases, but it may have failed), may have taken them.
    async fn checked(&self, handed: Vec<Handed>) -> Vec<Handed> {
        let now = Timestamp::now();
        let waited = |h: &Handed| now.0 - h.event.created_at.0 > HANDOFF_FRESH;
        if !handed.iter().any(waited) {
            return handed;
        }
        let token = self.handoff.token();
        let (mut ready, old): (Vec<Handed>, Vec<Handed>) =
            handed.into_iter().partition(|h| !waited(h));
        let ids: Vec<Uuid> = old.iter().map(|h| h.event.id).collect();
        let held = match self.store.still_held(token, &ids).await {
            Ok(held) => held,
            Err(e) => {
                // Left claimed: the lease runs out and the rescue frees them.
                tracing::warn!(error = %e, "checking waiting events failed");
                return ready;
            }
        };
        ready.extend(old.into_iter().filter(|h| held.contains(&h.event.id)));
        ready
    }

    /// Claims due events from the store, up to the free slots, but none of the streams whose
    /// destination has its share of the workers.
    async fn claim_stored_events(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) -> usize {
        let store = &self.store;
        let free = slots.available_permits() as u32;
        if free == 0 {
            return 0;
        }
        let token = Uuid::now_v7();
        let skip: Vec<Uuid> = self.lanes.full_streams().into_iter().collect();
        if !skip.is_empty() && !self.poll_due(&self.skipping_since) {
            return 0;
        }
        let events = match store
            .claim_events_except(token, free, self.lease(), &skip)
            .await
        {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "claiming events failed");
                return 0;
            }
        };
        // With streams left out, their events wait in the store: a finishing delivery may
        // have made room for them.
        self.backlog.store(
            events.len() as u32 == free
                || self.handoff.waiting() > 0
                || self.any_parked()
                || !skip.is_empty(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let events = self.with_jobs(events).await;
        self.start_events(slots, tasks, token, events).await
    }

    /// `events` with the jobs of the NEW ones (their transformation reads the run's settings
    /// and trigger), read in one query for all of them.
    async fn with_jobs(&self, events: Vec<Event>) -> Vec<(Event, Option<Arc<Job>>)> {
        let mut jobs: HashMap<Uuid, Arc<Job>> = HashMap::new();
        let wanted: Vec<Uuid> = events
            .iter()
            .filter(|e| e.status == crate::domain::EventStatus::New)
            .map(|e| e.job_id)
            .collect();
        if !wanted.is_empty() {
            match self.store.jobs_by_id(&wanted).await {
                Ok(found) => jobs = found.into_iter().map(|j| (j.id, Arc::new(j))).collect(),
                // Each event reads its own job instead.
                Err(e) => {
                    tracing::debug!(error = %e, "reading claimed events' jobs failed")
                }
            }
        }
        events
            .into_iter()
            .map(|ev| {
                let job = jobs.get(&ev.job_id).cloned();
                (ev, job)
            })
            .collect()
    }
}

/// An event held while its destination has its share of the workers in flight.
struct Parked {
    since: Timestamp,
    ev: Event,
    job: Option<Arc<Job>>,
    token: Uuid,
    destination: Uuid,
    hand: InHand,
}

/// A row in a worker's hands (see [`Engine::in_hand`]): dropped, the heartbeat stops renewing
/// it.
struct InHand {
    engine: Arc<Engine>,
    id: Uuid,
    token: Uuid,
}

impl Drop for InHand {
    fn drop(&mut self) {
        let mut live = self.engine.live();
        // Only this claim's entry: the row may be in hand again under a newer claim.
        if live.get(&self.id).is_some_and(|(t, _)| *t == self.token) {
            live.remove(&self.id);
        }
    }
}

/// Received events taken sooner than this are delivered without checking that they are still
/// held, as any claimed work is; later ones are checked first (see `Engine::checked`).
const HANDOFF_FRESH: chrono::Duration = chrono::Duration::seconds(1);

/// Wakes this process's workers when another node queues work (Postgres LISTEN).
async fn listen_for_work(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let listener = async {
            let Some(l) = engine.store.listener().await else {
                return Err(sqlx::Error::Configuration("not Postgres".into()));
            };
            let mut l = l?;
            l.listen(crate::store::WORK_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN failed; polling only for now");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            },
            _ = shutdown.changed() => return,
        };
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(_) => engine.wake.notify_one(),
                    Err(_) => break,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The file of a SQLite database URL (`sqlite://path?options`, `sqlite:path`); `None` for an
/// in-memory database.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| path.to_string())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "wharf".into())
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn the_sqlite_file_is_read_from_its_url() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/wharf/wharf.db?mode=rwc").as_deref(),
            Some("/var/lib/wharf/wharf.db")
        );
        assert_eq!(
            sqlite_path("sqlite://data/wharf.db").as_deref(),
            Some("data/wharf.db")
        );
        assert_eq!(sqlite_path("sqlite:wharf.db").as_deref(), Some("wharf.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://localhost/wharf"), None);
    }
}
