//! The session lifecycle's promises, each through the real middleware: renewal
//! never revives or prolongs a session, expiry follows the policy, cookies are
//! removed only when they should be, no-op changes write nothing, one load per
//! request, one deadline per request, one runtime per store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::{Cookie, Key};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{App, FromRequest, HttpRequest, test, web};
use latchkey::store::{Deadlines, DeleteOutcome, Record, SaveOutcome, SessionStore};
use latchkey::{
    AnyStore, IdleExtension, Session, SessionId, SessionMiddleware, SessionMiddlewareBuilder,
    StoreError, Timestamp,
};
use latchkey_tests::http::{get, post, session_cookie, token_of};
use latchkey_tests::stores::{CountingStore, PausingStore};
use tokio::sync::Notify;

latchkey_tests::on_every_store!(
    renewal_keeps_the_creation_time_and_absolute_deadline,
    renewal_of_a_session_logged_out_meanwhile_brings_nothing_back,
    a_valid_cookie_whose_session_is_gone_is_left_alone,
    sessions_in_use_do_not_expire_under_either_extension_policy,
    saves_move_the_idle_deadline_at_most_once_per_interval,
);

fn builder(store: impl SessionStore, key: &Key) -> SessionMiddlewareBuilder {
    SessionMiddleware::builder(store, key.clone()).cookie_secure(false)
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/login/{user}",
        web::post().to(|session: Session, user: web::Path<String>| async move {
            session.renew();
            session.set_owner(user.into_inner());
            session.insert("cart", 1)?;
            Ok::<_, latchkey::Error>("in")
        }),
    )
    .route(
        "/fresh-login/{user}",
        web::post().to(|session: Session, user: web::Path<String>| async move {
            session.login(user.into_inner());
            "in again"
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
        "/count",
        web::post().to(|session: Session| async move {
            let n = session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
            Ok::<_, latchkey::Error>(n.to_string())
        }),
    )
    .route(
        "/read",
        web::get().to(|session: Session| async move { format!("{:?}", session.get_value("n")) }),
    )
    .route(
        "/no-ops",
        web::post().to(|session: Session| async move {
            session.remove("absent");
            if let Some(owner) = session.owner() {
                session.set_owner(owner);
            }
            session.insert("scratch", 1)?;
            session.remove("scratch");
            Ok::<_, latchkey::Error>("nothing changed")
        }),
    )
    .route(
        "/clear-empty",
        web::post().to(|session: Session| async move {
            session.clear();
            session.remove("flash");
            "nothing to clear"
        }),
    )
    .route(
        "/expires-in",
        web::get().to(|session: Session| async move {
            format!("{:?}", session.expires_in().map(|d| d.as_secs()))
        }),
    );
}

async fn service(
    middleware: SessionMiddleware,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse<
        actix_web::body::EitherBody<actix_web::body::BoxBody>,
    >,
    Error = actix_web::Error,
> {
    test::init_service(App::new().wrap(middleware).configure(routes)).await
}

async fn record_of(store: &AnyStore, cookie: &Cookie<'static>, key: &Key) -> Option<Record> {
    store.load(&token_of(cookie, key).id()).await.unwrap()
}

async fn renewal_keeps_the_creation_time_and_absolute_deadline(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let app = service(builder(store.clone(), &key).build().unwrap()).await;
    let first = session_cookie(&post(&app, "/login/ann", None).await).unwrap();
    let before = record_of(&store, &first, &key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let renewed = session_cookie(&post(&app, "/renew", Some(&first)).await).unwrap();
    assert_ne!(renewed.value(), first.value(), "{backend}: a new token");
    let after = record_of(&store, &renewed, &key).await.unwrap();
    assert_eq!(after.created_at, before.created_at, "{backend}");
    assert_eq!(
        after.deadlines.absolute, before.deadlines.absolute,
        "{backend}: renewing never extends a session's life"
    );
    assert!(record_of(&store, &first, &key).await.is_none(), "{backend}");

    let relogged = session_cookie(&post(&app, "/fresh-login/ann", Some(&renewed)).await).unwrap();
    let fresh = record_of(&store, &relogged, &key).await.unwrap();
    assert!(
        fresh.created_at > before.created_at
            && fresh.deadlines.absolute > before.deadlines.absolute,
        "{backend}: login() starts a new lifetime"
    );
    assert_eq!(fresh.owner.as_deref(), Some("ann"), "{backend}");
}

async fn renewal_of_a_session_logged_out_meanwhile_brings_nothing_back(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let (loaded, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (loaded_in, release_in) = (Arc::clone(&loaded), Arc::clone(&release));
    let app = test::init_service(
        App::new()
            .wrap(builder(store.clone(), &key).build().unwrap())
            .configure(routes)
            .route(
                "/slow-renew",
                web::post().to(move |session: Session| {
                    let (loaded, release) = (Arc::clone(&loaded_in), Arc::clone(&release_in));
                    async move {
                        session.renew();
                        session.insert("stolen", true)?;
                        loaded.notify_one();
                        release.notified().await;
                        Ok::<_, latchkey::Error>("renewed")
                    }
                }),
            ),
    )
    .await;
    let owner = format!("victim-{backend}-{}", std::process::id());
    let cookie = session_cookie(&post(&app, &format!("/login/{owner}"), None).await).unwrap();
    let attacker = async { post(&app, "/slow-renew", Some(&cookie)).await };
    let victim = async {
        loaded.notified().await;
        store.delete_by_owner(&owner, None).await.unwrap();
        release.notify_one();
    };
    let (res, ()) = tokio::join!(attacker, victim);
    assert_eq!(res.status(), StatusCode::OK, "{backend}");
    assert!(
        session_cookie(&res).is_none(),
        "{backend}: no cookie for a session logged out meanwhile"
    );
    assert!(
        store.list_by_owner(&owner).await.unwrap().is_empty(),
        "{backend}: log out everywhere stays logged out"
    );
}

async fn sessions_in_use_do_not_expire_under_either_extension_policy(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    for policy in [IdleExtension::OnEveryRequest, IdleExtension::OnChange] {
        let key = Key::generate();
        let app = service(
            builder(store.clone(), &key)
                .idle_timeout(Duration::from_millis(1500))
                .idle_extension(policy)
                .idle_extension_interval(Duration::from_millis(300))
                .build()
                .unwrap(),
        )
        .await;
        let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            // Reads keep it alive only where reads extend; writes do once per interval.
            let res = if policy == IdleExtension::OnChange {
                post(&app, "/count", Some(&cookie)).await
            } else {
                get(&app, "/read", Some(&cookie)).await
            };
            assert_eq!(res.status(), StatusCode::OK);
        }
        let body = test::read_body(get(&app, "/read", Some(&cookie)).await).await;
        assert_ne!(
            body.as_ref(),
            b"None",
            "{backend} {policy:?}: a session used every 0.4 s outlived its 1.5 s idle timeout"
        );
    }
}

async fn saves_move_the_idle_deadline_at_most_once_per_interval(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    for policy in [IdleExtension::OnEveryRequest, IdleExtension::OnChange] {
        let key = Key::generate();
        let app = service(
            builder(store.clone(), &key)
                .idle_timeout(Duration::from_secs(60))
                .idle_extension(policy)
                .idle_extension_interval(Duration::from_millis(800))
                .build()
                .unwrap(),
        )
        .await;
        let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
        let created = record_of(&store, &cookie, &key).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        post(&app, "/count", Some(&cookie)).await;
        let soon = record_of(&store, &cookie, &key).await.unwrap();
        assert_eq!(soon.data.get("n"), Some(&2.into()), "{backend} {policy:?}");
        assert_eq!(
            soon.deadlines, created.deadlines,
            "{backend} {policy:?}: a save inside the interval keeps the stored deadlines"
        );
        tokio::time::sleep(Duration::from_millis(850)).await;
        post(&app, "/count", Some(&cookie)).await;
        let later = record_of(&store, &cookie, &key).await.unwrap();
        assert!(
            later.deadlines.idle > created.deadlines.idle,
            "{backend} {policy:?}: a save after the interval moves the idle deadline"
        );
        assert_eq!(later.deadlines.absolute, created.deadlines.absolute);
    }
}

#[actix_web::test]
async fn never_extending_expires_a_session_in_use() {
    let key = Key::generate();
    let app = service(
        builder(latchkey::memory::MemoryStore::new(), &key)
            .idle_timeout(Duration::from_millis(600))
            .idle_extension(IdleExtension::Never)
            .build()
            .unwrap(),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        post(&app, "/count", Some(&cookie)).await;
    }
    let body = test::read_body(get(&app, "/read", Some(&cookie)).await).await;
    assert_eq!(body.as_ref(), b"None", "expired 600 ms after it started");
}

async fn a_valid_cookie_whose_session_is_gone_is_left_alone(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let middleware = builder(store.clone(), &key).build().unwrap();
    let metrics = middleware.metrics();
    let app = test::init_service(App::new().wrap(middleware).configure(routes)).await;
    let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
    store.delete(&token_of(&cookie, &key).id()).await.unwrap();
    let read = get(&app, "/read", Some(&cookie)).await;
    assert!(
        session_cookie(&read).is_none(),
        "{backend}: a read must not wipe a cookie a concurrent login may have replaced"
    );
    let write = post(&app, "/count", Some(&cookie)).await;
    let replaced = session_cookie(&write).unwrap();
    assert!(
        !replaced.value().is_empty(),
        "{backend}: a new session, not a removal"
    );

    let mut forged = cookie.clone();
    forged.set_value(format!("{}x", cookie.value()));
    let rejected = get(&app, "/read", Some(&forged)).await;
    assert_eq!(
        session_cookie(&rejected).map(|c| c.value().to_owned()),
        Some(String::new()),
        "{backend}: a cookie that fails verification is removed"
    );
    assert_eq!(
        metrics.snapshot().cookies_rejected,
        1,
        "{backend}: and counted"
    );
}

#[actix_web::test]
async fn changes_that_change_nothing_write_nothing() {
    let key = Key::generate();
    let store = CountingStore::new(latchkey::memory::MemoryStore::new());
    let calls = Arc::clone(&store.calls);
    let app = service(builder(store, &key).build().unwrap()).await;
    let cookie = session_cookie(&post(&app, "/login/ann", None).await).unwrap();
    let before = calls.snapshot();
    let res = post(&app, "/no-ops", Some(&cookie)).await;
    assert!(session_cookie(&res).is_none());
    let after = calls.snapshot();
    assert_eq!(after.save, before.save, "no save for no-op changes");
    assert_eq!(
        after.touch, before.touch,
        "nor a touch: the idle extension is not due"
    );

    let res = post(&app, "/clear-empty", None).await;
    assert!(
        session_cookie(&res).is_none(),
        "no session made by clearing nothing"
    );
    assert_eq!(calls.snapshot().create, after.create);
}

/// An extractor of the kind applications write, built on the `Session`.
struct CurrentUser(Option<String>);

impl FromRequest for CurrentUser {
    type Error = latchkey::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = Session::from_request(req, payload);
        Box::pin(async move { Ok(CurrentUser(session.await?.owner())) })
    }
}

#[actix_web::test]
async fn extractors_sharing_the_session_load_it_once() {
    let key = Key::generate();
    let store = CountingStore::new(latchkey::memory::MemoryStore::new());
    let calls = Arc::clone(&store.calls);
    let app = test::init_service(
        App::new()
            .wrap(builder(store, &key).build().unwrap())
            .configure(routes)
            .route(
                "/both",
                web::get().to(|user: CurrentUser, session: Session| async move {
                    format!("{:?} {}", user.0, session.entries().len())
                }),
            ),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/login/ann", None).await).unwrap();
    let before = calls.snapshot().load;
    let res = get(&app, "/both", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        calls.snapshot().load - before,
        1,
        "one load for two extractors"
    );
}

/// A memory store whose saves take a while: they yield to other tasks first,
/// or never answer at all.
#[derive(Clone, Debug)]
struct SlowSaves(latchkey::memory::MemoryStore, Slowness);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slowness {
    Yield,
    Stall,
}

impl SessionStore for SlowSaves {
    fn runtime_slot(&self) -> Option<&latchkey::store::RuntimeSlot> {
        self.0.runtime_slot()
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.0.load(id).await
    }
    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        self.0.create(id, record).await
    }
    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        match self.1 {
            Slowness::Stall => std::future::pending().await,
            Slowness::Yield => {
                tokio::task::yield_now().await;
                self.0.save(id, record, expected).await
            }
        }
    }
    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.0.touch(id, deadlines, seen_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.0.delete(id).await
    }
    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        self.0.delete_at_version(id, expected).await
    }
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        self.0.list_by_owner(owner).await
    }
    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.0.delete_by_owner(owner, keep).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.0.delete_expired().await
    }
}

