//! HTTP flows through the real middleware, on every backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody};
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, test, web};
use latchkey::store::{SessionStore, SessionToken};
use latchkey::{AnyStore, Session, SessionMiddleware, SessionMiddlewareBuilder};
use latchkey_tests::http::{body, get, post, session_cookie, token_of};
use latchkey_tests::stores::{Calls, CountingStore, FailingStore, INTERNAL_DETAIL};
use tokio::sync::Notify;

latchkey_tests::on_every_store!(
    counter_increments_across_requests,
    the_counter_example_greets_then_counts,
    a_route_that_never_takes_the_session_costs_nothing,
    reading_without_changes_writes_nothing,
    an_empty_new_session_is_not_stored,
    tampered_and_garbage_cookies_start_a_new_session_without_a_store_lookup,
    renew_changes_the_cookie_and_retires_the_old_one,
    purge_deletes_server_state_and_expires_the_cookie,
    idle_timeout_is_enforced_by_the_server,
    absolute_lifetime_is_enforced_despite_activity,
    idle_extension_is_throttled,
    persistent_cookies_carry_max_age,
    a_cookie_signed_with_a_previous_key_is_accepted_and_reissued,
    private_cookies_hide_the_token,
    concurrent_changes_to_different_keys_both_survive,
    a_session_purged_during_a_request_is_not_resurrected,
);

const COOKIE: &str = "id";

/// Routes every flow test uses.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/count",
        web::get().to(|session: Session| async move {
            let n = session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
            Ok::<_, latchkey::Error>(n.to_string())
        }),
    )
    .route("/anon", web::get().to(|| async { "no session here" }))
    .route(
        "/get/{key}",
        web::get().to(|session: Session, key: web::Path<String>| async move {
            let value = session.get_value(&key);
            Ok::<_, latchkey::Error>(
                value
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "none".into()),
            )
        }),
    )
    .route(
        "/set/{key}/{value}",
        web::post().to(
            |session: Session, path: web::Path<(String, String)>| async move {
                let (key, value) = path.into_inner();
                session.insert(key, value)?;
                Ok::<_, latchkey::Error>("set")
            },
        ),
    )
    .route(
        "/renew",
        web::post().to(|session: Session| async move {
            session.renew();
            "renewed"
        }),
    )
    .route(
        "/purge",
        web::post().to(|session: Session| async move {
            session.purge();
            "purged"
        }),
    )
    .route(
        "/read",
        web::get().to(|session: Session| async move { format!("{}", session.entries().len()) }),
    );
}

fn builder(store: impl SessionStore, key: &Key) -> SessionMiddlewareBuilder {
    SessionMiddleware::builder(store, key.clone()).cookie_secure(false)
}

async fn service(
    middleware: SessionMiddleware,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<EitherBody<BoxBody>>,
    Error = actix_web::Error,
> {
    test::init_service(App::new().wrap(middleware).configure(routes)).await
}

async fn counter_increments_across_requests(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let app = service(builder(store, &Key::generate()).build().unwrap()).await;
    let first = get(&app, "/count", None).await;
    let cookie =
        session_cookie(&first).unwrap_or_else(|| panic!("{backend}: a new session sets a cookie"));
    assert_eq!(body(first).await, "1", "{backend}");
    for expected in 2..=5 {
        let res = get(&app, "/count", Some(&cookie)).await;
        assert!(
            session_cookie(&res).is_none(),
            "{backend}: a browser-session cookie is not re-sent on every change"
        );
        assert_eq!(body(res).await, expected.to_string(), "{backend}");
    }
}

async fn the_counter_example_greets_then_counts(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let middleware = builder(store, &Key::generate()).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(middleware)
            .configure(latchkey_examples::counter::routes),
    )
    .await;
    let first = get(&app, "/", None).await;
    let cookie = session_cookie(&first).unwrap();
    assert_eq!(
        body(first).await,
        latchkey_examples::counter::FIRST_VISIT,
        "{backend}"
    );
    assert_eq!(
        body(get(&app, "/", Some(&cookie)).await).await,
        "Number of visits: 2",
        "{backend}"
    );
    assert_eq!(
        body(get(&app, "/", Some(&cookie)).await).await,
        "Number of visits: 3",
        "{backend}"
    );
    assert_eq!(
        body(get(&app, "/", None).await).await,
        latchkey_examples::counter::FIRST_VISIT,
        "{backend}: no cookie, new visitor"
    );
}

