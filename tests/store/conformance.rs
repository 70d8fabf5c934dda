//! Every store operation, run on both backends with the same assertions, through the store's
//! public API: claims (lease and token), completions, rescue and release, jobs, events and
//! their allowed steps, the event log, schedules, aggregates, receipts and their purge.

use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;
use wharf::domain::{EventStatus, EventStep, JobStatus, Timestamp};
use wharf::store::{
    AbortScope, Attempt, Bootstrap, Completion, Destination, Entity, Event, EventChange, Handoff,
    IngestJob, Ingested, Job, JsonText, ListQuery, LogPosition, NewAttempt, NewEvent, NewJob,
    Payload, Source, SourceCursor, SourceRead, Store, StoreError, Stream, Transformation,
};

use crate::both_stores;
use crate::common::{no_wharf_connection_left, wharf_connections, Db, Env};

/// A store on a fresh database with one organisation and one active stream.
struct Fixture {
    _env: Env,
    store: Store,
    org: Uuid,
    stream: Stream,
    source: Source,
}

async fn fixture(db: Db) -> Fixture {
    let env = Env::new(db).await;
    let store = Store::connect(&env.config()).await.expect("store connects");
    let Bootstrap::Created { org_id: org } = store.bootstrap("hash", "hint").await.unwrap() else {
        panic!("a fresh database bootstraps");
    };
    let now = Timestamp::now();
    let transformation = Transformation {
        id: Uuid::now_v7(),
        org_id: Some(org),
        visibility: "private".into(),
        title: "t".into(),
        description: String::new(),
        data_type: "orders".into(),
        language: "javascript".into(),
        format: "json".into(),
        code: "return record;".into(),
        copied_from: None,
        created_at: now,
        updated_at: now,
    };
    let destination = Destination {
        id: Uuid::now_v7(),
        org_id: org,
        title: "d".into(),
        system: "http".into(),
        function: "post".into(),
        key_id: None,
        mode: "realtime".into(),
        params: Json(json!({})),
        retry: Json(json!({})),
        created_at: now,
        updated_at: now,
    };
    let source = Source {
        id: Uuid::now_v7(),
        org_id: org,
        title: "s".into(),
        system: "http".into(),
        function: "get".into(),
        key_id: None,
        trigger: "scheduled".into(),
        schedule: Some("* * * * *".into()),
        timezone: None,
        params: Json(json!({})),
        webhook_token: None,
        active: true,
        next_run_at: Some(Timestamp::from_datetime(
            now.0 - chrono::Duration::minutes(1),
        )),
        webhook_state: Json(json!({})),
        rejected_count: 0,
        read_state: None,
        read_version: 0,
        created_at: now,
        updated_at: now,
    };
    let stream = Stream {
        id: Uuid::now_v7(),
        org_id: org,
        title: "st".into(),
        data_type: "orders".into(),
        source_id: source.id,
        transformation_id: transformation.id,
        destination_id: destination.id,
        active: true,
        test_mode: false,
        settings: Json(json!({})),
        created_at: now,
        updated_at: now,
    };
    store.insert(&transformation).await.unwrap();
    store.insert(&destination).await.unwrap();
    store.insert(&source).await.unwrap();
    store.insert(&stream).await.unwrap();
    Fixture {
        _env: env,
        store,
        org,
        stream,
        source,
    }
}

impl Fixture {
    fn new_job(&self, trigger: &'static str) -> NewJob {
        NewJob {
            org_id: self.org,
            stream_id: self.stream.id,
            trigger,
            settings: json!({}),
            payload: None,
            original_job_id: None,
            run_at: Timestamp::now(),
        }
    }

    /// A job with `n` NEW events (entities `e0`, `e1`, …); the job and the events' ids.
    async fn job_with_events(&self, n: usize) -> (Uuid, Vec<Uuid>) {
        let events = (0..n)
            .map(|i| NewEvent {
                payload_in: Payload::Value(json!({"n": i})),
                entity_id: Some(format!("e{i}")),
                original_event_id: None,
                origin: None,
            })
            .collect();
        let (job, ids) = self
            .store
            .create_job_with_events(self.new_job("upload"), "orders", events)
            .await
            .unwrap();
        (job.id, ids)
    }

    /// A job with `n` events transformed and waiting for a combined delivery (no attempt due);
    /// the delivery itself not made due yet. Its id.
    async fn waiting_aggregate(&self, n: usize) -> Uuid {
        let (job, _) = self.job_with_events(n).await;
        let token = Uuid::now_v7();
        for ev in self.store.claim_events(token, 10, lease()).await.unwrap() {
            // Aggregates wait with no attempt due.
            let change = EventChange {
                next_attempt_at: Some(None),
                release: true,
                ..step(Some(EventStatus::Transformed), true)
            };
            assert!(self
                .store
                .change_event(&ev, token, change, None)
                .await
                .unwrap());
        }
        job
    }

    async fn event(&self, id: Uuid) -> Event {
        self.store.get::<Event>(self.org, id).await.unwrap()
    }

    async fn job_status(&self, id: Uuid) -> JobStatus {
        self.store.jobs_by_id(&[id]).await.unwrap()[0].status
    }
}

fn lease() -> chrono::Duration {
    chrono::Duration::seconds(60)
}

/// An event delivered: OK with an output, its attempt counted, its claim released.
fn delivered() -> EventChange {
    EventChange {
        to: Some(EventStatus::Ok),
        payload_out: Some(json!({"out": true})),
        attempted: true,
        release: true,
        ..Default::default()
    }
}

/// A successful delivery attempt to the fixture's destination, answered 200 (`name`: the
/// status's name, if the answer gave one).
fn success(f: &Fixture, name: Option<&str>) -> NewAttempt {
    NewAttempt {
        id: Uuid::now_v7(),
        destination_id: f.stream.destination_id,
        started_at: Timestamp::now(),
        finished_at: Timestamp::now(),
        outcome: "SUCCESS",
        error_code: None,
        http_status: Some(200),
        http_status_name: name.map(str::to_string),
        response_excerpt: None,
        duration_ms: 1,
    }
}

/// A change that keeps the claim, so the event stays held under the token afterwards.
fn step(to: Option<EventStatus>, output: bool) -> EventChange {
    EventChange {
        to,
        payload_out: output.then(|| json!({"out": true})),
        release: false,
        ..Default::default()
    }
}

/// Events, jobs and delivery attempts carry their organisation, stream and job without foreign
/// keys of their own (only the attempt's event and destination, the event's job and the job's
/// stream): deleting a stream still deletes its jobs, their events and their attempts, and
/// leaves other streams' alone.
async fn deleting_a_stream_deletes_its_jobs_events_and_attempts(db: Db) {
    let f = fixture(db).await;
    let other = Stream {
        id: Uuid::now_v7(),
        title: "other".into(),
        ..f.stream.clone()
    };
    f.store.insert(&other).await.unwrap();
    let (job, ids) = f.job_with_events(2).await;
    let kept = f
        .store
        .create_job_with_events(
            NewJob {
                stream_id: other.id,
                ..f.new_job("upload")
            },
            "orders",
            vec![NewEvent {
                payload_in: Payload::Value(json!({"kept": true})),
                entity_id: None,
                original_event_id: None,
                origin: None,
            }],
        )
        .await
        .unwrap();
    let token = Uuid::now_v7();
    let held = f.store.claim_events(token, 10, lease()).await.unwrap();
    let mine = held.iter().find(|e| e.id == ids[0]).unwrap();
    let attempt = success(&f, Some("OK"));
    let attempt_id = attempt.id;
    assert!(f
        .store
        .change_event(
            mine,
            token,
            step(Some(EventStatus::Transformed), true),
            None
        )
        .await
        .unwrap());
    let transformed = f.event(ids[0]).await;
    assert!(f
        .store
        .change_event(
            &transformed,
            token,
            step(Some(EventStatus::Ok), false),
            Some(attempt)
        )
        .await
        .unwrap());
    f.store.get::<Attempt>(f.org, attempt_id).await.unwrap();

    f.store.delete::<Stream>(f.org, f.stream.id).await.unwrap();
    assert!(f.store.get::<Job>(f.org, job).await.is_err());
    assert!(f.store.events_by_id(f.org, &ids).await.unwrap().is_empty());
    assert!(f.store.get::<Attempt>(f.org, attempt_id).await.is_err());
    f.store.get::<Job>(f.org, kept.0.id).await.unwrap();
    assert_eq!(f.store.events_by_id(f.org, &kept.1).await.unwrap().len(), 1);
}

both_stores!(
    deleting_a_stream_deletes_its_jobs_events_and_attempts,
    jobs_are_claimed_once_under_a_lease_and_completed_only_by_their_claimer,
    events_are_claimed_once_and_changed_only_under_their_token,
    a_claim_leaves_out_the_streams_it_is_told_to,
    lost_leases_are_rescued_and_released_claims_are_claimable,
    work_in_hand_is_renewed_and_a_late_outcome_is_recorded_once,
    a_process_never_claims_again_the_runs_it_holds,
    every_allowed_event_step_changes_its_event_and_is_logged_in_order,
    a_step_the_domain_does_not_allow_changes_no_event,
    a_step_from_a_status_the_event_has_left_changes_nothing,
    a_step_the_domain_does_not_allow_changes_no_job,
    a_generic_update_cannot_write_a_status,
    aborts_end_only_open_events,
    a_schedule_fires_each_run_once,
    a_repeated_delivery_is_a_duplicate_until_its_receipt_is_purged,
    pushes_committed_with_a_repeated_delivery_are_each_stored_once,
    a_push_the_database_refuses_fails_alone,
    an_aggregate_delivery_ends_every_member,
    the_sweep_finishes_jobs_left_running_and_readies_waiting_aggregates,
    a_follower_sees_each_entry_of_many_writers_once_in_commit_order,
    pushed_events_are_handed_over_claimed_up_to_the_capacity,
    handed_events_are_freed_by_their_lease_or_their_token,
    events_beyond_the_handoff_are_spilled_claimed_and_read_back_by_id,
    received_records_are_handed_over_as_values,
    an_entity_takes_the_outcome_of_its_newest_finished_event,
    a_source_s_read_state_is_stored_with_its_events_by_one_run_only,
    changes_committed_together_each_answer_for_their_own_event,
);

