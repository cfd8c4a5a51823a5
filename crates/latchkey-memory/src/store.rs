//! The sharded map and its owner index.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use latchkey_core::{
    Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionId, SessionStore,
    StoreError, Timestamp,
};

/// The most passes `delete_by_owner` makes over an owner's index: each pass
/// after the first only finds sessions renewed while the previous one ran.
const DELETE_BY_OWNER_PASSES: usize = 8;

/// How often, at most, a store at capacity sweeps every shard to make room: a
/// full sweep costs time in proportion to the sessions held, so creates at
/// capacity may not each pay for one.
const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How often, at most, writes sweep one shard of expired sessions.
const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

type Shard = HashMap<SessionId, Record>;

/// An in-process [`SessionStore`].
///
/// Cloning is cheap and clones share the same sessions, so one clone can go to
/// the middleware and another to an admin route or the sweeper.
///
/// # Examples
///
/// ```
/// use latchkey_memory::MemoryStore;
///
/// let store = MemoryStore::new();
/// let for_admin = store.clone();
/// assert_eq!(for_admin.len(), store.len());
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shards: Box<[Mutex<Shard>]>,
    owners: Mutex<HashMap<String, HashSet<SessionId>>>,
    len: AtomicUsize,
    capacity: Option<usize>,
    sweep_interval: Duration,
    next_sweep_at: AtomicU64,
    /// When a store at capacity may next sweep every shard to make room.
    next_full_sweep_at: AtomicU64,
    sweep_cursor: AtomicUsize,
    runtime: RuntimeSlot,
    clock: Clock,
}

/// Where the store reads the time: the system clock, or a function given to
/// [`MemoryStoreBuilder::clock`].
#[derive(Clone, Default)]
struct Clock(Option<Arc<dyn Fn() -> Timestamp + Send + Sync>>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(given)"
        } else {
            "Clock(system)"
        })
    }
}

/// Configures a [`MemoryStore`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use latchkey_memory::MemoryStore;
///
/// let store = MemoryStore::builder()
///     .shards(64)
///     .capacity(1_000_000)
///     .sweep_interval(Duration::from_secs(10))
///     .build();
/// # drop(store);
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStoreBuilder {
    shards: usize,
    capacity: Option<usize>,
    sweep_interval: Duration,
    clock: Clock,
}

