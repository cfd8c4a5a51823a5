//! actix-session's own middleware and `Session` API on latchkey's stores through
//! the bridge: its usage patterns (counter, renew, purge, TTL policies) on every
//! backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::{Session, SessionMiddleware};
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, Key, time};
use actix_web::dev::ServiceResponse;
use actix_web::{App, HttpResponse, test, web};
use latchkey::bridge::ActixSessionStore;
use latchkey::store::{SessionStore as _, SessionToken};

latchkey_tests::on_every_store!(
    counter_renew_and_purge_through_actix_session,
    ttl_policies_extend_or_let_expire,
    a_session_deleted_meanwhile_is_not_recreated,
);

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/count",
        web::get().to(|session: Session| async move {
            let n = session.get::<u64>("n").unwrap_or(None).unwrap_or(0) + 1;
            session.insert("n", n).unwrap();
            HttpResponse::Ok().body(n.to_string())
        }),
    )
    .route(
        "/peek",
        web::get().to(|session: Session| async move {
            HttpResponse::Ok().body(
                session
                    .get::<u64>("n")
                    .unwrap_or(None)
                    .unwrap_or(0)
                    .to_string(),
            )
        }),
    )
    .route(
        "/renew",
        web::post().to(|session: Session| async move {
            session.renew();
            HttpResponse::Ok().finish()
        }),
    )
    .route(
        "/purge",
        web::post().to(|session: Session| async move {
            session.purge();
            HttpResponse::Ok().finish()
        }),
    );
}

fn cookie_of<B>(res: &ServiceResponse<B>) -> Option<Cookie<'static>> {
    res.response()
        .cookies()
        .find(|c| c.name() == "id")
        .map(|c| c.into_owned())
}

async fn text<B: MessageBody>(res: ServiceResponse<B>) -> String {
    String::from_utf8(test::read_body(res).await.to_vec()).unwrap()
}

fn middleware(
    store: ActixSessionStore,
    key: &Key,
    policy: TtlExtensionPolicy,
) -> SessionMiddleware<ActixSessionStore> {
    SessionMiddleware::builder(store, key.clone())
        .cookie_name("id".into())
        .cookie_secure(false)
        .session_lifecycle(
            PersistentSession::default()
                .session_ttl(time::Duration::seconds(2))
                .session_ttl_extension_policy(policy),
        )
        .build()
}

async fn counter_renew_and_purge_through_actix_session(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(
                ActixSessionStore::new(store.clone()),
                &key,
                TtlExtensionPolicy::OnStateChanges,
            ))
            .configure(routes),
    )
    .await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/count").to_request()).await;
    let cookie = cookie_of(&res).expect("a session cookie");
    assert_eq!(text(res).await, "1", "{backend}");
    for expected in 2..=4 {
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/count")
                .cookie(cookie.clone())
                .to_request(),
        )
        .await;
        assert_eq!(text(res).await, expected.to_string(), "{backend}");
    }

    // The store holds the hash of actix-session's key, with typed values.
    let plain = actix_web::cookie::CookieJar::new()
        .private(&key)
        .decrypt(cookie.clone())
        .unwrap();
    let token = SessionToken::decode(plain.value()).expect("the session key is a latchkey token");
    let record = store
        .load(&token.id())
        .await
        .unwrap()
        .expect("stored under the token's hash");
    assert_eq!(
        record.data["n"],
        serde_json::json!(4),
        "{backend}: a number, not a string"
    );

    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/renew")
            .cookie(cookie.clone())
            .to_request(),
    )
    .await;
    let renewed = cookie_of(&res).expect("renew issues a new cookie");
    assert_ne!(renewed.value(), cookie.value());
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/peek")
            .cookie(renewed.clone())
            .to_request(),
    )
    .await;
    assert_eq!(text(res).await, "4", "{backend}: state kept across renew");
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/peek")
            .cookie(cookie.clone())
            .to_request(),
    )
    .await;
    assert_eq!(
        text(res).await,
        "0",
        "{backend}: the old key is dead after renew"
    );

    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/purge")
            .cookie(renewed.clone())
            .to_request(),
    )
    .await;
    assert_eq!(
        cookie_of(&res).map(|c| c.value().to_owned()).as_deref(),
        Some(""),
        "{backend}: removal cookie"
    );
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/peek")
            .cookie(renewed.clone())
            .to_request(),
    )
    .await;
    assert_eq!(text(res).await, "0", "{backend}: purged");

    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/peek")
            .cookie(Cookie::new("id", "garbage"))
            .to_request(),
    )
    .await;
    assert_eq!(
        text(res).await,
        "0",
        "{backend}: a garbage key is an empty session"
    );
}

