//! The two migration sets define the same schema: the same tables and columns (with matching
//! types and nullability), primary keys, unique constraints, foreign keys (and what a delete
//! does), named indexes (columns, uniqueness, partial or not) and CHECK constraints (by the
//! values they allow). A change made to one backend's migrations only fails here, not in
//! production on the other backend.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sqlx::Row;

use crate::common::PgDatabase;

/// A foreign key: (table, columns, referenced table, referenced columns, on delete).
type ForeignKey = (String, Vec<String>, String, Vec<String>, String);

/// One backend's schema, in a form both backends can be reduced to.
#[derive(Debug, Default, PartialEq)]
struct Schema {
    /// (table, column) → (type class, not null)
    columns: BTreeMap<(String, String), (String, bool)>,
    /// table → primary-key columns in order
    primary_keys: BTreeMap<String, Vec<String>>,
    /// (table, columns) of every UNIQUE constraint
    uniques: BTreeSet<(String, Vec<String>)>,
    foreign_keys: BTreeSet<ForeignKey>,
    /// index name → (table, columns, unique, partial)
    indexes: BTreeMap<String, (String, Vec<String>, bool, bool)>,
    /// table → the sorted string literals of each CHECK constraint
    checks: BTreeMap<String, BTreeSet<Vec<String>>>,
}

/// The class a Postgres column type is stored as in SQLite's twin schema.
fn pg_class(data_type: &str) -> String {
    match data_type {
        "uuid" | "bytea" => "BLOB",
        "text" | "character varying" | "jsonb" | "json" | "timestamp with time zone" => "TEXT",
        "boolean" | "bigint" | "integer" | "smallint" => "INTEGER",
        "double precision" | "real" | "numeric" => "REAL",
        other => panic!("the schema test does not know the Postgres type `{other}`; add it"),
    }
    .to_string()
}

fn sqlite_class(declared: &str) -> String {
    match declared.to_ascii_uppercase().as_str() {
        "BLOB" => "BLOB",
        "TEXT" => "TEXT",
        "INTEGER" | "BIGINT" | "BOOLEAN" => "INTEGER",
        "REAL" | "DOUBLE" => "REAL",
        other => panic!("the schema test does not know the SQLite type `{other}`; add it"),
    }
    .to_string()
}

/// The quoted string literals in a piece of SQL, sorted: what a CHECK constraint allows.
fn literals(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find('\'') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('\'') else { break };
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out.sort();
    out
}

