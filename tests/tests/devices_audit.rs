//! Device metadata, "your devices", revoking a session by id and the audit
//! trail, over HTTP through the real middleware on every store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::cookie::{Cookie, Key};
use actix_web::http::header;
use actix_web::http::header::HeaderName;
use actix_web::{App, test, web};
use latchkey::store::{Deadlines, DeleteOutcome, Record, SaveOutcome, SessionStore};
use latchkey::{
    AnyStore, AuditEvent, AuditKind, ClientIp, DeviceMetadata, Session, SessionId,
    SessionMiddleware, StoreError, Timestamp,
};
use latchkey_tests::http::{body, get, post, session_cookie, token_of};
use latchkey_tests::on_every_store;
use latchkey_tests::stores::{Calls, CountingStore};

on_every_store!(
    a_new_session_records_its_device_and_reads_never_rewrite_it,
    last_seen_moves_at_most_once_per_extension_interval,
    revoke_ends_only_the_owners_own_sessions,
    revoke_refuses_a_session_whose_owner_changed_after_it_looked,
    revoke_others_keeps_the_current_session,
    the_audit_trail_tells_what_happened_without_tokens,
    the_device_description_survives_clear_and_is_outside_the_limits,
    a_request_loaded_before_its_session_was_revoked_revokes_nothing,
    a_login_that_tells_no_device_keeps_none_of_the_previous_one,
);

const FORWARDED: &str = "x-forwarded-for";

fn middleware(
    store: impl SessionStore,
    key: &Key,
    events: Option<Arc<Mutex<Vec<AuditEvent>>>>,
) -> SessionMiddleware {
    let mut builder = SessionMiddleware::builder(store, key.clone())
        .cookie_secure(false)
        .idle_timeout(Duration::from_secs(60))
        .idle_extension_interval(Duration::from_millis(400))
        .device_metadata(
            DeviceMetadata::default()
                .client_ip(ClientIp::Full)
                .client_ip_header(HeaderName::from_static(FORWARDED)),
        );
    if let Some(events) = events {
        builder = builder.audit(move |event: &AuditEvent| {
            events.lock().unwrap().push(event.clone());
        });
    }
    builder.build().unwrap()
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/login/{user}",
        web::post().to(|session: Session, user: web::Path<String>| async move {
            session.login(user.into_inner());
            "in"
        }),
    )
    .route(
        "/logout",
        web::post().to(|session: Session| async move {
            session.purge();
            "out"
        }),
    )
    .route(
        "/slow-logout",
        web::post().to(|session: Session| async move {
            let _ = session.get_value("anything");
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            session.purge();
            "out"
        }),
    )
    .route(
        "/visit",
        web::get().to(|session: Session| async move {
            let _ = session.get_value("anything");
            "seen"
        }),
    )
    .route(
        "/put/{bytes}",
        web::post().to(|session: Session, bytes: web::Path<usize>| async move {
            session.insert("v", "x".repeat(bytes.into_inner()))?;
            Ok::<_, latchkey::Error>("put")
        }),
    )
    .route(
        "/clear",
        web::post().to(|session: Session| async move {
            session.clear();
            "cleared"
        }),
    )
    .route(
        "/devices",
        web::get().to(|session: Session| async move {
            let lines: Vec<String> = session
                .devices()
                .await?
                .into_iter()
                .map(|d| {
                    let device = d.device.unwrap_or_default();
                    format!(
                        "{} {} {} {}",
                        d.id.to_hex(),
                        if d.current { "current" } else { "other" },
                        device.user_agent.unwrap_or_default(),
                        device.ip.unwrap_or_default(),
                    )
                })
                .collect();
            Ok::<_, latchkey::Error>(lines.join("\n"))
        }),
    )
    .route(
        "/revoke/{id}",
        web::post().to(|session: Session, id: web::Path<String>| async move {
            let Some(id) = SessionId::from_hex(&id) else {
                return Ok::<_, latchkey::Error>("malformed".to_owned());
            };
            Ok(session.revoke(&id).await?.to_string())
        }),
    )
    .route(
        "/slow-revoke-others",
        web::post().to(|session: Session| async move {
            let _ = session.get_value("anything");
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, latchkey::Error>(session.revoke_others().await?.to_string())
        }),
    )
    .route(
        "/login-and-revoke-others/{user}",
        web::post().to(|session: Session, user: web::Path<String>| async move {
            session.login(user.into_inner());
            Ok::<_, latchkey::Error>(session.revoke_others().await?.to_string())
        }),
    )
    .route(
        "/revoke-others",
        web::post().to(|session: Session| async move {
            Ok::<_, latchkey::Error>(session.revoke_others().await?.to_string())
        }),
    );
}

