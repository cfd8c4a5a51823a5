//! What an application builds on the session besides handlers, through the
//! real middleware on every store: the session from a `from_fn` middleware
//! (`SessionExt`), the `Authenticated` extractor, and the `testing` utilities
//! for handler tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::Key;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, test, web};
use latchkey::store::SessionStore as _;
use latchkey::testing::TestSessions;
use latchkey::{
    AnyStore, Authenticated, AuthenticatedConfig, Session, SessionExt as _, SessionMiddleware,
};
use latchkey_tests::http::{body, get, post, session_cookie, token_of};
use latchkey_tests::stores::{Calls, CountingStore, FailingStore};
use serde_json::json;

use latchkey_tests::on_every_store;

on_every_store!(
    middleware_and_handler_share_one_loaded_session,
    authenticated_admits_only_sessions_with_an_owner,
    test_sessions_seed_call_and_read_back,
    guards_read_a_session_loaded_before_routing,
);

fn middleware(store: impl latchkey::store::SessionStore, key: &Key) -> SessionMiddleware {
    SessionMiddleware::builder(store, key.clone())
        .cookie_secure(false)
        .build()
        .unwrap()
}

/// Counts visits in the session before the handler runs, and refuses requests
/// marked as blocked in the session.
async fn visit_counter(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let session = req.session().await?;
    if session.get::<bool>("blocked")? == Some(true) {
        return Ok(req.into_response(HttpResponse::Forbidden().finish()));
    }
    session.update("middleware_visits", |n: Option<u64>| n.unwrap_or(0) + 1)?;
    let res = next.call(req).await?;
    // After the handler: its changes are visible, and one more is written back.
    let after = res.session().await?;
    if let Some(seen) = after.get::<u64>("handler_saw")? {
        after.insert("checked_after", seen)?;
    }
    Ok(res.map_into_boxed_body())
}

async fn middleware_and_handler_share_one_loaded_session(store: AnyStore) {
    let store_copy = store.clone();
    let counting = CountingStore::new(store);
    let calls = std::sync::Arc::clone(&counting.calls);
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(from_fn(visit_counter))
            .wrap(middleware(counting, &key))
            .route(
                "/",
                web::get().to(|session: Session| async move {
                    // The handler sees the middleware's change of this request.
                    let seen: u64 = session.get("middleware_visits")?.unwrap_or(0);
                    session.insert("handler_saw", seen)?;
                    Ok::<_, latchkey::Error>(seen.to_string())
                }),
            )
            .route(
                "/block",
                web::post().to(|session: Session| async move {
                    session.insert("blocked", true).map(|()| "blocked")
                }),
            ),
    )
    .await;
    let first = get(&app, "/", None).await;
    let cookie = session_cookie(&first).expect("the middleware's change creates the session");
    assert_eq!(body(first).await, "1");
    let loads_before = Calls::of(&calls.load);
    let second = get(&app, "/", Some(&cookie)).await;
    assert_eq!(body(second).await, "2");
    assert_eq!(
        Calls::of(&calls.load) - loads_before,
        1,
        "middleware and handler share one load"
    );
    let stored = store_copy
        .load(&token_of(&cookie, &key).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.data["checked_after"], 2,
        "written back after the handler"
    );
    post(&app, "/block", Some(&cookie)).await;
    let blocked = get(&app, "/", Some(&cookie)).await;
    assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
}

