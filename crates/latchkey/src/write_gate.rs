//! One writer at a time per session within this process.
//!
//! Compare-and-set keeps concurrent writers correct, but when many requests of
//! one process write one session at once, each lost race costs a reload and a
//! retry, and dozens of writers can exhaust the retry bound. Queuing the write
//! phase per session makes in-process writers take turns: each conflicts at most
//! once (its copy was loaded before the previous writer saved), and
//! compare-and-set is left to arbitrate between processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use latchkey_core::SessionId;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

const SHARDS: usize = 16;

type Turns = HashMap<SessionId, Arc<AsyncMutex<()>>>;

/// Per-session queues of writers, created on demand and dropped when empty.
#[derive(Debug)]
pub(crate) struct WriteGate {
    shards: Box<[Mutex<Turns>]>,
}

/// This request's turn to write its session; the next writer waits until it drops.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    gate: &'a WriteGate,
    id: SessionId,
    queue: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl WriteGate {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Turns::new())).collect(),
        }
    }

    fn shard(&self, id: &SessionId) -> &Mutex<Turns> {
        &self.shards[usize::from(id.as_bytes()[0]) % SHARDS]
    }

    /// Waits for this session's turn.
    pub(crate) async fn enter(&self, id: SessionId) -> Turn<'_> {
        let queue = {
            let mut turns = self
                .shard(&id)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(turns.entry(id).or_default())
        };
        let guard = Arc::clone(&queue).lock_owned().await;
        Turn {
            gate: self,
            id,
            queue,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn queued_sessions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut turns = self
            .gate
            .shard(&self.id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map and this turn hold the queue: no writer is waiting.
        if Arc::strong_count(&self.queue) == 2 {
            turns.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn writers_of_one_session_take_turns_and_queues_are_dropped() {
        let gate = Arc::new(WriteGate::new());
        let id = SessionId::from_bytes([1; 32]);
        let first = gate.enter(id).await;
        let waiting = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let _turn = gate.enter(id).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the second writer waits for the first"
        );
        drop(first);
        waiting.await.unwrap();
        assert_eq!(
            gate.queued_sessions(),
            0,
            "no queue is kept for an idle session"
        );
    }

    #[tokio::test]
    async fn different_sessions_do_not_wait_for_each_other() {
        let gate = WriteGate::new();
        let _a = gate.enter(SessionId::from_bytes([1; 32])).await;
        let b = tokio::time::timeout(
            Duration::from_millis(100),
            gate.enter(SessionId::from_bytes([2; 32])),
        )
        .await;
        assert!(b.is_ok());
    }
}