async fn a_route_that_never_takes_the_session_costs_nothing(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let counting = CountingStore::new(store);
    let calls = Arc::clone(&counting.calls);
    let key = Key::generate();
    let app = service(builder(counting, &key).build().unwrap()).await;
    let res = get(&app, "/anon", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get("set-cookie").is_none(),
        "{backend}: no cookie without a session"
    );
    // Even with a valid session cookie, an untouched session is not loaded.
    let cookie = session_cookie(&get(&app, "/count", None).await).unwrap();
    let before = calls.total();
    let res = get(&app, "/anon", Some(&cookie)).await;
    assert!(res.headers().get("set-cookie").is_none(), "{backend}");
    assert_eq!(
        calls.total(),
        before,
        "{backend}: no store call for a route without Session"
    );
}

async fn reading_without_changes_writes_nothing(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let counting = CountingStore::new(store);
    let calls = Arc::clone(&counting.calls);
    let app = service(builder(counting, &Key::generate()).build().unwrap()).await;
    let cookie = session_cookie(&post(&app, "/set/a/1", None).await).unwrap();
    let (saves, creates, touches) = (
        Calls::of(&calls.save),
        Calls::of(&calls.create),
        Calls::of(&calls.touch),
    );
    let res = get(&app, "/read", Some(&cookie)).await;
    assert!(res.headers().get("set-cookie").is_none(), "{backend}");
    assert_eq!(body(res).await, "1");
    assert_eq!(
        Calls::of(&calls.save),
        saves,
        "{backend}: no save for a read"
    );
    assert_eq!(Calls::of(&calls.create), creates, "{backend}");
    assert_eq!(
        Calls::of(&calls.touch),
        touches,
        "{backend}: extension not yet due"
    );
}

async fn an_empty_new_session_is_not_stored(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let counting = CountingStore::new(store);
    let calls = Arc::clone(&counting.calls);
    let app = service(builder(counting, &Key::generate()).build().unwrap()).await;
    let res = get(&app, "/read", None).await;
    assert!(res.headers().get("set-cookie").is_none(), "{backend}");
    assert_eq!(
        calls.total(),
        0,
        "{backend}: nothing to load without a cookie, nothing to write"
    );
}

async fn tampered_and_garbage_cookies_start_a_new_session_without_a_store_lookup(
    store: latchkey::AnyStore,
) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let counting = CountingStore::new(store);
    let calls = Arc::clone(&counting.calls);
    let app = service(builder(counting, &key).build().unwrap()).await;
    let good = session_cookie(&get(&app, "/count", None).await).unwrap();
    let mut tampered_value = good.value().to_owned();
    let flipped = if tampered_value.ends_with('A') {
        'B'
    } else {
        'A'
    };
    tampered_value.pop();
    tampered_value.push(flipped);
    let forged = {
        let mut jar = CookieJar::new();
        jar.signed_mut(&Key::generate()).add(Cookie::new(
            COOKIE,
            SessionToken::generate().unwrap().encode(),
        ));
        jar.get(COOKIE).unwrap().clone()
    };
    let hostile = [
        Cookie::new(COOKIE, ""),
        Cookie::new(COOKIE, "garbage"),
        Cookie::new(COOKIE, tampered_value),
        Cookie::new(COOKIE, token_of(&good, &key).encode()),
        Cookie::new(COOKIE, "x".repeat(4096)),
        forged,
    ];
    for cookie in hostile {
        let loads = Calls::of(&calls.load);
        let res = get(&app, "/count", Some(&cookie)).await;
        assert_eq!(res.status(), StatusCode::OK, "{backend}: {cookie}");
        assert_eq!(
            Calls::of(&calls.load),
            loads,
            "{backend}: an invalid cookie never reaches the store"
        );
        let new_cookie = session_cookie(&res).expect("a fresh session gets a cookie");
        assert_ne!(new_cookie.value(), good.value());
        assert_eq!(body(res).await, "1", "{backend}: the count starts over");
    }
    assert_eq!(
        body(get(&app, "/count", Some(&good)).await).await,
        "2",
        "{backend}: the real session is intact"
    );
}

async fn renew_changes_the_cookie_and_retires_the_old_one(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let app = service(builder(store.clone(), &key).build().unwrap()).await;
    let old = session_cookie(&post(&app, "/set/user/ann", None).await).unwrap();
    let res = post(&app, "/renew", Some(&old)).await;
    let new = session_cookie(&res).expect("renew sends a new cookie");
    assert_ne!(new.value(), old.value(), "{backend}");
    assert_eq!(
        body(get(&app, "/get/user", Some(&new)).await).await,
        "\"ann\"",
        "{backend}: data moves to the new id"
    );
    assert!(
        store
            .load(&token_of(&old, &key).id())
            .await
            .unwrap()
            .is_none(),
        "{backend}: the old id is deleted"
    );
    assert_eq!(
        body(get(&app, "/get/user", Some(&old)).await).await,
        "none",
        "{backend}: the old cookie is worthless"
    );
}