impl MemoryStoreBuilder {
    /// How many independently locked parts the map is split into.
    ///
    /// Default: four per available CPU, rounded up to a power of two (at least 16),
    /// so that two requests rarely contend for one lock. Values are rounded up to
    /// a power of two; 0 counts as 1.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1).next_power_of_two();
        self
    }

    /// The most sessions the store holds; `create` beyond it fails with
    /// [`StoreError::CapacityExceeded`] once expired sessions have been swept.
    ///
    /// Default: unbounded, as the memory store is for development and single
    /// instances where the session count follows the user count.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// How often, at most, a write also sweeps one shard of expired sessions.
    ///
    /// Default: 30 seconds, so every shard is visited regularly under steady
    /// traffic without putting a full sweep on any one request.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The time the store judges expiry by, instead of the system clock: for
    /// an application's tests of what happens once a session expires,
    /// without waiting for it. Only the store reads it: the middleware sets
    /// and extends deadlines by the system clock, so a clock that runs ahead
    /// makes sessions expire as if that much time had passed since their
    /// last save, and a request after the move does not extend them by the
    /// moved time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::time::Duration;
    /// use latchkey_core::{Deadlines, Record, SessionStore as _, SessionToken, Timestamp};
    /// use latchkey_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ahead_ms = Arc::new(AtomicU64::new(0));
    /// let store = MemoryStore::builder()
    ///     .clock({
    ///         let ahead_ms = ahead_ms.clone();
    ///         move || Timestamp::now() + Duration::from_millis(ahead_ms.load(Ordering::Relaxed))
    ///     })
    ///     .build();
    /// let now = Timestamp::now();
    /// let id = SessionToken::generate()?.id();
    /// let minute = Duration::from_secs(60);
    /// store.create(&id, &Record::new(now, Deadlines::starting_at(now, minute, minute))).await?;
    /// assert!(store.load(&id).await?.is_some());
    ///
    /// ahead_ms.store(61_000, Ordering::Relaxed); // a minute and a second later
    /// assert!(store.load(&id).await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn clock(mut self, now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Clock(Some(Arc::new(now)));
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let shards = (0..self.shards)
            .map(|_| Mutex::new(Shard::new()))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        MemoryStore {
            inner: Arc::new(Inner {
                shards,
                owners: Mutex::new(HashMap::new()),
                len: AtomicUsize::new(0),
                capacity: self.capacity,
                sweep_interval: self.sweep_interval,
                next_sweep_at: AtomicU64::new(0),
                next_full_sweep_at: AtomicU64::new(0),
                sweep_cursor: AtomicUsize::new(0),
                runtime: RuntimeSlot::new(),
                clock: self.clock,
            }),
        }
    }
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            shards: (cpus * 4).max(16).next_power_of_two(),
            capacity: None,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            clock: Clock::default(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the map consistent (every
    // mutation is a single insert or remove), so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// A store with the default configuration; see [`MemoryStore::builder`].
    pub fn new() -> Self {
        MemoryStoreBuilder::default().build()
    }

    /// Configures a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// How many sessions are held, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether no sessions are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, id: &SessionId) -> &Mutex<Shard> {
        let bytes = id.as_bytes();
        // Ids are SHA-256 digests, so their leading bytes are already uniform.
        let index = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        &self.inner.shards[index & (self.inner.shards.len() - 1)]
    }

    fn index_owner(&self, id: &SessionId, old: Option<&str>, new: Option<&str>) {
        if old == new {
            return;
        }
        let mut owners = lock(&self.inner.owners);
        if let Some(old) = old {
            unindex(&mut owners, old, id);
        }
        if let Some(new) = new {
            owners.entry(new.to_owned()).or_default().insert(*id);
        }
    }

    /// Removes the expired sessions of one shard while its lock is held.
    fn sweep_shard(&self, shard: &mut Shard, now: Timestamp) -> u64 {
        let mut removed = Vec::new();
        shard.retain(|id, record| {
            let keep = !record.is_expired_at(now);
            if !keep {
                removed.push((*id, record.owner.take()));
            }
            keep
        });
        if !removed.is_empty() {
            self.inner.len.fetch_sub(removed.len(), Ordering::Relaxed);
            let mut owners = lock(&self.inner.owners);
            for (id, owner) in &removed {
                if let Some(owner) = owner {
                    unindex(&mut owners, owner, id);
                }
            }
        }
        removed.len() as u64
    }

    /// Sweeps the next shard in turn when the sweep interval has passed.
    fn maybe_sweep(&self, now: Timestamp) {
        let due = self.inner.next_sweep_at.load(Ordering::Relaxed);
        if now.as_millis() < due {
            return;
        }
        let per_shard = self.inner.sweep_interval / self.inner.shards.len() as u32;
        let next = (now + per_shard).as_millis();
        if self
            .inner
            .next_sweep_at
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let cursor = self.inner.sweep_cursor.fetch_add(1, Ordering::Relaxed);
        let shard = &self.inner.shards[cursor % self.inner.shards.len()];
        self.sweep_shard(&mut lock(shard), now);
    }

    fn sweep_all(&self, now: Timestamp) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|shard| self.sweep_shard(&mut lock(shard), now))
            .sum()
    }

    fn load_now(&self, id: &SessionId, now: Timestamp) -> Option<Record> {
        let mut shard = lock(self.shard(id));
        match shard.get(id) {
            Some(record) if !record.is_expired_at(now) => Some(record.clone()),
            Some(_) => {
                self.remove_locked(&mut shard, id);
                None
            }
            None => None,
        }
    }

    fn remove_locked(&self, shard: &mut Shard, id: &SessionId) -> bool {
        match shard.remove(id) {
            Some(record) => {
                self.inner.len.fetch_sub(1, Ordering::Relaxed);
                self.index_owner(id, record.owner.as_deref(), None);
                true
            }
            None => false,
        }
    }

    fn create_now(
        &self,
        id: &SessionId,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.maybe_sweep(now);
        self.reserve(now)?;
        let mut shard = lock(self.shard(id));
        if let Some(existing) = shard.get(id) {
            if !existing.is_expired_at(now) {
                drop(shard);
                self.inner.len.fetch_sub(1, Ordering::AcqRel);
                return Err(StoreError::IdCollision);
            }
            self.remove_locked(&mut shard, id);
        }
        let mut stored = record.clone();
        stored.version = 1;
        self.index_owner(id, None, stored.owner.as_deref());
        shard.insert(*id, stored);
        Ok(())
    }

    /// Counts a session about to be created, if the capacity allows: the bound
    /// holds however many creates run at once. At capacity, expired sessions
    /// are swept to make room, at most once per [`FULL_SWEEP_INTERVAL`].
    fn reserve(&self, now: Timestamp) -> Result<(), StoreError> {
        let Some(capacity) = self.inner.capacity else {
            self.inner.len.fetch_add(1, Ordering::AcqRel);
            return Ok(());
        };
        loop {
            let len = self.inner.len.load(Ordering::Acquire);
            if len >= capacity {
                if self.full_sweep_if_due(now) > 0 {
                    continue;
                }
                return Err(StoreError::CapacityExceeded { capacity });
            }
            if self
                .inner
                .len
                .compare_exchange(len, len + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(());
            }
        }
    }

    fn full_sweep_if_due(&self, now: Timestamp) -> u64 {
        let due = self.inner.next_full_sweep_at.load(Ordering::Acquire);
        let next = (now + FULL_SWEEP_INTERVAL).as_millis();
        if now.as_millis() < due
            || self
                .inner
                .next_full_sweep_at
                .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return 0;
        }
        self.sweep_all(now)
    }

    fn save_now(
        &self,
        id: &SessionId,
        record: &Record,
        expected: u64,
        now: Timestamp,
    ) -> SaveOutcome {
        let mut shard = lock(self.shard(id));
        let Some(current) = shard.get_mut(id) else {
            return SaveOutcome::Missing;
        };
        if current.is_expired_at(now) {
            self.remove_locked(&mut shard, id);
            return SaveOutcome::Missing;
        }
        if current.version != expected {
            return SaveOutcome::Conflict;
        }
        let old_owner = current.owner.take();
        // A touch since the load moved the idle deadline without a new
        // version; the save must not move it back.
        let idle = current.deadlines.idle.max(record.deadlines.idle);
        let last_seen = current.last_seen.max(record.last_seen);
        *current = record.clone();
        current.deadlines.idle = idle.min(current.deadlines.absolute);
        current.last_seen = last_seen;
        current.version = expected + 1;
        self.index_owner(id, old_owner.as_deref(), current.owner.as_deref());
        SaveOutcome::Saved(expected + 1)
    }

    fn delete_at_version_now(
        &self,
        id: &SessionId,
        expected: u64,
        now: Timestamp,
    ) -> DeleteOutcome {
        let mut shard = lock(self.shard(id));
        match shard.get(id) {
            Some(record) if record.is_expired_at(now) => {
                self.remove_locked(&mut shard, id);
                DeleteOutcome::Missing
            }
            Some(record) if record.version != expected => DeleteOutcome::Conflict,
            Some(_) => {
                self.remove_locked(&mut shard, id);
                DeleteOutcome::Deleted
            }
            None => DeleteOutcome::Missing,
        }
    }

    fn touch_now(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
        now: Timestamp,
    ) -> bool {
        let mut shard = lock(self.shard(id));
        match shard.get_mut(id) {
            Some(record) if !record.is_expired_at(now) => {
                record.deadlines = deadlines;
                record.last_seen = record.last_seen.max(seen_at);
                true
            }
            Some(_) => {
                self.remove_locked(&mut shard, id);
                false
            }
            None => false,
        }
    }

    fn owned_ids(&self, owner: &str) -> Vec<SessionId> {
        lock(&self.inner.owners)
            .get(owner)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }
}

