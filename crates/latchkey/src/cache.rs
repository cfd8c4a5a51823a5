//! A read-through cache of sessions in process memory, in front of a shared store.
//!
//! [`CachedStore`] keeps the records this process loaded or wrote. Writes always
//! go to the store underneath with compare-and-set on the version, so a stale
//! cached copy can never win a write: it conflicts, the cache drops it, and the
//! middleware reloads from the store. Reads are served from the cache only while
//! the cached copy is younger than the configured staleness bound, **zero by
//! default**: then nothing is cached at all and every call goes straight to the
//! store, so a session revoked by another instance is never served. With a bound
//! of, say, one second, a read-mostly session costs one store round trip per
//! second per instance instead of one per request, and a session logged out or
//! changed on another instance may still be served here for up to that second.
//!
//! Deletes, saves, touches and `delete_by_owner` made through *this* cache take
//! effect here at once, including against calls already under way: a load or
//! save that reached the store before a delete through this cache and finishes
//! after it caches nothing, and a cached record is never replaced by an older
//! version.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use latchkey_core::{
    Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionId, SessionStore,
    StoreError, Timestamp,
};

/// Default most sessions kept.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// Shards of the per-id write locks and generations.
const SHARDS: usize = 64;

/// A [`SessionStore`] that caches another one; see the module documentation.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use latchkey::cache::CachedStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
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
    /// `None` while the staleness bound is zero: then nothing is cached at all.
    cache: Option<Arc<Cache>>,
    max_staleness: Duration,
    capacity: usize,
}

#[derive(Clone, Debug)]
struct Cached {
    record: Record,
    fetched: Instant,
}

