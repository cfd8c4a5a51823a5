//! One writer at a time per session within this process.
//!
//! Compare-and-set keeps concurrent writers correct, but when many requests of
//! one process write one session at once, each lost race costs a reload and a
//! retry, and dozens of writers can exhaust the retry bound. Queuing the write
//! phase per session makes in-process writers take turns, and the queue
//! remembers the record the previous writer saved: the next writer replays its
//! changes on that record directly instead of saving against the stale copy it
//! loaded, failing, and reloading. Compare-and-set still checks every write, so
//! a change from another process is caught and reloaded as usual.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use latchkey_core::{Record, SessionId};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

const SHARDS: usize = 16;

/// A session's queue; holds the record this process last saved, while writers wait.
type Queue = Arc<AsyncMutex<Option<Record>>>;

type Turns = HashMap<SessionId, Queue>;

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
    queue: Queue,
    guard: Option<OwnedMutexGuard<Option<Record>>>,
}

impl Default for WriteGate {
    fn default() -> Self {
        Self::new()
    }
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

impl Turn<'_> {
    /// The record the previous writer in this process saved, if any is known.
    pub(crate) fn latest(&self) -> Option<&Record> {
        self.guard.as_ref().and_then(|guard| guard.as_ref())
    }

    /// Remembers what this writer saved, for the next one in the queue.
    pub(crate) fn saved(&mut self, record: Record) {
        if let Some(guard) = self.guard.as_mut() {
            **guard = Some(record);
        }
    }

    /// Forgets the last saved record: the session is gone (renewed away).
    pub(crate) fn retired(&mut self) {
        if let Some(guard) = self.guard.as_mut() {
            **guard = None;
        }
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
        let mut first = gate.enter(id).await;
        assert!(first.latest().is_none());
        let now = latchkey_core::Timestamp::now();
        let deadlines = latchkey_core::Deadlines::starting_at(
            now,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut record = Record::new(now, deadlines);
        record.version = 7;
        first.saved(record);
        let waiting = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let turn = gate.enter(id).await;
                assert_eq!(
                    turn.latest().map(|r| r.version),
                    Some(7),
                    "the next writer sees what the last saved"
                );
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
