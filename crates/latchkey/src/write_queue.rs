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
//!
//! Writers that only change values (no renewal, no purge) go further: each
//! leaves its change in the queue, and whichever of them gets the turn commits
//! every change waiting there in one compare-and-set (group commit), answering
//! each writer with its own result. A hot session then costs one store round
//! trip per group of writers rather than per writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use latchkey_core::{Deadlines, Record, SessionId};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, oneshot};

use crate::error::Error;
use crate::session::Change;

const SHARDS: usize = 16;

/// One session's queue: the turn, holding the record this process last saved,
/// and the changes waiting to be committed.
#[derive(Debug, Default)]
struct SessionQueue {
    turn: Arc<AsyncMutex<Option<Record>>>,
    waiting: Mutex<Vec<Deposit>>,
}

type Queue = Arc<SessionQueue>;

/// A change left in a session's queue for whoever gets the turn to commit.
#[derive(Debug)]
pub(crate) struct Deposit {
    /// The record the change's request loaded (its values are in `change`).
    pub(crate) base: Record,
    pub(crate) change: Change,
    pub(crate) answer: oneshot::Sender<GroupAnswer>,
}

/// What became of a deposited change.
#[derive(Debug)]
pub(crate) enum GroupAnswer {
    /// Saved, with these deadlines.
    Saved(Deadlines),
    /// The session is gone (deleted, expired): nothing was written.
    Gone,
    /// This change was refused (a limit, a value of the wrong type) and left out.
    Refused(Error),
    /// The commit failed; whether it landed is unknown.
    Failed(Error),
}

/// How a writer joined its session's queue.
#[derive(Debug)]
pub(crate) enum Joined<'a> {
    /// Another writer committed this one's change.
    Answered(GroupAnswer),
    /// This writer has the turn and must commit these changes (its own among
    /// them), answering each, then read its own answer from `own`.
    Lead {
        turn: Turn<'a>,
        group: Vec<Deposit>,
        own: oneshot::Receiver<GroupAnswer>,
    },
}

type Turns = HashMap<SessionId, Queue>;

/// Per-session queues of writers, created on demand and dropped when empty.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    shards: Box<[Mutex<Turns>]>,
}

/// This request's turn to write its session; the next writer waits until it drops.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    gate: &'a WriteQueue,
    id: SessionId,
    queue: Queue,
    guard: Option<OwnedMutexGuard<Option<Record>>>,
}

