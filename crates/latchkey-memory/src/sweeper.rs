//! The optional background task that removes expired sessions.

use std::time::Duration;

use latchkey_core::SessionStore as _;
use tokio::task::JoinHandle;

use crate::MemoryStore;

/// [`MemoryStore::spawn_sweeper`] was called outside a Tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRuntime;

impl std::fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no Tokio runtime is running: spawn the sweeper from inside one (e.g. in main under #[actix_web::main])")
    }
}

impl std::error::Error for NoRuntime {}

/// Stops the sweeper when dropped or when [`SweeperHandle::stop`] is called.
#[derive(Debug)]
pub struct SweeperHandle {
    task: JoinHandle<()>,
}

impl SweeperHandle {
    /// Stops the sweeper.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MemoryStore {
    /// Starts a task that removes all expired sessions every `interval`.
    ///
    /// Without it, expired sessions are still never served and are removed as
    /// writes sweep shards in turn; the task makes memory go back down even when
    /// no one writes. Keep the handle: dropping it stops the task.
    ///
    /// # Errors
    ///
    /// [`NoRuntime`] when called outside a Tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use latchkey_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), latchkey_memory::NoRuntime> {
    /// let store = MemoryStore::new();
    /// let sweeper = store.spawn_sweeper(Duration::from_secs(60))?;
    /// // ... serve requests ...
    /// sweeper.stop();
    /// # Ok(())
    /// # }
    /// ```
    pub fn spawn_sweeper(&self, interval: Duration) -> Result<SweeperHandle, NoRuntime> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime)?;
        let store = self.clone();
        let task = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Ok(removed) = store.delete_expired().await
                    && removed > 0
                {
                    tracing::debug!(removed, "swept expired sessions");
                }
            }
        });
        Ok(SweeperHandle { task })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawning_outside_a_runtime_is_an_error_not_a_panic() {
        assert_eq!(
            MemoryStore::new()
                .spawn_sweeper(Duration::from_secs(1))
                .unwrap_err(),
            NoRuntime
        );
    }
}