/// The bodies of every `CHECK (...)` in a CREATE TABLE statement.
fn check_clauses(create_table: &str) -> Vec<String> {
    let upper = create_table.to_ascii_uppercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = upper[from..].find("CHECK") {
        let start = from + pos + "CHECK".len();
        let Some(open) = create_table[start..].find('(') else {
            break;
        };
        let open = start + open;
        let mut depth = 0;
        let mut end = open;
        for (i, c) in create_table[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push(create_table[open + 1..end].to_string());
        from = end.max(start);
    }
    out
}

async fn postgres_schema(pool: &sqlx::PgPool) -> Schema {
    let mut s = Schema::default();
    let rows = sqlx::query(
        "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
           AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for r in rows {
        let table: String = r.get(0);
        let column: String = r.get(1);
        let data_type: String = r.get(2);
        let nullable: String = r.get(3);
        s.columns
            .insert((table, column), (pg_class(&data_type), nullable == "NO"));
    }
    // Constraints with their columns in key order.
    let rows = sqlx::query(
        "SELECT con.contype::text, rel.relname::text,
                ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
                      ORDER BY k.o),
                COALESCE(ref.relname::text, ''),
                ARRAY(SELECT a.attname::text FROM unnest(COALESCE(con.confkey, '{}'))
                      WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
                      ORDER BY k.o),
                con.confdeltype::text,
                pg_get_constraintdef(con.oid)
         FROM pg_constraint con
         JOIN pg_class rel ON rel.oid = con.conrelid
         JOIN pg_namespace ns ON ns.oid = rel.relnamespace
         LEFT JOIN pg_class ref ON ref.oid = con.confrelid
         WHERE ns.nspname = 'public' AND rel.relname <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for r in rows {
        let kind: String = r.get(0);
        let table: String = r.get(1);
        let columns: Vec<String> = r.get(2);
        match kind.as_str() {
            "p" => {
                s.primary_keys.insert(table, columns);
            }
            "u" => {
                s.uniques.insert((table, columns));
            }
            "f" => {
                let on_delete = match r.get::<String, _>(5).as_str() {
                    "c" => "CASCADE",
                    "n" => "SET NULL",
                    "d" => "SET DEFAULT",
                    "r" => "RESTRICT",
                    _ => "NO ACTION",
                };
                s.foreign_keys
                    .insert((table, columns, r.get(3), r.get(4), on_delete.into()));
            }
            "c" => {
                let def: String = r.get(6);
                s.checks.entry(table).or_default().insert(literals(&def));
            }
            _ => {}
        }
    }
    // Indexes created by CREATE INDEX (those behind constraints are compared above).
    let rows = sqlx::query(
        "SELECT i.relname::text, t.relname::text,
                ARRAY(SELECT a.attname::text FROM unnest(ix.indkey) WITH ORDINALITY k(n, o)
                      JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.n
                      ORDER BY k.o),
                ix.indisunique, ix.indpred IS NOT NULL
         FROM pg_index ix
         JOIN pg_class i ON i.oid = ix.indexrelid
         JOIN pg_class t ON t.oid = ix.indrelid
         JOIN pg_namespace ns ON ns.oid = t.relnamespace
         WHERE ns.nspname = 'public' AND t.relname <> '_sqlx_migrations'
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for r in rows {
        s.indexes
            .insert(r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4)));
    }
    s
}

async fn sqlite_schema(pool: &sqlx::SqlitePool) -> Schema {
    let mut s = Schema::default();
    let tables = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table'
           AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for t in tables {
        let table: String = t.get(0);
        let sql: String = t.get(1);
        let checks = s.checks.entry(table.clone()).or_default();
        for clause in check_clauses(&sql) {
            checks.insert(literals(&clause));
        }
        if checks.is_empty() {
            s.checks.remove(&table);
        }
        let mut pk: Vec<(i64, String)> = Vec::new();
        for c in sqlx::query(&format!("PRAGMA table_info('{table}')"))
            .fetch_all(pool)
            .await
            .unwrap()
        {
            let name: String = c.get("name");
            let declared: String = c.get("type");
            let not_null: i64 = c.get("notnull");
            let pk_pos: i64 = c.get("pk");
            // A primary key column is NOT NULL in Postgres whatever it says.
            let not_null = not_null == 1 || pk_pos > 0;
            if pk_pos > 0 {
                pk.push((pk_pos, name.clone()));
            }
            s.columns
                .insert((table.clone(), name), (sqlite_class(&declared), not_null));
        }
        pk.sort();
        s.primary_keys
            .insert(table.clone(), pk.into_iter().map(|(_, n)| n).collect());
        let mut fks: BTreeMap<i64, (String, Vec<String>, Vec<String>, String)> = BTreeMap::new();
        for f in sqlx::query(&format!("PRAGMA foreign_key_list('{table}')"))
            .fetch_all(pool)
            .await
            .unwrap()
        {
            let id: i64 = f.get("id");
            let entry = fks
                .entry(id)
                .or_insert_with(|| (f.get("table"), Vec::new(), Vec::new(), f.get("on_delete")));
            entry.1.push(f.get("from"));
            entry.2.push(f.get("to"));
        }
        for (_, (to_table, from, to, on_delete)) in fks {
            s.foreign_keys
                .insert((table.clone(), from, to_table, to, on_delete));
        }
        for i in sqlx::query(&format!("PRAGMA index_list('{table}')"))
            .fetch_all(pool)
            .await
            .unwrap()
        {
            let name: String = i.get("name");
            let unique: i64 = i.get("unique");
            let origin: String = i.get("origin");
            let partial: i64 = i.get("partial");
            let columns: Vec<String> = sqlx::query(&format!("PRAGMA index_info('{name}')"))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|c| c.get("name"))
                .collect();
            match origin.as_str() {
                "u" => {
                    s.uniques.insert((table.clone(), columns));
                }
                "c" => {
                    s.indexes
                        .insert(name, (table.clone(), columns, unique == 1, partial == 1));
                }
                // "pk": the primary key, compared above.
                _ => {}
            }
        }
    }
    s
}

