//! Streams: saving a changed stream, and what deactivating one does to its open work.

use super::Ops;
use crate::error::ApiError;
use crate::store::{AbortScope, Stream};

/// Why a deactivated stream's open events end.
const DEACTIVATED: &str = "the stream was deactivated";

impl Ops<'_> {
    /// Saves a changed stream (already checked). A stream that goes from active to inactive
    /// delivers nothing more: its open events end ABORTED and their jobs are settled.
    pub async fn save_stream(&self, stream: &Stream, was_active: bool) -> Result<(), ApiError> {
        self.store.update(self.org, stream).await?;
        if was_active && !stream.active {
            let (_, jobs) = self
                .store
                .abort_events(self.org, AbortScope::Stream(stream.id), DEACTIVATED)
                .await?;
            for job in jobs {
                self.store.finish_job(job).await?;
            }
        }
        Ok(())
    }
}
