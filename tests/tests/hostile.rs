//! Hostile cookies and oversized sessions, table-driven, on every store.
//!
//! Every case must end in a fresh anonymous session (or the documented
//! response), without a store lookup for an invalid token, without a 500 and
//! without a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use latchkey::store::{SessionStore, SessionToken};
use latchkey::{Session, SessionMiddleware};
use latchkey_tests::stores::{Calls, CountingStore};

latchkey_tests::on_every_store!(
    hostile_cookies_start_fresh_sessions_without_store_lookups,
    limits_refuse_the_change_and_leave_the_stored_session_as_it_was,
);

const NAME: &str = "id";

fn signed(key: &Key, value: &str) -> String {
    let mut jar = CookieJar::new();
    jar.signed_mut(key).add(Cookie::new(NAME, value.to_owned()));
    jar.get(NAME).unwrap().value().to_owned()
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/count",
        web::get().to(|session: Session| async move {
            Ok::<_, latchkey::Error>(
                session
                    .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?
                    .to_string(),
            )
        }),
    )
    .route(
        "/login",
        web::post().to(|session: Session| async move {
            session.renew();
            session.insert("user", "ann")?;
            Ok::<_, latchkey::Error>("in")
        }),
    )
    .route(
        "/purge",
        web::post().to(|session: Session| async move {
            session.purge();
            "out"
        }),
    )
    .route(
        "/big/{bytes}",
        web::post().to(|session: Session, bytes: web::Path<usize>| async move {
            session.insert("big", "x".repeat(*bytes))?;
            Ok::<_, latchkey::Error>("stored")
        }),
    )
    .route(
        "/many/{keys}",
        web::post().to(|session: Session, keys: web::Path<usize>| async move {
            for k in 0..*keys {
                session.insert(format!("k{k}"), k)?;
            }
            Ok::<_, latchkey::Error>("stored")
        }),
    );
}

/// Sends a GET /count with raw `Cookie` header lines.
async fn count_with_headers<S, B>(app: &S, headers: &[String]) -> ServiceResponse<B>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let mut req = test::TestRequest::get().uri("/count");
    for header in headers {
        req = req.append_header(("Cookie", header.as_str()));
    }
    test::call_service(app, req.to_request()).await
}

fn new_cookie<B>(res: &ServiceResponse<B>) -> Option<String> {
    res.response()
        .cookies()
        .find(|c| c.name() == NAME)
        .map(|c| c.value().to_owned())
}

async fn body<B: MessageBody>(res: ServiceResponse<B>) -> String {
    String::from_utf8(test::read_body(res).await.to_vec()).unwrap()
}

