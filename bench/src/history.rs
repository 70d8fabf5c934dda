//! History already stored before the measured phases (`--prefill N`): N orders as a webhook
//! order leaves them once delivered (a receipt, a FINISHED job, an OK event with its payloads,
//! six event-log entries in a row, the entity, the attempt), spread over the last days, so the bench
//! shows what a database that has been in use costs compared with a fresh one.
//!
//! Rows are written by SQL in chunks, far faster than through the API, and then vacuumed and
//! analysed, as autovacuum would have done by the time that much history had built up.

use std::time::Instant;

use serde_json::Value;
use sqlx::{Connection, Executor};
use uuid::Uuid;

/// Orders per statement.
const CHUNK: u64 = 50_000;

/// Seconds between two historical orders: a million fit in six days, inside the default
/// webhook dedup window (a week), so every receipt is one the server would still hold.
const SPACING_S: f64 = 0.5;

/// Stores `n` historical orders of `stream` on Postgres at `url`.
pub async fn prefill_postgres(
    url: &str,
    stream: Uuid,
    n: u64,
    order: &Value,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let (org, source, destination): (Uuid, Uuid, Uuid) =
        sqlx::query_as("SELECT org_id, source_id, destination_id FROM streams WHERE id = $1")
            .bind(stream)
            .fetch_one(&mut conn)
            .await?;
    // Row `g`'s ids: below every UUIDv7 the server makes, so history sorts before new work.
    let rows = format!(
        "SELECT g, lpad(to_hex(g), 32, '0')::uuid AS id, \
           now() - ($3::bigint - g) * interval '{SPACING_S} seconds' AS t \
         FROM generate_series($1::bigint, $2::bigint) g"
    );
    let statements = [
        format!(
            "INSERT INTO jobs (id, org_id, stream_id, status, trigger, settings, run_at, attempt, \
               source_done_at, created_at, updated_at, started_at, finished_at) \
             SELECT id, $4, $5, 'FINISHED', 'webhook', '{{}}'::jsonb, t, 1, t, t, t, t, \
               t + interval '40 ms' FROM ({rows}) r"
        ),
        format!(
            "INSERT INTO webhook_receipts (source_id, delivery_id, job_id, received_at) \
             SELECT $6, 'history-' || g, id, t FROM ({rows}) r"
        ),
        format!(
            "INSERT INTO events (id, org_id, stream_id, job_id, status, data_type, entity_id, \
               payload_in, payload_out, attempt_count, last_attempt_at, created_at, updated_at) \
             SELECT id, $4, $5, id, 'OK', 'sales_order', g::text, \
               jsonb_set($8::text::jsonb, '{{id}}', to_jsonb(g)), jsonb_set($8::text::jsonb, '{{id}}', to_jsonb(g)), \
               1, t + interval '30 ms', t, t + interval '40 ms' FROM ({rows}) r"
        ),
        format!(
            "INSERT INTO delivery_attempts (id, org_id, event_id, job_id, destination_id, \
               started_at, finished_at, outcome, http_status, http_status_name, duration_ms) \
             SELECT id, $4, id, id, $7, t + interval '25 ms', t + interval '30 ms', 'SUCCESS', \
               200, 'OK', 5 FROM ({rows}) r"
        ),
        format!(
            "INSERT INTO entities (id, org_id, data_type, entity_id, last_status, last_event_id, \
               created_at, updated_at) \
             SELECT id, $4, 'sales_order', g::text, 'OK', id, t, t + interval '40 ms' \
             FROM ({rows}) r"
        ),
        // One row of six entries an order (the server packs its entries by transaction); its
        // place in the log comes with the insert, as the server's rows' do.
        format!(
            "INSERT INTO event_log (org_id, entries, created_at) \
             SELECT $4, jsonb_build_array( \
               jsonb_build_object('type', 'JOB_STATUS_CHANGE', 'stream_id', $5::uuid, 'job_id', id, \
                 'from', NULL, 'to', 'PENDING', 'details', '{{}}'::jsonb), \
               jsonb_build_object('type', 'JOB_STATUS_CHANGE', 'stream_id', $5::uuid, 'job_id', id, \
                 'from', 'PENDING', 'to', 'PROCESSING', 'details', '{{}}'::jsonb), \
               jsonb_build_object('type', 'EVENT_STATUS_CHANGE', 'stream_id', $5::uuid, 'job_id', id, \
                 'event_id', id, 'from', NULL, 'to', 'NEW', 'details', '{{}}'::jsonb), \
               jsonb_build_object('type', 'EVENT_STATUS_CHANGE', 'stream_id', $5::uuid, 'job_id', id, \
                 'event_id', id, 'from', 'NEW', 'to', 'TRANSFORMED', 'details', '{{}}'::jsonb), \
               jsonb_build_object('type', 'EVENT_STATUS_CHANGE', 'stream_id', $5::uuid, 'job_id', id, \
                 'event_id', id, 'from', 'TRANSFORMED', 'to', 'OK', 'details', '{{}}'::jsonb), \
               jsonb_build_object('type', 'JOB_STATUS_CHANGE', 'stream_id', $5::uuid, 'job_id', id, \
                 'from', 'PROCESSING', 'to', 'FINISHED', 'details', '{{}}'::jsonb)), t \
             FROM ({rows}) r ORDER BY g"
        ),
    ];
    let mut first = 1u64;
    while first <= n {
        let last = (first + CHUNK - 1).min(n);
        let mut tx = conn.begin().await?;
        for sql in &statements {
            sqlx::query(sql)
                .bind(first as i64)
                .bind(last as i64)
                .bind(n as i64)
                .bind(org)
                .bind(stream)
                .bind(source)
                .bind(destination)
                .bind(order.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        eprintln!("  prefill: {last} of {n} orders stored");
        first = last + 1;
    }
    conn.execute("VACUUM ANALYZE").await?;
    eprintln!(
        "prefill: {n} orders in {:.0} s (vacuumed and analysed)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