/// Many workers' changes at once commit together (on Postgres, the changes of one shape in one
/// statement): each answers for its own event. Deliveries of held events succeed and are
/// logged; a change under a claim the worker does not hold changes nothing, nor a change the
/// event has already made; the job finishes with its last event.
async fn changes_committed_together_each_answer_for_their_own_event(db: Db) {
    let f = std::sync::Arc::new(fixture(db).await);
    let (job, _) = f.job_with_events(12).await;
    let token = Uuid::now_v7();
    let held = f.store.claim_events(token, 20, lease()).await.unwrap();
    assert_eq!(held.len(), 12);
    let mut calls = Vec::new();
    for (i, ev) in held.iter().enumerate() {
        let (f, ev) = (f.clone(), ev.clone());
        let change = delivered();
        calls.push(tokio::spawn(async move {
            match i {
                // Under a claim this worker does not hold.
                0 => {
                    let other = Uuid::now_v7();
                    f.store.change_event(&ev, other, change, None).await
                }
                // Transformed only, keeping the claim; then failed below.
                1 => {
                    f.store
                        .change_event(&ev, token, step(Some(EventStatus::Transformed), true), None)
                        .await
                }
                _ => {
                    let attempt = success(&f, None);
                    f.store
                        .change_event(&ev, token, change, Some(attempt))
                        .await
                }
            }
        }));
    }
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap().unwrap());
    }
    assert!(!answers[0], "not held under that token");
    assert!(answers[1..].iter().all(|a| *a), "{answers:?}");
    // The same change again, now that the events are OK: nothing to change.
    let again = f
        .store
        .change_event(&held[2], token, delivered(), None)
        .await
        .unwrap();
    assert!(!again);
    for ev in &held[2..] {
        let now = f.event(ev.id).await;
        assert_eq!(now.status, EventStatus::Ok);
        assert_eq!(now.attempt_count, 1);
        assert!(now.payload_out.is_some());
    }
    assert_eq!(f.event(held[0].id).await.status, EventStatus::New);
    let transformed = f.event(held[1].id).await;
    assert_eq!(transformed.status, EventStatus::Transformed);
    // The first event's claim and the second's: both end, the job with them.
    let (first, second) = (f.event(held[0].id).await, transformed);
    let end = |to| EventChange {
        to: Some(to),
        release: true,
        ..Default::default()
    };
    let (a, b) = tokio::join!(
        f.store
            .change_event(&first, token, end(EventStatus::Error), None),
        f.store
            .change_event(&second, token, end(EventStatus::Failed), None)
    );
    assert!(a.unwrap() && b.unwrap());
    assert_eq!(f.job_status(job).await, JobStatus::FinishedWithIssues);
    let log = f
        .store
        .event_log(f.org, LogPosition::default(), 1000)
        .await
        .unwrap();
    let to = |id: Uuid| -> Vec<String> {
        log.iter()
            .filter(|e| e.event_id == Some(id))
            .map(|e| e.to_status.clone())
            .collect()
    };
    for ev in &held[2..] {
        assert_eq!(to(ev.id), ["NEW", "TRANSFORMED", "OK"], "{:?}", ev.id);
    }
    assert_eq!(to(held[1].id), ["NEW", "TRANSFORMED", "FAILED"]);
    assert_eq!(to(held[0].id), ["NEW", "ERROR"]);
}

/// A record a source read: `{"sku": sku}`, its entity `sku`.
fn read_record(sku: &str) -> NewEvent {
    NewEvent {
        payload_in: Payload::Value(json!({"sku": sku})),
        entity_id: Some(sku.into()),
        original_event_id: None,
        origin: None,
    }
}

