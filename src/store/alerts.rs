//! Alerts: the evaluation's lease and cursor, the counts rules are judged on, the one
//! transaction that writes alert changes with their notifications, and the notification outbox.

use uuid::Uuid;

use super::resources::{insert_statement, update_statement};
use super::{
    on_pool, Alert, AlertRule, BeginWrite, Bind, LogPosition, Notification, Store, StoreResult, Val,
};
use crate::domain::Timestamp;

/// What one evaluation writes, all or nothing.
#[derive(Debug, Default)]
pub struct AlertWrites {
    pub created: Vec<Alert>,
    /// Changed alerts, each with the `updated_at` it was read with: if someone changed it
    /// since (acknowledged it), nothing is written and the evaluation runs again.
    pub updated: Vec<(Alert, Timestamp)>,
    pub notifications: Vec<Notification>,
    /// Rules whose digest was written, with the time it covers up to.
    pub digested: Vec<(Uuid, Timestamp)>,
}

/// Finished events of one stream since a time, by status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StreamOutcome {
    pub stream_id: Uuid,
    pub status: String,
    pub n: i64,
}

/// Events of one stream waiting since before a time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StreamStuck {
    pub stream_id: Uuid,
    pub n: i64,
    pub oldest: Timestamp,
}

/// A stream, as alert messages name it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StreamBrief {
    pub id: Uuid,
    pub org_id: Uuid,
    pub title: String,
    pub data_type: String,
    pub active: bool,
    pub created_at: Timestamp,
}

const LEASE: &str = "alerts";

impl Store {
    /// Takes (or keeps) the evaluation lease for `holder` until `until`; answers the event-log
    /// position evaluation has read to, or `None` while another node holds it.
    pub async fn take_alert_lease(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<LogPosition>> {
        let sql = "UPDATE alert_cursor SET holder = $1, lease_until = $2 \
                   WHERE name = $3 AND (holder IS NULL OR holder = $1 OR lease_until < $4) \
                   RETURNING horizon, position";
        let position = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64, i64)>(sql)
                .bind(holder)
                .bind(until)
                .bind(LEASE)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        Ok(position.map(|(horizon, id)| LogPosition::row(horizon, id)))
    }