impl Default for WriteQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteQueue {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Turns::new())).collect(),
        }
    }

    fn shard(&self, id: &SessionId) -> &Mutex<Turns> {
        &self.shards[usize::from(id.as_bytes()[0]) % SHARDS]
    }

    /// Drops the session's queue if only the map and `queue` (the caller's
    /// handle) hold it: no writer is waiting.
    fn release(&self, id: &SessionId, queue: &Queue) {
        let mut turns = self
            .shard(id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if Arc::strong_count(queue) == 2 {
            turns.remove(id);
        }
    }

    fn queue(&self, id: SessionId) -> Queue {
        let mut turns = self
            .shard(&id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(turns.entry(id).or_default())
    }

    /// Waits for this session's turn.
    pub(crate) async fn enter(&self, id: SessionId) -> Turn<'_> {
        // Drops the queue again if this request is cancelled while it waits.
        let waiting = Waiting {
            gate: self,
            id,
            queue: self.queue(id),
            own: None,
        };
        let guard = Arc::clone(&waiting.queue.turn).lock_owned().await;
        let queue = Arc::clone(&waiting.queue);
        drop(waiting);
        Turn {
            gate: self,
            id,
            queue,
            guard: Some(guard),
        }
    }

    /// Leaves a change in the session's queue and waits until either another
    /// writer committed it or this writer has the turn to commit the queue.
    pub(crate) async fn join(&self, id: SessionId, base: Record, change: Change) -> Joined<'_> {
        let (answer, own) = oneshot::channel();
        // Holds the only handle on the queue while this change waits, so that
        // a cancelled request (its deadline) can clean up after itself.
        let mut waiting = Waiting {
            gate: self,
            id,
            queue: self.queue(id),
            own: Some(own),
        };
        lock(&waiting.queue.waiting).push(Deposit {
            base,
            change,
            answer,
        });
        let turn = Arc::clone(&waiting.queue.turn);
        let guard = {
            let Some(own) = waiting.own.as_mut() else {
                return Joined::Answered(abandoned());
            };
            tokio::select! {
                // A leader answers before it hands the turn on, so when both
                // are ready the answer is the one to take.
                biased;
                answered = own => {
                    waiting.own = None;
                    return Joined::Answered(answered.unwrap_or_else(|_| abandoned()));
                }
                guard = turn.lock_owned() => guard,
            }
        };
        let Some(own) = waiting.own.take() else {
            return Joined::Answered(abandoned());
        };
        let queue = Arc::clone(&waiting.queue);
        drop(waiting);
        let group = std::mem::take(&mut *lock(&queue.waiting));
        let turn = Turn {
            gate: self,
            id,
            queue,
            guard: Some(guard),
        };
        if group.is_empty() {
            // A leader took this change and answered it as it let go.
            drop(turn);
            return Joined::Answered(own.await.unwrap_or_else(|_| abandoned()));
        }
        Joined::Lead { turn, group, own }
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

/// A change waiting in its session's queue. If its request is cancelled while
/// it waits, the change is taken out of the queue (no later leader commits it)
/// and the queue is dropped if nobody else uses it.
struct Waiting<'a> {
    gate: &'a WriteQueue,
    id: SessionId,
    queue: Queue,
    own: Option<oneshot::Receiver<GroupAnswer>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.own.take().is_some() {
            // Cancelled while waiting. The receiver is gone now, so this
            // change's sender reports closed and no leader will commit it.
            lock(&self.queue.waiting).retain(|deposit| !deposit.answer.is_closed());
        }
        self.gate.release(&self.id, &self.queue);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer of a change whose committing request was cancelled (by its
/// deadline) mid-way: whether it landed is unknown.
fn abandoned() -> GroupAnswer {
    GroupAnswer::Failed(Error::Store(latchkey_core::StoreError::backend(
        "write group",
        std::io::Error::other("the request committing this change was cancelled"),
    )))
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        self.gate.release(&self.id, &self.queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn writers_of_one_session_take_turns_and_queues_are_dropped() {
        let gate = Arc::new(WriteQueue::new());
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
    async fn a_change_whose_request_gave_up_waiting_is_never_committed() {
        let gate = WriteQueue::new();
        let id = SessionId::from_bytes([3; 32]);
        let now = latchkey_core::Timestamp::now();
        let deadlines = latchkey_core::Deadlines::starting_at(
            now,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let change = || Change {
            data: latchkey_core::SessionData::new(),
            owner: None,
            ops: Vec::new(),
            remember: None,
            clues: crate::device::Clues::default(),
            logged_in: false,
        };
        let holder = gate.enter(id).await;
        // A writer queues behind the holder, then its deadline passes.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            gate.join(id, Record::new(now, deadlines), change()),
        )
        .await;
        assert!(gave_up.is_err(), "the writer was still waiting");
        drop(holder);
        // The next writer leads a group holding only its own change.
        match gate.join(id, Record::new(now, deadlines), change()).await {
            Joined::Lead { group, .. } => assert_eq!(group.len(), 1),
            Joined::Answered(_) => panic!("nobody else could answer"),
        }
        assert_eq!(gate.queued_sessions(), 0, "and no queue is left behind");
    }

    #[tokio::test]
    async fn different_sessions_do_not_wait_for_each_other() {
        let gate = WriteQueue::new();
        let _a = gate.enter(SessionId::from_bytes([1; 32])).await;
        let b = tokio::time::timeout(
            Duration::from_millis(100),
            gate.enter(SessionId::from_bytes([2; 32])),
        )
        .await;
        assert!(b.is_ok());
    }
}
