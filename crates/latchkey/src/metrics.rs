//! Counters of what the sessions did, for export to any metrics system, and the
//! store wrapper that traces every store operation.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use latchkey_core::{
    AnyStore, Deadlines, DeleteOutcome, Record, SaveOutcome, SessionId, SessionStore, StoreError,
    Timestamp,
};
use tracing::Instrument as _;
use tracing::field::Empty;

/// Live counters, shared by every worker of one [`SessionMiddleware`](crate::SessionMiddleware).
///
/// Read them with [`SessionMetrics::snapshot`] and export the numbers however
/// your application exports metrics (a `/metrics` route, OpenTelemetry).
/// Counting costs a relaxed atomic increment. With the `metrics` feature every
/// count also goes to the [`metrics`](https://docs.rs/metrics) facade, with a
/// `store` label, together with a histogram of store latencies: any exporter
/// (Prometheus, OpenTelemetry, StatsD) then sees them without polling.
///
/// # Examples
///
/// ```
/// use actix_web::cookie::Key;
/// use latchkey::{SessionMiddleware, memory::MemoryStore};
///
/// let sessions = SessionMiddleware::new(MemoryStore::new(), Key::generate());
/// let metrics = sessions.metrics();
/// assert_eq!(metrics.snapshot().loads, 0);
/// println!("{}", metrics.snapshot().to_prometheus("latchkey"));
/// ```
#[derive(Debug, Default)]
pub struct SessionMetrics {
    /// The store's name, the `store` label of facade metrics.
    #[cfg(feature = "metrics")]
    store: &'static str,
    loads: AtomicU64,
    saves: AtomicU64,
    creates: AtomicU64,
    touches: AtomicU64,
    deletes: AtomicU64,
    conflicts_replayed: AtomicU64,
    conflicts_given_up: AtomicU64,
    store_errors: AtomicU64,
    sessions_created: AtomicU64,
    sessions_destroyed: AtomicU64,
    cookies_rejected: AtomicU64,
    sessions_not_found: AtomicU64,
}

/// The counters at one moment.
///
/// # Examples
///
/// ```
/// let snapshot = latchkey::SessionMetrics::default().snapshot();
/// assert_eq!(snapshot.conflicts_given_up, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Store loads.
    pub loads: u64,
    /// Compare-and-set saves sent (including ones that conflicted).
    pub saves: u64,
    /// Store creates sent.
    pub creates: u64,
    /// Idle-deadline extensions sent.
    pub touches: u64,
    /// Store deletes sent.
    pub deletes: u64,
    /// Conflicts resolved by replaying a request's changes on a fresh copy.
    pub conflicts_replayed: u64,
    /// Requests that gave up after the configured number of replays.
    pub conflicts_given_up: u64,
    /// Store operations that failed or timed out.
    pub store_errors: u64,
    /// Sessions created (new, or by renewal).
    pub sessions_created: u64,
    /// Sessions ended by purge or renewal.
    pub sessions_destroyed: u64,
    /// Session cookies that failed verification (forged, tampered, malformed
    /// or signed with a retired key); none reaches the store.
    pub cookies_rejected: u64,
    /// Valid cookies whose session was gone: expired, logged out, or retired
    /// by a renewal. The request starts a new session.
    pub sessions_not_found: u64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl SessionMetrics {
    /// The counters now.
    ///
    /// # Examples
    ///
    /// ```
    /// let metrics = latchkey::SessionMetrics::default();
    /// assert_eq!(metrics.snapshot(), latchkey::MetricsSnapshot::default());
    /// ```
    pub fn snapshot(&self) -> MetricsSnapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            loads: read(&self.loads),
            saves: read(&self.saves),
            creates: read(&self.creates),
            touches: read(&self.touches),
            deletes: read(&self.deletes),
            conflicts_replayed: read(&self.conflicts_replayed),
            conflicts_given_up: read(&self.conflicts_given_up),
            store_errors: read(&self.store_errors),
            sessions_created: read(&self.sessions_created),
            sessions_destroyed: read(&self.sessions_destroyed),
            cookies_rejected: read(&self.cookies_rejected),
            sessions_not_found: read(&self.sessions_not_found),
        }
    }

    pub(crate) fn for_store(store: &'static str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = store;
        Self {
            #[cfg(feature = "metrics")]
            store,
            ..Self::default()
        }
    }

    /// Counts one event, here and, with the `metrics` feature, in the facade
    /// as `latchkey_<name>_total{store}`.
    fn count(&self, counter: &AtomicU64, name: &'static str) {
        bump(counter);
        #[cfg(feature = "metrics")]
        metrics::counter!(name, "store" => self.store).increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = name;
    }

    pub(crate) fn conflict_replayed(&self) {
        self.count(
            &self.conflicts_replayed,
            "latchkey_conflicts_replayed_total",
        );
    }

    pub(crate) fn conflict_given_up(&self) {
        self.count(
            &self.conflicts_given_up,
            "latchkey_conflicts_given_up_total",
        );
    }

    pub(crate) fn session_created(&self) {
        self.count(&self.sessions_created, "latchkey_sessions_created_total");
    }

    pub(crate) fn session_destroyed(&self) {
        self.count(
            &self.sessions_destroyed,
            "latchkey_sessions_destroyed_total",
        );
    }

    pub(crate) fn cookie_rejected(&self) {
        self.count(&self.cookies_rejected, "latchkey_cookies_rejected_total");
    }

    pub(crate) fn session_not_found(&self) {
        self.count(
            &self.sessions_not_found,
            "latchkey_sessions_not_found_total",
        );
    }
}