/// The cached records, and per shard of ids a generation that every
/// invalidation bumps: a load that read the store before an invalidation and
/// finishes after it sees a newer generation and caches nothing.
struct Cache {
    entries: quick_cache::sync::Cache<SessionId, Cached>,
    shards: Box<[Mutex<()>]>,
    generations: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity),
            shards: (0..SHARDS).map(|_| Mutex::new(())).collect(),
            generations: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn shard(id: &SessionId) -> usize {
        usize::from(id.as_bytes()[0]) % SHARDS
    }

    fn lock(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        // The guarded state is the cache itself, which stays consistent.
        self.shards[Self::shard(id)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn generation(&self, id: &SessionId) -> u64 {
        self.generations[Self::shard(id)].load(Ordering::Acquire)
    }

    /// The cached record if it is younger than `bound` and not expired.
    fn fresh(&self, id: &SessionId, bound: Duration) -> Option<Record> {
        let cached = self.entries.get(id)?;
        let young = cached.fetched.elapsed() < bound;
        (young && !cached.record.is_expired_at(Timestamp::now())).then_some(cached.record)
    }

    /// Caches what a load read, unless the id was invalidated since the load
    /// began (`generation`) or a newer version is cached already.
    fn loaded(&self, id: &SessionId, record: &Record, generation: u64) {
        let _shard = self.lock(id);
        if self.generation(id) != generation {
            return;
        }
        self.insert_unless_older(id, record);
    }

    /// Caches what a write through this cache stored, unless the id was
    /// invalidated since the write began (`generation`): a delete through this
    /// cache that ran meanwhile wins.
    fn written(&self, id: &SessionId, record: Record, generation: u64) {
        let _shard = self.lock(id);
        if self.generation(id) != generation {
            self.entries.remove(id);
            return;
        }
        self.insert_unless_older(id, &record);
    }

    /// Caches what a save through this cache stored, only over the copy the
    /// save replaced (at `expected`): a touch through this cache since that
    /// copy was cached dropped it, and the store keeps the touch's later idle
    /// deadline, which the saved record may lack. Without that copy, or after an
    /// invalidation since the save began, the id is dropped instead, and loads
    /// under way cache nothing.
    fn saved(&self, id: &SessionId, mut record: Record, expected: u64, generation: u64) {
        let _shard = self.lock(id);
        let replaced = self
            .entries
            .get(id)
            .filter(|cached| cached.record.version == expected);
        match replaced {
            Some(replaced) if self.generation(id) == generation => {
                // As the store does: the idle deadline and last seen never move earlier.
                record.deadlines.idle = record
                    .deadlines
                    .idle
                    .max(replaced.record.deadlines.idle)
                    .min(record.deadlines.absolute);
                record.last_seen = record.last_seen.max(replaced.record.last_seen);
                self.entries.insert(
                    *id,
                    Cached {
                        record,
                        fetched: Instant::now(),
                    },
                );
            }
            // Loads under way may have read the version this save replaced:
            // they must not cache it either.
            _ => {
                self.generations[Self::shard(id)].fetch_add(1, Ordering::AcqRel);
                self.entries.remove(id);
            }
        }
    }

    fn insert_unless_older(&self, id: &SessionId, record: &Record) {
        let newer_cached = self
            .entries
            .get(id)
            .is_some_and(|cached| cached.record.version > record.version);
        if !newer_cached {
            self.entries.insert(
                *id,
                Cached {
                    record: record.clone(),
                    fetched: Instant::now(),
                },
            );
        }
    }

    /// Drops the id, and makes loads already under way cache nothing.
    fn invalidate(&self, id: &SessionId) {
        let _shard = self.lock(id);
        self.generations[Self::shard(id)].fetch_add(1, Ordering::AcqRel);
        self.entries.remove(id);
    }

    /// Drops every entry `doomed` picks, and makes every load under way cache nothing.
    fn invalidate_where(&self, doomed: impl Fn(&SessionId, &Cached) -> bool) {
        let _shards: Vec<MutexGuard<'_, ()>> = self
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        for generation in &self.generations {
            generation.fetch_add(1, Ordering::AcqRel);
        }
        self.entries.retain(|id, cached| !doomed(id, cached));
    }
}

impl<S: SessionStore> CachedStore<S> {
    /// Caches `inner` with a staleness bound of zero: every call goes straight
    /// to `inner` and nothing is cached.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            cache: None,
            max_staleness: Duration::ZERO,
            capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// How old a cached copy may be and still be served without asking the store.
    ///
    /// Default: zero, so nothing revoked or changed elsewhere is ever served
    /// (and nothing is cached). A larger bound saves store round trips on
    /// read-mostly sessions at the price of that much staleness for changes
    /// made by other instances.
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self.cache = (!bound.is_zero()).then(|| Arc::new(Cache::new(self.capacity)));
        self
    }

    /// The most sessions kept; beyond it the least useful are evicted.
    /// Default: 100,000.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        if self.cache.is_some() {
            self.cache = Some(Arc::new(Cache::new(self.capacity)));
        }
        self
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn invalidate(&self, id: &SessionId) {
        if let Some(cache) = &self.cache {
            cache.invalidate(id);
        }
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
        let Some(cache) = &self.cache else {
            return self.inner.load(id).await;
        };
        if let Some(record) = cache.fresh(id, self.max_staleness) {
            return Ok(Some(record));
        }
        let generation = cache.generation(id);
        let loaded = self.inner.load(id).await?;
        match &loaded {
            Some(record) => cache.loaded(id, record, generation),
            None => cache.invalidate(id),
        }
        Ok(loaded)
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        let Some(cache) = &self.cache else {
            return self.inner.create(id, record).await;
        };
        let generation = cache.generation(id);
        self.inner.create(id, record).await?;
        let mut stored = record.clone();
        stored.version = 1;
        cache.written(id, stored, generation);
        Ok(())
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let Some(cache) = &self.cache else {
            return self.inner.save(id, record, expected_version).await;
        };
        let generation = cache.generation(id);
        let outcome = self.inner.save(id, record, expected_version).await;
        match &outcome {
            Ok(SaveOutcome::Saved(version)) => {
                let mut stored = record.clone();
                stored.version = *version;
                cache.saved(id, stored, expected_version, generation);
            }
            // A conflict means our copy was stale; a failure leaves us unsure.
            _ => cache.invalidate(id),
        }
        outcome
    }

    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        // Deadlines are not versioned: drop the copy rather than guess which
        // touch came last.
        self.invalidate(id);
        let touched = self.inner.touch(id, deadlines, seen_at).await;
        self.invalidate(id);
        touched
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.invalidate(id);
        let deleted = self.inner.delete(id).await;
        self.invalidate(id);
        deleted
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        self.invalidate(id);
        let deleted = self.inner.delete_at_version(id, expected_version).await;
        self.invalidate(id);
        deleted
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        self.inner.list_by_owner(owner).await
    }

    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let owned = |id: &SessionId, cached: &Cached| {
            Some(id) != keep && cached.record.owner.as_deref() == Some(owner)
        };
        if let Some(cache) = &self.cache {
            cache.invalidate_where(owned);
        }
        let deleted = self.inner.delete_by_owner(owner, keep).await;
        if let Some(cache) = &self.cache {
            cache.invalidate_where(owned);
        }
        deleted
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        if let Some(cache) = &self.cache {
            let now = Timestamp::now();
            cache.invalidate_where(|_, cached| cached.record.is_expired_at(now));
        }
        self.inner.delete_expired().await
    }
}
