//! Generic create/read/list/update/delete for configuration records, scoped by organisation.
//! Each record type says its table and columns once (see `records.rs`); the SQL is built here.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::FromRow;
use uuid::Uuid;

use super::batch::sql_marks;
use super::{audit_in, on_pool, BeginWrite, Bind, Store, StoreError, StoreResult, Val};
use crate::domain::Timestamp;

/// A configuration row owned by an organisation.
pub trait Record:
    Clone + Send + Sync + Unpin + 'static + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>
{
    const TABLE: &'static str;
    /// How errors name it ("key", "stream").
    const NAME: &'static str;
    /// Rows with no organisation (the public library) are readable by every organisation.
    const SHARED: bool;
    /// Columns only the store's named steps write (a job's or event's status, see
    /// `domain::status`); [`Store::update`] leaves them as they are.
    const STEPPED: &'static [&'static str] = &[];
    fn id(&self) -> Uuid;
    /// Every stored column with its value; `id`, `org_id` and `created_at` are never updated.
    fn values(&self) -> Vec<(&'static str, Val)>;
}

/// Where a page starts: after this row, in the list's order. Lists sorted by a time column
/// carry the column and its value too, so the next page starts exactly after the last row
/// shown, and a cursor of one order cannot page another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: Option<(String, Timestamp)>,
    pub id: Uuid,
}

impl From<Uuid> for Cursor {
    fn from(id: Uuid) -> Self {
        Cursor { at: None, id }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            None => write!(f, "{}", self.id),
            Some((col, at)) => write!(
                f,
                "{col}~{}~{}",
                at.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                self.id
            ),
        }
    }
}

impl std::str::FromStr for Cursor {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let parts: Vec<&str> = s.split('~').collect();
        match parts.as_slice() {
            [id] => Uuid::parse_str(id).map(Cursor::from).map_err(|_| ()),
            [col, at, id] => Ok(Cursor {
                at: Some((
                    col.to_string(),
                    Timestamp::from_datetime(
                        chrono::DateTime::parse_from_rfc3339(at)
                            .map_err(|_| ())?
                            .with_timezone(&chrono::Utc),
                    ),
                )),
                id: Uuid::parse_str(id).map_err(|_| ())?,
            }),
            _ => Err(()),
        }
    }
}