/// Two runs of one file source read the same files: only the first to store its events
/// stores them, with the source's new state; the other stores nothing.
async fn a_source_s_read_state_is_stored_with_its_events_by_one_run_only(db: Db) {
    let f = fixture(db).await;
    f.store.create_job(f.new_job("manual")).await.unwrap();
    f.store.create_job(f.new_job("manual")).await.unwrap();
    let token = Uuid::now_v7();
    let claimed = f
        .store
        .claim_jobs("w1", token, 10, lease(), &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let (first, second) = (&claimed[0], &claimed[1]);
    let events = || vec![read_record("A-1")];
    // Both runs started from the source as stored (version 0).
    let read = |state: serde_json::Value| SourceRead {
        cursor: Some(SourceCursor {
            source_id: f.source.id,
            version: 0,
            state,
        }),
        summary: Some(json!({"files": [{"name": "a.csv", "records": 1}]})),
    };
    let stored = f
        .store
        .complete_source_read(
            &claimed[0],
            token,
            "orders",
            events(),
            read(json!({"read": {"a.csv": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(stored, Completion::Stored);
    let stale = f
        .store
        .complete_source_read(
            &claimed[1],
            token,
            "orders",
            events(),
            read(json!({"read": {}})),
        )
        .await
        .unwrap();
    assert_eq!(stale, Completion::Stale);
    assert_eq!(f.store.job_payloads(first.id).await.unwrap().len(), 1);
    assert!(
        f.store.job_payloads(second.id).await.unwrap().is_empty(),
        "the second run stored nothing"
    );
    let source: Source = f.store.get(f.org, f.source.id).await.unwrap();
    assert_eq!(source.read_version, 1);
    assert_eq!(source.read_state.unwrap().0, json!({"read": {"a.csv": 1}}));
    let job: wharf::store::Job = f.store.get(f.org, first.id).await.unwrap();
    assert_eq!(job.settings.0["source"]["files"][0]["name"], "a.csv");
}

/// How many events a fresh worker claims now (at most 10).
async fn claim_now(f: &Fixture) -> usize {
    f.store
        .claim_events(Uuid::now_v7(), 10, lease())
        .await
        .unwrap()
        .len()
}

async fn jobs_are_claimed_once_under_a_lease_and_completed_only_by_their_claimer(db: Db) {
    let f = fixture(db).await;
    let job = f.store.create_job(f.new_job("manual")).await.unwrap();
    assert_eq!(job.status, JobStatus::Pending);
    let token = Uuid::now_v7();
    let claimed = f
        .store
        .claim_jobs("w1", token, 10, lease(), &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].status, JobStatus::Processing);
    assert_eq!(claimed[0].claim_token, Some(token));
    assert!(f
        .store
        .claim_jobs("w2", Uuid::now_v7(), 10, lease(), &[])
        .await
        .unwrap()
        .is_empty());

    let events = vec![NewEvent {
        // Stored as the sender wrote it, read back as the value it holds.
        payload_in: Payload::Received(JsonText::received("{ \"a\" :  1 }")),
        entity_id: None,
        original_event_id: None,
        origin: None,
    }];
    let other = Uuid::now_v7();
    assert!(!f
        .store
        .complete_source(&claimed[0], other, "orders", events.clone())
        .await
        .unwrap());
    assert!(f.store.job_payloads(job.id).await.unwrap().is_empty());
    assert!(f
        .store
        .complete_source(&claimed[0], token, "orders", events)
        .await
        .unwrap());
    let payloads = f.store.job_payloads(job.id).await.unwrap();
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].1, json!({"a": 1}));
    assert_eq!(
        f.store.job_counts(job.id).await.unwrap(),
        vec![(EventStatus::New, 1)]
    );
}

async fn a_claim_leaves_out_the_streams_it_is_told_to(db: Db) {
    // Workers leave out the streams whose destination has its share of them in flight.
    let f = fixture(db).await;
    let (_, ids) = f.job_with_events(3).await;
    let skip: Vec<Uuid> = vec![Uuid::now_v7(), f.stream.id];
    assert!(f
        .store
        .claim_events_except(Uuid::now_v7(), 10, lease(), &skip)
        .await
        .unwrap()
        .is_empty());
    let token = Uuid::now_v7();
    let claimed = f
        .store
        .claim_events_except(token, 2, lease(), &[Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|e| ids.contains(&e.id)));
    // What a worker claimed and could not start yet, it gives back.
    f.store
        .release_events(token, &[claimed[0].id])
        .await
        .unwrap();
    let again = f
        .store
        .claim_events(Uuid::now_v7(), 10, lease())
        .await
        .unwrap();
    let mut got: Vec<Uuid> = again.iter().map(|e| e.id).collect();
    got.sort();
    let mut want = vec![claimed[0].id];
    want.extend(
        ids.iter()
            .filter(|id| !claimed.iter().any(|c| c.id == **id)),
    );
    want.sort();
    assert_eq!(got, want);
}

async fn events_are_claimed_once_and_changed_only_under_their_token(db: Db) {
    let f = fixture(db).await;
    let (job, ids) = f.job_with_events(2).await;
    let token = Uuid::now_v7();
    let claimed = f.store.claim_events(token, 10, lease()).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(f
        .store
        .claim_events(Uuid::now_v7(), 10, lease())
        .await
        .unwrap()
        .is_empty());
    let found = f
        .store
        .events_by_id(f.org, &[ids[0], ids[1], ids[0]])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert!(f
        .store
        .events_by_id(Uuid::now_v7(), &ids)
        .await
        .unwrap()
        .is_empty());

    let ev = &claimed[0];
    let change = EventChange {
        release: true,
        ..step(Some(EventStatus::Transformed), true)
    };
    assert!(!f
        .store
        .change_event(ev, Uuid::now_v7(), change.clone(), None)
        .await
        .unwrap());
    assert_eq!(f.event(ev.id).await.status, EventStatus::New);
    assert!(f.store.change_event(ev, token, change, None).await.unwrap());
    let after = f.event(ev.id).await;
    assert_eq!(after.status, EventStatus::Transformed);
    assert_eq!(after.claim_token, None);
    assert_eq!(f.job_status(job).await, JobStatus::Processing);
}

async fn lost_leases_are_rescued_and_released_claims_are_claimable(db: Db) {
    let f = fixture(db).await;
    f.job_with_events(1).await;
    let expired = chrono::Duration::seconds(-1);
    assert_eq!(
        f.store
            .claim_events(Uuid::now_v7(), 10, expired)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(f.store.rescue_events().await.unwrap(), 1);
    let token = Uuid::now_v7();
    assert_eq!(
        f.store
            .claim_events(token, 10, lease())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        f.store.rescue_events().await.unwrap(),
        0,
        "a live lease is not rescued"
    );
    f.store.release_claims(&[token]).await.unwrap();
    assert_eq!(claim_now(&f).await, 1);

    // A job's source whose claim was released is claimable again at once.
    f.store.create_job(f.new_job("manual")).await.unwrap();
    let token = Uuid::now_v7();
    assert_eq!(
        f.store
            .claim_jobs("w", token, 10, lease(), &[])
            .await
            .unwrap()
            .len(),
        1
    );
    f.store.release_claims(&[token]).await.unwrap();
    let again = f
        .store
        .claim_jobs("w", Uuid::now_v7(), 10, lease(), &[])
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

/// The heartbeat renews the leases of what a worker has in hand, and only those; a restarted
/// single-process store frees every claim; a delivery's outcome stored late (its first commit
/// failed) applies to an event no one holds, never to one another worker claimed since, and
/// its attempt is recorded once however often it is stored.
async fn a_process_never_claims_again_the_runs_it_holds(db: Db) {
    let f = fixture(db).await;
    let expired = chrono::Duration::seconds(-1);
    f.store.create_job(f.new_job("manual")).await.unwrap();
    f.store.create_job(f.new_job("manual")).await.unwrap();
    // Two runs whose leases have run out while their process still runs them.
    let mut held: Vec<Uuid> = f
        .store
        .claim_jobs("w1", Uuid::now_v7(), 10, expired, &[])
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    held.sort();
    assert_eq!(held.len(), 2);
    assert!(f
        .store
        .claim_jobs("w1", Uuid::now_v7(), 10, lease(), &held)
        .await
        .unwrap()
        .is_empty());
    // Only those it holds are left out: a run it gave up is taken over, by it or another.
    let taken = f
        .store
        .claim_jobs("w1", Uuid::now_v7(), 10, lease(), &held[..1])
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, held[1]);
    assert_eq!(taken[0].attempt, 2);
    let other = f
        .store
        .claim_jobs("w2", Uuid::now_v7(), 10, lease(), &[])
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].id, held[0]);
}

async fn work_in_hand_is_renewed_and_a_late_outcome_is_recorded_once(db: Db) {
    let f = fixture(db).await;
    f.job_with_events(3).await;
    let expired = chrono::Duration::seconds(-1);
    let token = Uuid::now_v7();
    let held = f.store.claim_events(token, 10, expired).await.unwrap();
    assert_eq!(held.len(), 3);
    let ids: Vec<Uuid> = held.iter().map(|e| e.id).collect();
    assert!(
        f.store.still_held(token, &ids).await.unwrap().is_empty(),
        "a lease that ran out is not held, even before the rescue"
    );
    // What a rescue now would take from the holder of `token`, and from no one else.
    let mut lost = f
        .store
        .expired_claims(&[Uuid::now_v7(), token], Timestamp::now())
        .await
        .unwrap();
    lost.sort();
    let mut all: Vec<(Uuid, Uuid)> = ids.iter().map(|id| (*id, token)).collect();
    all.sort();
    assert_eq!(lost, all);
    assert!(f
        .store
        .expired_claims(&[Uuid::now_v7()], Timestamp::now())
        .await
        .unwrap()
        .is_empty());
    // Renewed: the two in hand under their token; not one named with another token, nor
    // the one not named.
    let in_hand = [
        (ids[0], token, false),
        (ids[1], token, false),
        (ids[2], Uuid::now_v7(), false),
    ];
    assert_eq!(f.store.renew_leases(&in_hand, lease()).await.unwrap(), 2);
    let renewed = f.event(ids[0]).await.lease_expires_at.unwrap();
    assert!(renewed.0 > Timestamp::now().0 + chrono::Duration::seconds(50));
    assert_eq!(
        f.store.renew_leases(&in_hand, lease()).await.unwrap(),
        0,
        "a lease far from its end is not written again"
    );
    assert_eq!(
        f.store
            .expired_claims(&[token], Timestamp::now())
            .await
            .unwrap(),
        vec![(ids[2], token)],
        "a renewed lease has not run out"
    );
    let still: std::collections::HashSet<Uuid> = ids[..2].iter().copied().collect();
    assert_eq!(f.store.still_held(token, &ids).await.unwrap(), still);
    assert_eq!(f.store.rescue_events().await.unwrap(), 1, "only the third");

    // The third's worker stored its delivery late: its claim was rescued and no one holds
    // the event, so the outcome applies and the attempt is recorded, once.
    let third = f.event(ids[2]).await;
    let attempt = success(&f, Some("OK"));
    let delivered = EventChange {
        attempted: true,
        release: true,
        ..step(Some(EventStatus::Ok), true)
    };
    assert!(
        !f.store
            .change_event(&third, token, delivered.clone(), None)
            .await
            .unwrap(),
        "an outcome under a lost claim changes nothing"
    );
    let late = EventChange {
        or_unclaimed: true,
        ..delivered
    };
    assert!(f
        .store
        .change_event(&third, token, late.clone(), Some(attempt.clone()))
        .await
        .unwrap());
    assert_eq!(f.event(ids[2]).await.status, EventStatus::Ok);
    assert!(!f
        .store
        .change_event(&third, token, late.clone(), Some(attempt.clone()))
        .await
        .unwrap());
    let recorded = f.store.get::<Attempt>(f.org, attempt.id).await.unwrap();
    assert_eq!(recorded.event_id, ids[2]);
    assert_eq!(f.event(ids[2]).await.attempt_count, 1, "recorded once");

    // An event another worker claimed since is left to it.
    f.store.release_claims(&[token]).await.unwrap();
    let other = Uuid::now_v7();
    assert_eq!(
        f.store
            .claim_events(other, 10, lease())
            .await
            .unwrap()
            .len(),
        2
    );
    let first = f.event(ids[0]).await;
    assert!(!f
        .store
        .change_event(&first, token, late, None)
        .await
        .unwrap());
    assert_eq!(f.event(ids[0]).await.status, EventStatus::New);
    assert!(f
        .store
        .still_held(other, &ids)
        .await
        .unwrap()
        .contains(&ids[0]));

    // A job's run in hand is renewed too; once freed, another worker claims it.
    f.store.create_job(f.new_job("manual")).await.unwrap();
    let runner = Uuid::now_v7();
    let job = f
        .store
        .claim_jobs("w1", runner, 10, expired, &[])
        .await
        .unwrap();
    assert_eq!(job.len(), 1);
    // Its lease has run out, but the process running it never claims it again.
    assert!(
        f.store
            .claim_jobs("w1", Uuid::now_v7(), 10, lease(), &[job[0].id])
            .await
            .unwrap()
            .is_empty(),
        "a run in hand is not claimed again by its own process"
    );
    assert_eq!(
        f.store
            .renew_leases(&[(job[0].id, runner, true)], lease())
            .await
            .unwrap(),
        1
    );
    assert!(
        f.store
            .claim_jobs("w2", Uuid::now_v7(), 10, lease(), &[])
            .await
            .unwrap()
            .is_empty(),
        "a renewed run is not taken over"
    );
    // Everything claimed is freed at once (a restarted process of a one-process store).
    assert_eq!(f.store.release_all_claims().await.unwrap(), (2, 1));
    assert_eq!(claim_now(&f).await, 2);
    let again = f
        .store
        .claim_jobs("w2", Uuid::now_v7(), 10, lease(), &[])
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

async fn every_allowed_event_step_changes_its_event_and_is_logged_in_order(db: Db) {
    let f = fixture(db).await;
    let (job, _) = f.job_with_events(6).await;
    let token = Uuid::now_v7();
    let held = f.store.claim_events(token, 10, lease()).await.unwrap();
    let due = Some(Some(Timestamp::now()));
    // From NEW: every step a worker makes.
    let firsts = [
        (
            Some(EventStatus::Transformed),
            true,
            EventStatus::Transformed,
        ),
        (None, true, EventStatus::Transformed),
        (Some(EventStatus::Ok), true, EventStatus::Ok),
        (Some(EventStatus::Failed), true, EventStatus::Failed),
        (Some(EventStatus::Error), false, EventStatus::Error),
        (Some(EventStatus::Aborted), false, EventStatus::Aborted),
    ];
    for (ev, (to, output, expect)) in held.iter().zip(firsts) {
        let change = EventChange {
            next_attempt_at: due,
            ..step(to, output)
        };
        assert!(
            f.store.change_event(ev, token, change, None).await.unwrap(),
            "{to:?}"
        );
        assert_eq!(f.event(ev.id).await.status, expect);
    }
    // From TRANSFORMED: a retry keeps it, delivery ends it.
    let transformed = f.event(held[0].id).await;
    assert!(f
        .store
        .change_event(&transformed, token, step(None, false), None)
        .await
        .unwrap());
    assert_eq!(f.event(held[0].id).await.status, EventStatus::Transformed);
    let attempt = success(&f, Some("OK"));
    let deliver = step(Some(EventStatus::Ok), false);
    assert!(f
        .store
        .change_event(&transformed, token, deliver, Some(attempt))
        .await
        .unwrap());
    let other = f.event(held[1].id).await;
    assert!(f
        .store
        .change_event(&other, token, step(Some(EventStatus::Failed), false), None)
        .await
        .unwrap());
    assert_eq!(
        f.store.finish_job(job).await.unwrap(),
        None,
        "already finished with its last event"
    );
    assert_eq!(f.job_status(job).await, JobStatus::FinishedWithIssues);

    // The log holds every hop, composite steps through TRANSFORMED, in commit order.
    let log = f
        .store
        .event_log(f.org, LogPosition::default(), 1000)
        .await
        .unwrap();
    let hops = |id: Uuid| -> Vec<(Option<String>, String)> {
        log.iter()
            .filter(|e| e.event_id == Some(id))
            .map(|e| (e.from_status.clone(), e.to_status.clone()))
            .collect()
    };
    let s = |v: &str| v.to_string();
    assert_eq!(
        hops(held[0].id),
        vec![
            (None, s("NEW")),
            (Some(s("NEW")), s("TRANSFORMED")),
            (Some(s("TRANSFORMED")), s("OK")),
        ]
    );
    assert_eq!(
        hops(held[2].id),
        vec![
            (None, s("NEW")),
            (Some(s("NEW")), s("TRANSFORMED")),
            (Some(s("TRANSFORMED")), s("OK")),
        ]
    );
    assert_eq!(
        hops(held[4].id),
        vec![(None, s("NEW")), (Some(s("NEW")), s("ERROR"))]
    );
    let seqs: Vec<LogPosition> = log.iter().map(|e| e.position).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "positions rise: {seqs:?}"
    );
    let later = f
        .store
        .event_log(f.org, seqs[seqs.len() - 2], 1000)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
}

/// Puts one event in each status, still held under the token; the events by status.
async fn one_held_event_per_status(f: &Fixture, token: Uuid) -> Vec<(EventStatus, Event)> {
    f.job_with_events(6).await;
    let held = f.store.claim_events(token, 10, lease()).await.unwrap();
    let paths = [
        (EventStatus::New, None),
        (
            EventStatus::Transformed,
            Some(step(Some(EventStatus::Transformed), true)),
        ),
        (EventStatus::Ok, Some(step(Some(EventStatus::Ok), true))),
        (
            EventStatus::Error,
            Some(step(Some(EventStatus::Error), false)),
        ),
        (
            EventStatus::Failed,
            Some(step(Some(EventStatus::Failed), true)),
        ),
        (
            EventStatus::Aborted,
            Some(step(Some(EventStatus::Aborted), false)),
        ),
    ];
    let mut out = Vec::new();
    for (ev, (status, change)) in held.iter().zip(paths) {
        if let Some(change) = change {
            assert!(f.store.change_event(ev, token, change, None).await.unwrap());
        }
        let now = f.event(ev.id).await;
        assert_eq!(now.status, status);
        assert_eq!(now.claim_token, Some(token));
        out.push((status, now));
    }
    out
}

async fn a_step_the_domain_does_not_allow_changes_no_event(db: Db) {
    let f = fixture(db).await;
    let token = Uuid::now_v7();
    let mut refused = 0;
    for (from, ev) in one_held_event_per_status(&f, token).await {
        for to in EventStatus::ALL.map(Some).into_iter().chain([None]) {
            for output in [false, true] {
                if EventStep::between(from, to, output).is_some() {
                    continue;
                }
                let changed = f
                    .store
                    .change_event(&ev, token, step(to, output), None)
                    .await
                    .unwrap();
                assert!(!changed, "{from:?} -> {to:?} (output: {output})");
                let after = f.event(ev.id).await;
                assert_eq!(after.status, from, "{from:?} -> {to:?}");
                assert_eq!(
                    after.payload_out.map(|j| j.0),
                    ev.payload_out.clone().map(|j| j.0)
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 60, "every disallowed step was tried ({refused})");
}

async fn a_step_from_a_status_the_event_has_left_changes_nothing(db: Db) {
    let f = fixture(db).await;
    let token = Uuid::now_v7();
    // A worker's copy says the event is still open; the row says it has ended. The step
    // the copy allows must not apply to the row.
    for (from, ev) in one_held_event_per_status(&f, token).await {
        if !from.is_terminal() {
            continue;
        }
        for stale in [EventStatus::New, EventStatus::Transformed] {
            let copy = Event {
                status: stale,
                ..ev.clone()
            };
            for step_ in EventStep::ALL
                .into_iter()
                .filter(|s| s.from().contains(&stale))
            {
                let to = step_.path().last().copied();
                let output = stale == EventStatus::New
                    && step_ != EventStep::TransformFailed
                    && step_ != EventStep::Abort;
                if EventStep::between(stale, to, output) != Some(step_) {
                    continue;
                }
                let changed = f
                    .store
                    .change_event(&copy, token, step(to, output), None)
                    .await
                    .unwrap();
                assert!(!changed, "{step_:?} applied to a {from:?} event");
                assert_eq!(f.event(ev.id).await.status, from);
            }
        }
    }
}

async fn a_step_the_domain_does_not_allow_changes_no_job(db: Db) {
    let f = fixture(db).await;
    // PENDING: finishing needs a done source; failing needs a claim.
    let pending = f.store.create_job(f.new_job("manual")).await.unwrap();
    assert_eq!(f.store.finish_job(pending.id).await.unwrap(), None);
    assert!(!f
        .store
        .fail_job(&pending, Uuid::now_v7(), "x")
        .await
        .unwrap());
    assert_eq!(f.job_status(pending.id).await, JobStatus::Pending);

    // FINISHED: no step leaves it.
    let (finished, _) = f
        .store
        .create_job_with_events(f.new_job("upload"), "orders", vec![])
        .await
        .unwrap();
    assert_eq!(f.job_status(finished.id).await, JobStatus::Finished);
    assert!(
        !f.store
            .abort(f.org, AbortScope::Job(finished.id), "x")
            .await
            .unwrap()
            .source_ended
    );
    assert!(!f
        .store
        .fail_job(&finished, Uuid::now_v7(), "x")
        .await
        .unwrap());
    assert_eq!(f.store.finish_job(finished.id).await.unwrap(), None);
    assert_eq!(f.job_status(finished.id).await, JobStatus::Finished);

    // FAILED: neither aborted, finished nor claimed again.
    let token = Uuid::now_v7();
    let claimed = f
        .store
        .claim_jobs("w", token, 10, lease(), &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(f
        .store
        .fail_job(&claimed[0], token, "broken")
        .await
        .unwrap());
    assert!(!f.store.fail_job(&claimed[0], token, "again").await.unwrap());
    assert!(
        !f.store
            .abort(f.org, AbortScope::Job(pending.id), "x")
            .await
            .unwrap()
            .source_ended
    );
    assert_eq!(f.store.finish_job(pending.id).await.unwrap(), None);
    assert!(f
        .store
        .claim_jobs("w", Uuid::now_v7(), 10, lease(), &[])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(f.job_status(pending.id).await, JobStatus::Failed);

    // FINISHED_WITH_ISSUES by abort: the source may not store its events afterwards.
    let job = f.store.create_job(f.new_job("manual")).await.unwrap();
    let token = Uuid::now_v7();
    let claimed = f
        .store
        .claim_jobs("w", token, 10, lease(), &[])
        .await
        .unwrap();
    assert!(
        f.store
            .abort(f.org, AbortScope::Job(job.id), "stop")
            .await
            .unwrap()
            .source_ended
    );
    assert!(
        !f.store
            .abort(f.org, AbortScope::Job(job.id), "stop")
            .await
            .unwrap()
            .source_ended
    );
    let events = vec![NewEvent {
        payload_in: Payload::Value(json!({})),
        entity_id: None,
        original_event_id: None,
        origin: None,
    }];
    assert!(!f
        .store
        .complete_source(&claimed[0], token, "orders", events)
        .await
        .unwrap());
    assert!(!f.store.fail_job(&claimed[0], token, "x").await.unwrap());
    assert_eq!(f.job_status(job.id).await, JobStatus::FinishedWithIssues);
}

async fn a_generic_update_cannot_write_a_status(db: Db) {
    let f = fixture(db).await;
    let (job, ids) = f.job_with_events(1).await;
    let mut ev = f.event(ids[0]).await;
    ev.status = EventStatus::Ok;
    ev.message = Some("edited".into());
    f.store.update(f.org, &ev).await.unwrap();
    let after = f.event(ids[0]).await;
    assert_eq!(after.status, EventStatus::New);
    assert_eq!(after.message.as_deref(), Some("edited"));
    let mut j = f.store.jobs_by_id(&[job]).await.unwrap().remove(0);
    j.status = JobStatus::Finished;
    f.store.update(f.org, &j).await.unwrap();
    assert_eq!(f.job_status(job).await, JobStatus::Processing);
}

async fn aborts_end_only_open_events(db: Db) {
    let f = fixture(db).await;
    let token = Uuid::now_v7();
    let events = one_held_event_per_status(&f, token).await;
    let job = events[0].1.job_id;
    let aborted = f
        .store
        .abort(f.org, AbortScope::Job(job), "by hand")
        .await
        .unwrap();
    assert_eq!(aborted.events, 2, "NEW and TRANSFORMED");
    assert!(
        !aborted.source_ended,
        "the job's source had produced its events"
    );
    // Nothing is left open: the job is settled in the abort's own commit.
    assert_eq!(f.job_status(job).await, JobStatus::FinishedWithIssues);
    for (from, ev) in &events {
        let after = f.event(ev.id).await;
        let expect = if from.is_terminal() {
            *from
        } else {
            EventStatus::Aborted
        };
        assert_eq!(after.status, expect);
    }
    // The worker's later completion changes nothing.
    let new = &events[0].1;
    assert!(!f
        .store
        .change_event(new, token, step(Some(EventStatus::Transformed), true), None)
        .await
        .unwrap());
    let again = f
        .store
        .abort(f.org, AbortScope::Event(new.id), "again")
        .await
        .unwrap();
    assert_eq!(again.events, 0);
    assert_eq!(
        f.store.finish_job(job).await.unwrap(),
        None,
        "already settled"
    );
    assert_eq!(f.job_status(job).await, JobStatus::FinishedWithIssues);
    f.store
        .set_event_ignored(f.org, new.id, true)
        .await
        .unwrap();
    assert!(f.event(new.id).await.ignored);
    assert!(f
        .store
        .set_event_ignored(Uuid::now_v7(), new.id, true)
        .await
        .is_err());
}

async fn a_schedule_fires_each_run_once(db: Db) {
    let f = fixture(db).await;
    let due = f.store.due_sources(10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, f.source.id);
    let at = due[0].next_run_at.unwrap();
    let next = Timestamp::from_datetime(Timestamp::now().0 + chrono::Duration::hours(1));
    let fired = f.store.fire_schedule(&due[0], at, next).await.unwrap();
    assert_eq!(fired.len(), 1);
    assert!(f
        .store
        .fire_schedule(&due[0], at, next)
        .await
        .unwrap()
        .is_empty());
    assert!(f.store.due_sources(10).await.unwrap().is_empty());
    let jobs = f.store.jobs_by_id(&fired).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Pending);
    assert_eq!(jobs[0].trigger, "scheduled");
}

async fn a_repeated_delivery_is_a_duplicate_until_its_receipt_is_purged(db: Db) {
    let f = fixture(db).await;
    let push = || {
        vec![IngestJob {
            new: f.new_job("webhook"),
            data_type: "orders".into(),
            events: Some(vec![NewEvent {
                payload_in: Payload::Value(json!({"id": 1})),
                entity_id: Some("1".into()),
                original_event_id: None,
                origin: None,
            }]),
        }]
    };
    let Ingested::Created(first) = f
        .store
        .ingest(f.source.id, Some("d1"), push(), None)
        .await
        .unwrap()
    else {
        panic!("the first delivery is stored");
    };
    assert_eq!(first.len(), 1);
    assert_eq!(
        f.store
            .ingest(f.source.id, Some("d1"), push(), None)
            .await
            .unwrap(),
        Ingested::Duplicate(first[0])
    );
    assert!(matches!(
        f.store
            .ingest(f.source.id, None, push(), None)
            .await
            .unwrap(),
        Ingested::Created(_)
    ));
    let later = Timestamp::from_datetime(Timestamp::now().0 + chrono::Duration::seconds(5));
    assert_eq!(f.store.purge_receipts(later).await.unwrap(), 1);
    assert!(matches!(
        f.store
            .ingest(f.source.id, Some("d1"), push(), None)
            .await
            .unwrap(),
        Ingested::Created(_)
    ));
}

/// Pushes committed together where one repeats a delivery received before: on Postgres a
/// batch is first tried as one statement, which the taken receipt refuses whole, and is then
/// committed the usual way. The repeat is answered as a duplicate of the first delivery; each
/// of the others is stored once, with its event.
async fn pushes_committed_with_a_repeated_delivery_are_each_stored_once(db: Db) {
    let f = std::sync::Arc::new(fixture(db).await);
    let Ingested::Created(first) = f
        .store
        .ingest(f.source.id, Some("d1"), push_of(&f, 1), None)
        .await
        .unwrap()
    else {
        panic!("the first delivery is stored");
    };
    let calls: Vec<_> = ["d1", "d2", "d3", "d4"]
        .into_iter()
        .map(|d| {
            let (f, jobs) = (f.clone(), push_of(&f, 1));
            tokio::spawn(async move { f.store.ingest(f.source.id, Some(d), jobs, None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap().unwrap());
    }
    assert_eq!(answers[0], Ingested::Duplicate(first[0]));
    let mut jobs = first.clone();
    for a in &answers[1..] {
        match a {
            Ingested::Created(ids) => jobs.extend(ids),
            other => panic!("a new delivery is stored: {other:?}"),
        }
    }
    // Every stored job once, each with its one event: nothing lost, nothing twice.
    assert_events_are_of_jobs(&f, jobs.clone()).await;
    assert_eq!(f.store.jobs_by_id(&jobs).await.unwrap().len(), 4);
}

/// Pushes committed together where the database refuses one's data (Postgres cannot keep
/// U+0000 in a job's settings, which are `jsonb`; SQLite can): the batch fails, each push is
/// then committed alone, and only that one fails, as `Invalid` (a 400 to its sender, saying
/// why); each of the others is stored once, with its event.
async fn a_push_the_database_refuses_fails_alone(db: Db) {
    let f = std::sync::Arc::new(fixture(db).await);
    let refused = |n: usize| n == 5 && db == Db::Postgres;
    let calls: Vec<_> = (0..12usize)
        .map(|n| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut jobs = push_of(&f, 1);
                if n == 5 {
                    jobs[0].new.settings = json!({"note": "a\u{0}b"});
                }
                let delivery = format!("d{n}");
                f.store
                    .ingest(f.source.id, Some(&delivery), jobs, None)
                    .await
            })
        })
        .collect();
    let mut jobs = Vec::new();
    for (n, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Err(StoreError::Invalid(why)) if refused(n) => {
                assert!(why.contains("U+0000"), "{why}")
            }
            Ok(Ingested::Created(ids)) if !refused(n) => jobs.extend(ids),
            other => panic!("push {n}: {other:?}"),
        }
    }
    assert_eq!(jobs.len(), if db == Db::Postgres { 11 } else { 12 });
    // Each stored push's event once, nothing of the refused one.
    assert_events_are_of_jobs(&f, jobs).await;
}

/// The events waiting to be claimed are one for each of `jobs` (pushes of one record each):
/// none missing, none twice, none of another job.
async fn assert_events_are_of_jobs(f: &Fixture, mut jobs: Vec<Uuid>) {
    let held = f
        .store
        .claim_events(Uuid::now_v7(), 100, lease())
        .await
        .unwrap();
    let mut of_jobs: Vec<Uuid> = held.iter().map(|e| e.job_id).collect();
    of_jobs.sort();
    jobs.sort();
    assert_eq!(of_jobs, jobs);
}

async fn an_aggregate_delivery_ends_every_member(db: Db) {
    let f = fixture(db).await;
    let job = f.waiting_aggregate(3).await;
    assert!(f.store.mark_aggregate_ready(job).await.unwrap());
    // A combined delivery whose lease ran out while it was sent is not claimed again by the
    // process sending it; any other takes it over.
    let sending = f
        .store
        .claim_aggregates(Uuid::now_v7(), 10, chrono::Duration::seconds(-1), &[])
        .await
        .unwrap();
    assert_eq!(sending.len(), 1);
    assert!(f
        .store
        .claim_aggregates(Uuid::now_v7(), 10, lease(), &[job])
        .await
        .unwrap()
        .is_empty());
    let token = Uuid::now_v7();
    let claimed = f
        .store
        .claim_aggregates(token, 10, lease(), &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let members = f.store.aggregate_members(job).await.unwrap();
    assert_eq!(members.len(), 3);
    let attempt = success(&f, None);
    // A change no step allows from TRANSFORMED ends none of them; the delivery is due again.
    let refused = EventChange {
        to: Some(EventStatus::Error),
        ..Default::default()
    };
    let again = Some(Timestamp::now());
    assert!(f
        .store
        .complete_aggregate(&claimed[0], token, &members, &refused, again, &attempt)
        .await
        .unwrap());
    assert_eq!(f.store.aggregate_members(job).await.unwrap().len(), 3);
    let token = Uuid::now_v7();
    let claimed = f
        .store
        .claim_aggregates(token, 10, lease(), &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let done = EventChange {
        to: Some(EventStatus::Ok),
        ..Default::default()
    };
    assert!(!f
        .store
        .complete_aggregate(&claimed[0], Uuid::now_v7(), &members, &done, None, &attempt)
        .await
        .unwrap());
    assert_eq!(
        f.store.aggregate_members(job).await.unwrap().len(),
        3,
        "only the claimer completes"
    );
    assert!(f
        .store
        .complete_aggregate(&claimed[0], token, &members, &done, None, &attempt)
        .await
        .unwrap());
    for ev in &members {
        assert_eq!(f.event(ev.id).await.status, EventStatus::Ok);
    }
    assert_eq!(
        f.store.finish_job(job).await.unwrap(),
        Some(JobStatus::Finished)
    );
}

async fn the_sweep_finishes_jobs_left_running_and_readies_waiting_aggregates(db: Db) {
    let f = fixture(db).await;
    // A job whose events all ended, left PROCESSING as by a worker that died before finishing it.
    let (left, _) = f.job_with_events(2).await;
    let token = Uuid::now_v7();
    for ev in f.store.claim_events(token, 10, lease()).await.unwrap() {
        let done = step(Some(EventStatus::Ok), true);
        assert!(f.store.change_event(&ev, token, done, None).await.unwrap());
    }
    assert_eq!(f.job_status(left).await, JobStatus::Finished);
    f._env
        .execute_on_store(
            "UPDATE jobs SET status = 'PROCESSING', finished_at = NULL WHERE id = $1",
            left,
        )
        .await;
    // An aggregate job whose events are transformed and wait, its delivery never made due.
    let waiting = f.waiting_aggregate(2).await;
    // A job at work.
    let (busy, _) = f.job_with_events(1).await;

    assert_eq!(f.store.finish_stragglers().await.unwrap(), 1);
    assert_eq!(f.job_status(left).await, JobStatus::Finished);
    assert_eq!(f.job_status(busy).await, JobStatus::Processing);
    assert_eq!(f.job_status(waiting).await, JobStatus::Processing);
    let waiting = &f.store.jobs_by_id(&[waiting]).await.unwrap()[0];
    assert!(waiting.aggregate_next_at.is_some(), "its delivery is due");
    assert_eq!(
        f.store.finish_stragglers().await.unwrap(),
        0,
        "nothing left"
    );
}

/// Many writers store jobs with their events at once while a follower reads the event log on
/// with its cursor: the follower ends with every entry exactly once, in rising positions, each
/// job's entries in the order they were written.
async fn a_follower_sees_each_entry_of_many_writers_once_in_commit_order(db: Db) {
    let f = std::sync::Arc::new(fixture(db).await);
    let (writers, jobs_each) = (8, 25);
    // Each job: PENDING and PROCESSING for the job, NEW for each of its two events.
    let expected = writers * jobs_each * 4;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut jobs = Vec::new();
            for i in 0..jobs_each {
                let events = (0..2)
                    .map(|k| NewEvent {
                        payload_in: Payload::Value(json!({"w": w, "i": i, "k": k})),
                        entity_id: None,
                        original_event_id: None,
                        origin: None,
                    })
                    .collect();
                let (job, _) = f
                    .store
                    .create_job_with_events(f.new_job("upload"), "orders", events)
                    .await
                    .unwrap();
                jobs.push(job.id);
            }
            jobs
        }));
    }
    let follower = {
        let f = f.clone();
        tokio::spawn(async move {
            let mut seen: Vec<wharf::store::LogEntry> = Vec::new();
            let mut cursor = LogPosition::default();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.len() < expected {
                let page = f.store.event_log(f.org, cursor, 7).await.unwrap();
                if let Some(last) = page.last() {
                    cursor = last.position;
                }
                seen.extend(page);
                assert!(std::time::Instant::now() < deadline, "the follower stalled");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            seen
        })
    };
    let mut jobs = Vec::new();
    for t in tasks {
        jobs.extend(t.await.unwrap());
    }
    let seen = follower.await.unwrap();
    assert_eq!(seen.len(), expected);
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "positions rise"
    );
    let rest = f
        .store
        .event_log(f.org, seen[seen.len() - 1].position, 100)
        .await
        .unwrap();
    assert!(rest.is_empty(), "nothing more: {rest:?}");
    let mut keys = std::collections::HashSet::new();
    for e in &seen {
        assert!(
            keys.insert((e.job_id, e.event_id, e.to_status.clone())),
            "seen twice: {e:?}"
        );
    }
    for job in jobs {
        let of_job: Vec<(Option<Uuid>, &str)> = seen
            .iter()
            .filter(|e| e.job_id == Some(job))
            .map(|e| (e.event_id, e.to_status.as_str()))
            .collect();
        assert_eq!(of_job.len(), 4, "{of_job:?}");
        assert_eq!(of_job[0], (None, "PENDING"));
        assert_eq!(of_job[1], (None, "PROCESSING"));
        assert!(of_job[2..]
            .iter()
            .all(|(e, to)| e.is_some() && *to == "NEW"));
    }
}

/// The event log as a follower reads it from the start once every transaction in flight has
/// ended: waits (the cluster's other databases write too) until it holds `n` entries.
async fn log_of(f: &Fixture, n: usize) -> Vec<wharf::store::LogEntry> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = f
            .store
            .event_log(f.org, LogPosition::default(), 100)
            .await
            .unwrap();
        if log.len() >= n || std::time::Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Writes an event-log row of one job change to `to`, as a writer of the store would, in `tx`.
async fn insert_log_entry(tx: &mut sqlx::PgConnection, org: Uuid, to: &str) {
    let entries = json!([{"type": "JOB_STATUS_CHANGE", "to": to}]);
    sqlx::query("INSERT INTO event_log (org_id, entries, created_at) VALUES ($1, $2, now())")
        .bind(org)
        .bind(Json(entries))
        .execute(tx)
        .await
        .unwrap();
}

/// The store reaches a Postgres server on this host without TLS when its URL does not ask for
/// it (the test server offers TLS: psql's and sqlx's default, `prefer`, would take it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_server_on_this_host_is_reached_without_tls() {
    use sqlx::Connection;
    let f = fixture(Db::Postgres).await;
    let url = f._env.pg.as_ref().unwrap().url.clone();
    assert!(!url.contains("sslmode"), "{url}");
    f.store.create_job(f.new_job("upload")).await.unwrap();
    let mut look = sqlx::PgConnection::connect(&url).await.unwrap();
    // The test server offers TLS (else this test could not tell): a connection with sqlx's
    // default takes it.
    let offered: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut look)
            .await
            .unwrap();
    assert!(
        offered,
        "the test's Postgres server must offer TLS (ssl = on)"
    );
    let (store, over_tls): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'wharf' AND a.datname = current_database()",
    )
    .fetch_one(&mut look)
    .await
    .unwrap();
    assert!(store > 0, "the store's connections are listed");
    assert_eq!(over_tls, 0, "{over_tls} of {store} over TLS");
}

