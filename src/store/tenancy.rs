//! Organisations, bootstrap, token authentication, lookup entries and the public library rows.

use uuid::Uuid;

use super::{
    audit_in, on_pool, ApiToken, BeginWrite, Organisation, Store, StoreError, StoreResult,
    Transformation, Val,
};
use crate::domain::{Role, Timestamp};

/// Lookup entries one INSERT writes (two bound values each).
const LOOKUP_ROWS_PER_INSERT: usize = 500;

/// Who a valid token speaks for.
#[derive(Debug, Clone)]
pub struct TokenIdentity {
    pub token_id: Uuid,
    /// The token's name, as the audit log shows who acted.
    pub name: String,
    pub org_id: Uuid,
    pub role: Role,
    pub last_used_at: Option<Timestamp>,
}

/// What the first-start check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The database was empty: organisation `default` and its owner token were created.
    Created { org_id: Uuid },
    /// An organisation already exists; nothing was created.
    AlreadyDone,
}

/// The name of the organisation made on first start.
pub const DEFAULT_ORG: &str = "default";

/// Every change to a table's entries stamps the table: transformations' cached lookup
/// snapshots notice changes by `updated_at` (see `lookup_stamp`).
const TOUCH_LOOKUP_TABLE: &str = "UPDATE lookup_tables SET updated_at = $2 WHERE id = $1";

