//! The optional background task that removes expired sessions.

use std::time::Duration;

use latchkey_core::{CleanupHandle, NoRuntime, spawn_cleanup};

use crate::MemoryStore;

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
    pub fn spawn_sweeper(&self, interval: Duration) -> Result<CleanupHandle, NoRuntime> {
        spawn_cleanup(self.clone(), interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::{Deadlines, Record, SessionId, SessionStore as _, Timestamp};

    #[test]
    fn spawning_outside_a_runtime_is_an_error_not_a_panic() {
        assert_eq!(
            MemoryStore::new()
                .spawn_sweeper(Duration::from_secs(1))
                .unwrap_err(),
            NoRuntime
        );
    }

    #[tokio::test]
    async fn the_sweeper_removes_expired_sessions_without_any_reads_or_writes() {
        let store = MemoryStore::builder()
            .sweep_interval(Duration::from_secs(3600))
            .build();
        let now = Timestamp::now();
        let short = Duration::from_millis(50);
        store
            .create(
                &SessionId::from_bytes([1; 32]),
                &Record::new(now, Deadlines::starting_at(now, short, short)),
            )
            .await
            .unwrap();
        assert_eq!(store.len(), 1);
        let sweeper = store.spawn_sweeper(Duration::from_millis(20)).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.len(), 0, "the expired session was swept by the task");
        sweeper.stop();
    }
}