/// One row of counters (`sql` answers `int8` columns) from Postgres's statistics views, as of
/// now rather than as of this session's last look.
async fn counters(look: &mut sqlx::PgConnection, sql: &str) -> Vec<i64> {
    use sqlx::Row;
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *look)
        .await
        .unwrap();
    let row = sqlx::query(sql).fetch_one(look).await.unwrap();
    (0..row.len()).map(|i| row.get::<i64, _>(i)).collect()
}

/// A Postgres fixture whose events table keeps the statistics a test gathers (no automatic
/// ANALYZE), a connection to look at the server with, and how long its statistics views may
/// lag (see [`settle_of`]).
async fn with_frozen_statistics() -> (Fixture, sqlx::PgConnection, std::time::Duration) {
    use sqlx::Connection;
    let f = fixture(Db::Postgres).await;
    let url = f._env.pg.as_ref().unwrap().url.clone();
    let mut look = sqlx::PgConnection::connect(&url).await.unwrap();
    let settle = settle_of(&mut look).await;
    sqlx::query("ALTER TABLE events SET (autovacuum_enabled = off)")
        .execute(&mut look)
        .await
        .unwrap();
    (f, look, settle)
}

/// How long the statistics views may lag: Postgres 15 and later have an ended backend's
/// statistics in before it leaves the list of connections; before 15 a collector takes them
/// in, and readers may be given a view up to half a second old.
async fn settle_of(look: &mut sqlx::PgConnection) -> std::time::Duration {
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(look)
        .await
        .unwrap();
    std::time::Duration::from_millis(if version < 150_000 { 600 } else { 20 })
}