    /// Every enabled rule of every organisation.
    pub async fn enabled_alert_rules(&self) -> StoreResult<Vec<AlertRule>> {
        let rules = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, AlertRule>(
                "SELECT * FROM alert_rules WHERE enabled = $1 ORDER BY id",
            )
            .bind(true)
            .fetch_all(pool)
            .await?
        });
        Ok(rules)
    }

    /// The ids of every alert channel.
    pub async fn alert_channel_ids(&self) -> StoreResult<std::collections::HashSet<Uuid>> {
        let ids = on_pool!(self, pool, Db => {
            sqlx::query_scalar::<Db, Uuid>("SELECT id FROM alert_channels")
                .fetch_all(pool)
                .await?
        });
        Ok(ids.into_iter().collect())
    }

    /// Alerts not yet resolved (open, acknowledged or ignored), of every organisation.
    pub async fn unresolved_alerts(&self) -> StoreResult<Vec<Alert>> {
        let alerts = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Alert>(
                "SELECT * FROM alerts WHERE status IN ('open','acknowledged','ignored') ORDER BY id",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(alerts)
    }

    /// The streams of `org`, as reports and alert messages name them.
    pub async fn stream_briefs(&self, org: Uuid) -> StoreResult<Vec<StreamBrief>> {
        let streams = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, StreamBrief>(
                "SELECT id, org_id, title, data_type, active, created_at FROM streams \
                 WHERE org_id = $1 ORDER BY id",
            )
            .bind(org)
            .fetch_all(pool)
            .await?
        });
        Ok(streams)
    }

    /// Events of `org` that finished (OK, ERROR, FAILED, ABORTED) since `since`, counted by
    /// stream and status; `ok_only` counts OK events alone (for silence).
    pub async fn finished_since(
        &self,
        org: Uuid,
        since: Timestamp,
        ok_only: bool,
    ) -> StoreResult<Vec<StreamOutcome>> {
        let statuses = if ok_only {
            "('OK')"
        } else {
            "('OK','ERROR','FAILED','ABORTED')"
        };
        let sql = format!(
            "SELECT stream_id, status, COUNT(*) AS n FROM events \
             WHERE org_id = $1 AND updated_at >= $2 AND status IN {statuses} \
             GROUP BY stream_id, status"
        );
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, StreamOutcome>(&sql)
                .bind(org)
                .bind(since)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// Events of `org` still NEW or TRANSFORMED that were created before `before`, by stream.
    pub async fn waiting_since(
        &self,
        org: Uuid,
        before: Timestamp,
    ) -> StoreResult<Vec<StreamStuck>> {
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, StreamStuck>(
                "SELECT stream_id, COUNT(*) AS n, MIN(created_at) AS oldest FROM events \
                 WHERE org_id = $1 AND status IN ('NEW','TRANSFORMED') AND created_at < $2 \
                 AND ignored = $3 GROUP BY stream_id",
            )
            .bind(org)
            .bind(before)
            .bind(false)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Writes one evaluation: moves the cursor from `from` to `to` while `holder` still holds
    /// the lease (a node that lost it writes nothing), with the alert changes and the
    /// notifications they cause. Answers whether it was written.
    pub async fn save_alert_evaluation(
        &self,
        holder: &str,
        from: LogPosition,
        to: LogPosition,
        writes: &AlertWrites,
    ) -> StoreResult<bool> {
        // Each statement with whether it must change exactly one row.
        let mut statements: Vec<(String, Vec<Val>)> = Vec::new();
        for a in &writes.created {
            statements.push(insert_statement(a));
        }
        for (a, read_at) in &writes.updated {
            let (mut sql, mut vals) = update_statement(a.org_id, a);
            vals.push(Val::from(*read_at));
            sql.push_str(&format!(" AND updated_at = ${}", vals.len()));
            statements.push((sql, vals));
        }
        for n in &writes.notifications {
            statements.push(insert_statement(n));
        }
        for (rule, at) in &writes.digested {
            statements.push((
                "UPDATE alert_rules SET digest_sent_at = $1 WHERE id = $2".into(),
                vec![Val::from(*at), Val::from(*rule)],
            ));
        }
        let written = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let moved = sqlx::query::<Db>(
                "UPDATE alert_cursor SET horizon = $1, position = $2 \
                 WHERE name = $3 AND holder = $4 AND horizon = $5 AND position = $6",
            )
            .bind(to.horizon)
            .bind(to.id)
            .bind(LEASE)
            .bind(holder)
            .bind(from.horizon)
            .bind(from.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved != 1 {
                tx.rollback().await?;
                false
            } else {
                let mut all = true;
                for (sql, vals) in &statements {
                    let n = sqlx::query::<Db>(sql).bind_all(vals).execute(&mut *tx).await?;
                    if n.rows_affected() != 1 {
                        all = false;
                        break;
                    }
                }
                if all {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                all
            }
        });
        Ok(written)
    }

    /// Notifications due to be sent (or tried again) at `now`, oldest first.
    pub async fn due_notifications(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<Notification>> {
        let due = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Notification>(
                "SELECT * FROM notifications WHERE status = 'pending' AND next_try_at <= $1 \
                 ORDER BY next_try_at, id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(due)
    }

    /// Claims one try of a notification: counts the try and moves its next try to `retry_at`,
    /// only if no other node did first. Answers whether this caller may send it.
    pub async fn claim_notification(
        &self,
        id: Uuid,
        tries: i64,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(
                "UPDATE notifications SET tries = tries + 1, next_try_at = $1, updated_at = $2 \
                 WHERE id = $3 AND tries = $4 AND status = 'pending'",
            )
            .bind(retry_at)
            .bind(now)
            .bind(id)
            .bind(tries)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records how a try went: `sent`, `failed` (no tries left) or still `pending` with the
    /// error (tried again at the claimed `next_try_at`).
    pub async fn finish_notification(
        &self,
        id: Uuid,
        status: &str,
        error: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let sent_at = (status == "sent").then_some(now);
        // A channel's answer may hold U+0000 (see `store::nul`): kept as the store can keep it,
        // or the outcome could never be stored and the notification would be sent again.
        let error = error.map(crate::store::printable_ref);
        let error = error.as_deref();
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>(
                "UPDATE notifications SET status = $1, error = $2, sent_at = $3, updated_at = $4, \
                 next_try_at = CASE WHEN $1 = 'pending' THEN next_try_at ELSE NULL END \
                 WHERE id = $5",
            )
            .bind(status)
            .bind(error)
            .bind(sent_at)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Sets an alert's status by a person's action, if it is still as read at `read_at`.
    pub async fn set_alert_status(
        &self,
        org: Uuid,
        id: Uuid,
        read_at: Timestamp,
        status: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let resolved_at = (status == "resolved").then_some(now);
        let n = self
            .write_one(
                "UPDATE alerts SET status = $1, resolved_at = $2, updated_at = $3 \
                 WHERE org_id = $4 AND id = $5 AND updated_at = $6",
                &[
                    status.into(),
                    resolved_at.into(),
                    now.into(),
                    org.into(),
                    id.into(),
                    read_at.into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }
}