/// A request from a device: its user agent and the address the proxy saw.
fn from_device(
    req: test::TestRequest,
    agent: &str,
    address: &str,
    cookie: Option<&Cookie<'static>>,
) -> actix_http::Request {
    let mut req = req
        .insert_header((header::USER_AGENT, agent.to_owned()))
        .insert_header((FORWARDED, format!("203.0.113.66, {address}")));
    if let Some(cookie) = cookie {
        req = req.cookie(cookie.clone());
    }
    req.to_request()
}

fn unique(user: &str) -> String {
    format!(
        "{user}-{}",
        latchkey::store::SessionToken::generate()
            .unwrap()
            .id()
            .to_hex()
    )
}

async fn a_new_session_records_its_device_and_reads_never_rewrite_it(store: AnyStore) {
    let counting = CountingStore::new(store.clone());
    let calls = Arc::clone(&counting.calls);
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(counting, &key, None))
            .configure(routes),
    )
    .await;
    let ann = unique("ann");
    let login = test::TestRequest::post().uri(&format!("/login/{ann}"));
    let res = test::call_service(
        &app,
        from_device(login, "Firefox/130", "198.51.100.4", None),
    )
    .await;
    let cookie = session_cookie(&res).expect("logged in");
    let id = token_of(&cookie, &key).id();

    let saves = Calls::of(&calls.save);
    let touches = Calls::of(&calls.touch);
    for _ in 0..3 {
        let visit = test::TestRequest::get().uri("/visit");
        test::call_service(
            &app,
            from_device(visit, "Other/1", "192.0.2.1", Some(&cookie)),
        )
        .await;
    }
    assert_eq!(Calls::of(&calls.save), saves, "reads do not save");
    assert_eq!(
        Calls::of(&calls.touch),
        touches,
        "nor touch within the interval"
    );

    let res = get(&app, "/devices", Some(&cookie)).await;
    assert_eq!(
        body(res).await,
        format!("{} current Firefox/130 198.51.100.4", id.to_hex()),
        "the device of the login, from the proxy's entry, not the client's"
    );
    let record = store.load(&id).await.unwrap().expect("stored");
    let device = latchkey::Device::of(&record).expect("listed and loaded alike");
    assert_eq!(device.user_agent.as_deref(), Some("Firefox/130"));
}

async fn last_seen_moves_at_most_once_per_extension_interval(store: AnyStore) {
    let counting = CountingStore::new(store.clone());
    let calls = Arc::clone(&counting.calls);
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(counting, &key, None))
            .configure(routes),
    )
    .await;
    let res = post(&app, &format!("/login/{}", unique("ann")), None).await;
    let cookie = session_cookie(&res).expect("logged in");
    let id = token_of(&cookie, &key).id();
    let created = store.load(&id).await.unwrap().unwrap();
    assert_eq!(created.last_seen, created.created_at);

    let touches = Calls::of(&calls.touch);
    get(&app, "/visit", Some(&cookie)).await;
    assert_eq!(
        Calls::of(&calls.touch),
        touches,
        "within the interval: no write"
    );
    assert_eq!(
        store.load(&id).await.unwrap().unwrap().last_seen,
        created.last_seen
    );

    actix_web::rt::time::sleep(Duration::from_millis(450)).await;
    let before = Timestamp::now();
    get(&app, "/visit", Some(&cookie)).await;
    get(&app, "/visit", Some(&cookie)).await;
    assert_eq!(
        Calls::of(&calls.touch),
        touches + 1,
        "one write for the interval"
    );
    let seen = store.load(&id).await.unwrap().unwrap().last_seen;
    assert!(seen >= before, "moved to the visit: {seen:?} < {before:?}");
}

