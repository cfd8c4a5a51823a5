//! Flash messages, CSRF tokens and step-up authentication over HTTP, through
//! the real middleware on every store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use actix_web::cookie::{Cookie, Key};
use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpResponse, test, web};
use latchkey::{
    AnyStore, CSRF_HEADER, CsrfVerified, FlashLevel, RecentlyAuthenticated, Session,
    SessionMiddleware, StepUpConfig,
};
use latchkey_tests::http::{body, get, post, session_cookie};
use latchkey_tests::on_every_store;
use latchkey_tests::stores::{Calls, CountingStore};

on_every_store!(
    flashes_show_once_and_cost_no_write_when_none_wait,
    a_flash_added_while_another_request_shows_flashes_is_kept,
    csrf_tokens_guard_unsafe_methods_and_change_on_login,
    step_up_demands_a_recent_proof_of_identity,
    a_token_stored_while_a_login_is_under_way_does_not_survive_it,
    the_library_keys_cannot_be_written_by_the_application,
    a_one_time_token_is_accepted_once_even_when_submitted_twice_at_once,
    one_time_tokens_are_bounded_and_dropped_by_a_login,
    consuming_a_one_time_token_costs_one_compare_and_set,
);

fn middleware(store: impl latchkey::store::SessionStore, key: &Key) -> SessionMiddleware {
    SessionMiddleware::builder(store, key.clone())
        .cookie_secure(false)
        .build()
        .unwrap()
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/flash/{text}",
        web::post().to(|session: Session, text: web::Path<String>| async move {
            session.flash(FlashLevel::Success, text.into_inner())?;
            Ok::<_, latchkey::Error>("flashed")
        }),
    )
    .route(
        "/show",
        web::get().to(|session: Session| async move {
            let shown: Vec<String> = session
                .take_flashes()?
                .into_iter()
                .map(|flash| format!("{:?}:{}", flash.level, flash.message))
                .collect();
            Ok::<_, latchkey::Error>(shown.join(","))
        }),
    )
    .route(
        "/token",
        web::get().to(|session: Session| async move { session.csrf_token() }),
    )
    .route(
        "/transfer",
        web::post().to(|checked: CsrfVerified| async move {
            checked.session().insert("transferred", true)?;
            Ok::<_, latchkey::Error>("transferred")
        }),
    )
    .route(
        "/transfer-check",
        web::get().to(|_checked: CsrfVerified| async move { "safe" }),
    )
    .route(
        "/form",
        web::post().to(
            |session: Session, form: web::Form<std::collections::HashMap<String, String>>| async move {
                let submitted = form.get("csrf_token").map_or("", String::as_str);
                if session.verify_csrf(submitted) {
                    HttpResponse::Ok().body("accepted")
                } else {
                    HttpResponse::Forbidden().body("refused")
                }
            },
        ),
    )
    .route(
        "/login",
        web::post().to(|session: Session| async move {
            session.login("ann");
            "in"
        }),
    )
    .route(
        "/confirm",
        web::post().to(|session: Session| async move {
            session.confirm_identity()?;
            Ok::<_, latchkey::Error>("confirmed")
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
        "/slow-login",
        web::post().to(|session: Session| async move {
            // Loaded now; the login's write-back comes after another
            // request stored a token.
            let _ = session.get_value("anything");
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            session.login("ann");
            "in"
        }),
    )
    .route(
        "/switch",
        web::post().to(|session: Session| async move {
            session.clear_owner();
            session.set_owner("bob");
            "bob"
        }),
    )
    .route(
        "/reserved",
        web::post().to(|session: Session| async move {
            let refused = [
                session.insert("latchkey.csrf", "chosen").is_err(),
                session
                    .update("latchkey.authenticated_at", |_: Option<u64>| u64::MAX)
                    .is_err(),
                session.take::<String>("latchkey.csrf").is_err(),
                session.remove("latchkey.csrf").is_none(),
            ];
            format!("{refused:?}")
        }),
    )
    .route(
        "/once",
        web::get().to(|session: Session| async move { session.one_time_csrf_token() }),
    )
    .route(
        "/pay/{token}",
        web::post().to(|session: Session, token: web::Path<String>| async move {
            // Loaded first; the other submission loads the same version meanwhile.
            let _ = session.get_value("anything");
            actix_web::rt::time::sleep(Duration::from_millis(150)).await;
            let accepted = session.consume_csrf_token(&token).await?;
            if accepted {
                session.update("payments", |n: Option<u64>| n.unwrap_or(0) + 1)?;
            }
            Ok::<_, latchkey::Error>(accepted.to_string())
        }),
    )
    .route(
        "/payments",
        web::get().to(|session: Session| async move {
            Ok::<_, latchkey::Error>(session.get::<u64>("payments")?.unwrap_or(0).to_string())
        }),
    )
    .route(
        "/email",
        web::post().to(|user: RecentlyAuthenticated| async move {
            format!("{} may change the email", user.owner())
        }),
    );
}

async fn flashes_show_once_and_cost_no_write_when_none_wait(store: AnyStore) {
    let counting = CountingStore::new(store);
    let calls = std::sync::Arc::clone(&counting.calls);
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(counting, &key))
            .configure(routes),
    )
    .await;
    let cookie = session_cookie(&post(&app, "/flash/saved", None).await).expect("created");
    post(&app, "/flash/again", Some(&cookie)).await;
    post(&app, "/flash/again", Some(&cookie)).await;
    let res = get(&app, "/show", Some(&cookie)).await;
    assert_eq!(body(res).await, "Success:saved,Success:again,Success:again");
    let res = get(&app, "/show", Some(&cookie)).await;
    assert_eq!(body(res).await, "", "shown once");

    let saves = Calls::of(&calls.save);
    let touches = Calls::of(&calls.touch);
    let res = get(&app, "/show", Some(&cookie)).await;
    assert_eq!(body(res).await, "");
    assert_eq!(Calls::of(&calls.save), saves, "nothing to consume: no save");
    assert_eq!(Calls::of(&calls.touch), touches, "nor a touch");
}

