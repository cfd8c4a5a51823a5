//! "Remember me": a session that opts into a persistent cookie and a longer
//! idle timeout, within the configured bound, over HTTP on every store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use actix_web::cookie::Key;
use actix_web::{App, HttpResponse, test, web};
use latchkey::store::SessionStore as _;
use latchkey::{AnyStore, Session, SessionMiddleware};
use latchkey_tests::http::{body, get, post, session_cookie, token_of};
use latchkey_tests::on_every_store;

on_every_store!(
    a_remembered_login_gets_a_persistent_cookie_and_its_own_idle_timeout,
    remembering_past_the_bound_is_refused_and_changes_nothing,
    a_remembered_session_stays_remembered_until_a_plain_login,
    remembering_a_stored_session_moves_its_deadline_under_every_policy,
    asking_again_changes_nothing_and_purge_forgets,
);

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn app_config(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/login",
        web::post().to(|session: Session| async move {
            session.login("ann");
            session.remember(30 * DAY)?;
            Ok::<_, latchkey::Error>("remembered")
        }),
    )
    .route(
        "/login-plain",
        web::post().to(|session: Session| async move {
            session.login("ann");
            "plain"
        }),
    )
    .route(
        "/too-long",
        web::post().to(|session: Session| async move {
            session.remember(365 * DAY)?;
            Ok::<_, latchkey::Error>("unreachable")
        }),
    )
    .route(
        "/count",
        web::post().to(|session: Session| async move {
            let n = session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
            Ok::<_, latchkey::Error>(n.to_string())
        }),
    )
    .route(
        "/remember",
        web::post().to(|session: Session| async move {
            session.remember(30 * DAY)?;
            Ok::<_, latchkey::Error>("remembered")
        }),
    )
    .route(
        "/tiny",
        web::post().to(|session: Session| async move {
            let refused = [Duration::ZERO, Duration::from_micros(500)].map(|d| {
                matches!(
                    session.remember(d),
                    Err(latchkey::Error::RememberOutOfBounds { .. })
                )
            });
            format!("{refused:?}")
        }),
    )
    .route(
        "/purge",
        web::post().to(|session: Session| async move {
            session.purge();
            session.insert("after", true)?;
            Ok::<_, latchkey::Error>("purged")
        }),
    )
    .route(
        "/renew",
        web::post().to(|session: Session| async move {
            session.renew();
            "renewed"
        }),
    )
    .route(
        "/",
        web::get().to(|session: Session| async move {
            let remembered = session.remembered().map(|d| d.as_secs());
            HttpResponse::Ok().body(format!("{remembered:?}"))
        }),
    );
}

fn middleware(store: AnyStore, key: &Key) -> SessionMiddleware {
    // Browser-session cookies by default, a one-hour idle timeout, 90 days
    // of lifetime, and remembering allowed for up to 30 days.
    SessionMiddleware::builder(store, key.clone())
        .cookie_secure(false)
        .idle_timeout(HOUR)
        .lifetime(90 * DAY)
        .max_remembered_idle_timeout(30 * DAY)
        .build()
        .unwrap()
}

/// The stored session a cookie names, read straight from the store.
async fn load_by_cookie(
    store: &AnyStore,
    cookie: &actix_web::cookie::Cookie<'static>,
    key: &Key,
) -> Option<latchkey::store::Record> {
    store.load(&token_of(cookie, key).id()).await.unwrap()
}

/// How long until the record's idle deadline.
fn idle_remaining(record: &latchkey::store::Record) -> Duration {
    record
        .deadlines
        .idle
        .saturating_since(latchkey::Timestamp::now())
}

fn max_age_secs(cookie: &actix_web::cookie::Cookie<'_>) -> Option<i64> {
    cookie.max_age().map(|age| age.whole_seconds())
}

async fn a_remembered_login_gets_a_persistent_cookie_and_its_own_idle_timeout(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key))
            .configure(app_config),
    )
    .await;
    let res = post(&app, "/login", None).await;
    assert!(res.status().is_success());
    let cookie = session_cookie(&res).expect("a login sets the cookie");
    let age = max_age_secs(&cookie).expect("a remembered session's cookie is persistent");
    let month = i64::try_from((30 * DAY).as_secs()).unwrap();
    assert!((month - 5..=month).contains(&age), "max-age {age}");

    let stored = load_by_cookie(&store, &cookie, &key).await.expect("stored");
    assert_eq!(stored.idle_timeout, Some(30 * DAY));
    let idle_left = idle_remaining(&stored);
    assert!(
        idle_left > 29 * DAY,
        "the session's own idle timeout sets the idle deadline: {idle_left:?}"
    );
    let res = get(&app, "/", Some(&cookie)).await;
    assert_eq!(body(res).await, format!("Some({})", (30 * DAY).as_secs()));

    // A session that never opted in keeps the browser-session cookie and the
    // middleware's idle timeout.
    let res = post(&app, "/count", None).await;
    let plain = session_cookie(&res).expect("created");
    assert_eq!(max_age_secs(&plain), None);
    let stored = load_by_cookie(&store, &plain, &key).await.expect("stored");
    assert_eq!(stored.idle_timeout, None);
    assert!(idle_remaining(&stored) <= HOUR);
}