/// The counters of `sql` (see [`counters`]) once every connection of the closed store has
/// ended on the server and its backend has handed in its statistics (a backend ends a moment
/// after its client leaves): the same reading twice, `settle` apart.
async fn counters_once_ended(
    look: &mut sqlx::PgConnection,
    settle: std::time::Duration,
    sql: &str,
) -> Vec<i64> {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'wharf'",
    )
    .execute(&mut *look)
    .await
    .unwrap();
    no_wharf_connection_left(look, "the store was closed").await;
    let mut after = counters(look, sql).await;
    for _ in 0..50 {
        tokio::time::sleep(settle).await;
        let now = counters(look, sql).await;
        if now == after {
            break;
        }
        after = now;
    }
    after
}

/// Postgres: the maintenance's look for leases that ran out (every second, on every node)
/// reads the claimed events through their index, never the whole events table, even when the
/// table's statistics were gathered while nearly every event was claimed and say those leases
/// have all run out since: the planner then found a whole-table read cheaper, and in the bench
/// took 50 ms a look at 20,000 events, growing with the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_rescue_reads_only_the_claimed_events() {
    /// Whole reads of the events table, and reads through `events_leased`.
    const READS: &str = "SELECT t.seq_scan, i.idx_scan FROM pg_stat_user_tables t \
         JOIN pg_stat_user_indexes i ON i.relid = t.relid \
         WHERE t.relname = 'events' AND i.indexrelname = 'events_leased'";
    /// Opens a store, runs `look_for` on it, closes it (an ending backend hands in its
    /// statistics): the whole reads of the events table it made, and its reads of the index.
    async fn reads_of(
        f: &Fixture,
        look: &mut sqlx::PgConnection,
        settle: std::time::Duration,
        look_for: Option<(Uuid, Timestamp)>,
    ) -> (i64, i64) {
        let before = counters(look, READS).await;
        let store = Store::connect(&f._env.config()).await.unwrap();
        if let Some((token, later)) = look_for {
            assert_eq!(store.rescue_events_at(later).await.unwrap(), 0);
            assert!(store
                .expired_claims(&[token, Uuid::now_v7()], later)
                .await
                .unwrap()
                .is_empty());
        }
        store.close().await;
        let after = counters_once_ended(look, settle, READS).await;
        (after[0] - before[0], after[1] - before[1])
    }

    let (f, mut look, settle) = with_frozen_statistics().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.extend(f.job_with_events(500).await.1);
    }
    let token = Uuid::now_v7();
    let held = f.store.claim_events(token, 2000, lease()).await.unwrap();
    assert_eq!(held.len(), 2000);
    sqlx::query("ANALYZE events")
        .execute(&mut look)
        .await
        .unwrap();
    f.store.release_events(token, &ids).await.unwrap();
    f.store.close().await;
    counters_once_ended(&mut look, settle, READS).await;

    // An hour later by the rescue's clock, every lease in the statistics has run out: left to
    // itself, the planner reads the whole table.
    let later = Timestamp::from_datetime(Timestamp::now().0 + chrono::Duration::hours(1));
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN UPDATE events SET claim_token = NULL, lease_expires_at = NULL \
         WHERE claim_token IS NOT NULL AND lease_expires_at < '{}'::timestamptz",
        later.0.to_rfc3339()
    ))
    .fetch_all(&mut look)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|step| step.contains("Seq Scan on events")),
        "the statistics do not mislead the planner, so this test proves nothing: {plan:?}"
    );
    let opening = reads_of(&f, &mut look, settle, None).await;
    let rescuing = reads_of(&f, &mut look, settle, Some((token, later))).await;
    assert_eq!(
        rescuing.0,
        opening.0,
        "the rescue read the whole events table ({} times)",
        rescuing.0 - opening.0
    );
    assert!(
        rescuing.1 >= opening.1 + 2,
        "the rescue and the look for expired claims read the claimed events' index \
         ({} reads, {} without them)",
        rescuing.1,
        opening.1
    );
}

