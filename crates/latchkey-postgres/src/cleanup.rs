//! The periodic task that deletes expired sessions.

use std::time::Duration;

use latchkey_core::SessionStore as _;
use tokio::task::JoinHandle;

use crate::PostgresStore;

/// [`PostgresStore::spawn_cleanup`] was called outside a Tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRuntime;

impl std::fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no Tokio runtime is running: spawn the cleanup task from inside one (e.g. in main under #[actix_web::main])")
    }
}

impl std::error::Error for NoRuntime {}

/// Stops the cleanup task when dropped or when [`CleanupHandle::stop`] is called.
#[derive(Debug)]
pub struct CleanupHandle {
    task: JoinHandle<()>,
}

impl CleanupHandle {
    /// Stops the task; a batch in flight is abandoned (and rolled back by the server).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime)?;
        let store = self.clone();
        let task = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match store.delete_expired().await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::debug!(deleted, "deleted expired sessions"),
                    Err(err) => tracing::warn!(error = %err, "session cleanup failed; retrying next interval"),
                }
            }
        });
        Ok(CleanupHandle { task })
    }
}