async fn authenticated_admits_only_sessions_with_an_owner(store: AnyStore) {
    let key = Key::generate();
    let routes = |cfg: &mut web::ServiceConfig| {
        cfg.route(
            "/login/{user}",
            web::post().to(|session: Session, user: web::Path<String>| async move {
                session.login(user.into_inner());
                "in"
            }),
        )
        .route(
            "/anonymous",
            web::post()
                .to(|session: Session| async move { session.insert("cart", 1).map(|()| "ok") }),
        )
        .route(
            "/account",
            web::get().to(|user: Authenticated| async move {
                let cart: Option<u32> = user.session().get("cart")?;
                Ok::<_, latchkey::Error>(format!("{} {cart:?}", user.owner()))
            }),
        );
    };
    let api = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key))
            .configure(routes),
    )
    .await;
    let site = test::init_service(
        App::new()
            .app_data(AuthenticatedConfig::default().redirect_to("/login"))
            .wrap(middleware(store, &key))
            .configure(routes),
    )
    .await;

    let nobody = get(&api, "/account", None).await;
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
    assert!(
        session_cookie(&nobody).is_none(),
        "a refusal creates no session"
    );
    let anonymous = session_cookie(&post(&api, "/anonymous", None).await).unwrap();
    assert_eq!(
        get(&api, "/account", Some(&anonymous)).await.status(),
        StatusCode::UNAUTHORIZED,
        "a session without an owner is not a signed-in user"
    );
    let redirected = get(&site, "/account", Some(&anonymous)).await;
    assert_eq!(redirected.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        redirected.headers().get(header::LOCATION).unwrap(),
        "/login"
    );

    let signed_in = session_cookie(&post(&api, "/login/ann", Some(&anonymous)).await).unwrap();
    let account = get(&api, "/account", Some(&signed_in)).await;
    assert_eq!(account.status(), StatusCode::OK);
    assert_eq!(body(account).await, "ann Some(1)");
}

async fn test_sessions_seed_call_and_read_back(store: AnyStore) {
    let sessions = TestSessions::for_middleware(&middleware(store, &Key::generate()));
    let cookie = sessions
        .seed(json!({ "items": 2 }), Some("ann"))
        .await
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(sessions.middleware())
            .route(
                "/cart",
                web::post().to(|user: Authenticated| async move {
                    user.session()
                        .update("items", |n: Option<u32>| n.unwrap_or(0) + 1)
                        .map(|n| n.to_string())
                }),
            )
            .route(
                "/renew",
                web::post().to(|session: Session| async move {
                    session.renew();
                    "renewed"
                }),
            ),
    )
    .await;
    let res = post(&app, "/cart", Some(&cookie)).await;
    assert!(sessions.cookie_of(&res).is_none(), "a save keeps the token");
    assert_eq!(body(res).await, "3");
    let saved = sessions.saved(&cookie).await.unwrap().unwrap();
    assert_eq!(saved.data["items"], 3);
    assert_eq!(saved.owner.as_deref(), Some("ann"));

    let renewed = post(&app, "/renew", Some(&cookie)).await;
    let next = sessions
        .cookie_of(&renewed)
        .expect("renewal sends a new cookie");
    assert!(
        sessions.saved(&cookie).await.unwrap().is_none(),
        "the old token is retired"
    );
    assert_eq!(
        sessions.saved(&next).await.unwrap().unwrap().data["items"],
        3
    );

    // The same, calling handlers directly: the write-back is the middleware's.
    let (req, session) = sessions
        .request(test::TestRequest::default().cookie(next.clone()))
        .await
        .unwrap();
    assert_eq!(session.owner().as_deref(), Some("ann"));
    assert!(session.contains_key("items") && !session.contains_key("absent"));
    assert!(session.take::<String>("items").is_err(), "not a string");
    assert!(
        session.contains_key("items"),
        "a value of another type stays"
    );
    assert_eq!(session.take::<u32>("items").unwrap(), Some(3));
    assert_eq!(session.take::<u32>("items").unwrap(), None, "taken once");
    session.purge();
    let removal = sessions
        .finish(&req)
        .await
        .unwrap()
        .expect("purge removes the cookie");
    assert_eq!(removal.value(), "");
    assert!(
        sessions.saved(&next).await.unwrap().is_none(),
        "purged from the store"
    );

    let (req, session) = sessions
        .request(test::TestRequest::default())
        .await
        .unwrap();
    session.insert("theme", "dark").unwrap();
    let created = sessions
        .finish(&req)
        .await
        .unwrap()
        .expect("a new session's cookie");
    assert_eq!(
        sessions.saved(&created).await.unwrap().unwrap().data["theme"],
        "dark"
    );
    assert!(
        sessions
            .seed(json!(["not", "an", "object"]), None)
            .await
            .is_err(),
        "values must be a JSON object"
    );
}

