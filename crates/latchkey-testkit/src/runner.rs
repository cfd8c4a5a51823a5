//! Running the cases outside the macro.

use std::future::Future;

use latchkey_core::SessionStore;

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
    crate::__with_cases!(__run_cases { factory; });
}
