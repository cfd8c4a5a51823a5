//! The stores flows run against, and wrappers that observe or break them.

// Test support: a missing server is reported by panicking, like an assertion.
#![allow(clippy::panic)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use latchkey_testkit::servers::unique_name;

use latchkey::store::{Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionStore};
use latchkey::{SessionId, StoreError, Timestamp};

/// A PostgreSQL store on `DATABASE_URL` (default
/// `postgres://postgres@127.0.0.1:5432/postgres`) in a schema of its own.
///
/// # Panics
///
/// When PostgreSQL is not usable.
pub async fn postgres_store() -> latchkey::postgres::PostgresStore {
    let url = latchkey_testkit::servers::database_url();
    let store = latchkey::postgres::PostgresStore::builder(&url)
        .schema(&unique_name("flows"))
        .and_then(|b| b.pool_size(4).build())
        .unwrap_or_else(|e| panic!("DATABASE_URL={url}: {e}"));
    if let Err(e) = store.migrate().await {
        panic!(
            "PostgreSQL at {url} is not usable ({e}: {:?}); start it or run scripts/test.sh, which does",
            std::error::Error::source(&e)
        );
    }
    store
}

/// A Redis store on `REDIS_URL` (default `redis://127.0.0.1:6379`) under a
/// unique prefix.
///
/// # Panics
///
/// When Redis does not answer.
pub async fn redis_store() -> latchkey::redis::RedisStore {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = latchkey::redis::RedisStore::builder(&url)
        .prefix(format!("{}:", unique_name("flows")))
        .build()
        .unwrap_or_else(|e| panic!("REDIS_URL={url} is not a Redis URL: {e}"));
    if let Err(e) = store.ping().await {
        panic!(
            "Redis at {url} is not answering ({e}); start it or run scripts/test.sh, which does"
        );
    }
    store
}

/// How often each operation reached the wrapped store.
#[derive(Debug, Default)]
pub struct Calls {
    /// `load` calls.
    pub load: AtomicUsize,
    /// `create` calls.
    pub create: AtomicUsize,
    /// `save` calls.
    pub save: AtomicUsize,
    /// `touch` calls.
    pub touch: AtomicUsize,
    /// `delete` calls.
    pub delete: AtomicUsize,
}

impl Calls {
    /// All calls of any kind.
    pub fn total(&self) -> usize {
        [
            &self.load,
            &self.create,
            &self.save,
            &self.touch,
            &self.delete,
        ]
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum()
    }

    /// Calls of one kind.
    pub fn of(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }

    /// The counts now.
    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            load: Self::of(&self.load),
            create: Self::of(&self.create),
            save: Self::of(&self.save),
            touch: Self::of(&self.touch),
            delete: Self::of(&self.delete),
        }
    }
}

/// The counts of [`Calls`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// `load` calls.
    pub load: usize,
    /// `create` calls.
    pub create: usize,
    /// `save` calls.
    pub save: usize,
    /// `touch` calls.
    pub touch: usize,
    /// `delete` and `delete_at_version` calls.
    pub delete: usize,
}

/// A store that counts the calls it passes on to another.
#[derive(Clone, Debug)]
pub struct CountingStore<S> {
    inner: S,
    /// The counts, shared by clones.
    pub calls: Arc<Calls>,
}

impl<S> CountingStore<S> {
    /// Counts the calls to `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            calls: Arc::default(),
        }
    }
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::SeqCst);
}

impl<S: SessionStore> SessionStore for CountingStore<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        self.inner.runtime_slot()
    }

    fn load(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send {
        bump(&self.calls.load);
        self.inner.load(id)
    }

    fn create(
        &self,
        id: &SessionId,
        record: &Record,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        bump(&self.calls.create);
        self.inner.create(id, record)
    }

    fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        bump(&self.calls.save);
        self.inner.save(id, record, expected_version)
    }

    fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        bump(&self.calls.touch);
        self.inner.touch(id, deadlines, seen_at)
    }

    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<(), StoreError>> + Send {
        bump(&self.calls.delete);
        self.inner.delete(id)
    }

    fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send {
        bump(&self.calls.delete);
        self.inner.delete_at_version(id, expected_version)
    }

    fn list_by_owner(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<(SessionId, Record)>, StoreError>> + Send {
        self.inner.list_by_owner(owner)
    }

    fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.delete_by_owner(owner, keep)
    }

    fn delete_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.delete_expired()
    }
}