/// A cookie naming a stored session, and a builder on a store that fails every
/// call with the same key answering 502: the failing store is asked, since the
/// cookie verifies.
async fn failing_store_and_valid_cookie(
    owner: Option<&str>,
) -> (
    latchkey::SessionMiddlewareBuilder,
    actix_web::cookie::Cookie<'static>,
) {
    let key = Key::generate();
    let working =
        TestSessions::for_middleware(&middleware(latchkey::memory::MemoryStore::new(), &key));
    let cookie = working.seed(json!({ "n": 1 }), owner).await.unwrap();
    let failing = SessionMiddleware::builder(FailingStore, key)
        .cookie_secure(false)
        .store_error_status(StatusCode::BAD_GATEWAY);
    (failing, cookie)
}

#[actix_web::test]
async fn a_store_failure_in_a_middleware_or_extractor_answers_the_store_status() {
    let (failing, cookie) = failing_store_and_valid_cookie(Some("ann")).await;
    let failing = failing.build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(from_fn(visit_counter))
            .wrap(failing)
            .route("/", web::get().to(|| async { "unreachable" })),
    )
    .await;
    // A middleware's error comes out of the service as an error, which the
    // server renders: render it here the same way.
    let req = test::TestRequest::get()
        .uri("/")
        .cookie(cookie)
        .to_request();
    let Err(err) = test::try_call_service(&app, req).await else {
        panic!("the store failed, yet the middleware went on");
    };
    let res = err.error_response();
    assert_eq!(
        res.status(),
        StatusCode::BAD_GATEWAY,
        "through SessionExt in a middleware"
    );
    let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert_eq!(text, "Session service temporarily unavailable.");
    assert!(
        !text.contains(latchkey_tests::stores::INTERNAL_DETAIL),
        "{text}"
    );

    let (failing, cookie) = failing_store_and_valid_cookie(Some("ann")).await;
    let failing = failing.build().unwrap();
    let app = test::init_service(App::new().wrap(failing).route(
        "/account",
        web::get().to(|user: Authenticated| async move { user.owner().to_owned() }),
    ))
    .await;
    let res = get(&app, "/account", Some(&cookie)).await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_GATEWAY,
        "through Authenticated"
    );
}

#[actix_web::test]
async fn session_outside_the_middleware_is_an_error() {
    let app = test::init_service(
        App::new()
            .wrap(from_fn(visit_counter))
            .route("/", web::get().to(|| async { "no" })),
    )
    .await;
    let res = test::try_call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    let Err(err) = res else {
        panic!("no session middleware, yet the request succeeded");
    };
    assert!(
        err.as_error::<latchkey::Error>()
            .is_some_and(|e| matches!(e, latchkey::Error::MissingMiddleware))
    );
}

/// A session created and read back through a middleware on `store`.
async fn round_trip_through(store: AnyStore) {
    let app = test::init_service(
        App::new()
            .wrap(middleware(store, &Key::generate()))
            .route("/count", web::post().to(latchkey_tests::http::count)),
    )
    .await;
    let first = post(&app, "/count", None).await;
    let cookie = session_cookie(&first).unwrap();
    assert_eq!(body(post(&app, "/count", Some(&cookie)).await).await, "2");
}