/// Applies one backend's migrations from the source tree, as the server would.
async fn migrator(backend: &str) -> sqlx::migrate::Migrator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    sqlx::migrate::Migrator::new(dir).await.unwrap()
}

/// One backend's migrations before `version`: a database as an older release left it.
async fn migrator_before(backend: &str, version: i64) -> sqlx::migrate::Migrator {
    let mut earlier = migrator(backend).await;
    let all = earlier.migrations.len();
    earlier.migrations = earlier
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    assert!(
        earlier.migrations.len() < all,
        "no migration {version} to leave out"
    );
    earlier
}

fn report<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    pg: &BTreeMap<K, V>,
    lite: &BTreeMap<K, V>,
    out: &mut Vec<String>,
) {
    let keys: BTreeSet<&K> = pg.keys().chain(lite.keys()).collect();
    for k in keys {
        match (pg.get(k), lite.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => out.push(format!("{what} {k:?}: postgres {a:?}, sqlite {b:?}")),
        }
    }
}

fn report_set<T: Ord + std::fmt::Debug>(
    what: &str,
    pg: &BTreeSet<T>,
    lite: &BTreeSet<T>,
    out: &mut Vec<String>,
) {
    for only in pg.difference(lite) {
        out.push(format!("{what} only in postgres: {only:?}"));
    }
    for only in lite.difference(pg) {
        out.push(format!("{what} only in sqlite: {only:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_migration_sets_define_the_same_schema() {
    let pg_db = PgDatabase::create().await;
    let pg = sqlx::PgPool::connect(&pg_db.url).await.unwrap();
    migrator("postgres").await.run(&pg).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let lite = sqlx::SqlitePool::connect(&url).await.unwrap();
    migrator("sqlite").await.run(&lite).await.unwrap();

    let a = postgres_schema(&pg).await;
    let b = sqlite_schema(&lite).await;
    pg.close().await;
    lite.close().await;

    assert!(
        a.primary_keys.len() >= 15,
        "tables read from Postgres: {a:?}"
    );
    assert!(!a.indexes.is_empty() && !a.foreign_keys.is_empty() && !a.checks.is_empty());

    let mut differences = Vec::new();
    report("column", &a.columns, &b.columns, &mut differences);
    report(
        "primary key of",
        &a.primary_keys,
        &b.primary_keys,
        &mut differences,
    );
    report("index", &a.indexes, &b.indexes, &mut differences);
    report("checks of", &a.checks, &b.checks, &mut differences);
    report_set(
        "unique constraint",
        &a.uniques,
        &b.uniques,
        &mut differences,
    );
    report_set(
        "foreign key",
        &a.foreign_keys,
        &b.foreign_keys,
        &mut differences,
    );
    assert!(
        differences.is_empty(),
        "the migration sets disagree:\n{}",
        differences.join("\n")
    );
}

/// A database made by the migrations before 13, with a job, its event and its delivery attempt.
const SEED: &[&str] = &[
    "INSERT INTO organisations (id, name, created_at, updated_at) VALUES (X'01', 'o', 't', 't')",
    "INSERT INTO sources (id, org_id, title, system, function, trigger, params, active, \
     created_at, updated_at) VALUES (X'02', X'01', 's', 'http', 'w', 'webhook', '{}', 1, 't', 't')",
    "INSERT INTO transformations (id, org_id, visibility, title, description, data_type, \
     language, format, code, created_at, updated_at) \
     VALUES (X'03', X'01', 'private', 't', 'd', 'orders', 'javascript', 'json', 'x', 't', 't')",
    "INSERT INTO destinations (id, org_id, title, system, function, mode, params, retry, \
     created_at, updated_at) VALUES (X'04', X'01', 'd', 'http', 'p', 'realtime', '{}', '{}', 't', 't')",
    "INSERT INTO streams (id, org_id, title, data_type, source_id, transformation_id, \
     destination_id, active, test_mode, settings, created_at, updated_at) \
     VALUES (X'05', X'01', 'st', 'orders', X'02', X'03', X'04', 1, 0, '{}', 't', 't')",
    "INSERT INTO jobs (id, org_id, stream_id, status, trigger, message, settings, payload, \
     original_job_id, run_at, attempt, claim_token, claimed_by, lease_expires_at, source_done_at, \
     aggregate_next_at, aggregate_attempts, created_at, updated_at, started_at, finished_at) \
     VALUES (X'06', X'01', X'05', 'FINISHED', 'webhook', 'j-message', '{\"w\":1}', '[1]', X'09', \
     'j-run', 2, X'AA', 'j-worker', 'j-lease', 'j-source-done', 'j-aggregate', 3, 'j-created', \
     'j-updated', 'j-started', 'j-finished')",
    "INSERT INTO events (id, org_id, stream_id, job_id, status, data_type, entity_id, payload_in, \
     payload_out, error_code, message, retries_remaining, next_attempt_at, last_attempt_at, \
     attempt_count, claim_token, lease_expires_at, original_event_id, ignored, created_at, \
     updated_at, transform_logs, origin, destination_ref) VALUES (X'07', X'01', X'05', X'06', \
     'OK', 'orders', 'e-1', '{\"n\": 1.50}', '{\"m\":2}', 'e-code', 'e-message', 4, 'e-next', \
     'e-last', 5, X'BB', 'e-lease', X'0A', 1, 'e-created', 'e-updated', '[\"log\"]', 'file.csv', \
     'ref-9')",
    "INSERT INTO delivery_attempts (id, org_id, event_id, job_id, destination_id, started_at, \
     finished_at, outcome, error_code, http_status, http_status_name, response_excerpt, \
     duration_ms) VALUES (X'08', X'01', X'07', X'06', X'04', 'a-started', 'a-finished', 'SUCCESS', \
     'a-code', 200, 'OK', 'a-excerpt', 12)",
];

/// The tables migration 13 rebuilds on SQLite.
const REBUILT: [&str; 3] = ["jobs", "events", "delivery_attempts"];

/// Each rebuilt table's columns, in their order.
async fn rebuilt_columns(pool: &sqlx::SqlitePool) -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for table in REBUILT {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap();
        out.push((table, columns));
    }
    out
}

/// Every row of the rebuilt tables, each as `column=value` for the columns named.
async fn rebuilt_rows(
    pool: &sqlx::SqlitePool,
    columns: &[(&'static str, Vec<String>)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, columns) in columns {
        let named: Vec<String> = columns
            .iter()
            .map(|c| format!("'{c}=' || quote({c})"))
            .collect();
        let sql = format!(
            "SELECT '{table}: ' || {} FROM {table} ORDER BY id",
            named.join(" || ', ' || ")
        );
        out.extend(
            sqlx::query_scalar::<_, String>(&sql)
                .fetch_all(pool)
                .await
                .unwrap(),
        );
    }
    out
}

/// The rebuilt tables' indexes as SQLite keeps them: name and statement.
async fn rebuilt_indexes(pool: &sqlx::SqlitePool) -> Vec<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' \
         AND tbl_name IN ('jobs', 'events', 'delivery_attempts') ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Migration 13 rebuilds SQLite's jobs, events and delivery attempts to drop foreign keys
/// (SQLite cannot drop a constraint), and 15 delivery attempts again, inside a transaction
/// where foreign keys are enforced and dropping a table first deletes its rows with their
/// cascades. Every row a database held before is still there, value for value, every
/// reference still holds, and the indexes are what they were but the attempts' index on their
/// job, which 15 drops with that key.
#[tokio::test]
async fn sqlite_tables_rebuilt_by_a_migration_keep_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let lite = sqlx::SqlitePool::connect(&url).await.unwrap();
    let all = migrator("sqlite").await;
    migrator_before("sqlite", 13)
        .await
        .run(&lite)
        .await
        .unwrap();
    for sql in SEED {
        sqlx::query(sql).execute(&lite).await.unwrap();
    }
    let columns = rebuilt_columns(&lite).await;
    let before = rebuilt_rows(&lite, &columns).await;
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(
        before.iter().all(|row| !row.contains("=NULL")),
        "every column of the seed is set: {before:?}"
    );
    let indexes = rebuilt_indexes(&lite).await;
    assert_eq!(indexes.len(), 21, "{indexes:?}");

    all.run(&lite).await.unwrap();
    assert_eq!(
        rebuilt_columns(&lite).await,
        columns,
        "the columns, in order"
    );
    assert_eq!(rebuilt_rows(&lite, &columns).await, before);
    let kept: Vec<_> = indexes
        .iter()
        .filter(|(name, _)| name != "attempts_job")
        .cloned()
        .collect();
    assert_eq!(kept.len(), 20, "{indexes:?}");
    assert_eq!(rebuilt_indexes(&lite).await, kept);
    let attempt_keys: Vec<String> = sqlx::query_scalar(
        "SELECT \"from\" FROM pragma_foreign_key_list('delivery_attempts') ORDER BY 1",
    )
    .fetch_all(&lite)
    .await
    .unwrap();
    assert_eq!(attempt_keys, ["destination_id", "event_id"]);
    let broken = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&lite)
        .await
        .unwrap();
    assert!(broken.is_empty(), "{} rows break a reference", broken.len());
    let enforced: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&lite)
        .await
        .unwrap();
    assert_eq!(enforced, 1);
    lite.close().await;
}