async fn remembering_past_the_bound_is_refused_and_changes_nothing(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key))
            .configure(app_config),
    )
    .await;
    let res = post(&app, "/count", None).await;
    let cookie = session_cookie(&res).expect("created");
    let before = load_by_cookie(&store, &cookie, &key).await.expect("stored");
    let res = post(&app, "/too-long", Some(&cookie)).await;
    assert_eq!(
        res.status(),
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
    );
    let after = load_by_cookie(&store, &cookie, &key)
        .await
        .expect("the session is still there under its token");
    assert_eq!(after.idle_timeout, None);
    assert_eq!(after.deadlines, before.deadlines);
    let res = get(&app, "/", Some(&cookie)).await;
    assert_eq!(body(res).await, "None");
    assert_eq!(
        format!(
            "{}",
            latchkey::Error::RememberOutOfBounds {
                requested: 365 * DAY,
                max: 30 * DAY
            }
        ),
        "remembered idle timeout 31536000s is not within 1 ms ..= 2592000s"
    );
}

async fn a_remembered_session_stays_remembered_until_a_plain_login(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key))
            .configure(app_config),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/login", None).await).expect("logged in");
    // Saves keep it.
    let res = post(&app, "/count", Some(&cookie)).await;
    assert_eq!(body(res).await, "1");
    let stored = load_by_cookie(&store, &cookie, &key).await.expect("stored");
    assert_eq!(stored.idle_timeout, Some(30 * DAY), "a save keeps it");
    // A renewal keeps it, and its cookie stays persistent.
    let res = post(&app, "/renew", Some(&cookie)).await;
    let renewed = session_cookie(&res).expect("renewed");
    assert!(max_age_secs(&renewed).is_some());
    let stored = load_by_cookie(&store, &renewed, &key)
        .await
        .expect("stored");
    assert_eq!(stored.idle_timeout, Some(30 * DAY), "a renewal keeps it");
    assert_eq!(stored.data["n"], 1);
    // A login without "remember me" starts a plain session.
    let res = post(&app, "/login-plain", Some(&renewed)).await;
    let plain = session_cookie(&res).expect("logged in again");
    assert_eq!(max_age_secs(&plain), None, "a browser-session cookie again");
    let stored = load_by_cookie(&store, &plain, &key).await.expect("stored");
    assert_eq!(stored.idle_timeout, None);
    assert!(idle_remaining(&stored) <= HOUR);
    let res = get(&app, "/", Some(&plain)).await;
    assert_eq!(body(res).await, "None");
}

async fn remembering_a_stored_session_moves_its_deadline_under_every_policy(store: AnyStore) {
    let key = Key::generate();
    for policy in [
        latchkey::IdleExtension::OnEveryRequest,
        latchkey::IdleExtension::OnChange,
        latchkey::IdleExtension::Never,
    ] {
        let middleware = SessionMiddleware::builder(store.clone(), key.clone())
            .cookie_secure(false)
            .idle_timeout(HOUR)
            .lifetime(90 * DAY)
            .max_remembered_idle_timeout(30 * DAY)
            .idle_extension(policy)
            .build()
            .unwrap();
        let app = test::init_service(App::new().wrap(middleware).configure(app_config)).await;
        let plain = session_cookie(&post(&app, "/count", None).await).expect("created");
        // Remembered later, without a login.
        let res = post(&app, "/remember", Some(&plain)).await;
        let remembered = session_cookie(&res).expect("renewed to carry it");
        assert!(max_age_secs(&remembered).is_some(), "{policy:?}");
        let stored = load_by_cookie(&store, &remembered, &key)
            .await
            .expect("stored");
        assert_eq!(stored.idle_timeout, Some(30 * DAY), "{policy:?}");
        assert!(
            idle_remaining(&stored) > 29 * DAY,
            "{policy:?}: the deadline runs from now on the new timeout"
        );
        assert_eq!(stored.data["n"], 1, "{policy:?}: values kept");

        // An existing session logging in with "remember me".
        let fresh = session_cookie(&post(&app, "/count", None).await).expect("created");
        let res = post(&app, "/login", Some(&fresh)).await;
        let logged_in = session_cookie(&res).expect("logged in");
        let stored = load_by_cookie(&store, &logged_in, &key)
            .await
            .expect("stored");
        assert_eq!(stored.idle_timeout, Some(30 * DAY), "{policy:?}");
        assert_eq!(stored.owner.as_deref(), Some("ann"));
        assert!(max_age_secs(&logged_in).is_some());
    }
}

async fn asking_again_changes_nothing_and_purge_forgets(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key))
            .configure(app_config),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/login", None).await).expect("logged in");
    let res = post(&app, "/remember", Some(&cookie)).await;
    assert!(
        session_cookie(&res).is_none(),
        "already remembered for 30 days: no new token"
    );
    assert!(
        load_by_cookie(&store, &cookie, &key).await.is_some(),
        "the same session goes on"
    );
    let res = post(&app, "/tiny", Some(&cookie)).await;
    assert_eq!(
        body(res).await,
        "[true, true]",
        "zero and 500 µs are refused"
    );

    let res = post(&app, "/purge", Some(&cookie)).await;
    let after = session_cookie(&res).expect("a new session for the value set after purge");
    assert_eq!(max_age_secs(&after), None, "no longer remembered");
    let stored = load_by_cookie(&store, &after, &key).await.expect("stored");
    assert_eq!(stored.idle_timeout, None);
}