async fn purge_deletes_server_state_and_expires_the_cookie(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let app = service(builder(store.clone(), &key).build().unwrap()).await;
    let cookie = session_cookie(&post(&app, "/set/user/ann", None).await).unwrap();
    let res = post(&app, "/purge", Some(&cookie)).await;
    let removal = session_cookie(&res).expect("purge sends a removal cookie");
    assert_eq!(removal.value(), "", "{backend}");
    assert_eq!(
        removal.max_age(),
        Some(actix_web::cookie::time::Duration::ZERO),
        "{backend}"
    );
    assert!(
        store
            .load(&token_of(&cookie, &key).id())
            .await
            .unwrap()
            .is_none(),
        "{backend}: gone from the store"
    );
    assert_eq!(
        body(get(&app, "/get/user", Some(&cookie)).await).await,
        "none",
        "{backend}"
    );
}

async fn idle_timeout_is_enforced_by_the_server(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let middleware = builder(store, &key)
        .idle_timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let app = service(middleware).await;
    let cookie = session_cookie(&get(&app, "/count", None).await).unwrap();
    assert_eq!(
        body(get(&app, "/count", Some(&cookie)).await).await,
        "2",
        "{backend}"
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let res = get(&app, "/count", Some(&cookie)).await;
    assert!(
        session_cookie(&res).is_some(),
        "{backend}: an expired session is replaced"
    );
    assert_eq!(
        body(res).await,
        "1",
        "{backend}: the old cookie no longer works"
    );
}

async fn absolute_lifetime_is_enforced_despite_activity(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let middleware = builder(store, &Key::generate())
        .idle_timeout(Duration::from_secs(60))
        .lifetime(Duration::from_millis(900))
        .build()
        .unwrap();
    let app = service(middleware).await;
    let cookie = session_cookie(&get(&app, "/count", None).await).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        body(get(&app, "/count", Some(&cookie)).await).await,
        "2",
        "{backend}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        body(get(&app, "/count", Some(&cookie)).await).await,
        "1",
        "{backend}: lifetime over"
    );
}

async fn idle_extension_is_throttled(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let counting = CountingStore::new(store);
    let calls = Arc::clone(&counting.calls);
    let middleware = builder(counting, &Key::generate())
        .idle_timeout(Duration::from_secs(2))
        .idle_extension_interval(Duration::from_millis(400))
        .build()
        .unwrap();
    let app = service(middleware).await;
    let cookie = session_cookie(&post(&app, "/set/a/1", None).await).unwrap();
    get(&app, "/read", Some(&cookie)).await;
    assert_eq!(
        Calls::of(&calls.touch),
        0,
        "{backend}: not due right after creation"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    get(&app, "/read", Some(&cookie)).await;
    assert_eq!(
        Calls::of(&calls.touch),
        1,
        "{backend}: due after the interval"
    );
    get(&app, "/read", Some(&cookie)).await;
    assert_eq!(
        Calls::of(&calls.touch),
        1,
        "{backend}: not again right away"
    );
    // Reads alone keep the session alive past its original idle deadline.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        get(&app, "/read", Some(&cookie)).await;
    }
    assert_eq!(
        body(get(&app, "/get/a", Some(&cookie)).await).await,
        "\"1\"",
        "{backend}"
    );
}