async fn revoke_ends_only_the_owners_own_sessions(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key, None))
            .configure(routes),
    )
    .await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    let login = |user: &str| format!("/login/{user}");
    let laptop = session_cookie(&post(&app, &login(&ann), None).await).unwrap();
    let phone = session_cookie(&post(&app, &login(&ann), None).await).unwrap();
    let bobs = session_cookie(&post(&app, &login(&bob), None).await).unwrap();
    let anonymous = session_cookie(&post(&app, "/put/1", None).await).unwrap();
    let id = |cookie: &Cookie<'static>| token_of(cookie, &key).id();

    let revoke = |target: SessionId| format!("/revoke/{}", target.to_hex());
    let res = post(&app, &revoke(id(&bobs)), Some(&laptop)).await;
    assert_eq!(
        body(res).await,
        "false",
        "bob's session is not ann's to end"
    );
    assert!(
        store.load(&id(&bobs)).await.unwrap().is_some(),
        "and it lives"
    );
    let res = post(&app, &revoke(id(&anonymous)), Some(&laptop)).await;
    assert_eq!(body(res).await, "false", "nor an unowned one");
    let res = post(&app, &revoke(id(&phone)), Some(&anonymous)).await;
    assert_eq!(
        body(res).await,
        "false",
        "a session without owner ends nothing"
    );
    let res = post(
        &app,
        &revoke(latchkey::store::SessionToken::generate().unwrap().id()),
        Some(&laptop),
    )
    .await;
    assert_eq!(
        body(res).await,
        "false",
        "an unknown id answers like someone else's"
    );
    let res = post(&app, "/revoke/not-hex", Some(&laptop)).await;
    assert_eq!(body(res).await, "malformed");

    let res = post(&app, &revoke(id(&phone)), Some(&laptop)).await;
    assert_eq!(body(res).await, "true");
    assert!(
        store.load(&id(&phone)).await.unwrap().is_none(),
        "the phone is signed out"
    );
    let res = post(&app, &revoke(id(&phone)), Some(&laptop)).await;
    assert_eq!(body(res).await, "false", "once");
    let listed = body(get(&app, "/devices", Some(&laptop)).await).await;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    // The revoked phone's next request is a stranger's: nothing comes back.
    let res = post(&app, "/put/1", Some(&phone)).await;
    let fresh = session_cookie(&res).expect("a new session");
    assert_ne!(id(&fresh), id(&phone));
    assert!(store.load(&id(&phone)).await.unwrap().is_none());
}

/// A store that, the first time a session is deleted at a version, first
/// gives it to another owner: the other request's save lands between the
/// revoke's owner check and its delete.
#[derive(Clone)]
struct OwnerChangesBeforeDelete {
    inner: AnyStore,
    new_owner: String,
    fired: Arc<Mutex<bool>>,
}

impl SessionStore for OwnerChangesBeforeDelete {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.inner.load(id).await
    }
    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        self.inner.create(id, record).await
    }
    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.inner.save(id, record, expected).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.touch(id, deadlines, seen_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        let first = !std::mem::replace(&mut *self.fired.lock().unwrap(), true);
        if first && let Some(mut record) = self.inner.load(id).await? {
            record.owner = Some(self.new_owner.clone());
            let version = record.version;
            assert!(matches!(
                self.inner.save(id, &record, version).await?,
                SaveOutcome::Saved(_)
            ));
        }
        self.inner.delete_at_version(id, expected).await
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

async fn revoke_refuses_a_session_whose_owner_changed_after_it_looked(store: AnyStore) {
    let key = Key::generate();
    let (ann, bob) = (unique("ann"), unique("bob"));
    let plain = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key, None))
            .configure(routes),
    )
    .await;
    let laptop = session_cookie(&post(&plain, &format!("/login/{ann}"), None).await).unwrap();
    let kiosk = session_cookie(&post(&plain, &format!("/login/{ann}"), None).await).unwrap();
    let kiosk_id = token_of(&kiosk, &key).id();

    let racing = OwnerChangesBeforeDelete {
        inner: store.clone(),
        new_owner: bob.clone(),
        fired: Arc::default(),
    };
    let app = test::init_service(
        App::new()
            .wrap(middleware(racing, &key, None))
            .configure(routes),
    )
    .await;
    let res = post(
        &app,
        &format!("/revoke/{}", kiosk_id.to_hex()),
        Some(&laptop),
    )
    .await;
    assert_eq!(body(res).await, "false", "bob's by the time of the delete");
    let kept = store
        .load(&kiosk_id)
        .await
        .unwrap()
        .expect("bob's session lives");
    assert_eq!(kept.owner.as_deref(), Some(bob.as_str()));
}

