//! What webhook ingest needs of the store besides jobs: finding a source by its URL token,
//! counting refused pushes, and the installed-subscriptions state.

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::{on_pool, Source, Store, StoreError, StoreResult};
use crate::domain::Timestamp;

impl Store {
    /// The webhook source with this URL token (any organisation: the token is the address).
    pub async fn source_by_webhook_token(&self, token: &str) -> StoreResult<Option<Source>> {
        let row = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Source>("SELECT * FROM sources WHERE webhook_token = $1")
                .bind(token)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// Counts a push refused by verification.
    pub async fn count_rejection(&self, source_id: Uuid) -> StoreResult<()> {
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>("UPDATE sources SET rejected_count = rejected_count + 1 WHERE id = $1")
                .bind(source_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records the subscriptions installed at the system for a source.
    pub async fn set_webhook_state(
        &self,
        org: Uuid,
        source_id: Uuid,
        state: &Value,
    ) -> StoreResult<()> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(
                "UPDATE sources SET webhook_state = $3, updated_at = $4 WHERE id = $1 AND org_id = $2",
            )
            .bind(source_id)
            .bind(org)
            .bind(Json(state))
            .bind(Timestamp::now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound("source"));
        }
        Ok(())
    }

    /// Active streams fed by a source, in creation order.
    pub async fn active_streams_of(&self, source_id: Uuid) -> StoreResult<Vec<super::Stream>> {
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, super::Stream>(
                "SELECT * FROM streams WHERE source_id = $1 AND active = $2 ORDER BY id",
            )
            .bind(source_id)
            .bind(true)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