async fn persistent_cookies_carry_max_age(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let middleware = builder(store, &Key::generate())
        .cookie_lifetime(latchkey::CookieLifetime::Persistent)
        .idle_timeout(Duration::from_secs(600))
        .idle_extension_interval(Duration::from_millis(300))
        .build()
        .unwrap();
    let app = service(middleware).await;
    let cookie = session_cookie(&get(&app, "/count", None).await).unwrap();
    let max_age = cookie
        .max_age()
        .expect("a persistent cookie has Max-Age")
        .whole_seconds();
    assert!(
        (598..=600).contains(&max_age),
        "{backend}: Max-Age follows the idle timeout, got {max_age}"
    );
    let within = get(&app, "/count", Some(&cookie)).await;
    assert!(
        session_cookie(&within).is_none(),
        "{backend}: a save inside the extension interval keeps the deadline, and sends no cookie"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let saved = get(&app, "/count", Some(&cookie)).await;
    assert!(
        session_cookie(&saved).is_some_and(|c| c.max_age().is_some()),
        "{backend}: a save after the interval moves the idle deadline, and the cookie's Max-Age is re-sent"
    );
    let read = get(&app, "/read", Some(&cookie)).await;
    assert!(
        session_cookie(&read).is_none(),
        "{backend}: a read whose extension is not due sends no cookie"
    );
    let browser = service(
        builder(
            AnyStore::new(latchkey::memory::MemoryStore::new()),
            &Key::generate(),
        )
        .build()
        .unwrap(),
    )
    .await;
    let cookie = session_cookie(&get(&browser, "/count", None).await).unwrap();
    assert_eq!(
        cookie.max_age(),
        None,
        "browser-session cookies have no Max-Age"
    );
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(actix_web::cookie::SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
}

async fn a_cookie_signed_with_a_previous_key_is_accepted_and_reissued(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let (old_key, new_key) = (Key::generate(), Key::generate());
    let before = service(builder(store.clone(), &old_key).build().unwrap()).await;
    let old_cookie = session_cookie(&get(&before, "/count", None).await).unwrap();

    let rotated = service(
        builder(store.clone(), &new_key)
            .previous_keys([old_key.clone()])
            .build()
            .unwrap(),
    )
    .await;
    let res = get(&rotated, "/read", Some(&old_cookie)).await;
    let reissued = session_cookie(&res).expect("re-issued with the new key");
    assert_eq!(
        token_of(&reissued, &new_key),
        token_of(&old_cookie, &old_key),
        "{backend}: same session"
    );
    assert_eq!(
        body(get(&rotated, "/count", Some(&reissued)).await).await,
        "2",
        "{backend}"
    );

    let retired = service(builder(store, &new_key).build().unwrap()).await;
    assert_eq!(
        body(get(&retired, "/count", Some(&old_cookie)).await).await,
        "1",
        "{backend}: old key removed"
    );
}

async fn private_cookies_hide_the_token(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let middleware = builder(store, &key)
        .cookie_content_security(latchkey::CookieContentSecurity::Private)
        .build()
        .unwrap();
    let app = service(middleware).await;
    let cookie = session_cookie(&get(&app, "/count", None).await).unwrap();
    let plain = CookieJar::new()
        .private(&key)
        .decrypt(cookie.clone())
        .expect("decrypts with the key");
    assert!(
        !cookie.value().contains(plain.value()),
        "{backend}: the token is not visible"
    );
    assert_eq!(
        body(get(&app, "/count", Some(&cookie)).await).await,
        "2",
        "{backend}"
    );
}

#[actix_rt::test]
async fn a_failing_store_answers_with_the_configured_status_and_an_opaque_body() {
    for status in [
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        let key = Key::generate();
        let app = service(
            builder(FailingStore, &key)
                .store_error_status(status)
                .build()
                .unwrap(),
        )
        .await;
        // Failing on write: a new session's create.
        let res = get(&app, "/count", None).await;
        assert_eq!(res.status(), status);
        assert!(
            res.headers().get("set-cookie").is_none(),
            "no cookie for a session that was not stored"
        );
        let text = body(res).await;
        assert!(
            !text.contains(INTERNAL_DETAIL)
                && !text.contains("10.9.8.7")
                && !text.contains("failing"),
            "opaque: {text}"
        );
        // Failing on read: a valid cookie whose load fails.
        let cookie = {
            let mut jar = CookieJar::new();
            jar.signed_mut(&key).add(Cookie::new(
                COOKIE,
                SessionToken::generate().unwrap().encode(),
            ));
            jar.get(COOKIE).unwrap().clone()
        };
        let res = get(&app, "/count", Some(&cookie)).await;
        assert_eq!(res.status(), status);
        let text = body(res).await;
        assert!(!text.contains(INTERNAL_DETAIL), "opaque: {text}");
        // A route without the session does not notice the store at all.
        assert_eq!(
            get(&app, "/anon", Some(&cookie)).await.status(),
            StatusCode::OK
        );
    }
}

/// Request A loads the session and waits; request B changes another key and
/// saves; A then saves against a stale version and must replay, not overwrite.
async fn concurrent_changes_to_different_keys_both_survive(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let gate = Arc::new(Notify::new());
    let loaded = Arc::new(Notify::new());
    let (gate_in, loaded_in) = (Arc::clone(&gate), Arc::clone(&loaded));
    let middleware = builder(store, &key).build().unwrap();
    let metrics = middleware.metrics();
    let app = test::init_service(App::new().wrap(middleware).configure(routes).route(
        "/slow/{key}/{value}",
        web::post().to(move |session: Session, path: web::Path<(String, String)>| {
            let (gate, loaded) = (Arc::clone(&gate_in), Arc::clone(&loaded_in));
            async move {
                let (key, value) = path.into_inner();
                session.insert(key, value)?;
                session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
                loaded.notify_one();
                gate.notified().await;
                Ok::<_, latchkey::Error>(HttpResponse::Ok().finish())
            }
        }),
    ))
    .await;
    let cookie = session_cookie(&get(&app, "/count", None).await).unwrap();
    let slow = async {
        let res = post(&app, "/slow/a/from-slow", Some(&cookie)).await;
        assert_eq!(res.status(), StatusCode::OK);
    };
    let fast = async {
        loaded.notified().await;
        let res = post(&app, "/set/b/from-fast", Some(&cookie)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body(get(&app, "/count", Some(&cookie)).await).await, "2");
        gate.notify_one();
    };
    tokio::join!(slow, fast);
    assert_eq!(
        body(get(&app, "/get/a", Some(&cookie)).await).await,
        "\"from-slow\"",
        "{backend}"
    );
    assert_eq!(
        body(get(&app, "/get/b", Some(&cookie)).await).await,
        "\"from-fast\"",
        "{backend}"
    );
    assert_eq!(
        body(get(&app, "/count", Some(&cookie)).await).await,
        "4",
        "{backend}: both increments count"
    );
    assert_eq!(
        metrics.snapshot().conflicts_replayed,
        1,
        "{backend}: the slow writer replayed once"
    );
}

/// A request whose session was purged by another request meanwhile does not
/// bring it back when it saves.
async fn a_session_purged_during_a_request_is_not_resurrected(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let gate = Arc::new(Notify::new());
    let loaded = Arc::new(Notify::new());
    let (gate_in, loaded_in) = (Arc::clone(&gate), Arc::clone(&loaded));
    let app = test::init_service(
        App::new()
            .wrap(builder(store.clone(), &key).build().unwrap())
            .configure(routes)
            .route(
                "/slow-write",
                web::post().to(move |session: Session| {
                    let (gate, loaded) = (Arc::clone(&gate_in), Arc::clone(&loaded_in));
                    async move {
                        session.insert("late", true)?;
                        loaded.notify_one();
                        gate.notified().await;
                        Ok::<_, latchkey::Error>(HttpResponse::Ok().finish())
                    }
                }),
            ),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/set/user/ann", None).await).unwrap();
    let slow = async { post(&app, "/slow-write", Some(&cookie)).await };
    let purge = async {
        loaded.notified().await;
        post(&app, "/purge", Some(&cookie)).await;
        gate.notify_one();
    };
    let (slow_res, ()) = tokio::join!(slow, purge);
    assert_eq!(slow_res.status(), StatusCode::OK, "{backend}");
    assert!(
        session_cookie(&slow_res).is_none(),
        "{backend}: the late writer leaves the cookie alone (a newer one may be set meanwhile)"
    );
    assert!(
        store
            .load(&token_of(&cookie, &key).id())
            .await
            .unwrap()
            .is_none(),
        "{backend}: still deleted"
    );
}

#[actix_rt::test]
async fn session_without_middleware_is_a_server_error_not_a_panic() {
    let app = test::init_service(App::new().configure(routes)).await;
    let res = get(&app, "/count", None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[actix_rt::test]
async fn metrics_count_store_operations_conflicts_and_sessions() {
    let key = Key::generate();
    let middleware = builder(latchkey::memory::MemoryStore::new(), &key)
        .build()
        .unwrap();
    let metrics = middleware.metrics();
    let app = service(middleware).await;
    let cookie = session_cookie(&get(&app, "/count", None).await).unwrap();
    get(&app, "/count", Some(&cookie)).await;
    get(&app, "/count", Some(&cookie)).await;
    get(&app, "/anon", Some(&cookie)).await;
    post(&app, "/purge", Some(&cookie)).await;
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.creates, 1);
    assert_eq!(snapshot.sessions_created, 1);
    assert_eq!(snapshot.loads, 3, "the anonymous route loads nothing");
    assert_eq!(snapshot.saves, 2);
    assert_eq!(snapshot.deletes, 1);
    assert_eq!(snapshot.sessions_destroyed, 1);
    assert_eq!(snapshot.store_errors, 0);
    assert!(
        snapshot
            .to_prometheus("latchkey")
            .contains("latchkey_saves_total 2")
    );

    let failing = builder(FailingStore, &key).build().unwrap();
    let failing_metrics = failing.metrics();
    let app = service(failing).await;
    get(&app, "/count", None).await;
    assert_eq!(failing_metrics.snapshot().store_errors, 1);
}
