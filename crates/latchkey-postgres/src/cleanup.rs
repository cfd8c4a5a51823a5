//! The periodic task that deletes expired sessions.

use std::time::Duration;

use latchkey_core::{CleanupHandle, NoRuntime, spawn_cleanup};

use crate::PostgresStore;

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
}