async fn a_flash_added_while_another_request_shows_flashes_is_kept(store: AnyStore) {
    // Two instances on one store: the second one's write lands between the
    // first one's load and its save.
    let key = Key::generate();
    let shower = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key))
            .route(
                "/show-slowly",
                web::get().to(|session: Session| async move {
                    let shown = session.take_flashes()?;
                    // Wait for the other instance's flash to land.
                    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, latchkey::Error>(
                        shown
                            .into_iter()
                            .map(|f| f.message)
                            .collect::<Vec<_>>()
                            .join(","),
                    )
                }),
            )
            .configure(routes),
    )
    .await;
    let other =
        test::init_service(App::new().wrap(middleware(store, &key)).configure(routes)).await;
    let cookie = session_cookie(&post(&shower, "/flash/first", None).await).expect("created");
    let (shown, ()) = futures_util::future::join(
        async { body(get(&shower, "/show-slowly", Some(&cookie)).await).await },
        async {
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            post(&other, "/flash/second", Some(&cookie)).await;
        },
    )
    .await;
    assert_eq!(shown, "first");
    let res = get(&shower, "/show", Some(&cookie)).await;
    assert_eq!(
        body(res).await,
        "Success:second",
        "the concurrent flash stays, the one shown is gone"
    );
}

async fn csrf_tokens_guard_unsafe_methods_and_change_on_login(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(App::new().wrap(middleware(store, &key)).configure(routes)).await;
    let res = get(&app, "/token", None).await;
    let cookie = session_cookie(&res).expect("the token is stored in a new session");
    let token = body(res).await;
    assert_eq!(token.len(), 43, "256 bits, base64url");
    let res = get(&app, "/token", Some(&cookie)).await;
    assert_eq!(body(res).await, token, "one token per session");

    let transfer = |token: Option<&str>, cookie: &Cookie<'static>| {
        let mut req = test::TestRequest::post()
            .uri("/transfer")
            .cookie(cookie.clone());
        if let Some(token) = token {
            req = req.insert_header((CSRF_HEADER, token.to_owned()));
        }
        req.to_request()
    };
    let res = test::call_service(&app, transfer(None, &cookie)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no token");
    let res = test::call_service(&app, transfer(Some("forged"), &cookie)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "wrong token");
    let res = test::call_service(&app, transfer(Some(&token), &cookie)).await;
    assert_eq!(res.status(), StatusCode::OK, "the session's token");
    // A session that never issued a token accepts none.
    let res = test::call_service(&app, transfer(Some(&token), &Cookie::new("id", "x"))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let form = |value: &str| {
        test::TestRequest::post()
            .uri("/form")
            .cookie(cookie.clone())
            .set_form([("csrf_token", value)])
            .to_request()
    };
    let res = test::call_service(&app, form(&token)).await;
    assert_eq!(body(res).await, "accepted");
    let res = test::call_service(&app, form(&token[..42])).await;
    assert_eq!(body(res).await, "refused");

    // A login replaces the token: one seen before it is worthless after it.
    let res = post(&app, "/login", Some(&cookie)).await;
    let logged_in = session_cookie(&res).expect("renewed");
    let res = test::call_service(&app, transfer(Some(&token), &logged_in)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "the old token is gone");
    let fresh = body(get(&app, "/token", Some(&logged_in)).await).await;
    assert_ne!(fresh, token);
    let res = test::call_service(&app, transfer(Some(&fresh), &logged_in)).await;
    assert_eq!(res.status(), StatusCode::OK);
    // So does a renewal.
    let renewed = session_cookie(&post(&app, "/renew", Some(&logged_in)).await).expect("renewed");
    let res = test::call_service(&app, transfer(Some(&fresh), &renewed)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "renewed: a new token");
    // Safe methods pass without one.
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/transfer-check")
            .cookie(renewed)
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn step_up_demands_a_recent_proof_of_identity(store: AnyStore) {
    let app_store = store.clone();
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .app_data(
                StepUpConfig::default()
                    .max_age(Duration::from_secs(300))
                    .redirect_to("/confirm-password"),
            )
            .wrap(middleware(store, &key))
            .configure(routes),
    )
    .await;
    let res = post(&app, "/email", None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "not signed in");
    let cookie = session_cookie(&post(&app, "/login", None).await).expect("signed in");
    let res = post(&app, "/email", Some(&cookie)).await;
    assert_eq!(
        body(res).await,
        "ann may change the email",
        "just logged in"
    );

    // The proof belongs to the user who gave it: an owner change drops it.
    post(&app, "/switch", Some(&cookie)).await;
    let res = post(&app, "/email", Some(&cookie)).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "bob never proved anything"
    );
    post(&app, "/confirm", Some(&cookie)).await;
    let res = post(&app, "/email", Some(&cookie)).await;
    assert_eq!(body(res).await, "bob may change the email", "confirmed");

    // Without a redirect: 401. And a proof older than the maximum age fails.
    let short = test::init_service(
        App::new()
            .app_data(StepUpConfig::default().max_age(Duration::from_millis(300)))
            .wrap(middleware(app_store.clone(), &key))
            .configure(routes),
    )
    .await;
    let cookie = session_cookie(&post(&short, "/login", None).await).expect("signed in");
    let res = post(&short, "/email", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::OK, "just logged in");
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    let res = post(&short, "/email", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a proof too old");
    assert!(res.headers().get(header::LOCATION).is_none());
    post(&short, "/confirm", Some(&cookie)).await;
    let res = post(&short, "/email", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::OK, "confirmed again");
}

async fn a_token_stored_while_a_login_is_under_way_does_not_survive_it(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(App::new().wrap(middleware(store, &key)).configure(routes)).await;
    // A session planted in the victim's browser, with no token yet.
    let planted = session_cookie(&post(&app, "/flash/x", None).await).expect("created");
    let (logged_in, planted_token) = futures_util::future::join(
        async { session_cookie(&post(&app, "/slow-login", Some(&planted)).await) },
        async {
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            body(get(&app, "/token", Some(&planted)).await).await
        },
    )
    .await;
    let logged_in = logged_in.expect("logged in");
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/transfer")
            .cookie(logged_in)
            .insert_header((CSRF_HEADER, planted_token))
            .to_request(),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "the token stored before the login's write-back is gone after it"
    );
}