/// A Postgres database made by the migrations before 14: a job with records and an event with
/// every payload column set (numbers, nested values, a non-ASCII key), and an event-log row.
/// Stored as `jsonb`, their text was `jsonb`'s: the migration keeps their values.
const PG_SEED: &[&str] = &[
    "INSERT INTO organisations (id, name, created_at, updated_at) \
     VALUES ('00000000-0000-0000-0000-000000000001', 'o', now(), now())",
    "INSERT INTO sources (id, org_id, title, system, function, trigger, params, active, \
     created_at, updated_at) VALUES ('00000000-0000-0000-0000-000000000002', \
     '00000000-0000-0000-0000-000000000001', 's', 'http', 'w', 'webhook', '{}', true, now(), now())",
    "INSERT INTO transformations (id, org_id, visibility, title, description, data_type, \
     language, format, code, created_at, updated_at) \
     VALUES ('00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000001', \
     'private', 't', 'd', 'orders', 'javascript', 'json', 'x', now(), now())",
    "INSERT INTO destinations (id, org_id, title, system, function, mode, params, retry, \
     created_at, updated_at) VALUES ('00000000-0000-0000-0000-000000000004', \
     '00000000-0000-0000-0000-000000000001', 'd', 'http', 'p', 'realtime', '{}', '{}', now(), now())",
    "INSERT INTO streams (id, org_id, title, data_type, source_id, transformation_id, \
     destination_id, active, test_mode, settings, created_at, updated_at) \
     VALUES ('00000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000001', \
     'st', 'orders', '00000000-0000-0000-0000-000000000002', \
     '00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000004', true, \
     false, '{}', now(), now())",
    "INSERT INTO jobs (id, org_id, stream_id, status, trigger, settings, payload, run_at, \
     created_at, updated_at) VALUES ('00000000-0000-0000-0000-000000000006', \
     '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000005', \
     'FINISHED', 'webhook', '{}', '[{\"SaleID\": \"s-1\", \"n\": 2.5}]', now(), now(), now())",
    "INSERT INTO events (id, org_id, stream_id, job_id, status, data_type, payload_in, \
     payload_out, transform_logs, created_at, updated_at) \
     VALUES ('00000000-0000-0000-0000-000000000007', '00000000-0000-0000-0000-000000000001', \
     '00000000-0000-0000-0000-000000000005', '00000000-0000-0000-0000-000000000006', 'OK', \
     'orders', '{\"zeta\": 1.50, \"a\": [1, {\"é\": \"x\"}], \"big\": 12345678901234567890}', \
     '{\"m\": null}', '[\"log\"]', now(), now())",
    "INSERT INTO event_log (org_id, entries, created_at) \
     VALUES ('00000000-0000-0000-0000-000000000001', \
     '[{\"type\": \"EVENT_STATUS_CHANGE\", \"to\": \"OK\", \"details\": {\"n\": 2}}]', now())",
];