async fn revoke_others_keeps_the_current_session(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key, None))
            .configure(routes),
    )
    .await;
    let ann = unique("ann");
    let login = format!("/login/{ann}");
    let mut cookies = Vec::new();
    for _ in 0..3 {
        cookies.push(session_cookie(&post(&app, &login, None).await).unwrap());
    }
    let res = post(&app, "/revoke-others", Some(&cookies[0])).await;
    assert_eq!(body(res).await, "2");
    let listed = body(get(&app, "/devices", Some(&cookies[0])).await).await;
    assert!(listed.ends_with(" current  "), "only this one: {listed:?}");
    for other in &cookies[1..] {
        assert!(
            store
                .load(&token_of(other, &key).id())
                .await
                .unwrap()
                .is_none()
        );
    }
}

async fn the_audit_trail_tells_what_happened_without_tokens(store: AnyStore) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let old_key = Key::generate();
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key, Some(Arc::clone(&events))))
            .configure(routes),
    )
    .await;
    let ann = unique("ann");
    let taken = |events: &Arc<Mutex<Vec<AuditEvent>>>| std::mem::take(&mut *events.lock().unwrap());

    let login = test::TestRequest::post().uri(&format!("/login/{ann}"));
    let res = test::call_service(&app, from_device(login, "Agent/1", "198.51.100.9", None)).await;
    let laptop = session_cookie(&res).unwrap();
    let laptop_token = token_of(&laptop, &key);
    let phone = session_cookie(&post(&app, &format!("/login/{ann}"), None).await).unwrap();
    let phone_id = token_of(&phone, &key).id();
    let logins = taken(&events);
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(logins[0].kind, AuditKind::Login);
    assert_eq!(logins[0].owner.as_deref(), Some(ann.as_str()));
    assert_eq!(logins[0].session, Some(laptop_token.id()));
    assert_eq!(
        logins[0].device.as_ref().and_then(|d| d.ip.as_deref()),
        Some("198.51.100.9")
    );
    let debug = format!("{logins:?}");
    assert!(!debug.contains(&laptop_token.encode()), "never a token");
    assert!(!debug.contains(laptop.value()), "nor a cookie");

    post(
        &app,
        &format!("/revoke/{}", phone_id.to_hex()),
        Some(&laptop),
    )
    .await;
    let third = session_cookie(&post(&app, &format!("/login/{ann}"), None).await).unwrap();
    post(&app, "/revoke-others", Some(&laptop)).await;
    let revocations: Vec<_> = taken(&events)
        .into_iter()
        .map(|e| (e.kind, e.session, e.count))
        .collect();
    assert_eq!(
        revocations,
        vec![
            (AuditKind::RevokedOne, Some(phone_id), None),
            (AuditKind::Login, Some(token_of(&third, &key).id()), None),
            (AuditKind::RevokedOthers, None, Some(1)),
        ]
    );

    // The revoked phone comes back: its session is gone.
    let visit = test::TestRequest::get().uri("/visit");
    test::call_service(
        &app,
        from_device(visit, "Phone/2", "198.51.100.30", Some(&phone)),
    )
    .await;
    // A forged cookie.
    let forged = Cookie::new("id", "forged");
    let visit = test::TestRequest::get().uri("/visit");
    test::call_service(
        &app,
        from_device(visit, "Forger/1", "203.0.113.13", Some(&forged)),
    )
    .await;
    let observed: Vec<_> = taken(&events)
        .into_iter()
        .map(|e| (e.kind, e.session, e.device.and_then(|d| d.ip)))
        .collect();
    assert_eq!(
        observed,
        vec![
            (
                AuditKind::SessionGone,
                Some(phone_id),
                Some("198.51.100.30".to_owned())
            ),
            (
                AuditKind::VerificationFailed,
                None,
                Some("203.0.113.13".to_owned())
            ),
        ]
    );

    // A cookie signed with the previous key, on a middleware that rotated.
    let rotated = test::init_service(
        App::new()
            .wrap({
                let events = Arc::clone(&events);
                SessionMiddleware::builder(store.clone(), key.clone())
                    .previous_keys([old_key.clone()])
                    .cookie_secure(false)
                    .audit(move |event: &AuditEvent| events.lock().unwrap().push(event.clone()))
                    .build()
                    .unwrap()
            })
            .configure(routes),
    )
    .await;
    let old_app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &old_key, None))
            .configure(routes),
    )
    .await;
    let old_cookie = session_cookie(&post(&old_app, &format!("/login/{ann}"), None).await).unwrap();
    let res = get(&rotated, "/visit", Some(&old_cookie)).await;
    assert!(session_cookie(&res).is_some(), "signed again");
    let resigned = taken(&events);
    assert_eq!(resigned.len(), 1, "{resigned:?}");
    assert_eq!(resigned[0].kind, AuditKind::CookieResigned);
    assert_eq!(resigned[0].owner.as_deref(), Some(ann.as_str()));

    let logout = test::TestRequest::post().uri("/logout");
    test::call_service(
        &app,
        from_device(logout, "Agent/1", "198.51.100.9", Some(&laptop)),
    )
    .await;
    let logout = taken(&events);
    assert_eq!(logout.len(), 1, "{logout:?}");
    assert_eq!(logout[0].kind, AuditKind::Logout);
    assert_eq!(logout[0].session, Some(laptop_token.id()));
    assert_eq!(logout[0].owner.as_deref(), Some(ann.as_str()));
    assert_eq!(
        logout[0].device.as_ref().and_then(|d| d.ip.as_deref()),
        Some("198.51.100.9")
    );

    // A logout of a session revoked while the logout was under way is
    // reported all the same: the request ended a session it loaded.
    let tablet = session_cookie(&post(&app, &format!("/login/{ann}"), None).await).unwrap();
    let desk = session_cookie(&post(&app, &format!("/login/{ann}"), None).await).unwrap();
    let tablet_id = token_of(&tablet, &key).id();
    taken(&events);
    futures_util::future::join(post(&app, "/slow-logout", Some(&tablet)), async {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        post(
            &app,
            &format!("/revoke/{}", tablet_id.to_hex()),
            Some(&desk),
        )
        .await
    })
    .await;
    let kinds: Vec<_> = taken(&events)
        .into_iter()
        .map(|e| (e.kind, e.session))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (AuditKind::RevokedOne, Some(tablet_id)),
            (AuditKind::Logout, Some(tablet_id)),
        ]
    );
}