#[actix_web::test]
async fn one_deadline_bounds_a_requests_session_work_including_its_turn() {
    let key = Key::generate();
    let app = service(
        builder(
            SlowSaves(latchkey::memory::MemoryStore::new(), Slowness::Stall),
            &key,
        )
        .session_deadline(Duration::from_millis(300))
        .build()
        .unwrap(),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
    // The first writer stalls in its save while holding the session's turn; the
    // second waits for that turn. Both answer the store-error status.
    let (first, second) = tokio::join!(
        post(&app, "/count", Some(&cookie)),
        post(&app, "/count", Some(&cookie))
    );
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[actix_web::test]
async fn middleware_built_per_worker_shares_write_turns_and_metrics() {
    let key = Key::generate();
    let memory = latchkey::memory::MemoryStore::new();
    let store = SlowSaves(memory.clone(), Slowness::Yield);
    let worker = |store: SlowSaves| {
        let middleware = builder(store, &key).build().unwrap();
        let metrics = middleware.metrics();
        let app = App::new().wrap(middleware).route(
            "/slow-count",
            web::post().to(|session: Session| async move {
                let n = session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
                // Let the other requests load before this one writes.
                tokio::task::yield_now().await;
                Ok::<_, latchkey::Error>(n.to_string())
            }),
        );
        (app, metrics)
    };
    let (first, metrics) = worker(store.clone());
    let (second, other_metrics) = worker(store.clone());
    assert!(Arc::ptr_eq(&metrics, &other_metrics), "one set of metrics");
    let first = test::init_service(first).await;
    let second = test::init_service(second).await;
    let cookie = session_cookie(&post(&first, "/slow-count", None).await).unwrap();
    let requests = (0..20).map(|i| {
        let (first, second, cookie) = (&first, &second, cookie.clone());
        async move {
            if i % 2 == 0 {
                post(first, "/slow-count", Some(&cookie)).await.status()
            } else {
                post(second, "/slow-count", Some(&cookie)).await.status()
            }
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    let record = store
        .load(&token_of(&cookie, &key).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.data["n"], 21);
    assert_eq!(
        metrics.snapshot().conflicts_replayed,
        0,
        "writers in both workers took turns instead of conflicting"
    );
    assert_eq!(metrics.snapshot().loads, 20, "both workers counted");
}

#[actix_web::test]
async fn remaining_time_is_read_without_extending() {
    let key = Key::generate();
    let store = CountingStore::new(latchkey::memory::MemoryStore::new());
    let calls = Arc::clone(&store.calls);
    let app = service(
        builder(store, &key)
            .idle_timeout(Duration::from_secs(600))
            .build()
            .unwrap(),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
    let body = test::read_body(get(&app, "/expires-in", Some(&cookie)).await).await;
    let seconds: u64 = std::str::from_utf8(&body)
        .unwrap()
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!((598..=600).contains(&seconds), "{seconds}");
    assert_eq!(calls.snapshot().touch, 0);
    assert_eq!(calls.snapshot().save, 0);
    let none = test::read_body(get(&app, "/expires-in", None).await).await;
    assert_eq!(none.as_ref(), b"None");
}

#[actix_web::test]
async fn unbounded_durations_are_refused() {
    let refused = builder(latchkey::memory::MemoryStore::new(), &Key::generate())
        .lifetime(Duration::MAX)
        .build();
    assert!(matches!(
        refused,
        Err(latchkey::ConfigError::DurationTooLong { .. })
    ));
    let never_fires = builder(latchkey::memory::MemoryStore::new(), &Key::generate())
        .idle_timeout(Duration::from_secs(60))
        .idle_extension_interval(Duration::from_secs(60))
        .build();
    assert!(matches!(
        never_fires,
        Err(latchkey::ConfigError::ExtensionIntervalNeverFires { .. })
    ));
}

/// Writers of one session queued behind each other are committed together: 32
/// concurrent increments through one process all count, in fewer saves than
/// writers, on Redis and PostgreSQL. (The memory store's saves never wait, so
/// writers there never queue.)
#[actix_web::test]
async fn queued_writers_of_one_session_commit_together_on_redis() {
    queued_writers_commit_together(latchkey::AnyStore::new(
        latchkey_tests::stores::redis_store().await,
    ))
    .await;
}

#[actix_web::test]
async fn queued_writers_of_one_session_commit_together_on_postgres() {
    queued_writers_commit_together(latchkey::AnyStore::new(
        latchkey_tests::stores::postgres_store().await,
    ))
    .await;
}

async fn queued_writers_commit_together(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    {
        let counting = CountingStore::new(store);
        let calls = Arc::clone(&counting.calls);
        let key = Key::generate();
        let app = service(builder(counting, &key).build().unwrap()).await;
        let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
        let before = calls.snapshot();
        let requests = (0..32).map(|_| post(&app, "/count", Some(&cookie)));
        let responses = futures_util::future::join_all(requests).await;
        assert!(
            responses.iter().all(|r| r.status() == StatusCode::OK),
            "{backend}"
        );
        let after = calls.snapshot();
        let body = test::read_body(get(&app, "/read", Some(&cookie)).await).await;
        assert_eq!(
            body.as_ref(),
            b"Some(Number(33))",
            "{backend}: every increment counted"
        );
        let saves = after.save - before.save;
        assert!(
            saves < 32,
            "{backend}: {saves} saves for 32 writers; queued writers were not grouped"
        );
    }
}

/// A save that keeps the deadlines it loaded (inside the extension interval)
/// lands after a read's touch moved the idle deadline: the touch stays.
#[actix_web::test]
async fn a_save_inside_the_interval_does_not_undo_a_concurrent_touch() {
    let key = Key::generate();
    let memory = latchkey::memory::MemoryStore::new();
    let store = PausingStore::new(memory.clone());
    let (paused, release) = (Arc::clone(&store.paused), Arc::clone(&store.release));
    let (idle_timeout, interval) = (Duration::from_secs(60), Duration::from_secs(2));
    let app = service(
        builder(store.clone(), &key)
            .idle_timeout(idle_timeout)
            .idle_extension_interval(interval)
            .build()
            .unwrap(),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
    let id = token_of(&cookie, &key).id();
    let created = memory.load(&id).await.unwrap().unwrap();
    store.arm_save_before();
    // Half an interval in, a change: its save is not due, so it writes the
    // deadlines it loaded. The store holds that save.
    tokio::time::sleep(interval / 2).await;
    let writer = post(&app, "/count", Some(&cookie));
    let reader = async {
        paused.notified().await;
        // Past the interval: a read's touch is due and moves the idle deadline.
        tokio::time::sleep(interval * 3 / 4).await;
        let used_at = latchkey::Timestamp::now();
        assert_eq!(
            get(&app, "/read", Some(&cookie)).await.status(),
            StatusCode::OK
        );
        let touched = memory.load(&id).await.unwrap().unwrap().deadlines.idle;
        assert!(
            touched > created.deadlines.idle,
            "the read's touch moved the idle deadline"
        );
        release.notify_one();
        (used_at, touched)
    };
    let (res, (used_at, touched)) = tokio::join!(writer, reader);
    assert_eq!(res.status(), StatusCode::OK);
    let stored = memory.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.data.get("n"), Some(&2.into()), "the change landed");
    // IdleExtension::OnEveryRequest: "a session used at least once per
    // idle_timeout − interval lives until its absolute deadline".
    assert!(
        stored.deadlines.idle >= used_at + (idle_timeout - interval),
        "used at {used_at:?}; its touch set the idle deadline to {touched:?}; the held save then wrote {:?}",
        stored.deadlines.idle
    );
}

/// Updates of the sessions table of `schema`, and how many were heap-only, once
/// the statistics of the store's (closed) connections have reached the view.
async fn update_statistics(schema: &str, expected: i64) -> (i64, i64) {
    let url = latchkey_testkit::servers::database_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let started = std::time::Instant::now();
    loop {
        let row = client
            .query_one(
                "SELECT coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_hot_upd), 0)::bigint \
                 FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'latchkey_sessions'",
                &[&schema],
            )
            .await
            .unwrap();
        let counts: (i64, i64) = (row.get(0), row.get(1));
        if counts.0 >= expected || started.elapsed() > Duration::from_secs(20) {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counter requests on PostgreSQL, each a save, with `interval` between idle
/// extensions; the table's update statistics afterwards.
async fn counter_saves_on_postgres(interval: Duration, saves: i64) -> (i64, i64) {
    let store = latchkey_tests::stores::postgres_store().await;
    let schema = store.schema().to_owned();
    let key = Key::generate();
    let app = service(
        builder(store, &key)
            .idle_timeout(Duration::from_secs(600))
            .idle_extension_interval(interval)
            .build()
            .unwrap(),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/count", None).await).unwrap();
    for _ in 0..saves {
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(
            post(&app, "/count", Some(&cookie)).await.status(),
            StatusCode::OK
        );
    }
    // A backend's statistics reach the shared view when it exits: close the
    // store's connections.
    drop(app);
    update_statistics(&schema, saves).await
}

/// On PostgreSQL, saves inside the extension interval leave every indexed
/// column alone, so the rows are updated heap-only (no index writes); saves
/// that move the expiry are not. docs/postgres.md says so.
#[actix_web::test]
async fn postgres_saves_inside_the_interval_are_heap_only_updates() {
    const SAVES: i64 = 20;
    let (updated, heap_only) = counter_saves_on_postgres(Duration::from_secs(60), SAVES).await;
    assert_eq!(updated, SAVES, "one UPDATE per save");
    assert!(
        heap_only * 2 >= updated,
        "{heap_only} of {updated} saves inside the interval were heap-only"
    );
    // The control: an interval so short that every save moves the indexed expiry.
    let (updated, heap_only) = counter_saves_on_postgres(Duration::from_millis(1), SAVES).await;
    assert_eq!(updated, SAVES, "one UPDATE per save");
    assert!(
        heap_only * 2 < updated,
        "{heap_only} of {updated} saves that moved the expiry were heap-only"
    );
}

/// An application's own expiry test, without waiting: the memory store on a
/// clock the test moves past the idle timeout sees the session gone, and the
/// middleware starts a new one.
#[actix_web::test]
async fn a_memory_store_on_a_moved_clock_expires_sessions_without_waiting() {
    let clock = latchkey_testkit::TestClock::new();
    let store = latchkey::memory::MemoryStore::builder()
        .clock({
            let clock = clock.clone();
            move || clock.now()
        })
        .build();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store, Key::generate())
                    .cookie_secure(false)
                    .idle_timeout(Duration::from_secs(30 * 60))
                    .build()
                    .unwrap(),
            )
            .route("/count", web::post().to(latchkey_tests::http::count)),
    )
    .await;
    let first = post(&app, "/count", None).await;
    let cookie = session_cookie(&first).unwrap();
    assert_eq!(latchkey_tests::http::body(first).await, "1");
    clock.advance(Duration::from_secs(29 * 60));
    let res = post(&app, "/count", Some(&cookie)).await;
    assert_eq!(
        latchkey_tests::http::body(res).await,
        "2",
        "alive 29 minutes into a 30-minute idle timeout"
    );

    // The save just made set its deadlines by the system clock, which has not
    // moved: the idle timeout still ends 30 minutes after the first request.
    clock.advance(Duration::from_secs(2 * 60));
    let res = post(&app, "/count", Some(&cookie)).await;
    let renewed = session_cookie(&res).expect("a new session's cookie");
    assert_ne!(renewed.value(), cookie.value());
    assert_eq!(
        latchkey_tests::http::body(res).await,
        "1",
        "31 minutes on the session is gone and counting starts over"
    );
}
