//! A read-through cache of sessions in process memory, in front of a shared store.
//!
//! [`CachedStore`] keeps the records this process loaded or wrote. Writes always
//! go to the store underneath with compare-and-set on the version, so a stale
//! cached copy can never win a write: it conflicts, the cache drops it, and the
//! middleware reloads from the store. Reads are served from the cache only while
//! the cached copy is younger than the configured staleness bound, **zero by
//! default**: by default every load still reaches the store, and a session
//! revoked by another instance is never served. With a bound of, say, one second,
//! a read-mostly session costs one store round trip per second per instance
//! instead of one per request, and a session logged out or changed on another
//! instance may still be served here for up to that second. Deletes, saves and
//! `delete_by_owner` made through *this* cache take effect here at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use latchkey_core::{
    Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionId, SessionStore,
    StoreError, Timestamp,
};

/// Default most sessions kept.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// A [`SessionStore`] that caches another one; see the module documentation.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use latchkey::cache::CachedStore;
///
/// # async fn run() -> Result<(), latchkey::StoreError> {
/// let redis = latchkey::redis::RedisStore::builder("redis://127.0.0.1:6379").build()?;
/// // Serve reads from memory for up to 1 s; revocations elsewhere show within 1 s.
/// let store = CachedStore::new(redis).max_staleness(Duration::from_secs(1));
/// # drop(store);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CachedStore<S> {
    inner: S,
    entries: Arc<Mutex<HashMap<SessionId, Cached>>>,
    max_staleness: Duration,
    capacity: usize,
}

#[derive(Clone, Debug)]
struct Cached {
    record: Record,
    fetched: Instant,
}

impl<S: SessionStore> CachedStore<S> {
    /// Caches `inner` with a staleness bound of zero (every load reaches `inner`).
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            entries: Arc::default(),
            max_staleness: Duration::ZERO,
            capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// How old a cached copy may be and still be served without asking the store.
    ///
    /// Default: zero, so nothing revoked or changed elsewhere is ever served.
    /// A larger bound saves store round trips on read-mostly sessions at the
    /// price of that much staleness for changes made by other instances.
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// The most sessions kept; beyond it the oldest tenth is dropped. Default: 100,000.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<SessionId, Cached>> {
        // Entries are replaced whole, so a panic elsewhere cannot leave one torn.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, id: &SessionId, record: Record) {
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(id) {
            let mut ages: Vec<(Instant, SessionId)> =
                entries.iter().map(|(id, c)| (c.fetched, *id)).collect();
            ages.sort_unstable_by_key(|(fetched, _)| *fetched);
            for (_, old) in ages.into_iter().take((self.capacity / 10).max(1)) {
                entries.remove(&old);
            }
        }
        entries.insert(
            *id,
            Cached {
                record,
                fetched: Instant::now(),
            },
        );
    }

    fn forget(&self, id: &SessionId) {
        self.entries().remove(id);
    }

    fn fresh(&self, id: &SessionId) -> Option<Record> {
        if self.max_staleness.is_zero() {
            return None;
        }
        let entries = self.entries();
        let cached = entries.get(id)?;
        let young = cached.fetched.elapsed() < self.max_staleness;
        (young && !cached.record.is_expired_at(Timestamp::now())).then(|| cached.record.clone())
    }
}

impl<S: SessionStore> SessionStore for CachedStore<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        self.inner.runtime_slot()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        if let Some(record) = self.fresh(id) {
            return Ok(Some(record));
        }
        let loaded = self.inner.load(id).await?;
        match &loaded {
            Some(record) => self.remember(id, record.clone()),
            None => self.forget(id),
        }
        Ok(loaded)
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        self.inner.create(id, record).await?;
        let mut stored = record.clone();
        stored.version = 1;
        self.remember(id, stored);
        Ok(())
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let outcome = self.inner.save(id, record, expected_version).await;
        match &outcome {
            Ok(SaveOutcome::Saved(version)) => {
                let mut stored = record.clone();
                stored.version = *version;
                self.remember(id, stored);
            }
            // A conflict means our copy was stale; a failure leaves us unsure.
            _ => self.forget(id),
        }
        outcome
    }

    async fn touch(&self, id: &SessionId, deadlines: Deadlines) -> Result<bool, StoreError> {
        let touched = self.inner.touch(id, deadlines).await;
        let mut entries = self.entries();
        match (&touched, entries.get_mut(id)) {
            (Ok(true), Some(cached)) => cached.record.deadlines = deadlines,
            _ => {
                entries.remove(id);
            }
        }
        touched
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.forget(id);
        self.inner.delete(id).await
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        self.forget(id);
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
        self.entries()
            .retain(|id, cached| Some(id) == keep || cached.record.owner.as_deref() != Some(owner));
        self.inner.delete_by_owner(owner, keep).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let now = Timestamp::now();
        self.entries()
            .retain(|_, cached| !cached.record.is_expired_at(now));
        self.inner.delete_expired().await
    }
}