/// Text that must never reach a client: what a real driver error might say.
pub const INTERNAL_DETAIL: &str = "connection refused by 10.9.8.7:6379 (secret-host)";

/// A store whose every operation fails the way an unreachable backend does.
#[derive(Clone, Debug, Default)]
pub struct FailingStore;

fn failure<T>() -> std::future::Ready<Result<T, StoreError>> {
    std::future::ready(Err(StoreError::backend(
        "failing",
        std::io::Error::other(INTERNAL_DETAIL),
    )))
}

impl SessionStore for FailingStore {
    fn load(
        &self,
        _: &SessionId,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send {
        failure()
    }

    fn create(
        &self,
        _: &SessionId,
        _: &Record,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        failure()
    }

    fn save(
        &self,
        _: &SessionId,
        _: &Record,
        _: u64,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send {
        failure()
    }

    fn touch(
        &self,
        _: &SessionId,
        _: Deadlines,
        _: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        failure()
    }

    fn delete(&self, _: &SessionId) -> impl Future<Output = Result<(), StoreError>> + Send {
        failure()
    }

    fn delete_at_version(
        &self,
        _: &SessionId,
        _: u64,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send {
        failure()
    }

    fn list_by_owner(
        &self,
        _: &str,
    ) -> impl Future<Output = Result<Vec<(SessionId, Record)>, StoreError>> + Send {
        failure()
    }

    fn delete_by_owner(
        &self,
        _: &str,
        _: Option<&SessionId>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        failure()
    }

    fn delete_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        failure()
    }
}

/// A store whose next load (or save), once armed, runs and then waits to be
/// released before returning: a call that "began before" whatever the test
/// does meanwhile. A save can instead be held before it is sent: a write
/// that lands after whatever the test does meanwhile.
#[derive(Clone, Debug)]
pub struct PausingStore<S> {
    inner: S,
    armed: Arc<std::sync::atomic::AtomicBool>,
    armed_save: Arc<std::sync::atomic::AtomicBool>,
    armed_save_before: Arc<std::sync::atomic::AtomicBool>,
    /// Notified when the paused load has read its record.
    pub paused: Arc<tokio::sync::Notify>,
    /// Notify it to let the paused load return.
    pub release: Arc<tokio::sync::Notify>,
}

impl<S> PausingStore<S> {
    /// Wraps `inner`; nothing pauses until [`arm`](Self::arm).
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            armed: Arc::default(),
            armed_save: Arc::default(),
            armed_save_before: Arc::default(),
            paused: Arc::default(),
            release: Arc::default(),
        }
    }

    /// Makes the next load pause after reading.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Makes the next save pause after it was written.
    pub fn arm_save(&self) {
        self.armed_save.store(true, Ordering::SeqCst);
    }

    /// Makes the next save pause before it is sent to the store.
    pub fn arm_save_before(&self) {
        self.armed_save_before.store(true, Ordering::SeqCst);
    }
}

impl<S: SessionStore> SessionStore for PausingStore<S> {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let loaded = self.inner.load(id).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.paused.notify_one();
            self.release.notified().await;
        }
        loaded
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        self.inner.create(id, record).await
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        if self.armed_save_before.swap(false, Ordering::SeqCst) {
            self.paused.notify_one();
            self.release.notified().await;
        }
        let saved = self.inner.save(id, record, expected_version).await;
        if self.armed_save.swap(false, Ordering::SeqCst) {
            self.paused.notify_one();
            self.release.notified().await;
        }
        saved
    }

    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.touch(id, deadlines, seen_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        self.inner.delete_at_version(id, expected_version).await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        self.inner.list_by_owner(owner).await
    }

    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.inner.delete_by_owner(owner, keep).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }
}
