//! User actions that change several rows do so in one transaction: a step that fails leaves
//! every earlier step undone.

use serde_json::json;
use wharf::store::{AbortScope, Event, Store, Stream};

use crate::common::{Db, Env, Server, OWNER_TOKEN};

/// A stream with two NEW events (no workers run), and a second handle on the same database.
async fn stream_with_open_events(env: &Env) -> (Server, Store, uuid::Uuid, Stream, Vec<String>) {
    let mut config = env.config();
    config.workers.enabled = false;
    let s = Server::start(config.clone()).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Pushes", "system": "http", "function": "http.webhook", "trigger": "webhook"}),
        )
        .await;
    let dest = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send",
            "params": {"url": "http://127.0.0.1:9/"}}),
        )
        .await;
    let stream = s
        .create("/streams", json!({"title": "Pushes", "data_type": "stock", "source_id": source["id"],
            "transformation_id": "01900000-0000-7000-8000-000000000001", "destination_id": dest["id"]}))
        .await;
    let (status, created) = s
        .post(
            "/events",
            json!({"stream_id": stream["id"], "payloads": [{"sku": "A"}, {"sku": "B"}]}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{created}");
    let ids = created["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let store = Store::connect(&config).await.unwrap();
    let org = store
        .authenticate(&wharf::crypto::hash_token(OWNER_TOKEN))
        .await
        .unwrap()
        .unwrap()
        .org_id;
    let id = stream["id"].as_str().unwrap().parse().unwrap();
    let stream = store.get::<Stream>(org, id).await.unwrap();
    (s, store, org, stream, ids)
}

async fn statuses(store: &Store, org: uuid::Uuid, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let ev = store.get::<Event>(org, id.parse().unwrap()).await.unwrap();
        out.push(ev.status.to_string());
    }
    out
}

async fn a_deactivation_that_fails_to_save_aborts_nothing(db: Db) {
    let env = Env::new(db).await;
    let (s, store, org, stream, ids) = stream_with_open_events(&env).await;
    let mut broken = stream.clone();
    broken.active = false;
    // A destination that does not exist: the stream's own change is refused by the database,
    // after the abort of its events has been written in the same transaction.
    broken.destination_id = uuid::Uuid::now_v7();
    let saved = store
        .save_stream(org, &broken, true, "the stream was deactivated")
        .await;
    assert!(saved.is_err(), "the broken change is refused");
    assert_eq!(statuses(&store, org, &ids).await, ["NEW", "NEW"]);
    assert!(store.get::<Stream>(org, stream.id).await.unwrap().active);

    let mut stopped = stream.clone();
    stopped.active = false;
    store
        .save_stream(org, &stopped, true, "the stream was deactivated")
        .await
        .unwrap();
    assert_eq!(statuses(&store, org, &ids).await, ["ABORTED", "ABORTED"]);
    assert!(!store.get::<Stream>(org, stream.id).await.unwrap().active);
    store.close().await;
    s.stop().await;
}

async fn an_abort_settles_its_job_in_the_same_commit(db: Db) {
    let env = Env::new(db).await;
    let (s, store, org, _stream, ids) = stream_with_open_events(&env).await;
    let first = store
        .get::<Event>(org, ids[0].parse().unwrap())
        .await
        .unwrap();
    let one = store
        .abort(org, AbortScope::Event(first.id), "aborted by a user")
        .await
        .unwrap();
    assert_eq!((one.source_ended, one.events), (false, 1));
    let job = store
        .get::<wharf::store::Job>(org, first.job_id)
        .await
        .unwrap();
    assert_eq!(
        job.status.to_string(),
        "PROCESSING",
        "one event is still open"
    );
    let rest = store
        .abort(org, AbortScope::Job(first.job_id), "aborted by a user")
        .await
        .unwrap();
    assert_eq!((rest.source_ended, rest.events), (false, 1));
    // No finishing step after the abort: the job was finished by the abort's own commit.
    let job = store
        .get::<wharf::store::Job>(org, first.job_id)
        .await
        .unwrap();
    assert_eq!(job.status.to_string(), "FINISHED_WITH_ISSUES");
    let again = store
        .abort(org, AbortScope::Job(first.job_id), "aborted by a user")
        .await
        .unwrap();
    assert_eq!((again.source_ended, again.events), (false, 0));
    store.close().await;
    s.stop().await;
}

crate::both_stores!(
    a_deactivation_that_fails_to_save_aborts_nothing,
    an_abort_settles_its_job_in_the_same_commit,
);