async fn the_library_keys_cannot_be_written_by_the_application(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(App::new().wrap(middleware(store, &key)).configure(routes)).await;
    let res = post(&app, "/reserved", None).await;
    assert_eq!(body(res).await, "[true, true, true, true]");
}

async fn a_one_time_token_is_accepted_once_even_when_submitted_twice_at_once(store: AnyStore) {
    // Two instances on one store, as behind a load balancer.
    let key = Key::generate();
    let first = test::init_service(
        App::new()
            .wrap(middleware(store.clone(), &key))
            .configure(routes),
    )
    .await;
    let second =
        test::init_service(App::new().wrap(middleware(store, &key)).configure(routes)).await;
    let res = get(&first, "/once", None).await;
    let cookie = session_cookie(&res).expect("stored with its token");
    let token = body(res).await;
    let other = body(get(&first, "/once", Some(&cookie)).await).await;
    assert_ne!(token, other, "one token per form");

    let pay = format!("/pay/{token}");
    let (a, b) = futures_util::future::join(
        async { body(post(&first, &pay, Some(&cookie)).await).await },
        async { body(post(&second, &pay, Some(&cookie)).await).await },
    )
    .await;
    let mut answers = [a, b];
    answers.sort();
    assert_eq!(
        answers,
        ["false", "true"],
        "exactly one submission is accepted"
    );
    assert_eq!(
        body(get(&first, "/payments", Some(&cookie)).await).await,
        "1"
    );
    assert_eq!(
        body(post(&second, &pay, Some(&cookie)).await).await,
        "false",
        "nor later"
    );
    assert_eq!(
        body(post(&first, &format!("/pay/{other}"), Some(&cookie)).await).await,
        "true",
        "the other form's token is untouched"
    );
    assert_eq!(
        body(post(&first, "/pay/forged", Some(&cookie)).await).await,
        "false"
    );
    assert_eq!(
        body(get(&first, "/payments", Some(&cookie)).await).await,
        "2"
    );
}

