//! The conformance suite every latchkey session store must pass.
//!
//! A store's crate runs the whole suite, one `#[test]` per case, with one line:
//!
//! ```
//! # mod wrapper {
//! async fn make_store() -> latchkey_memory::MemoryStore {
//!     latchkey_memory::MemoryStore::new()
//! }
//!
//! latchkey_testkit::conformance_tests!(make_store);
//! # }
//! ```
//!
//! `make_store` is called once per case and must return a store isolated from
//! the other cases (its own key prefix, schema or table), because cases run in
//! parallel. Owners and tokens are random per case, so cases sharing a backend
//! do not see each other's sessions.
//!
//! The expiry cases wait 1.3 s for short deadlines to pass. A store that
//! can read its time from a function skips the wait: given
//! `conformance_tests!(make_store, clock)`, the suite hands `make_store` a
//! [`TestClock`] to read, and moves that clock forward instead of sleeping.
//!
//! ```
//! # mod wrapper {
//! async fn make_store(clock: latchkey_testkit::TestClock) -> latchkey_memory::MemoryStore {
//!     latchkey_memory::MemoryStore::builder()
//!         .clock(move || clock.now())
//!         .build()
//! }
//!
//! latchkey_testkit::conformance_tests!(make_store, clock);
//! # }
//! ```
//!
//! The suite checks the contract documented on
//! [`SessionStore`](latchkey_core::SessionStore): round trips of typed JSON,
//! id collisions, idle and absolute expiry with short deadlines,
//! compare-and-set conflicts, delete-versus-save (no resurrection), the owner
//! index, `delete_expired`, and 64 tasks updating one session with an exact
//! result. [`run_all`] runs every case in sequence for stores that prefer one test.
//!
//! # Implementing a custom store
//!
//! A store is a type implementing
//! [`SessionStore`](latchkey_core::SessionStore); this suite then tells
//! whether it keeps every promise of the contract. Below, a complete store
//! on a `HashMap` behind a mutex, with an owner index, passing the whole
//! suite. A store on a server does the same with one round trip per
//! operation: the compare-and-set of `save` and `delete_at_version` must be
//! one atomic step of the server (a Lua script, an `UPDATE … WHERE version
//! = $2`), not a read followed by a write.
//!
//! ```
//! use std::collections::{HashMap, HashSet};
//! use std::sync::Mutex;
//!
//! use latchkey_core::{
//!     Deadlines, DeleteOutcome, Record, SaveOutcome, SessionId, SessionStore, StoreError, Timestamp,
//! };
//!
//! #[derive(Default)]
//! struct MapStore(Mutex<Maps>);
//!
//! #[derive(Default)]
//! struct Maps {
//!     sessions: HashMap<SessionId, Record>,
//!     owners: HashMap<String, HashSet<SessionId>>,
//! }
//!
//! impl Maps {
//!     /// The live record under `id`; an expired one is dropped on the way.
//!     fn live(&mut self, id: &SessionId) -> Option<&mut Record> {
//!         if self.sessions.get(id)?.is_expired_at(Timestamp::now()) {
//!             self.remove(id);
//!             return None;
//!         }
//!         self.sessions.get_mut(id)
//!     }
//!
//!     fn remove(&mut self, id: &SessionId) -> Option<Record> {
//!         let record = self.sessions.remove(id)?;
//!         if let Some(owner) = &record.owner {
//!             self.owners.entry(owner.clone()).or_default().remove(id);
//!         }
//!         Some(record)
//!     }
//!
//!     /// Stores `record`, moving its owner-index entry with it.
//!     fn put(&mut self, id: SessionId, record: Record) {
//!         self.remove(&id);
//!         if let Some(owner) = &record.owner {
//!             self.owners.entry(owner.clone()).or_default().insert(id);
//!         }
//!         self.sessions.insert(id, record);
//!     }
//! }
//!
//! impl SessionStore for MapStore {
//!     fn name(&self) -> &'static str {
//!         "map"
//!     }
//!
//!     async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
//!         Ok(self.0.lock().unwrap().live(id).cloned())
//!     }
//!
//!     async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
//!         let mut maps = self.0.lock().unwrap();
//!         if maps.live(id).is_some() {
//!             return Err(StoreError::IdCollision);
//!         }
//!         maps.put(*id, Record { version: 1, ..record.clone() });
//!         Ok(())
//!     }
//!
//!     async fn save(&self, id: &SessionId, record: &Record, expected: u64) -> Result<SaveOutcome, StoreError> {
//!         let mut maps = self.0.lock().unwrap();
//!         let Some(stored) = maps.live(id) else {
//!             return Ok(SaveOutcome::Missing);
//!         };
//!         if stored.version != expected {
//!             return Ok(SaveOutcome::Conflict);
//!         }
//!         // A touch since the writer loaded moved these later: keep them.
//!         let mut next = Record { version: expected + 1, ..record.clone() };
//!         next.deadlines.idle = stored.deadlines.idle.max(record.deadlines.idle).min(record.deadlines.absolute);
//!         next.last_seen = stored.last_seen.max(record.last_seen);
//!         maps.put(*id, next);
//!         Ok(SaveOutcome::Saved(expected + 1))
//!     }
//!
//!     async fn touch(&self, id: &SessionId, deadlines: Deadlines, seen_at: Timestamp) -> Result<bool, StoreError> {
//!         let mut maps = self.0.lock().unwrap();
//!         let Some(stored) = maps.live(id) else {
//!             return Ok(false);
//!         };
//!         stored.deadlines = deadlines;
//!         stored.last_seen = stored.last_seen.max(seen_at);
//!         Ok(true)
//!     }
//!
//!     async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
//!         self.0.lock().unwrap().remove(id);
//!         Ok(())
//!     }
//!
//!     async fn delete_at_version(&self, id: &SessionId, expected: u64) -> Result<DeleteOutcome, StoreError> {
//!         let mut maps = self.0.lock().unwrap();
//!         match maps.live(id) {
//!             None => Ok(DeleteOutcome::Missing),
//!             Some(stored) if stored.version != expected => Ok(DeleteOutcome::Conflict),
//!             Some(_) => {
//!                 maps.remove(id);
//!                 Ok(DeleteOutcome::Deleted)
//!             }
//!         }
//!     }
//!
//!     async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
//!         let mut maps = self.0.lock().unwrap();
//!         let ids: Vec<SessionId> = maps.owners.get(owner).into_iter().flatten().copied().collect();
//!         Ok(ids.into_iter().filter_map(|id| Some((id, maps.live(&id)?.clone()))).collect())
//!     }
//!
//!     async fn delete_by_owner(&self, owner: &str, keep: Option<&SessionId>) -> Result<u64, StoreError> {
//!         let mut maps = self.0.lock().unwrap();
//!         let ids: Vec<SessionId> = maps.owners.get(owner).into_iter().flatten().copied().collect();
//!         let mut deleted = 0;
//!         for id in ids.iter().filter(|id| Some(*id) != keep) {
//!             if maps.live(id).is_some() {
//!                 maps.remove(id);
//!                 deleted += 1;
//!             }
//!         }
//!         Ok(deleted)
//!     }
//!
//!     async fn delete_expired(&self) -> Result<u64, StoreError> {
//!         let mut maps = self.0.lock().unwrap();
//!         let now = Timestamp::now();
//!         let expired: Vec<SessionId> =
//!             maps.sessions.iter().filter(|(_, r)| r.is_expired_at(now)).map(|(id, _)| *id).collect();
//!         for id in &expired {
//!             maps.remove(id);
//!         }
//!         Ok(expired.len() as u64)
//!     }
//! }
//!
//! // In the store's crate this is `latchkey_testkit::conformance_tests!(make_store);`
//! // in a test file, one `#[test]` per case; here every case runs in turn.
//! latchkey_testkit::block_on(latchkey_testkit::run_all(|| async { MapStore::default() }));
//! ```
//!
//! With the `servers` feature, `servers` finds the Redis and PostgreSQL
//! servers tests use, and starts private ones (with TLS too, certificates
//! from `tls`, feature `tls`).
//!
//! With the `explorer` feature, `explorer` runs concurrent requests through
//! the real middleware and checks every interleaving of their store calls
//! against the invariants of exact sessions.

