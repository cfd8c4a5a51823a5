//! Running the cases outside the macro.

use std::future::Future;

use latchkey_core::SessionStore;

use crate::cases;

/// Runs a future to completion on a fresh multi-threaded Tokio runtime.
///
/// The suite's concurrency case needs real parallelism, so each test gets its own
/// multi-threaded runtime rather than the caller's.
///
/// # Panics
///
/// When the runtime cannot be built: this is test support, where a panic is the
/// failure report.
pub fn block_on<F: Future>(future: F) -> F::Output {
    #[allow(clippy::expect_used)]
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the conformance suite");
    runtime.block_on(future)
}

/// Runs every conformance case in sequence, each on a fresh store from `factory`.
///
/// # Panics
///
/// When a case fails, with the case's name in the message.
///
/// # Examples
///
/// ```
/// # latchkey_testkit::block_on(async {
/// latchkey_testkit::run_all(|| async { latchkey_memory::MemoryStore::new() }).await;
/// # });
/// ```
pub async fn run_all<S, F, Fut>(factory: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    cases::round_trip_keeps_typed_json(factory().await).await;
    cases::load_of_unknown_id_is_none(factory().await).await;
    cases::create_reports_collision_and_keeps_original(factory().await).await;
    cases::idle_deadline_expires_session(factory().await).await;
    cases::absolute_deadline_expires_session(factory().await).await;
    cases::expired_session_id_can_be_created_again(factory().await).await;
    cases::touch_extends_without_rewriting(factory().await).await;
    cases::last_seen_moves_forward_only(factory().await).await;
    cases::save_never_moves_the_idle_deadline_earlier(factory().await).await;
    cases::the_session_idle_timeout_is_kept(factory().await).await;
    cases::save_is_compare_and_set(factory().await).await;
    cases::save_after_delete_is_missing_and_does_not_resurrect(factory().await).await;
    cases::delete_at_version_is_compare_and_delete(factory().await).await;
    cases::delete_at_version_of_expired_session_is_missing(factory().await).await;
    cases::delete_is_idempotent(factory().await).await;
    cases::owner_index_lists_and_follows_changes(factory().await).await;
    cases::owner_index_skips_expired_sessions(factory().await).await;
    cases::owner_index_survives_owner_churn_and_concurrent_listing(factory().await).await;
    cases::delete_by_owner_keeps_the_named_session(factory().await).await;
    cases::delete_expired_keeps_live_sessions(factory().await).await;
    cases::concurrent_updates_on_one_session_are_exact(factory().await).await;
}