async fn the_device_description_survives_clear_and_is_outside_the_limits(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_secure(false)
                    .max_session_bytes(64)
                    .max_keys(1)
                    .build()
                    .unwrap(),
            )
            .configure(routes),
    )
    .await;
    let agent = "A".repeat(400);
    let put = |bytes: usize, cookie: Option<&Cookie<'static>>| {
        let req = test::TestRequest::post().uri(&format!("/put/{bytes}"));
        from_device(req, &agent, "192.0.2.1", cookie)
    };
    // `{"v":"…"}` is the value's length plus 8 bytes: 56 fills the limit.
    let res = test::call_service(&app, put(56, None)).await;
    assert!(res.status().is_success(), "{}", res.status());
    let cookie = session_cookie(&res).unwrap();
    let id = token_of(&cookie, &key).id();
    let stored = store.load(&id).await.unwrap().unwrap();
    let device = latchkey::Device::of(&stored).expect("recorded");
    assert_eq!(
        device.user_agent.map(|a| a.len()),
        Some(256),
        "truncated by default"
    );
    assert_eq!(device.ip, None, "no address by default");
    let res = test::call_service(&app, put(55, Some(&cookie))).await;
    assert!(
        res.status().is_success(),
        "a later save within the limit: {}",
        res.status()
    );
    let res = test::call_service(&app, put(57, Some(&cookie))).await;
    assert!(
        !res.status().is_success(),
        "one byte over the application's limit"
    );
    let kept = store.load(&id).await.unwrap().unwrap();
    assert_eq!(
        kept.data["v"].as_str().map(str::len),
        Some(55),
        "and nothing saved"
    );

    post(&app, "/clear", Some(&cookie)).await;
    let cleared = store.load(&id).await.unwrap().unwrap();
    assert!(!cleared.data.contains_key("v"));
    assert!(
        latchkey::Device::of(&cleared).is_some(),
        "clear keeps the device"
    );
}