fn unindex(owners: &mut HashMap<String, HashSet<SessionId>>, owner: &str, id: &SessionId) {
    if let Some(ids) = owners.get_mut(owner) {
        ids.remove(id);
        if ids.is_empty() {
            owners.remove(owner);
        }
    }
}

impl SessionStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn runtime_slot(&self) -> Option<&RuntimeSlot> {
        Some(&self.inner.runtime)
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        Ok(self.load_now(id, self.now()))
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        self.create_now(id, record, self.now())
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        Ok(self.save_now(id, record, expected_version, self.now()))
    }

    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.touch_now(id, deadlines, seen_at, self.now()))
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.remove_locked(&mut lock(self.shard(id)), id);
        Ok(())
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        Ok(self.delete_at_version_now(id, expected_version, self.now()))
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        let now = self.now();
        let sessions = self
            .owned_ids(owner)
            .into_iter()
            .filter_map(|id| {
                // The owner may have changed between reading the index and the shard.
                let record = self.load_now(&id, now)?;
                (record.owner.as_deref() == Some(owner)).then_some((id, record))
            })
            .collect();
        Ok(sessions)
    }

    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        // A renewal racing this creates its new session (indexed) before
        // retiring the old one: a pass that found the old one already gone is
        // followed by another, which finds the new one.
        let now = self.now();
        let mut deleted = 0;
        for _ in 0..DELETE_BY_OWNER_PASSES {
            let ids: Vec<SessionId> = self
                .owned_ids(owner)
                .into_iter()
                .filter(|id| Some(id) != keep)
                .collect();
            if ids.is_empty() {
                break;
            }
            deleted += self.delete_owned(owner, ids, now);
        }
        Ok(deleted)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(self.sweep_all(self.now()))
    }
}

impl MemoryStore {
    /// The store's time: its clock's, or the system's.
    fn now(&self) -> Timestamp {
        match &self.inner.clock.0 {
            Some(clock) => clock(),
            None => Timestamp::now(),
        }
    }

