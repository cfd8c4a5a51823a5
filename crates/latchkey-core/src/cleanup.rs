//! The periodic task that removes expired sessions from any store (feature `tokio`).

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::SessionStore;

/// A cleanup task was asked for outside a Tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no Tokio runtime is running: start the cleanup task from inside one (e.g. in main under #[actix_web::main])"
)]
pub struct NoRuntime;

/// Stops the cleanup task when dropped or when [`CleanupHandle::stop`] is called.
#[derive(Debug)]
pub struct CleanupHandle {
    task: JoinHandle<()>,
}

impl CleanupHandle {
    /// Stops the task; a cleanup in flight is abandoned.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a task that calls [`SessionStore::delete_expired`] on `store` every
/// `interval` until the returned handle is stopped or dropped. Failures are
/// logged and retried at the next interval.
///
/// # Errors
///
/// [`NoRuntime`] outside a Tokio runtime.
pub fn spawn_cleanup<S: SessionStore>(
    store: S,
    interval: Duration,
) -> Result<CleanupHandle, NoRuntime> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime)?;
    let task = runtime.spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.delete_expired().await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(store = store.name(), deleted, "deleted expired sessions"),
                Err(err) => tracing::warn!(store = store.name(), error = %err, "session cleanup failed; retrying next interval"),
            }
        }
    });
    Ok(CleanupHandle { task })
}