/// Closing the store right after a statement closes that statement's connection too: sqlx's
/// `close()` could return while the connection was still on its way back to the pool, which
/// then kept it open (idle, for seconds here: as long as the pool lived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_closing_the_store_right_after_a_statement_leaves_no_connection() {
    use sqlx::Connection;
    let f = fixture(Db::Postgres).await;
    let url = f._env.pg.as_ref().unwrap().url.clone();
    let mut look = sqlx::PgConnection::connect(&url).await.unwrap();
    let (_, ids) = f.job_with_events(3).await;
    let token = Uuid::now_v7();
    assert_eq!(
        f.store.claim_events(token, 3, lease()).await.unwrap().len(),
        3
    );
    f.store.release_events(token, &ids).await.unwrap();
    f.store.close().await;
    no_wharf_connection_left(&mut look, "the store was closed").await;
}

/// SQLite: the same, seen in the database's files. The last connection to a database in WAL
/// mode to close checkpoints and removes the write-ahead log, so `wharf.db-wal` is gone once
/// every connection is closed — and stays while one is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_closing_the_store_right_after_a_statement_leaves_no_connection() {
    let f = fixture(Db::Sqlite).await;
    let wal = f._env.data_path().join("wharf.db-wal");
    let (_, ids) = f.job_with_events(3).await;
    let token = Uuid::now_v7();
    assert_eq!(
        f.store.claim_events(token, 3, lease()).await.unwrap().len(),
        3
    );
    f.store.release_events(token, &ids).await.unwrap();
    assert!(wal.exists(), "the store writes ahead while open");
    f.store.close().await;
    assert!(
        !wal.exists(),
        "a connection was left open after the store was closed (the write-ahead log is still there)"
    );
}

/// The group-commit writers' connections (their own, on Postgres) close with the store, while
/// a handle to it is still held; a write after that fails instead of opening new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_closing_the_store_closes_its_writers_connections() {
    use sqlx::Connection;
    let f = fixture(Db::Postgres).await;
    let url = f._env.pg.as_ref().unwrap().url.clone();
    let mut look = sqlx::PgConnection::connect(&url).await.unwrap();
    let before = wharf_connections(&mut look).await;
    let stored = f
        .store
        .ingest(f.source.id, None, push_of(&f, 1), None)
        .await
        .unwrap();
    assert!(matches!(stored, Ingested::Created(_)), "{stored:?}");
    let writing = wharf_connections(&mut look).await;
    assert!(
        writing > before,
        "the push was committed on a connection of the writers' own ({before} → {writing})"
    );
    f.store.close().await;
    no_wharf_connection_left(&mut look, "the store was closed").await;
    assert!(f
        .store
        .ingest(f.source.id, None, push_of(&f, 1), None)
        .await
        .is_err());
    let after = wharf_connections(&mut look).await;
    assert_eq!(after, 0, "a write after closing opened a connection");
}

/// SQLite: a write that finds another connection holding the write lock waits (the store's
/// busy handler tries again in short steps) and goes through once the lock is given back;
/// with the lock held past the store's acquire timeout (3 s in the tests), it fails instead of
/// waiting on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_write_waits_for_the_write_lock_and_gives_up_after_the_timeout() {
    use sqlx::Connection;
    use std::time::{Duration, Instant};
    let f = fixture(Db::Sqlite).await;
    let path = f._env.data.path().join("wharf.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let store = f.store.clone();
    let job = f.new_job("upload");
    let write = tokio::spawn(async move { store.create_job(job).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !write.is_finished(),
        "the write waits while the lock is held"
    );
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let job = tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("the write goes through once the lock is free")
        .unwrap()
        .expect("the write is stored");
    assert_eq!(f.job_status(job.id).await, JobStatus::Pending);

    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let started = Instant::now();
    let failed = f.store.create_job(f.new_job("upload")).await;
    let waited = started.elapsed();
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        waited >= Duration::from_millis(2_900),
        "gave up after {waited:?}"
    );
    // The lock given back, writes go through again.
    f.store.create_job(f.new_job("upload")).await.unwrap();
}

/// A row that commits late is never behind what a follower has already read: while a writer
/// that began first is open, rows committed after it wait; once it commits, its entry comes
/// first and the follower reads on without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_entry_committed_late_is_never_behind_what_was_read() {
    use sqlx::Connection;
    let f = fixture(Db::Postgres).await;
    let url = f._env.pg.as_ref().unwrap().url.clone();
    let mut slow = sqlx::PgConnection::connect(&url).await.unwrap();
    // A writer that inserted its row first and has not committed yet.
    let mut tx = slow.begin().await.unwrap();
    insert_log_entry(&mut tx, f.org, "PENDING").await;
    // A later writer commits meanwhile: a follower does not read it yet.
    let job = f.store.create_job(f.new_job("upload")).await.unwrap();
    let start = LogPosition::default();
    let first = f.store.event_log(f.org, start, 100).await.unwrap();
    assert!(first.is_empty(), "waits for the open writer: {first:?}");
    // The slow writer commits: its entry comes first, then the later one.
    tx.commit().await.unwrap();
    let all = log_of(&f, 2).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].job_id, None);
    assert_eq!(all[1].job_id, Some(job.id));
    assert!(all[1].position > all[0].position);
    let next = f
        .store
        .event_log(f.org, all[0].position, 100)
        .await
        .unwrap();
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0].job_id, Some(job.id));
    assert!(f
        .store
        .event_log(f.org, all[1].position, 100)
        .await
        .unwrap()
        .is_empty());
}

/// A change written after another transaction committed comes after that transaction's
/// entries, even when its own transaction began first (took its id before the other did):
/// the log keeps cause before effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_entry_written_after_a_commit_comes_after_it() {
    use sqlx::Connection;
    let f = fixture(Db::Postgres).await;
    let url = f._env.pg.as_ref().unwrap().url.clone();
    let mut early = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut tx = early.begin().await.unwrap();
    let _: (String,) = sqlx::query_as("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    // Another transaction, begun later, writes and commits ...
    let job = f.store.create_job(f.new_job("upload")).await.unwrap();
    // ... and then the early one writes its entry, as a change that read that commit would.
    insert_log_entry(&mut tx, f.org, "FAILED").await;
    tx.commit().await.unwrap();
    let all = log_of(&f, 2).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].job_id, Some(job.id));
    assert_eq!(all[1].to_status, "FAILED");
    assert!(all[1].position > all[0].position);
}