async fn hostile_cookies_start_fresh_sessions_without_store_lookups(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let (old_key, key) = (Key::generate(), Key::generate());
    let counting = CountingStore::new(store.clone());
    let calls = Arc::clone(&counting.calls);
    let middleware = |keys: Vec<Key>| {
        SessionMiddleware::builder(counting.clone(), key.clone())
            .cookie_secure(false)
            .idle_timeout(Duration::from_millis(600))
            .previous_keys(keys)
            .build()
            .unwrap()
    };
    let app = test::init_service(
        App::new()
            .wrap(middleware(vec![old_key.clone()]))
            .configure(routes),
    )
    .await;

    // Material for the cases: a live session, one signed with the retired
    // key, one deleted, one expired, and one renewed away on login.
    let live = new_cookie(&count_with_headers(&app, &[]).await).unwrap();
    let under_old_key = {
        let old_app = test::init_service(
            App::new()
                .wrap(
                    SessionMiddleware::builder(store.clone(), old_key.clone())
                        .cookie_secure(false)
                        .build()
                        .unwrap(),
                )
                .configure(routes),
        )
        .await;
        new_cookie(&count_with_headers(&old_app, &[]).await).unwrap()
    };
    let deleted = new_cookie(&count_with_headers(&app, &[]).await).unwrap();
    test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/purge")
            .insert_header(("Cookie", format!("{NAME}={deleted}")))
            .to_request(),
    )
    .await;
    let expired = new_cookie(&count_with_headers(&app, &[]).await).unwrap();
    let pre_login = new_cookie(&count_with_headers(&app, &[]).await).unwrap();
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/login")
            .insert_header(("Cookie", format!("{NAME}={pre_login}")))
            .to_request(),
    )
    .await;
    let after_login = new_cookie(&res).unwrap();
    assert_ne!(after_login, pre_login);
    // Wait out `expired`'s idle timeout while keeping `live` and `after_login` in use.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(350)).await;
        for cookie in [&live, &after_login] {
            count_with_headers(&app, &[format!("{NAME}={cookie}")]).await;
        }
    }
    let token = SessionToken::generate().unwrap().encode();

    // (case, Cookie header lines, whether the store may be asked)
    let cases: Vec<(&str, Vec<String>, bool)> = vec![
        ("empty value", vec![format!("{NAME}=")], false),
        (
            "garbage bytes",
            vec![format!("{NAME}=%00%FF\u{ff}\u{fe}garbage")],
            false,
        ),
        (
            "wrong length",
            vec![format!("{NAME}={}", signed(&key, &token[..40]))],
            false,
        ),
        (
            "not base64url",
            vec![format!("{NAME}={}", signed(&key, &"+/=!".repeat(11)[..43]))],
            false,
        ),
        ("unsigned token", vec![format!("{NAME}={token}")], false),
        (
            "bad signature",
            vec![format!("{NAME}={}", signed(&Key::generate(), &token))],
            false,
        ),
        (
            "tampered signature",
            vec![format!(
                "{NAME}={}{}",
                if live.starts_with('A') { 'B' } else { 'A' },
                &live[1..]
            )],
            false,
        ),
        (
            "our cookie under another name",
            vec![format!("other={live}")],
            false,
        ),
        (
            "4 KiB value",
            vec![format!("{NAME}={}", "A".repeat(4096))],
            false,
        ),
        (
            "16 KiB header",
            vec![format!(
                "{NAME}={}; pad={}",
                "B".repeat(8192),
                "C".repeat(8192)
            )],
            false,
        ),
        ("malformed header", vec!["=;;==;".to_owned()], false),
        (
            "token of a deleted session",
            vec![format!("{NAME}={deleted}")],
            true,
        ),
        (
            "token of an expired session",
            vec![format!("{NAME}={expired}")],
            true,
        ),
        (
            "pre-login token after renew",
            vec![format!("{NAME}={pre_login}")],
            true,
        ),
    ];
    for (case, headers, may_load) in cases {
        let loads = Calls::of(&calls.load);
        let res = count_with_headers(&app, &headers).await;
        assert_eq!(res.status(), StatusCode::OK, "{backend}: {case}");
        assert!(
            new_cookie(&res).is_some(),
            "{backend}: {case}: a fresh session is issued"
        );
        assert_eq!(
            body(res).await,
            "1",
            "{backend}: {case}: the count starts over"
        );
        if !may_load {
            assert_eq!(
                Calls::of(&calls.load),
                loads,
                "{backend}: {case}: no store lookup for an invalid cookie"
            );
        }
    }

    // Duplicated cookie headers: a valid cookie among invalid ones is found.
    let res =
        count_with_headers(&app, &[format!("{NAME}=garbage"), format!("{NAME}={live}")]).await;
    assert!(
        new_cookie(&res).is_none(),
        "{backend}: the live session continues"
    );
    assert_eq!(
        body(res).await,
        "4",
        "{backend}: duplicated headers (1 + 2 keep-alive visits + this one)"
    );

    // A retired key still in the verify list: accepted and re-signed.
    let res = count_with_headers(&app, &[format!("{NAME}={under_old_key}")]).await;
    let resigned = new_cookie(&res).expect("re-issued under the current key");
    assert_eq!(
        body(res).await,
        "2",
        "{backend}: the old-key session continues"
    );
    assert_eq!(
        CookieJar::new()
            .signed(&key)
            .verify(Cookie::new(NAME, resigned))
            .map(|c| c.value().to_owned()),
        CookieJar::new()
            .signed(&old_key)
            .verify(Cookie::new(NAME, under_old_key.clone()))
            .map(|c| c.value().to_owned()),
        "{backend}: same token, new signature"
    );
    // Once the retired key is removed, its cookies are rejected without a lookup.
    let without_old =
        test::init_service(App::new().wrap(middleware(vec![])).configure(routes)).await;
    let loads = Calls::of(&calls.load);
    let res = count_with_headers(&without_old, &[format!("{NAME}={under_old_key}")]).await;
    assert_eq!(body(res).await, "1", "{backend}: removed key");
    assert_eq!(
        Calls::of(&calls.load),
        loads,
        "{backend}: removed key: no lookup"
    );
}

async fn limits_refuse_the_change_and_leave_the_stored_session_as_it_was(
    store: latchkey::AnyStore,
) {
    let backend = latchkey::store::SessionStore::name(&store);
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_secure(false)
                    .max_session_bytes(2_048)
                    .max_keys(8)
                    .build()
                    .unwrap(),
            )
            .configure(routes),
    )
    .await;
    let cookie = new_cookie(&count_with_headers(&app, &[]).await).unwrap();
    let header = format!("{NAME}={cookie}");
    let token = SessionToken::decode(
        CookieJar::new()
            .signed(&key)
            .verify(Cookie::new(NAME, cookie.clone()))
            .unwrap()
            .value(),
    )
    .unwrap();
    let before = store.load(&token.id()).await.unwrap().unwrap();

    for (path, case) in [("/big/4096", "too large"), ("/many/20", "too many keys")] {
        let res = test::call_service(
            &app,
            test::TestRequest::post()
                .uri(path)
                .insert_header(("Cookie", header.as_str()))
                .to_request(),
        )
        .await;
        assert_eq!(
            res.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{backend}: {case}"
        );
        let text = body(res).await;
        assert!(
            !text.contains("xxxx") && !text.contains("bytes"),
            "{backend}: {case}: opaque body: {text}"
        );
        let after = store.load(&token.id()).await.unwrap().unwrap();
        assert_eq!(
            after.data, before.data,
            "{backend}: {case}: the stored session is unchanged"
        );
    }
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/big/100")
            .insert_header(("Cookie", header.as_str()))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK, "{backend}: within the limits");
}