#[actix_web::test]
async fn a_store_from_a_url_serves_sessions_on_every_backend() {
    use latchkey_testkit::servers::{PrivateRedisCluster, database_url, redis_url, unique_name};

    round_trip_through(latchkey::store_from_url("memory").await.unwrap()).await;

    let prefix = format!("{}:", unique_name("from-url"));
    round_trip_through(
        latchkey::store_from_url(&format!("{}?prefix={prefix}", redis_url()))
            .await
            .unwrap(),
    )
    .await;
    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the session lives under the URL's prefix");

    let schema = unique_name("from_url");
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    round_trip_through(
        latchkey::store_from_url(&format!("{url}{separator}schema={schema}"))
            .await
            .unwrap(),
    )
    .await;
    let (pg, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows: i64 = pg
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".latchkey_sessions"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the session lives in the URL's schema");

    let cluster = PrivateRedisCluster::start().unwrap();
    let nodes: Vec<String> = cluster
        .urls()
        .iter()
        .map(|url| url.trim_start_matches("redis://").to_owned())
        .collect();
    let prefix = format!("{}:", unique_name("cluster-url"));
    round_trip_through(
        latchkey::store_from_url(&format!(
            "redis-cluster://{}?prefix={prefix}",
            nodes.join(",")
        ))
        .await
        .unwrap(),
    )
    .await;
    // The session's key is on one of the nodes, under the URL's prefix.
    let mut found = 0;
    for url in cluster.urls() {
        let client = ::redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        found += keys.len();
    }
    assert!(
        found > 0,
        "the cluster session lives under the URL's prefix"
    );
}

#[actix_web::test]
async fn a_bad_store_url_is_refused_with_what_to_fix() {
    use latchkey::StoreUrlError;
    let err = latchkey::store_from_url("mongodb://127.0.0.1")
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreUrlError::UnknownScheme { scheme } if scheme == "mongodb"));
    assert!(err.to_string().contains("postgres://"), "{err}");
    let err = latchkey::store_from_url("postgres://127.0.0.1/db?schema=no;drop")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreUrlError::InvalidUrl {
                store: "postgres",
                ..
            }
        ),
        "{err:?}"
    );
    let err = latchkey::store_from_url("redis-cluster://")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreUrlError::InvalidUrl {
                store: "redis-cluster",
                ..
            }
        ),
        "{err:?}"
    );
    let port = latchkey_testkit::servers::free_port().unwrap();
    let err = latchkey::store_from_url(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreUrlError::Unreachable { store: "redis", .. }),
        "{err:?}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the cause is kept"
    );
}

async fn guards_read_a_session_loaded_before_routing(store: AnyStore) {
    use latchkey::SessionGuardExt as _;
    let signed_in = || {
        actix_web::guard::fn_guard(|ctx| {
            ctx.loaded_session()
                .is_some_and(|session| session.owner().is_some())
        })
    };
    let routes = move |cfg: &mut web::ServiceConfig| {
        cfg.route(
            "/login",
            web::post().to(|session: Session| async move {
                session.login("ann");
                "in"
            }),
        )
        .service(
            web::resource("/")
                .route(web::get().guard(signed_in()).to(|| async { "dashboard" }))
                .route(web::get().to(|| async { "welcome" })),
        );
    };
    let key = Key::generate();
    let eager = SessionMiddleware::builder(store.clone(), key.clone())
        .cookie_secure(false)
        .load_before_routing(true)
        .build()
        .unwrap();
    let eager = test::init_service(App::new().wrap(eager).configure(routes)).await;
    let lazy = test::init_service(App::new().wrap(middleware(store, &key)).configure(routes)).await;

    assert_eq!(body(get(&eager, "/", None).await).await, "welcome");
    let cookie = session_cookie(&post(&eager, "/login", None).await).unwrap();
    assert_eq!(
        body(get(&eager, "/", Some(&cookie)).await).await,
        "dashboard"
    );
    assert_eq!(
        body(get(&lazy, "/", Some(&cookie)).await).await,
        "welcome",
        "without loading before routing, a guard sees no session"
    );
}

#[actix_web::test]
async fn loading_before_routing_answers_the_store_status_when_the_store_fails() {
    let (failing, cookie) = failing_store_and_valid_cookie(None).await;
    let failing = failing.load_before_routing(true).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(failing)
            .route("/", web::get().to(|| async { "served" })),
    )
    .await;
    let res = get(&app, "/", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(body(res).await, "Session service temporarily unavailable.");
    // Without a cookie there is nothing to load, and nothing fails.
    assert_eq!(body(get(&app, "/", None).await).await, "served");
}