async fn a_request_loaded_before_its_session_was_revoked_revokes_nothing(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key, None))
            .configure(routes),
    )
    .await;
    let ann = unique("ann");
    let laptop = session_cookie(&post(&app, &format!("/login/{ann}"), None).await).unwrap();
    let stolen = session_cookie(&post(&app, &format!("/login/{ann}"), None).await).unwrap();
    let stolen_id = token_of(&stolen, &key).id();
    // The thief's request loads; meanwhile the user signs the stolen cookie out.
    let (thief, user) = futures_util::future::join(
        async { body(post(&app, "/slow-revoke-others", Some(&stolen)).await).await },
        async {
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            body(
                post(
                    &app,
                    &format!("/revoke/{}", stolen_id.to_hex()),
                    Some(&laptop),
                )
                .await,
            )
            .await
        },
    )
    .await;
    assert_eq!(user, "true");
    assert_eq!(thief, "0", "a revoked session ends nothing");
    assert!(
        store
            .load(&token_of(&laptop, &key).id())
            .await
            .unwrap()
            .is_some(),
        "the user stays signed in"
    );
    // A login in the same request may sign out the user's other sessions.
    let kiosk = session_cookie(&post(&app, "/put/1", None).await).unwrap();
    let res = post(
        &app,
        &format!("/login-and-revoke-others/{ann}"),
        Some(&kiosk),
    )
    .await;
    assert_eq!(body(res).await, "1", "the laptop");
    assert!(
        store
            .load(&token_of(&laptop, &key).id())
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_login_that_tells_no_device_keeps_none_of_the_previous_one(store: AnyStore) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key, Some(Arc::clone(&events))))
            .configure(routes),
    )
    .await;
    let planted = test::TestRequest::post().uri("/put/1");
    let res =
        test::call_service(&app, from_device(planted, "Planted/1", "203.0.113.9", None)).await;
    let cookie = session_cookie(&res).unwrap();
    let stored = store
        .load(&token_of(&cookie, &key).id())
        .await
        .unwrap()
        .unwrap();
    assert!(latchkey::Device::of(&stored).is_some());
    let res = post(&app, &format!("/login/{}", unique("ann")), Some(&cookie)).await;
    let logged_in = session_cookie(&res).unwrap();
    let stored = store
        .load(&token_of(&logged_in, &key).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        latchkey::Device::of(&stored),
        None,
        "not the planter's description"
    );

    // A revocation is attributed to the device that asked for it.
    let other = session_cookie(
        &post(
            &app,
            &format!("/login/{}", stored.owner.clone().unwrap()),
            None,
        )
        .await,
    )
    .unwrap();
    events.lock().unwrap().clear();
    let revoke =
        test::TestRequest::post().uri(&format!("/revoke/{}", token_of(&other, &key).id().to_hex()));
    let res = test::call_service(
        &app,
        from_device(revoke, "Revoker/1", "198.51.100.77", Some(&logged_in)),
    )
    .await;
    assert_eq!(body(res).await, "true");
    let revoked = events.lock().unwrap().clone();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].kind, AuditKind::RevokedOne);
    assert_eq!(
        revoked[0].device.as_ref().and_then(|d| d.ip.as_deref()),
        Some("198.51.100.77")
    );
}
