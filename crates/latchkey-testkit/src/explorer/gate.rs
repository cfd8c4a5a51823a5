//! A store wrapper that holds every call until the scheduler lets it through,
//! and records what each call did.

use std::sync::{Arc, Mutex, PoisonError};

use latchkey_core::{
    Deadlines, DeleteOutcome, Record, SaveOutcome, SessionId, SessionStore, StoreError, Timestamp,
};
use tokio::sync::{mpsc, oneshot};

/// One store call, as the invariants need to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `load(id)`: whether a record came back.
    Load(SessionId, bool),
    /// `create(id)`, created.
    Create(SessionId),
    /// `save(id)`: the outcome.
    Save(SessionId, Option<SaveOutcome>),
    /// `touch(id)`: whether a live session was touched.
    Touch(SessionId, bool),
    /// `delete(id)`.
    Delete(SessionId),
    /// `delete_at_version(id)`: the outcome.
    DeleteAtVersion(SessionId, Option<DeleteOutcome>),
    /// `delete_by_owner(owner)`.
    DeleteByOwner(String),
    /// `list_by_owner(owner)`.
    ListByOwner(String),
    /// A call that failed.
    Failed(&'static str),
}

/// A call the scheduler may release.
#[derive(Debug)]
pub(super) struct Arrival {
    pub(super) actor: usize,
    pub(super) release: oneshot::Sender<()>,
}

/// What actors tell the scheduler.
#[derive(Debug)]
pub(super) enum Event {
    /// The actor is held at a store call.
    Arrived(Arrival),
    /// The actor is done.
    Finished(usize),
}

/// The scheduler's end of the gates, shared by every gated store of a run.
#[derive(Debug)]
pub(super) struct Hub {
    events: mpsc::UnboundedSender<Event>,
    log: Mutex<Vec<(usize, Call)>>,
}

impl Hub {
    pub(super) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Event>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let hub = Self {
            events,
            log: Mutex::new(Vec::new()),
        };
        (Arc::new(hub), receiver)
    }

    pub(super) fn finished(&self, actor: usize) {
        let _ = self.events.send(Event::Finished(actor));
    }

    pub(super) fn take_log(&self) -> Vec<(usize, Call)> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(PoisonError::into_inner))
    }

    async fn wait(&self, actor: usize) {
        let (release, released) = oneshot::channel();
        if self
            .events
            .send(Event::Arrived(Arrival { actor, release }))
            .is_ok()
        {
            let _ = released.await;
        }
    }

    fn record(&self, actor: usize, call: Call) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((actor, call));
    }
}

/// One actor's view of the store: every call waits for the scheduler, runs on
/// the real store, and is logged with its outcome.
#[derive(Clone, Debug)]
pub(super) struct GatedStore<S> {
    pub(super) inner: S,
    pub(super) actor: usize,
    pub(super) hub: Arc<Hub>,
}

impl<S: SessionStore> GatedStore<S> {
    async fn gated<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
        describe: impl FnOnce(&T) -> Call,
        name: &'static str,
    ) -> Result<T, StoreError> {
        self.hub.wait(self.actor).await;
        let result = work.await;
        let call = match &result {
            Ok(value) => describe(value),
            Err(_) => Call::Failed(name),
        };
        self.hub.record(self.actor, call);
        result
    }
}

impl<S: SessionStore> SessionStore for GatedStore<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let id = *id;
        self.gated(
            self.inner.load(&id),
            |r| Call::Load(id, r.is_some()),
            "load",
        )
        .await
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        let id = *id;
        self.gated(
            self.inner.create(&id, record),
            |()| Call::Create(id),
            "create",
        )
        .await
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let id = *id;
        self.gated(
            self.inner.save(&id, record, expected_version),
            |o| Call::Save(id, Some(*o)),
            "save",
        )
        .await
    }

    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = *id;
        self.gated(
            self.inner.touch(&id, deadlines, seen_at),
            |t| Call::Touch(id, *t),
            "touch",
        )
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let id = *id;
        self.gated(self.inner.delete(&id), |()| Call::Delete(id), "delete")
            .await
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        let id = *id;
        self.gated(
            self.inner.delete_at_version(&id, expected_version),
            |o| Call::DeleteAtVersion(id, Some(*o)),
            "delete_at_version",
        )
        .await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        self.gated(
            self.inner.list_by_owner(owner),
            |_| Call::ListByOwner(owner.to_owned()),
            "list_by_owner",
        )
        .await
    }

    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.gated(
            self.inner.delete_by_owner(owner, keep),
            |_| Call::DeleteByOwner(owner.to_owned()),
            "delete_by_owner",
        )
        .await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }
}