/// The payload columns' types, values (as parsed JSON) and compression.
async fn payload_columns(pg: &sqlx::PgPool) -> (Vec<String>, Vec<serde_json::Value>, Vec<String>) {
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT data_type::text FROM information_schema.columns WHERE (table_name, column_name) \
         IN (('events', 'payload_in'), ('events', 'payload_out'), ('events', 'transform_logs'), \
         ('event_log', 'entries'), ('jobs', 'payload')) ORDER BY table_name, column_name",
    )
    .fetch_all(pg)
    .await
    .unwrap();
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT t FROM (SELECT payload_in::text AS t, 1 AS k FROM events \
         UNION ALL SELECT payload_out::text, 2 FROM events \
         UNION ALL SELECT transform_logs::text, 3 FROM events \
         UNION ALL SELECT entries::text, 4 FROM event_log \
         UNION ALL SELECT payload::text, 5 FROM jobs) x ORDER BY k",
    )
    .fetch_all(pg)
    .await
    .unwrap();
    let values = texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    let compression: Vec<String> = sqlx::query_scalar(
        "SELECT attcompression::text FROM pg_attribute WHERE (attrelid, attname) IN \
         (('events'::regclass, 'payload_in'), ('events'::regclass, 'payload_out'), \
         ('event_log'::regclass, 'entries'), ('jobs'::regclass, 'payload')) \
         ORDER BY attrelid::regclass::text, attname",
    )
    .fetch_all(pg)
    .await
    .unwrap();
    (types, values, compression)
}

