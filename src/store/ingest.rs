//! What webhook ingest needs of the store besides jobs: finding a source by its URL token,
//! counting refused pushes, and the installed-subscriptions state.

use serde_json::Value;
use uuid::Uuid;

use super::{on_pool, Store, StoreError, StoreResult, Val};
use crate::domain::Timestamp;

impl Store {
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
        let n = self
            .write_one(
                "UPDATE sources SET webhook_state = $3, updated_at = $4 WHERE id = $1 AND org_id = $2",
                &[
                    source_id.into(),
                    org.into(),
                    Val::Json(Some(state.clone())),
                    Timestamp::now().into(),
                ],
            )
            .await?;
        self.forget_config();
        if n == 0 {
            return Err(StoreError::NotFound("source"));
        }
        Ok(())
    }
}