async fn ttl_policies_extend_or_let_expire(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    for (policy, survives) in [
        (TtlExtensionPolicy::OnEveryRequest, true),
        (TtlExtensionPolicy::OnStateChanges, false),
    ] {
        let key = Key::generate();
        let app = test::init_service(
            App::new()
                .wrap(middleware(
                    ActixSessionStore::new(store.clone()),
                    &key,
                    policy.clone(),
                ))
                .configure(routes),
        )
        .await;
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/count").to_request()).await;
        let cookie = cookie_of(&res).unwrap();
        // Read-only requests every 0.8 s for 2.4 s, past the 2 s TTL.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(800)).await;
            test::call_service(
                &app,
                test::TestRequest::get()
                    .uri("/peek")
                    .cookie(cookie.clone())
                    .to_request(),
            )
            .await;
        }
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/peek")
                .cookie(cookie.clone())
                .to_request(),
        )
        .await;
        let expected = if survives { "1" } else { "0" };
        assert_eq!(text(res).await, expected, "{backend}: {policy:?}");
    }
}

fn state(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A logout (or any delete) between actix-session's load and its write-back:
/// the bridge drops the write instead of recreating the session from the
/// request's copy, on every backend.
async fn a_session_deleted_meanwhile_is_not_recreated(store: latchkey::AnyStore) {
    use actix_session::storage::SessionStore as _;
    let backend = latchkey::store::SessionStore::name(&store);
    let bridge = ActixSessionStore::new(store.clone());
    let ttl = time::Duration::hours(1);
    let key = bridge
        .save(state(&[("user", "\"ann\"")]), &ttl)
        .await
        .unwrap();
    let id = SessionToken::decode(key.as_ref()).unwrap().id();
    assert!(bridge.load(&key).await.unwrap().is_some());
    store.delete(&id).await.unwrap();
    let again = bridge
        .update(key, state(&[("user", "\"ann\""), ("cart", "3")]), &ttl)
        .await
        .unwrap();
    let again_id = SessionToken::decode(again.as_ref()).unwrap().id();
    assert_eq!(again_id, id, "{backend}: no new session key");
    assert!(
        store.load(&id).await.unwrap().is_none(),
        "{backend}: the deleted session stays deleted"
    );
}

/// An update right after the request's load writes with the version that load
/// saw: one store round trip, no second load.
#[actix_rt::test]
async fn an_update_after_a_load_is_one_round_trip() {
    use actix_session::storage::SessionStore as _;
    let counting = latchkey_tests::stores::CountingStore::new(latchkey::memory::MemoryStore::new());
    let calls = std::sync::Arc::clone(&counting.calls);
    let bridge = ActixSessionStore::new(counting);
    let ttl = time::Duration::hours(1);
    let key = bridge.save(state(&[("n", "1")]), &ttl).await.unwrap();
    let key = {
        bridge.load(&key).await.unwrap();
        let before = calls.snapshot();
        let key = bridge
            .update(key, state(&[("n", "2")]), &ttl)
            .await
            .unwrap();
        let after = calls.snapshot();
        assert_eq!(after.load, before.load, "no load in the update");
        assert_eq!(after.save, before.save + 1);
        key
    };
    let loaded = bridge.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded["n"], "2");
}
