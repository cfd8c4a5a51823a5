//! Deleting expired sessions: in batches, and periodically.

use std::time::Duration;

use latchkey_core::{CleanupHandle, NoRuntime, StoreError, Timestamp, spawn_cleanup};

use crate::PostgresStore;
use crate::rows::system_time;

impl PostgresStore {
    /// Starts a task that deletes expired sessions every `interval`, in batches
    /// (see [`PostgresStoreBuilder::cleanup_batch`](crate::PostgresStoreBuilder::cleanup_batch)).
    ///
    /// Expired rows are never served whether or not this runs; it keeps the
    /// table from growing. Several instances may each run one: batches skip
    /// rows another instance is deleting. Keep the handle: dropping it stops the task.
    ///
    /// # Errors
    ///
    /// [`NoRuntime`] outside a Tokio runtime.
    pub fn spawn_cleanup(&self, interval: Duration) -> Result<CleanupHandle, NoRuntime> {
        spawn_cleanup(self.clone(), interval)
    }

    /// Deletes expired rows in batches until none are left, returning how many went.
    pub(crate) async fn delete_expired_in_batches(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let now = system_time(Timestamp::now());
            let batch = self.shared.cleanup_batch;
            let deleted = self
                .execute(&self.shared.sql.delete_expired_batch, &[&now, &batch])
                .await?;
            total += deleted;
            if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
                return Ok(total);
            }
            // Let other work at the table between batches.
            tokio::task::yield_now().await;
        }
    }
}