/// A push of `n` records (one job, the fixture's stream) under `delivery`.
fn push_of(f: &Fixture, n: usize) -> Vec<IngestJob> {
    vec![IngestJob {
        new: f.new_job("webhook"),
        data_type: "orders".into(),
        events: Some(
            (0..n)
                .map(|i| NewEvent {
                    payload_in: Payload::Value(json!({"id": i})),
                    entity_id: Some(i.to_string()),
                    original_event_id: None,
                    origin: None,
                })
                .collect(),
        ),
    }]
}

async fn pushed_events_are_handed_over_claimed_up_to_the_capacity(db: Db) {
    let f = fixture(db).await;
    let handoff = Handoff::new(3, 0, lease());
    f.store.set_handoff(Some(handoff.clone()));
    let Ingested::Created(jobs) = f
        .store
        .ingest(f.source.id, Some("a"), push_of(&f, 2), None)
        .await
        .unwrap()
    else {
        panic!("the push is stored");
    };
    assert_eq!(handoff.waiting(), 2);
    // Stored claimed under the handoff's token: no other worker claims them.
    assert!(f
        .store
        .claim_events(Uuid::now_v7(), 10, lease())
        .await
        .unwrap()
        .is_empty());
    // Passed over while their stream is left out, they keep their places.
    let skip = std::collections::HashSet::from([f.stream.id]);
    assert!(handoff.take_except(10, &skip).is_empty());
    assert_eq!(handoff.waiting(), 2);
    let handed = handoff.take(10);
    assert_eq!(handed.len(), 2);
    for h in &handed {
        assert_eq!(h.job.id, jobs[0]);
        assert_eq!(h.job.status, JobStatus::Processing);
        assert_eq!(h.event.claim_token, Some(handoff.token()));
        // What the workers get is exactly the stored row.
        assert_eq!(
            format!("{:?}", h.event),
            format!("{:?}", f.event(h.event.id).await)
        );
    }
    let job = f.store.jobs_by_id(&jobs).await.unwrap().remove(0);
    assert_eq!(format!("{:?}", handed[0].job), format!("{job:?}"));
    // Completions name the handoff's token like any claim's (this one keeps the claim).
    let ev = &handed[0].event;
    let change = step(Some(EventStatus::Transformed), true);
    assert!(!f
        .store
        .change_event(ev, Uuid::now_v7(), change.clone(), None)
        .await
        .unwrap());
    assert!(f
        .store
        .change_event(ev, handoff.token(), change, None)
        .await
        .unwrap());
    assert_eq!(f.event(ev.id).await.status, EventStatus::Transformed);

    // A repeated delivery stores nothing and holds no place.
    assert!(matches!(
        f.store
            .ingest(f.source.id, Some("a"), push_of(&f, 1), None)
            .await
            .unwrap(),
        Ingested::Duplicate(_)
    ));
    assert_eq!(handoff.waiting(), 0);
    // Up to the capacity (3), then the store's queue: a push that does not fit is stored
    // unclaimed, for any worker.
    f.store
        .ingest(f.source.id, None, push_of(&f, 3), None)
        .await
        .unwrap();
    assert_eq!(handoff.waiting(), 3);
    f.store
        .ingest(f.source.id, None, push_of(&f, 1), None)
        .await
        .unwrap();
    assert_eq!(handoff.waiting(), 3);
    assert_eq!(claim_now(&f).await, 1);
    // Without a handoff (workers stopped), pushes are stored for any worker.
    f.store.set_handoff(None);
    f.store
        .ingest(f.source.id, None, push_of(&f, 1), None)
        .await
        .unwrap();
    assert_eq!(handoff.waiting(), 3);
    assert_eq!(claim_now(&f).await, 1);
}

/// A pushed record kept as received text is handed to the workers as the value it holds. A
/// text that does not read as a value within the parser's limits (never so from ingest, whose
/// scan reads by the same rules) is stored unclaimed, for any worker, and its place in the
/// handoff is given back. (A worker could not read it either: ingest never stores one.)
async fn received_records_are_handed_over_as_values(db: Db) {
    let f = fixture(db).await;
    let handoff = Handoff::new(2, 0, lease());
    f.store.set_handoff(Some(handoff.clone()));
    let received = |text: &str| {
        vec![IngestJob {
            new: f.new_job("webhook"),
            data_type: "orders".into(),
            events: Some(vec![NewEvent {
                payload_in: Payload::Received(JsonText::received(text)),
                entity_id: None,
                original_event_id: None,
                origin: None,
            }]),
        }]
    };
    f.store
        .ingest(
            f.source.id,
            None,
            received(r#"{"n": 1.50, "a": [1]}"#),
            None,
        )
        .await
        .unwrap();
    let handed = handoff.take(10);
    assert_eq!(handed.len(), 1);
    assert_eq!(
        handed[0].event.payload_in.as_ref().map(|p| &p.0),
        Some(&json!({"n": 1.5, "a": [1]}))
    );

    // Nested past serde_json's limit: both databases keep it, no value can be made of it.
    let deep = "[".repeat(200) + &"]".repeat(200);
    let Ingested::Created(jobs) = f
        .store
        .ingest(f.source.id, None, received(&deep), None)
        .await
        .unwrap()
    else {
        panic!("the push is stored");
    };
    assert_eq!(handoff.waiting(), 0);
    // Its place was given back: the handoff holds its whole capacity again.
    f.store
        .ingest(f.source.id, None, push_of(&f, 2), None)
        .await
        .unwrap();
    assert_eq!(handoff.waiting(), 2);
    assert_eq!(
        f.store.job_counts(jobs[0]).await.unwrap(),
        vec![(EventStatus::New, 1)]
    );
}

async fn handed_events_are_freed_by_their_lease_or_their_token(db: Db) {
    let f = fixture(db).await;
    // The handing process died: the lease runs out and the rescue frees the events.
    let dead = Handoff::new(10, 0, chrono::Duration::seconds(-1));
    f.store.set_handoff(Some(dead.clone()));
    f.store
        .ingest(f.source.id, None, push_of(&f, 2), None)
        .await
        .unwrap();
    assert_eq!(f.store.rescue_events().await.unwrap(), 2);
    assert_eq!(claim_now(&f).await, 2);
    // Shutdown: the handoff closes, forgets what waits, and the token's claims are released.
    let handoff = Handoff::new(10, 0, lease());
    f.store.set_handoff(Some(handoff.clone()));
    f.store
        .ingest(f.source.id, None, push_of(&f, 3), None)
        .await
        .unwrap();
    f.store.set_handoff(None);
    assert_eq!(handoff.close(std::time::Duration::from_secs(1)).await, 3);
    assert_eq!(handoff.waiting(), 0);
    assert!(handoff.take(10).is_empty());
    f.store.release_claims(&[handoff.token()]).await.unwrap();
    assert_eq!(claim_now(&f).await, 3);
    // A closed handoff takes nothing more.
    f.store.set_handoff(Some(handoff.clone()));
    f.store
        .ingest(f.source.id, None, push_of(&f, 1), None)
        .await
        .unwrap();
    assert_eq!(handoff.waiting(), 0);
    assert_eq!(claim_now(&f).await, 1);

    // A worker checks events that waited, and gives back those it will not deliver.
    let open = Handoff::new(10, 0, lease());
    f.store.set_handoff(Some(open.clone()));
    f.store
        .ingest(f.source.id, None, push_of(&f, 2), None)
        .await
        .unwrap();
    let ids: Vec<Uuid> = open.take(10).iter().map(|h| h.event.id).collect();
    assert_eq!(ids.len(), 2);
    let held = f.store.still_held(open.token(), &ids).await.unwrap();
    assert_eq!(held.len(), 2);
    assert!(f
        .store
        .still_held(Uuid::now_v7(), &ids)
        .await
        .unwrap()
        .is_empty());
    f.store
        .release_events(Uuid::now_v7(), &ids[..1])
        .await
        .unwrap();
    assert_eq!(
        f.store.still_held(open.token(), &ids).await.unwrap().len(),
        2
    );
    f.store
        .release_events(open.token(), &ids[..1])
        .await
        .unwrap();
    let held = f.store.still_held(open.token(), &ids).await.unwrap();
    assert_eq!(held.into_iter().collect::<Vec<_>>(), vec![ids[1]]);
    let claimed = f
        .store
        .claim_events(Uuid::now_v7(), 10, lease())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, ids[0]);
    // An aborted event is no longer held.
    f.store
        .abort(f.org, AbortScope::Event(ids[1]), "stop")
        .await
        .unwrap();
    assert!(f
        .store
        .still_held(open.token(), &ids)
        .await
        .unwrap()
        .is_empty());
}