impl Store {
    /// On an empty database, creates organisation `default` and an owner token with this hash,
    /// in one transaction. Concurrent first starts on one Postgres create it once: the
    /// organisation name is unique, so the loser's insert fails and it reports `AlreadyDone`.
    pub async fn bootstrap(&self, token_hash: &str, hint: &str) -> StoreResult<Bootstrap> {
        let now = Timestamp::now();
        let org_id = Uuid::now_v7();
        let created: StoreResult<bool> = on_pool!(self, pool, Db => async {
            let mut tx = pool.begin_write().await?;
            let existing: i64 = sqlx::query_scalar::<Db, i64>("SELECT COUNT(*) FROM organisations")
                .fetch_one(&mut *tx)
                .await?;
            if existing > 0 {
                return Ok(false);
            }
            sqlx::query::<Db>(
                "INSERT INTO organisations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
            )
            .bind(org_id)
            .bind(DEFAULT_ORG)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_token_sql::<Db>(org_id, "bootstrap", Role::Owner, token_hash, hint, now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        }.await);
        match created {
            Ok(true) => Ok(Bootstrap::Created { org_id }),
            Ok(false) | Err(StoreError::Duplicate(_)) => Ok(Bootstrap::AlreadyDone),
            Err(e) => Err(e),
        }
    }

    /// Creates an organisation and its first owner token together.
    pub async fn create_organisation(
        &self,
        name: &str,
        token_hash: &str,
        hint: &str,
    ) -> StoreResult<Organisation> {
        let now = Timestamp::now();
        let org = Organisation {
            retention: None,
            require_2fa: false,
            id: Uuid::now_v7(),
            name: name.to_string(),
            created_at: now,
            updated_at: now,
        };
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            sqlx::query::<Db>(
                "INSERT INTO organisations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
            )
            .bind(org.id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Duplicate(_) => {
                    StoreError::Duplicate(format!("an organisation named `{name}` already exists"))
                }
                other => other,
            })?;
            insert_token_sql::<Db>(org.id, "owner", Role::Owner, token_hash, hint, now)
                .execute(&mut *tx)
                .await?;
            audit_in!(self, Db, tx);
            tx.commit().await?;
        });
        Ok(org)
    }

    pub async fn get_organisation(&self, id: Uuid) -> StoreResult<Organisation> {
        let found = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Organisation>("SELECT * FROM organisations WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        found.ok_or(StoreError::NotFound("organisation"))
    }

    /// Every organisation's id and name, by name.
    pub async fn organisation_names(&self) -> StoreResult<Vec<(Uuid, String)>> {
        Ok(on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (Uuid, String)>("SELECT id, name FROM organisations ORDER BY name")
                .fetch_all(pool)
                .await?
        }))
    }

    /// The id of the organisation called `name`; with `create`, made (with no tokens) when
    /// there is none.
    pub async fn organisation_named(&self, name: &str, create: bool) -> StoreResult<Uuid> {
        let find = || async {
            StoreResult::Ok(on_pool!(self, pool, Db => {
                sqlx::query_scalar::<Db, Uuid>("SELECT id FROM organisations WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
            }))
        };
        if let Some(id) = find().await? {
            return Ok(id);
        }
        if !create {
            return Err(StoreError::NotFound("organisation"));
        }
        let now = Timestamp::now();
        // Two commands racing create it once (the name is unique); both then find it.
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>(
                "INSERT INTO organisations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(name)
            .bind(now)
            .execute(pool)
            .await?;
        });
        find().await?.ok_or(StoreError::NotFound("organisation"))
    }

    /// Changes an organisation's name, retention policy (`Some(None)` back to the default)
    /// and 2FA requirement, in one statement; fields left `None` stay.
    pub async fn update_organisation(
        &self,
        id: Uuid,
        name: Option<&str>,
        retention: Option<Option<serde_json::Value>>,
        require_2fa: Option<bool>,
    ) -> StoreResult<()> {
        let mut vals: Vec<Val> = vec![id.into(), Timestamp::now().into()];
        let mut sets = vec!["updated_at = $2".to_string()];
        if let Some(name) = name {
            vals.push(name.into());
            sets.push(format!("name = ${}", vals.len()));
        }
        if let Some(policy) = retention {
            vals.push(Val::Json(policy));
            sets.push(format!("retention = ${}", vals.len()));
        }
        if let Some(on) = require_2fa {
            vals.push(on.into());
            sets.push(format!("require_2fa = ${}", vals.len()));
        }
        let sql = format!("UPDATE organisations SET {} WHERE id = $1", sets.join(", "));
        let n = self.write_one(&sql, &vals).await.map_err(|e| match e {
            StoreError::Duplicate(_) => StoreError::Duplicate(format!(
                "an organisation named `{}` already exists",
                name.unwrap_or_default()
            )),
            other => other,
        })?;
        if n == 0 {
            return Err(StoreError::NotFound("organisation"));
        }
        Ok(())
    }

    /// The identity behind a token hash, if the token exists and has not expired. A token
    /// acting for a user holds at most the user's current role (read in the same query), so
    /// demoting the user demotes the tokens they already hold.
    pub async fn authenticate(&self, token_hash: &str) -> StoreResult<Option<TokenIdentity>> {
        let row: Option<TokenWithUser> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, TokenWithUser>(
                "SELECT t.*, u.role AS user_role FROM api_tokens t \
                 LEFT JOIN users u ON u.id = t.user_id AND u.org_id = t.org_id \
                 WHERE t.token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        });
        let Some(TokenWithUser {
            token: t,
            user_role,
        }) = row
        else {
            return Ok(None);
        };
        if t.expires_at.is_some_and(|e| e <= Timestamp::now()) {
            return Ok(None);
        }
        let Some(mut role) = Role::parse(&t.role) else {
            return Ok(None);
        };
        if t.user_id.is_some() {
            let Some(user_role) = user_role.as_deref().and_then(Role::parse) else {
                return Ok(None);
            };
            role = role.lower(user_role);
        }
        Ok(Some(TokenIdentity {
            token_id: t.id,
            name: t.name,
            org_id: t.org_id,
            role,
            last_used_at: t.last_used_at,
        }))
    }

    pub async fn touch_token(&self, id: Uuid) -> StoreResult<()> {
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(id)
                .bind(Timestamp::now())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Writes the built-in public transformations, replacing older versions of the same ids.
    pub async fn sync_public_transformations(&self, items: &[Transformation]) -> StoreResult<()> {
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            for t in items {
                sqlx::query::<Db>(
                    "INSERT INTO transformations (id, org_id, visibility, title, description, \
                     data_type, language, format, code, copied_from, created_at, updated_at) \
                     VALUES ($1, NULL, 'public', $2, $3, $4, $5, $6, $7, NULL, $8, $8) \
                     ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
                     description = excluded.description, data_type = excluded.data_type, \
                     language = excluded.language, format = excluded.format, code = excluded.code",
                )
                .bind(t.id)
                .bind(&t.title)
                .bind(&t.description)
                .bind(&t.data_type)
                .bind(&t.language)
                .bind(&t.format)
                .bind(&t.code)
                .bind(t.created_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.forget_config();
        Ok(())
    }

    /// Inserts or replaces entries of a lookup table (the last of a repeated key wins), many rows
    /// a statement; with `replace`, other entries are removed in the same transaction (a CSV
    /// upload that is the whole table).
    pub async fn put_lookup_entries(
        &self,
        table_id: Uuid,
        entries: &[(String, String)],
        replace: bool,
    ) -> StoreResult<()> {
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            if replace {
                sqlx::query::<Db>("DELETE FROM lookup_entries WHERE table_id = $1")
                    .bind(table_id)
                    .execute(&mut *tx)
                    .await?;
            }
            // Many rows a statement; a key twice in one statement would be refused by
            // Postgres, so the last of a key wins before.
            let mut unique: std::collections::BTreeMap<&str, &str> = Default::default();
            for (key, value) in entries {
                unique.insert(key, value);
            }
            let unique: Vec<(&str, &str)> = unique.into_iter().collect();
            for chunk in unique.chunks(LOOKUP_ROWS_PER_INSERT) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3))
                    .collect();
                let sql = format!(
                    "INSERT INTO lookup_entries (table_id, key, value) VALUES {} \
                     ON CONFLICT (table_id, key) DO UPDATE SET value = excluded.value",
                    rows.join(", ")
                );
                let mut q = sqlx::query::<Db>(&sql).bind(table_id).persistent(false);
                for (key, value) in chunk {
                    q = q.bind(*key).bind(*value);
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query::<Db>(TOUCH_LOOKUP_TABLE)
                .bind(table_id)
                .bind(Timestamp::now())
                .execute(&mut *tx)
                .await?;
            audit_in!(self, Db, tx);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Entries in key order, after `after_key`, at most `limit` (all when `None`).
    pub async fn lookup_entries(
        &self,
        table_id: Uuid,
        after_key: Option<&str>,
        limit: Option<u32>,
    ) -> StoreResult<Vec<(String, String)>> {
        let limit = limit.map(i64::from).unwrap_or(i64::MAX);
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (String, String)>(
                "SELECT key, value FROM lookup_entries WHERE table_id = $1 AND key > $2 \
                 ORDER BY key LIMIT $3",
            )
            .bind(table_id)
            .bind(after_key.unwrap_or(""))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn delete_lookup_entry(&self, table_id: Uuid, key: &str) -> StoreResult<()> {
        let n = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query::<Db>("DELETE FROM lookup_entries WHERE table_id = $1 AND key = $2")
                .bind(table_id)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                sqlx::query::<Db>(TOUCH_LOOKUP_TABLE)
                    .bind(table_id)
                    .bind(Timestamp::now())
                    .execute(&mut *tx)
                    .await?;
                audit_in!(self, Db, tx);
                tx.commit().await?;
            }
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound("lookup entry"));
        }
        Ok(())
    }

    pub async fn count_lookup_entries(&self, table_id: Uuid) -> StoreResult<i64> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query_scalar::<Db, i64>("SELECT COUNT(*) FROM lookup_entries WHERE table_id = $1")
                .bind(table_id)
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }
}