impl MetricsSnapshot {
    /// The counters in Prometheus' text format, each as `<prefix>_<name>_total`.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = latchkey::MetricsSnapshot::default().to_prometheus("app_sessions");
    /// assert!(text.contains("app_sessions_loads_total 0"));
    /// ```
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            ("loads", "Session store loads.", self.loads),
            ("saves", "Compare-and-set saves sent.", self.saves),
            ("creates", "Session store creates sent.", self.creates),
            ("touches", "Idle-deadline extensions sent.", self.touches),
            ("deletes", "Session store deletes sent.", self.deletes),
            (
                "conflicts_replayed",
                "Conflicts resolved by replaying changes.",
                self.conflicts_replayed,
            ),
            (
                "conflicts_given_up",
                "Requests that gave up replaying.",
                self.conflicts_given_up,
            ),
            (
                "store_errors",
                "Store operations that failed or timed out.",
                self.store_errors,
            ),
            (
                "sessions_created",
                "Sessions created.",
                self.sessions_created,
            ),
            (
                "sessions_destroyed",
                "Sessions ended by purge or renewal.",
                self.sessions_destroyed,
            ),
            (
                "cookies_rejected",
                "Session cookies that failed verification.",
                self.cookies_rejected,
            ),
            (
                "sessions_not_found",
                "Valid cookies whose session was gone (expired, logged out).",
                self.sessions_not_found,
            ),
        ] {
            let _ = writeln!(out, "# HELP {prefix}_{name}_total {help}");
            let _ = writeln!(out, "# TYPE {prefix}_{name}_total counter");
            let _ = writeln!(out, "{prefix}_{name}_total {value}");
        }
        out
    }
}

/// The middleware's store: every operation in a `latchkey.store` span carrying
/// the store's name, the operation, its outcome and its latency (never the
/// token), and counted.
#[derive(Clone, Debug)]
pub(crate) struct ObservedStore {
    inner: AnyStore,
    metrics: Arc<SessionMetrics>,
}

impl ObservedStore {
    pub(crate) fn new(inner: AnyStore, metrics: Arc<SessionMetrics>) -> Self {
        Self { inner, metrics }
    }

    pub(crate) fn metrics(&self) -> &SessionMetrics {
        &self.metrics
    }

    /// The store itself, for work that must not count as the application's
    /// (test set-up).
    #[cfg(feature = "test-util")]
    pub(crate) fn unobserved(&self) -> &AnyStore {
        &self.inner
    }

    pub(crate) fn metrics_handle(&self) -> Arc<SessionMetrics> {
        Arc::clone(&self.metrics)
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        counter: &AtomicU64,
        work: impl Future<Output = Result<T, StoreError>>,
        outcome: fn(&T) -> &'static str,
    ) -> Result<T, StoreError> {
        bump(counter);
        let span = tracing::debug_span!(
            "latchkey.store",
            store = self.inner.name(),
            operation,
            outcome = Empty,
            latency_us = Empty
        );
        let mut finished = Finished {
            store: self.inner.name(),
            operation,
            span,
            started: Instant::now(),
            outcome: None,
        };
        let result = work.instrument(finished.span.clone()).await;
        finished.outcome = Some(match &result {
            Ok(value) => outcome(value),
            Err(err) => {
                bump(&self.metrics.store_errors);
                tracing::warn!(parent: &finished.span, store = self.inner.name(), operation, error = %err, "session store operation failed");
                "error"
            }
        });
        result
    }
}

/// Records one store operation's outcome and latency when it ends, also when
/// it never does: a call dropped by the session deadline is recorded as
/// `cancelled`, so the latency tail shows exactly when the store stalls.
struct Finished {
    store: &'static str,
    operation: &'static str,
    span: tracing::Span,
    started: Instant,
    outcome: Option<&'static str>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let latency = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let outcome = self.outcome.unwrap_or("cancelled");
        self.span.record("latency_us", latency);
        self.span.record("outcome", outcome);
        #[cfg(feature = "metrics")]
        {
            let (store, operation) = (self.store, self.operation);
            metrics::counter!("latchkey_store_operations_total", "store" => store, "operation" => operation, "outcome" => outcome).increment(1);
            metrics::histogram!("latchkey_store_operation_duration_seconds", "store" => store, "operation" => operation).record(elapsed.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (self.store, self.operation);
    }
}

fn ok<T>(_: &T) -> &'static str {
    "ok"
}

impl SessionStore for ObservedStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.observe("load", &self.metrics.loads, self.inner.load(id), |r| {
            if r.is_some() { "found" } else { "absent" }
        })
        .await
    }

    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        self.observe(
            "create",
            &self.metrics.creates,
            self.inner.create(id, record),
            ok,
        )
        .await
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.observe(
            "save",
            &self.metrics.saves,
            self.inner.save(id, record, expected_version),
            |o| match o {
                SaveOutcome::Saved(_) => "saved",
                SaveOutcome::Conflict => "conflict",
                SaveOutcome::Missing => "missing",
            },
        )
        .await
    }

    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.observe(
            "touch",
            &self.metrics.touches,
            self.inner.touch(id, deadlines, seen_at),
            |t| {
                if *t { "touched" } else { "absent" }
            },
        )
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.observe("delete", &self.metrics.deletes, self.inner.delete(id), ok)
            .await
    }

    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        self.observe(
            "delete_at_version",
            &self.metrics.deletes,
            self.inner.delete_at_version(id, expected_version),
            |o| match o {
                DeleteOutcome::Deleted => "deleted",
                DeleteOutcome::Conflict => "conflict",
                DeleteOutcome::Missing => "missing",
            },
        )
        .await
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