async fn one_time_tokens_are_bounded_and_dropped_by_a_login(store: AnyStore) {
    let key = Key::generate();
    let app = test::init_service(App::new().wrap(middleware(store, &key)).configure(routes)).await;
    let res = get(&app, "/once", None).await;
    let cookie = session_cookie(&res).unwrap();
    let oldest = body(res).await;
    let mut tokens = Vec::new();
    for _ in 0..16 {
        tokens.push(body(get(&app, "/once", Some(&cookie)).await).await);
    }
    let pay = |token: &str| format!("/pay/{token}");
    assert_eq!(
        body(post(&app, &pay(&oldest), Some(&cookie)).await).await,
        "false",
        "the 17th dropped the first"
    );
    assert_eq!(
        body(post(&app, &pay(&tokens[0]), Some(&cookie)).await).await,
        "true"
    );

    let renewed = session_cookie(&post(&app, "/renew", Some(&cookie)).await).expect("renewed");
    assert_eq!(
        body(post(&app, &pay(&tokens[1]), Some(&renewed)).await).await,
        "false",
        "a token issued before a renewal is worthless after it"
    );
    let fresh = body(get(&app, "/once", Some(&renewed)).await).await;
    let logged_in = session_cookie(&post(&app, "/login", Some(&renewed)).await).expect("renewed");
    assert_eq!(
        body(post(&app, &pay(&fresh), Some(&logged_in)).await).await,
        "false",
        "a token issued before the login is worthless after it"
    );
}

async fn consuming_a_one_time_token_costs_one_compare_and_set(store: AnyStore) {
    let counting = CountingStore::new(store);
    let calls = std::sync::Arc::clone(&counting.calls);
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(middleware(counting, &key))
            .route(
                "/consume/{token}",
                web::post().to(|session: Session, token: web::Path<String>| async move {
                    Ok::<_, latchkey::Error>(session.consume_csrf_token(&token).await?.to_string())
                }),
            )
            .configure(routes),
    )
    .await;
    let res = get(&app, "/once", None).await;
    let cookie = session_cookie(&res).unwrap();
    let token = body(res).await;
    let (loads, saves) = (Calls::of(&calls.load), Calls::of(&calls.save));
    let res = post(&app, &format!("/consume/{token}"), Some(&cookie)).await;
    assert_eq!(body(res).await, "true");
    assert_eq!(
        Calls::of(&calls.load),
        loads + 1,
        "the request's own load only"
    );
    assert_eq!(
        Calls::of(&calls.save),
        saves + 1,
        "one compare-and-set, no write-back"
    );
}