/// Migration 14 makes the payload columns `json`: what was stored reads back as the same
/// values, and the columns keep the compression 0005 gave them (LZ4 where the server has it;
/// the default on both sides where not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_payloads_become_json_text_with_their_values() {
    let pg_db = PgDatabase::create().await;
    let pg = sqlx::PgPool::connect(&pg_db.url).await.unwrap();
    let all = migrator("postgres").await;
    migrator_before("postgres", 14)
        .await
        .run(&pg)
        .await
        .unwrap();
    for sql in PG_SEED {
        sqlx::query(sql).execute(&pg).await.unwrap();
    }
    let (types, values, compression) = payload_columns(&pg).await;
    assert_eq!(types, ["jsonb"; 5]);
    assert_eq!(values.len(), 5, "{values:?}");
    assert_eq!(compression.len(), 4);
    assert_eq!(values[0]["a"][1]["é"], "x");

    all.run(&pg).await.unwrap();
    let (types_now, values_now, compression_now) = payload_columns(&pg).await;
    assert_eq!(types_now, ["json"; 5]);
    assert_eq!(values_now, values);
    assert_eq!(compression_now, compression);
    // What `jsonb` refused is kept now.
    sqlx::query("UPDATE events SET payload_out = '{\"note\": \"a\\u0000b\"}'")
        .execute(&pg)
        .await
        .unwrap();
    let note: String = sqlx::query_scalar("SELECT payload_out::text FROM events")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(note, r#"{"note": "a\u0000b"}"#);
    pg.close().await;
}

/// Migration 16: every column of the tables that grow with every order has the statistics
/// target 10, so that ANALYZE samples 3,000 rows of them, not 30,000. A column
/// added to one of them later without it fails here (the sample would grow back). Other
/// tables keep Postgres's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appended_tables_gather_statistics_from_fewer_rows() {
    let pg_db = PgDatabase::create().await;
    let pg = sqlx::PgPool::connect(&pg_db.url).await.unwrap();
    migrator("postgres").await.run(&pg).await.unwrap();
    let targets: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, coalesce(a.attstattarget, -1)::int4 \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) \
         AND c.relkind = 'r' \
         AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    pg.close().await;
    let appended = [
        "delivery_attempts",
        "entities",
        "event_log",
        "events",
        "jobs",
        "webhook_receipts",
    ];
    for table in appended {
        let columns: Vec<_> = targets.iter().filter(|(t, _, _)| t == table).collect();
        assert!(columns.len() >= 4, "{table}: {columns:?}");
        for (_, column, target) in columns {
            assert_eq!(
                *target, 10,
                "{table}.{column} gathers statistics from more rows"
            );
        }
    }
    let others: Vec<_> = targets
        .iter()
        .filter(|(t, _, _)| !appended.contains(&t.as_str()))
        .collect();
    assert!(others.iter().any(|(t, _, _)| t == "streams"), "{others:?}");
    assert!(
        others.iter().all(|(_, _, target)| *target == -1),
        "{others:?}"
    );
}

#[test]
fn check_clauses_are_read_whole() {
    let sql =
        "CREATE TABLE t (a text CHECK (a IN ('x','y')), b int, CHECK ((b = 1) = (a IS NULL)))";
    let clauses = check_clauses(sql);
    assert_eq!(clauses, vec!["a IN ('x','y')", "(b = 1) = (a IS NULL)"]);
    assert_eq!(literals(&clauses[0]), vec!["x", "y"]);
}