/// Outside `SessionMiddleware`, after it wrote the session back: the session is
/// refused rather than handed out blank, and a handle kept from the request
/// refuses changes, so nothing is silently lost.
#[actix_web::test]
async fn the_session_is_refused_after_the_write_back() {
    async fn late(
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        let res = next.call(req).await?;
        let outcome = match res.session().await {
            Ok(_) => "handed out".to_owned(),
            Err(err) => format!("refused: {err}"),
        };
        let mut res = res.map_into_boxed_body();
        res.headers_mut().insert(
            header::HeaderName::from_static("x-late"),
            header::HeaderValue::from_str(&outcome).unwrap(),
        );
        Ok(res)
    }
    let kept: std::sync::Arc<std::sync::Mutex<Option<Session>>> = std::sync::Arc::default();
    let keeper = std::sync::Arc::clone(&kept);
    let sessions = TestSessions::new();
    let cookie = sessions.seed(json!({ "n": 1 }), None).await.unwrap();
    let app = test::init_service(
        App::new()
            .wrap(sessions.middleware())
            .wrap(from_fn(late))
            .route(
                "/",
                web::post().to(move |session: Session| {
                    let keeper = std::sync::Arc::clone(&keeper);
                    async move {
                        session.insert("n", 2)?;
                        *keeper.lock().unwrap() = Some(session);
                        Ok::<_, latchkey::Error>("kept")
                    }
                }),
            ),
    )
    .await;
    let res = post(&app, "/", Some(&cookie)).await;
    let late = res
        .headers()
        .get("x-late")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(late.starts_with("refused"), "{late}");
    let saved = sessions.saved(&cookie).await.unwrap().unwrap();
    assert_eq!(saved.data["n"], 2, "the handler's change was written back");
    let handle = kept.lock().unwrap().take().unwrap();
    assert!(matches!(
        handle.insert("n", 3),
        Err(latchkey::Error::WrittenBack)
    ));
    assert_eq!(sessions.saved(&cookie).await.unwrap().unwrap().data["n"], 2);
}

/// `take` replayed after a conflict removes only the value it took: a newer
/// one another request wrote meanwhile stays.
#[actix_web::test]
async fn a_replayed_take_leaves_a_newer_value() {
    let sessions = TestSessions::new();
    let cookie = sessions.seed(json!({ "notice": "A" }), None).await.unwrap();
    let (first, taking) = sessions
        .request(test::TestRequest::default().cookie(cookie.clone()))
        .await
        .unwrap();
    let (second, writing) = sessions
        .request(test::TestRequest::default().cookie(cookie.clone()))
        .await
        .unwrap();
    assert_eq!(
        taking.take::<String>("notice").unwrap().as_deref(),
        Some("A")
    );
    writing.insert("notice", "B").unwrap();
    sessions.finish(&second).await.unwrap();
    sessions.finish(&first).await.unwrap();
    let saved = sessions.saved(&cookie).await.unwrap().unwrap();
    assert_eq!(saved.data.get("notice"), Some(&json!("B")));
}

/// Seeding and reading back are test set-up: the middleware's metrics do not
/// count them.
#[actix_web::test]
async fn test_set_up_stays_out_of_the_metrics() {
    let middleware = middleware(latchkey::memory::MemoryStore::new(), &Key::generate());
    let metrics = middleware.metrics();
    let sessions = TestSessions::for_middleware(&middleware);
    let cookie = sessions.seed(json!({ "n": 1 }), None).await.unwrap();
    assert!(sessions.saved(&cookie).await.unwrap().is_some());
    let counts = metrics.snapshot();
    assert_eq!(
        (counts.loads, counts.creates, counts.sessions_created),
        (0, 0, 0)
    );
}