async fn events_beyond_the_handoff_are_spilled_claimed_and_read_back_by_id(db: Db) {
    let f = fixture(db).await;
    let handoff = Handoff::new(2, 3, lease());
    f.store.set_handoff(Some(handoff.clone()));
    let before = Timestamp::now();
    // Two in memory, then two spilled: stored claimed all the same, so no claim finds them.
    for _ in 0..2 {
        f.store
            .ingest(f.source.id, None, push_of(&f, 1), None)
            .await
            .unwrap();
    }
    f.store
        .ingest(f.source.id, None, push_of(&f, 2), None)
        .await
        .unwrap();
    assert_eq!(handoff.waiting(), 4);
    assert_eq!(handoff.spilled(), 2);
    assert!(f
        .store
        .claim_events(Uuid::now_v7(), 10, lease())
        .await
        .unwrap()
        .is_empty());
    // The spill is full for a push of two (one place left): stored unclaimed, for any worker.
    f.store
        .ingest(f.source.id, None, push_of(&f, 2), None)
        .await
        .unwrap();
    assert_eq!(handoff.spilled(), 2);
    assert_eq!(claim_now(&f).await, 2);
    // In order: the queue's events first, then the spilled ids, read back whole.
    let handed = handoff.take(10);
    assert_eq!(handed.len(), 2);
    // While anything is spilled, new events queue behind it, in the spill.
    f.store
        .ingest(f.source.id, None, push_of(&f, 1), None)
        .await
        .unwrap();
    assert_eq!(handoff.spilled(), 3);
    assert!(handoff.take(10).is_empty());
    let skip = std::collections::HashSet::from([f.stream.id]);
    assert!(handoff.take_spilled(10, &skip).is_empty());
    let taken = handoff.take_spilled(10, &Default::default());
    let ids: Vec<Uuid> = taken.iter().map(|h| h.id).collect();
    assert_eq!(ids.len(), 3);
    // Taken but not read back (storage failed): they wait again, first, in order.
    handoff.restore_spilled(taken);
    assert_eq!(handoff.spilled(), 3);
    let again: Vec<Uuid> = handoff
        .take_spilled(10, &Default::default())
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(again, ids);
    assert!(handed.iter().all(|h| h.event.id < ids[0]));
    // Abort one: it is no longer held, and not read back.
    f.store
        .abort(f.org, AbortScope::Event(ids[2]), "stop")
        .await
        .unwrap();
    let read = f.store.held_events(handoff.token(), &ids).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[..2].to_vec()
    );
    for ev in &read {
        assert_eq!(format!("{ev:?}"), format!("{:?}", f.event(ev.id).await));
        assert_eq!(ev.claim_token, Some(handoff.token()));
        // Held for the usual lease at least: a spilled event's lease covers its wait.
        let lease_end = ev.lease_expires_at.unwrap();
        assert!(lease_end.0 >= before.0 + lease(), "{lease_end:?}");
    }
    assert!(f
        .store
        .held_events(Uuid::now_v7(), &ids)
        .await
        .unwrap()
        .is_empty());
    // Now the queue takes pushes again.
    f.store
        .ingest(f.source.id, None, push_of(&f, 1), None)
        .await
        .unwrap();
    assert_eq!((handoff.waiting(), handoff.spilled()), (1, 0));

    // A spilled event whose lease ends soon is among those the heartbeat renews; a process
    // that died leaves it to the rescue.
    let dead = Handoff::new(0, 10, chrono::Duration::seconds(-5));
    f.store.set_handoff(Some(dead.clone()));
    f.store
        .ingest(f.source.id, None, push_of(&f, 2), None)
        .await
        .unwrap();
    assert_eq!(dead.spilled(), 2);
    let (renew, spill_lease) = dead.spill_renewals();
    assert_eq!(renew.len(), 2);
    assert!(dead.waiting_ids().is_empty());
    // Until the store has renewed them, they are asked for again; then no longer.
    assert_eq!(dead.spill_renewals().0.len(), 2);
    dead.spill_renewed(
        &renew,
        Timestamp::from_datetime(Timestamp::now().0 + lease()),
    );
    assert!(dead.spill_renewals().0.is_empty());
    assert!(spill_lease < chrono::Duration::zero());
    assert_eq!(f.store.rescue_events().await.unwrap(), 2);
    assert!(f
        .store
        .held_events(
            dead.token(),
            &dead
                .take_spilled(10, &Default::default())
                .iter()
                .map(|h| h.id)
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap()
        .is_empty());
    assert_eq!(claim_now(&f).await, 2);
}

async fn an_entity_takes_the_outcome_of_its_newest_finished_event(db: Db) {
    let f = fixture(db).await;
    let entities = |f: &Fixture| {
        let store = f.store.clone();
        let org = f.org;
        async move {
            let q = ListQuery {
                filters: vec![],
                after: None,
                limit: 10,
                desc: false,
                sort: None,
            };
            store.list::<Entity>(org, &q).await.unwrap().items
        }
    };
    // Two events about the same entity, the second newer.
    let (_, older) = f.job_with_events(1).await;
    let (_, newer) = f.job_with_events(1).await;
    assert!(
        entities(&f).await.is_empty(),
        "an entity is written when an event about it finishes"
    );
    let token = Uuid::now_v7();
    let held = f.store.claim_events(token, 10, lease()).await.unwrap();
    let by_id = |id: Uuid| held.iter().find(|e| e.id == id).unwrap();
    // Transformed is not an outcome: still nothing.
    assert!(f
        .store
        .change_event(
            by_id(older[0]),
            token,
            step(Some(EventStatus::Transformed), true),
            None
        )
        .await
        .unwrap());
    assert!(entities(&f).await.is_empty());
    let fail = EventChange {
        error_code: Some(Some("INVALID_SCHEMA".into())),
        message: Some(Some("rejected".into())),
        ..step(Some(EventStatus::Failed), true)
    };
    assert!(f
        .store
        .change_event(by_id(newer[0]), token, fail, None)
        .await
        .unwrap());
    let found = entities(&f).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].entity_id, "e0");
    assert_eq!(found[0].last_status, "FAILED");
    assert_eq!(found[0].last_event_id, Some(newer[0]));
    assert_eq!(found[0].last_error_code.as_deref(), Some("INVALID_SCHEMA"));
    // The older event finishing later does not hide the newer one's outcome.
    let older_now = f.event(older[0]).await;
    assert!(f
        .store
        .change_event(&older_now, token, step(Some(EventStatus::Ok), false), None)
        .await
        .unwrap());
    assert_eq!(f.event(older[0]).await.status, EventStatus::Ok);
    let found = entities(&f).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].last_status, "FAILED");
    assert_eq!(found[0].last_event_id, Some(newer[0]));
}

/// Entries of events read through every index but the primary key's. (Not whole reads of the
/// table: the planner prices those from the table's size as it is, not from statistics, and on
/// the small tables of these tests rightly finds one cheaper than 96 lookups by id.)
const EVENT_READS_NOT_BY_ID: &str = "SELECT coalesce(sum(idx_tup_read), 0)::int8 \
     FROM pg_stat_user_indexes WHERE relname = 'events' AND indexrelname <> 'events_pkey'";

/// Statistics of a quiet moment, then a backlog: 200 events delivered and `ANALYZE events`
/// (no event waiting, as far as the planner knows), then 3,000 waiting in six jobs, 96 of them
/// held under `token` (returned); the fixture's store closed, its reads counted in.
async fn quiet_statistics_then_a_backlog(
    f: &Fixture,
    look: &mut sqlx::PgConnection,
    settle: std::time::Duration,
    token: Uuid,
) -> Vec<Event> {
    f.job_with_events(200).await;
    for ev in f.store.claim_events(token, 200, lease()).await.unwrap() {
        let attempt = success(f, None);
        assert!(f
            .store
            .change_event(&ev, token, delivered(), Some(attempt))
            .await
            .unwrap());
    }
    sqlx::query("ANALYZE events")
        .execute(&mut *look)
        .await
        .unwrap();
    for _ in 0..6 {
        f.job_with_events(500).await;
    }
    let held = f.store.claim_events(token, 96, lease()).await.unwrap();
    assert_eq!(held.len(), 96);
    f.store.close().await;
    counters_once_ended(look, settle, EVENT_READS_NOT_BY_ID).await;
    held
}

/// Asserts that `EXPLAIN` of `plain` (the statement written without the status check) has a
/// step containing `step` (the status as an index's way in): the statistics mislead the
/// planner, so that the test around it proves something.
async fn planner_misled(look: &mut sqlx::PgConnection, plain: &str, step: &str) {
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {plain}"))
        .fetch_all(look)
        .await
        .unwrap();
    assert!(
        plan.iter().any(|s| s.contains(step)),
        "the statistics do not mislead the planner, so this test proves nothing: {plan:?}"
    );
}

/// Postgres: a worker's check of which events it still holds (before delivering events handed
/// to it a while ago, and when it reads spilled ones back) reaches them by their ids, never
/// through an index on the status: with statistics gathered at a quiet moment (no event
/// waiting) the planner takes the open statuses as the way in (`events_job`'s second column,
/// read whole) and reads every event's entry for each check, as it did for the completions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_held_checks_read_their_own_events_not_the_backlog() {
    let (f, mut look, settle) = with_frozen_statistics().await;
    let token = Uuid::now_v7();
    let held = quiet_statistics_then_a_backlog(&f, &mut look, settle, token).await;
    let ids: Vec<Uuid> = held.iter().map(|e| e.id).collect();
    // Left to itself, the planner reads every waiting event to find the few held.
    let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let plain = format!(
        "SELECT id FROM events WHERE claim_token IS NOT DISTINCT FROM '{token}' \
         AND lease_expires_at > now() AND status IN ('NEW','TRANSFORMED') \
         AND id = ANY('{{{}}}'::uuid[])",
        list.join(",")
    );
    planner_misled(&mut look, &plain, "Index Cond: (status = ANY").await;

    let before = counters(&mut look, EVENT_READS_NOT_BY_ID).await;
    let store = Store::connect(&f._env.config()).await.unwrap();
    // Several times, as a worker checks: a kept statement may change plans after five runs.
    for _ in 0..8 {
        assert_eq!(store.still_held(token, &ids).await.unwrap().len(), 96);
        assert_eq!(store.held_events(token, &ids).await.unwrap().len(), 96);
    }
    store.close().await;
    let after = counters_once_ended(&mut look, settle, EVENT_READS_NOT_BY_ID).await;
    let events = after[0] - before[0];
    // Sixteen reads through the status would be about 50,000 entries.
    assert!(
        events < 1_000,
        "16 checks of 96 held events read {events} entries of events through an index other \
         than by id"
    );
}

/// Postgres: a batch of event completions reaches its events by their ids, never through an
/// index on the status: with statistics gathered at a quiet moment (no event waiting) the
/// planner took `status = 'NEW'` as the way in and read every waiting event for each batch —
/// in the bench 10–20 ms a statement, 35 a second, growing with the backlog, until an ANALYZE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_completions_read_their_own_events_not_the_backlog() {
    let (f, mut look, settle) = with_frozen_statistics().await;
    let token = Uuid::now_v7();
    let held = quiet_statistics_then_a_backlog(&f, &mut look, settle, token).await;
    // Left to itself, the planner reads every waiting event to find a batch's few.
    let ids: Vec<String> = held[..12].iter().map(|e| e.id.to_string()).collect();
    let plain = format!(
        "UPDATE events SET status = 'OK' FROM unnest('{{{}}}'::uuid[]) AS v(c1) \
         WHERE id = v.c1 AND status IN ('NEW')",
        ids.join(",")
    );
    planner_misled(&mut look, &plain, "Index Cond: (status = 'NEW'::text)").await;

    let before = counters(&mut look, EVENT_READS_NOT_BY_ID).await;
    let store = Store::connect(&f._env.config()).await.unwrap();
    let calls: Vec<_> = held
        .iter()
        .map(|ev| {
            let (store, ev, change) = (store.clone(), ev.clone(), delivered());
            let attempt = success(&f, None);
            tokio::spawn(async move { store.change_event(&ev, token, change, Some(attempt)).await })
        })
        .collect();
    for c in calls {
        assert!(
            c.await.unwrap().unwrap(),
            "each completion changed its event"
        );
    }
    store.close().await;
    let after = counters_once_ended(&mut look, settle, EVENT_READS_NOT_BY_ID).await;
    let events = after[0] - before[0];
    // Each job's finish looks for one open event of its own (a few entries); one read of the
    // backlog through the status would be about 3,000 (the waiting events, the claimed ones
    // among them, and the entries their claims left behind).
    assert!(
        events < 1_000,
        "96 completions read {events} entries of events through an index other than by id"
    );
}
