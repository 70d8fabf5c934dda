//! Streams: saving a changed stream, and what deactivating one does to its open work.

use super::Ops;
use crate::error::ApiError;
use crate::store::Stream;

/// Why a deactivated stream's open events end.
const DEACTIVATED: &str = "the stream was deactivated";

impl Ops<'_> {
    /// Saves a changed stream (already checked). A stream that goes from active to inactive
    /// delivers nothing more: its open events end ABORTED and their jobs are settled, in the
    /// same transaction as the change.
    pub async fn save_stream(&self, stream: &Stream, was_active: bool) -> Result<(), ApiError> {
        let deactivated = was_active && !stream.active;
        self.store
            .save_stream(self.org, stream, deactivated, DEACTIVATED)
            .await?;
        Ok(())
    }
}