// A conformance suite reports a broken contract by panicking, like `assert!`.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod cases;
mod clock;
#[cfg(feature = "explorer")]
pub mod explorer;
mod runner;
#[cfg(feature = "servers")]
pub mod servers;
#[cfg(feature = "tls")]
pub mod tls;

pub use self::clock::TestClock;
pub use self::runner::{block_on, run_all};

#[doc(hidden)]
pub use latchkey_core as __core;

/// Hands the list of conformance cases, the one list, to `$callback` (a
/// macro of this crate), after `$args`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! { $($args)*
            round_trip_keeps_typed_json,
            load_of_unknown_id_is_none,
            create_reports_collision_and_keeps_original,
            idle_deadline_expires_session,
            absolute_deadline_expires_session,
            expired_session_id_can_be_created_again,
            touch_extends_without_rewriting,
            last_seen_moves_forward_only,
            save_never_moves_the_idle_deadline_earlier,
            the_session_idle_timeout_is_kept,
            save_is_compare_and_set,
            save_after_delete_is_missing_and_does_not_resurrect,
            delete_at_version_is_compare_and_delete,
            delete_at_version_of_expired_session_is_missing,
            delete_is_idempotent,
            owner_index_lists_and_follows_changes,
            owner_index_skips_expired_sessions,
            owner_index_survives_owner_churn_and_concurrent_listing,
            delete_by_owner_keeps_the_named_session,
            delete_expired_keeps_live_sessions,
            concurrent_updates_on_one_session_are_exact,
        }
    };
}

/// Expands to one `#[test]` per conformance case, each on a store from `$factory`.
///
/// `$factory` is the path of an `async fn() -> S` where `S: SessionStore`.
/// With `, clock` it is an `async fn(TestClock) -> S` whose store reads the
/// [`TestClock`] for every operation: the expiry cases then move the clock
/// instead of waiting.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::__with_cases!(__conformance_test_fns { $factory; });
    };
    ($factory:path, clock) => {
        $crate::__with_cases!(__conformance_test_fns_with_clock { $factory; });
    };
}

/// One `#[test]` per case, for [`conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    ($factory:path; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                $crate::block_on(async {
                    let store = $factory().await;
                    $crate::cases::$case(store).await;
                });
            }
        )*
    };
}

/// One `#[test]` per case on a store that reads a [`TestClock`], for
/// [`conformance_tests!`]`(factory, clock)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns_with_clock {
    ($factory:path; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                $crate::block_on(async {
                    let clock = $crate::TestClock::new();
                    let store = $factory(clock.clone()).await;
                    $crate::cases::on_clock(clock, $crate::cases::$case(store)).await;
                });
            }
        )*
    };
}

/// Every case in turn on a fresh store from `$factory`, for `run_all`.
#[doc(hidden)]
#[macro_export]
macro_rules! __run_cases {
    ($factory:ident; $($case:ident,)*) => {
        $( $crate::cases::$case($factory().await).await; )*
    };
}