    /// Deletes those of `ids` still owned by `owner`, returning how many were live.
    fn delete_owned(&self, owner: &str, ids: Vec<SessionId>, now: Timestamp) -> u64 {
        let mut deleted = 0;
        for id in ids {
            let mut shard = lock(self.shard(&id));
            let owned_and_live = shard.get(&id).map(|record| {
                (
                    record.owner.as_deref() == Some(owner),
                    record.is_expired_at(now),
                )
            });
            if let Some((true, expired)) = owned_and_live {
                self.remove_locked(&mut shard, &id);
                deleted += u64::from(!expired);
            }
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(now: Timestamp, ttl_ms: u64) -> Record {
        let ttl = Duration::from_millis(ttl_ms);
        Record::new(now, Deadlines::starting_at(now, ttl, ttl))
    }

    fn id(n: u8) -> SessionId {
        SessionId::from_bytes([n; 32])
    }

    #[test]
    fn shard_count_is_a_power_of_two() {
        let store = MemoryStore::builder().shards(10).build();
        assert_eq!(store.inner.shards.len(), 16);
        let store = MemoryStore::builder().shards(0).build();
        assert_eq!(store.inner.shards.len(), 1);
    }

    #[test]
    fn expired_records_are_removed_on_read_and_unindexed() {
        let store = MemoryStore::new();
        let t0 = Timestamp::from_millis(1_000);
        let mut r = record(t0, 100);
        r.owner = Some("ann".into());
        store.create_now(&id(1), &r, t0).unwrap();
        assert!(
            store
                .load_now(&id(1), Timestamp::from_millis(1_099))
                .is_some()
        );
        assert!(
            store
                .load_now(&id(1), Timestamp::from_millis(1_100))
                .is_none()
        );
        assert_eq!(store.len(), 0);
        assert!(store.owned_ids("ann").is_empty());
    }

    #[test]
    fn capacity_counts_only_after_sweeping_expired_sessions() {
        let store = MemoryStore::builder().capacity(2).build();
        let t0 = Timestamp::from_millis(1_000);
        store.create_now(&id(1), &record(t0, 10), t0).unwrap();
        store.create_now(&id(2), &record(t0, 10_000), t0).unwrap();
        let err = store
            .create_now(&id(3), &record(t0, 10_000), t0)
            .unwrap_err();
        assert!(matches!(err, StoreError::CapacityExceeded { capacity: 2 }));
        // Once the first has expired, its slot is reclaimed by the next full
        // sweep, which runs at most once per interval.
        let soon = Timestamp::from_millis(1_020);
        assert!(
            store
                .create_now(&id(3), &record(soon, 10_000), soon)
                .is_err()
        );
        let later = t0 + FULL_SWEEP_INTERVAL;
        store
            .create_now(&id(3), &record(later, 10_000), later)
            .unwrap();
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn the_capacity_holds_under_concurrent_creates() {
        let store = MemoryStore::builder().capacity(100).build();
        let now = Timestamp::now();
        let created: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8u8)
                .map(|worker| {
                    let store = &store;
                    scope.spawn(move || {
                        (0..200u8)
                            .filter(|n| {
                                let mut bytes = [0; 32];
                                bytes[0] = *n;
                                bytes[1] = worker;
                                let id = SessionId::from_bytes(bytes);
                                store.create_now(&id, &record(now, 60_000), now).is_ok()
                            })
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        assert_eq!(created, 100, "exactly the capacity was created");
        assert_eq!(store.len(), 100);
    }

    #[test]
    fn writes_sweep_one_shard_when_due() {
        let store = MemoryStore::builder()
            .shards(1)
            .sweep_interval(Duration::from_millis(50))
            .build();
        let t0 = Timestamp::from_millis(1_000);
        store.create_now(&id(1), &record(t0, 10), t0).unwrap();
        assert_eq!(store.len(), 1);
        let later = Timestamp::from_millis(2_000);
        store
            .create_now(&id(2), &record(later, 10_000), later)
            .unwrap();
        assert_eq!(store.len(), 1, "the expired session was swept by the write");
    }

    #[test]
    fn owner_change_moves_the_index_entry() {
        let store = MemoryStore::new();
        let t0 = Timestamp::now();
        let mut r = record(t0, 60_000);
        r.owner = Some("ann".into());
        store.create_now(&id(1), &r, t0).unwrap();
        r.owner = Some("bob".into());
        assert_eq!(store.save_now(&id(1), &r, 1, t0), SaveOutcome::Saved(2));
        assert!(store.owned_ids("ann").is_empty());
        assert_eq!(store.owned_ids("bob"), vec![id(1)]);
    }
}