fn insert_token_sql<'q, Db>(
    org_id: Uuid,
    name: &'q str,
    role: Role,
    token_hash: &'q str,
    hint: &'q str,
    now: Timestamp,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>
where
    Db: sqlx::Database,
    Uuid: sqlx::Encode<'q, Db> + sqlx::Type<Db>,
    &'q str: sqlx::Encode<'q, Db> + sqlx::Type<Db>,
    Timestamp: sqlx::Encode<'q, Db> + sqlx::Type<Db>,
{
    sqlx::query::<Db>(
        "INSERT INTO api_tokens (id, org_id, user_id, name, role, token_hash, hint, created_at, \
         updated_at) VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $7)",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(name)
    .bind(role.as_str())
    .bind(token_hash)
    .bind(hint)
    .bind(now)
}

impl Store {
    /// What identifies the current state of an organisation's lookup tables: their number and
    /// latest change. Cheap; used to revalidate cached snapshots.
    pub async fn lookup_stamp(&self, org: Uuid) -> StoreResult<(i64, Option<Timestamp>)> {
        let row = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64, Option<Timestamp>)>(
                "SELECT COUNT(*), MAX(updated_at) FROM lookup_tables WHERE org_id = $1",
            )
            .bind(org)
            .fetch_one(pool)
            .await?
        });
        Ok(row)
    }

    /// Every lookup table of an organisation with its entries: (name, default, key, value),
    /// key `None` for a table without entries.
    #[allow(clippy::type_complexity)]
    pub async fn lookup_snapshot(
        &self,
        org: Uuid,
    ) -> StoreResult<Vec<(String, Option<String>, Option<String>, Option<String>)>> {
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (String, Option<String>, Option<String>, Option<String>)>(
                "SELECT t.name, t.default_value, e.key, e.value FROM lookup_tables t \
                 LEFT JOIN lookup_entries e ON e.table_id = t.id WHERE t.org_id = $1",
            )
            .bind(org)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}

/// A token row with its user's current role (`None` for a token of no user).
#[derive(sqlx::FromRow)]
struct TokenWithUser {
    #[sqlx(flatten)]
    token: ApiToken,
    user_role: Option<String>,
}