/// A page request: filters on whitelisted columns, a cursor, a size and a direction.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `("system", v)` means `system = v`; a column with an operator (`"created_at >="`,
    /// `"LOWER(message) LIKE"`) is used as written. Columns are never user input.
    pub filters: Vec<(&'static str, Val)>,
    /// Return rows after this one in the list's order (the previous page's `next_cursor`).
    pub after: Option<Cursor>,
    /// Sort by this time column (then by id) instead of by id (creation); rows where it is
    /// null are left out. Never user input.
    pub sort: Option<&'static str>,
    pub limit: u32,
    /// Newest first.
    pub desc: bool,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage<R> {
    pub items: Vec<R>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

fn scope<R: Record>() -> &'static str {
    if R::SHARED {
        "(org_id = $1 OR org_id IS NULL)"
    } else {
        "org_id = $1"
    }
}

impl Store {
    pub async fn insert<R: Record>(&self, record: &R) -> StoreResult<()> {
        let (sql, vals) = insert_statement(record);
        self.write_one(&sql, &vals).await?;
        self.forget_config();
        Ok(())
    }

    /// The record with this id, if the organisation may see it.
    pub async fn get<R: Record>(&self, org: Uuid, id: Uuid) -> StoreResult<R> {
        let sql = format!(
            "SELECT * FROM {} WHERE {} AND id = $2",
            R::TABLE,
            scope::<R>()
        );
        let found: Option<R> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, R>(&sql).bind(org).bind(id).fetch_optional(pool).await?
        });
        found.ok_or(StoreError::NotFound(R::NAME))
    }

    /// How many rows of `org` match `filters`, counting no further than `cap` (so a count
    /// costs at most `cap` rows read, however large the table).
    pub async fn count<R: Record>(
        &self,
        org: Uuid,
        filters: &[(&'static str, Val)],
        cap: u32,
    ) -> StoreResult<i64> {
        let mut sql = format!("SELECT id FROM {} WHERE {}", R::TABLE, scope::<R>());
        let mut vals = vec![Val::from(org)];
        for (col, v) in filters {
            vals.push(v.clone());
            let op = if col.contains(' ') { "" } else { " =" };
            sql.push_str(&format!(" AND {col}{op} ${}", vals.len()));
        }
        let sql = format!("SELECT COUNT(*) FROM ({sql} LIMIT {cap}) capped");
        let n: i64 = on_pool!(self, pool, Db => {
            sqlx::query_scalar::<Db, i64>(&sql).bind_all(&vals).fetch_one(pool).await?
        });
        Ok(n)
    }

    pub async fn list<R: Record>(&self, org: Uuid, q: &ListQuery) -> StoreResult<ListPage<R>> {
        let mut sql = format!("SELECT * FROM {} WHERE {}", R::TABLE, scope::<R>());
        let mut vals = vec![Val::from(org)];
        for (col, v) in &q.filters {
            vals.push(v.clone());
            let op = if col.contains(' ') { "" } else { " =" };
            sql.push_str(&format!(" AND {col}{op} ${}", vals.len()));
        }
        let (cmp, dir) = if q.desc { ("<", "DESC") } else { (">", "ASC") };
        if let Some(col) = q.sort {
            sql.push_str(&format!(" AND {col} IS NOT NULL"));
        }
        if let Some(after) = &q.after {
            match (q.sort, &after.at) {
                (Some(col), Some((of, at))) if of == col => {
                    let at = *at;
                    vals.push(at.into());
                    vals.push(after.id.into());
                    let (a, b) = (vals.len() - 1, vals.len());
                    sql.push_str(&format!(
                        " AND ({col} {cmp} ${a} OR ({col} = ${a} AND id {cmp} ${b}))"
                    ));
                }
                (None, _) => {
                    vals.push(after.id.into());
                    sql.push_str(&format!(" AND id {cmp} ${}", vals.len()));
                }
                _ => {
                    return Err(StoreError::Invalid(
                        "the cursor is from a list in another order; start without one".into(),
                    ))
                }
            }
        }
        let limit = q.limit.max(1);
        // One extra row tells whether there is a next page.
        match q.sort {
            Some(col) => sql.push_str(&format!(" ORDER BY {col} {dir}, id {dir}")),
            None => sql.push_str(&format!(" ORDER BY id {dir}")),
        }
        sql.push_str(&format!(" LIMIT {}", limit + 1));
        let mut items: Vec<R> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, R>(&sql).bind_all(&vals).fetch_all(pool).await?
        });
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|r| Cursor {
                at: q.sort.and_then(|col| {
                    r.values().into_iter().find_map(|(c, v)| match v {
                        Val::Ts(Some(t)) if c == col => Some((col.to_string(), t)),
                        _ => None,
                    })
                }),
                id: r.id(),
            })
        } else {
            None
        };
        Ok(ListPage { items, next_cursor })
    }

    /// Writes every column of `record` but its stepped ones; only rows of `org` (never shared
    /// ones) change.
    pub async fn update<R: Record>(&self, org: Uuid, record: &R) -> StoreResult<()> {
        let (sql, vals) = update_statement(org, record);
        let n = self.write_one(&sql, &vals).await?;
        self.forget_config();
        if n == 0 {
            return Err(StoreError::NotFound(R::NAME));
        }
        Ok(())
    }

    /// Deletes a row of `org`; a row still referenced elsewhere is refused with `InUse`.
    pub async fn delete<R: Record>(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let sql = format!("DELETE FROM {} WHERE id = $1 AND org_id = $2", R::TABLE);
        let n = self.write_one(&sql, &[id.into(), org.into()]).await?;
        self.forget_config();
        if n == 0 {
            return Err(StoreError::NotFound(R::NAME));
        }
        Ok(())
    }

    /// Runs one write statement; with the audit entry this handle carries, both in one
    /// transaction (written only when the statement changed a row). Returns the rows changed.
    pub(in crate::store) async fn write_one(&self, sql: &str, vals: &[Val]) -> StoreResult<u64> {
        if !self.audit_pending() {
            let n = on_pool!(self, pool, Db => {
                sqlx::query::<Db>(sql).bind_all(vals).execute(pool).await?.rows_affected()
            });
            return Ok(n);
        }
        let n = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query::<Db>(sql).bind_all(vals).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                audit_in!(self, Db, tx);
                tx.commit().await?;
            }
            n
        });
        Ok(n)
    }

    /// Ids of the streams of `org` whose `column` (source_id, destination_id, …) is `id`,
    /// to say which streams block a delete.
    pub async fn streams_using(
        &self,
        org: Uuid,
        column: &'static str,
        id: Uuid,
    ) -> StoreResult<Vec<Uuid>> {
        let sql = format!(
            "SELECT id FROM streams WHERE org_id = $1 AND {column} = $2 ORDER BY id LIMIT 20"
        );
        let ids = on_pool!(self, pool, Db => {
            sqlx::query_scalar::<Db, Uuid>(&sql).bind(org).bind(id).fetch_all(pool).await?
        });
        Ok(ids)
    }
}

/// The INSERT of every column of `record`.
pub(in crate::store) fn insert_statement<R: Record>(record: &R) -> (String, Vec<Val>) {
    let values = record.values();
    let cols: Vec<_> = values.iter().map(|(c, _)| *c).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        R::TABLE,
        cols.join(", "),
        sql_marks(1, cols.len())
    );
    (sql, values.into_iter().map(|(_, v)| v).collect())
}

/// The UPDATE that writes `record` over its row of `org` (every column but the id, the
/// organisation and the creation time).
pub(in crate::store) fn update_statement<R: Record>(org: Uuid, record: &R) -> (String, Vec<Val>) {
    let mut vals = vec![Val::from(record.id()), Val::from(org)];
    let mut sets = Vec::new();
    for (col, v) in record.values() {
        if matches!(col, "id" | "org_id" | "created_at") || R::STEPPED.contains(&col) {
            continue;
        }
        vals.push(v);
        sets.push(format!("{col} = ${}", vals.len()));
    }
    let sql = format!(
        "UPDATE {} SET {} WHERE id = $1 AND org_id = $2",
        R::TABLE,
        sets.join(", ")
    );
    (sql, vals)
}
