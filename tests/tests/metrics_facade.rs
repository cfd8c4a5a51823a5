//! The `metrics` feature: every count and a store-latency histogram reach the
//! `metrics` facade with a `store` label, on every store. Each test records
//! into a recorder of its own, set for its thread (an actix test runs the
//! app, the middleware and the store calls on that one thread), so tests in
//! one process do not read each other's counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::cookie::{Cookie, Key};
use actix_web::{App, test, web};
use latchkey::AnyStore;
use latchkey::store::SessionStore as _;
use latchkey::{Session, SessionMiddleware};
use latchkey_tests::http::{post, session_cookie};
use latchkey_tests::on_every_store;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, debugging::Snapshot};

/// One reading of the recorder (reading resets its counters).
type Reading = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn counter(reading: &Reading, name: &str, labels: &[(&str, &str)]) -> u64 {
    reading
        .iter()
        .filter(|(key, _, _, _)| {
            key.key().name() == name
                && labels.iter().all(|(label, value)| {
                    key.key()
                        .labels()
                        .any(|l| l.key() == *label && l.value() == *value)
                })
        })
        .map(|(_, _, _, value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// The count of `latchkey_store_operations_total` for one store, operation
/// and outcome.
fn operations(reading: &Reading, store: &str, operation: &str, outcome: &str) -> u64 {
    counter(
        reading,
        "latchkey_store_operations_total",
        &[
            ("store", store),
            ("operation", operation),
            ("outcome", outcome),
        ],
    )
}

fn histogram_samples(reading: &Reading, name: &str, store: &str) -> usize {
    reading
        .iter()
        .filter(|(key, _, _, _)| {
            key.key().name() == name
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "store" && l.value() == store)
        })
        .map(|(_, _, _, value)| match value {
            DebugValue::Histogram(samples) => samples.len(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

on_every_store!(counts_and_latencies_reach_the_facade_with_the_store_label);

async fn counts_and_latencies_reach_the_facade_with_the_store_label(store: AnyStore) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _only_this_thread = metrics::set_default_local_recorder(&recorder);
    let store_label = store.name();
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store, key)
                    .cookie_secure(false)
                    .build()
                    .unwrap(),
            )
            .route("/count", web::post().to(latchkey_tests::http::count))
            .route(
                "/logout",
                web::post().to(|session: Session| async move {
                    session.purge();
                    "out"
                }),
            ),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
    post(&app, "/count", Some(&cookie)).await;
    post(&app, "/count", Some(&Cookie::new("id", "forged"))).await;
    post(&app, "/logout", Some(&cookie)).await;
    // The cookie is valid, its session gone.
    post(&app, "/count", Some(&cookie)).await;

    let store = store_label;
    let reading: Reading = Snapshot::into_vec(snapshotter.snapshot());
    assert!(
        operations(&reading, store, "load", "found") >= 2,
        "{store}: loads that found the session"
    );
    assert!(
        operations(&reading, store, "save", "saved") >= 1,
        "{store}: saves"
    );
    assert!(
        operations(&reading, store, "load", "absent") >= 1,
        "{store}: the load after logout"
    );
    assert_eq!(
        counter(
            &reading,
            "latchkey_cookies_rejected_total",
            &[("store", store)]
        ),
        1,
        "{store}: the forged cookie"
    );
    assert_eq!(
        counter(
            &reading,
            "latchkey_sessions_not_found_total",
            &[("store", store)]
        ),
        1,
        "{store}: the cookie of a logged-out session"
    );
    assert_eq!(
        counter(
            &reading,
            "latchkey_sessions_created_total",
            &[("store", store)]
        ),
        3,
        "{store}: the first request's, the forged cookie's and the one after logout"
    );
    assert_eq!(
        counter(
            &reading,
            "latchkey_sessions_destroyed_total",
            &[("store", store)]
        ),
        1,
        "{store}: the logout"
    );
    assert!(
        histogram_samples(&reading, "latchkey_store_operation_duration_seconds", store) >= 5,
        "{store}: a latency per store operation"
    );
}

/// A store call the session deadline drops counts as `cancelled`, with its
/// time until then.
#[actix_web::test]
async fn a_store_call_the_deadline_drops_counts_as_cancelled() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _only_this_thread = metrics::set_default_local_recorder(&recorder);
    let slow = latchkey_tests::stores::PausingStore::new(latchkey::memory::MemoryStore::new());
    let key = Key::generate();
    let sessions = latchkey::testing::TestSessions::for_middleware(
        &SessionMiddleware::builder(slow.clone(), key.clone())
            .cookie_secure(false)
            .build()
            .unwrap(),
    );
    let cookie = sessions
        .seed(serde_json::json!({ "n": 1 }), None)
        .await
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(slow.clone(), key)
                    .cookie_secure(false)
                    .session_deadline(std::time::Duration::from_millis(200))
                    .build()
                    .unwrap(),
            )
            .route(
                "/read",
                web::get()
                    .to(|session: Session| async move { format!("{:?}", session.get_value("n")) }),
            ),
    )
    .await;
    let _ = Snapshot::into_vec(snapshotter.snapshot());
    slow.arm();
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/read")
            .cookie(cookie)
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 503, "the load outlived the session deadline");
    let reading: Reading = Snapshot::into_vec(snapshotter.snapshot());
    assert_eq!(
        operations(&reading, "custom", "load", "cancelled"),
        1,
        "the cancelled load is counted"
    );
}
