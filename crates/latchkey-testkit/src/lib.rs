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
//! The suite checks the contract documented on
//! [`SessionStore`](latchkey_core::SessionStore): round trips of typed JSON,
//! id collisions, idle and absolute expiry with real short deadlines,
//! compare-and-set conflicts, delete-versus-save (no resurrection), the owner
//! index, `delete_expired`, and 64 tasks updating one session with an exact
//! result. [`run_all`] runs every case in sequence for stores that prefer one test.
//!
//! The [`servers`] module finds the Redis and PostgreSQL servers tests use,
//! and starts private ones (with TLS too, certificates from `tls`, feature
//! `tls`).
//!
//! With the `explorer` feature, `explorer` runs concurrent requests through
//! the real middleware and checks every interleaving of their store calls
//! against the invariants of exact sessions.

// A conformance suite reports a broken contract by panicking, like `assert!`.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod cases;
#[cfg(feature = "explorer")]
pub mod explorer;
mod runner;
pub mod servers;
#[cfg(feature = "tls")]
pub mod tls;

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
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::__with_cases!(__conformance_test_fns { $factory; });
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

/// Every case in turn on a fresh store from `$factory`, for `run_all`.
#[doc(hidden)]
#[macro_export]
macro_rules! __run_cases {
    ($factory:ident; $($case:ident,)*) => {
        $( $crate::cases::$case($factory().await).await; )*
    };
}
