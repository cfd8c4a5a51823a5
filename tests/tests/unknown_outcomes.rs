//! A write whose outcome is unknown (the connection died after the request was
//! sent, before the reply came back) is never sent again: the request answers
//! the store-error status, and the change lands at most once.
//!
//! A loopback proxy between the store and the real server forwards the save
//! that carries a marker, lets the server run it, and cuts the connection
//! before the reply.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use actix_web::cookie::Key;
use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use latchkey::store::SessionStore;
use latchkey::{AnyStore, Session, SessionMiddleware};
use latchkey_testkit::servers::{CuttingProxy, database_url, redis_url, unique_name};
use latchkey_tests::http::{post, session_cookie, token_of};

const MARKER: &str = "cut-the-connection-here";

fn upstream(url: &str, default_port: u16) -> std::net::SocketAddr {
    let port = url
        .rsplit(':')
        .next()
        .and_then(|tail| tail.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or(default_port);
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// Bumps a counter twice through the middleware on `store`; the second save is
/// cut after it was sent. Returns the second response's status and the counter
/// read afterwards from `check`.
async fn bump_twice(store: AnyStore, check: AnyStore, proxy: &CuttingProxy) -> (StatusCode, u64) {
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store, key.clone())
                    .cookie_secure(false)
                    .build()
                    .unwrap(),
            )
            .route(
                "/bump/{note}",
                web::post().to(|session: Session, note: web::Path<String>| async move {
                    session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
                    session.insert("note", note.into_inner())?;
                    Ok::<_, latchkey::Error>("bumped")
                }),
            ),
    )
    .await;
    let first = post(&app, "/bump/first", None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = session_cookie(&first).unwrap();
    proxy.cut_after(MARKER.as_bytes());
    let second = post(&app, &format!("/bump/{MARKER}"), Some(&cookie)).await;
    let record = check
        .load(&token_of(&cookie, &key).id())
        .await
        .unwrap()
        .unwrap();
    (second.status(), record.data["n"].as_u64().unwrap())
}

#[actix_web::test]
async fn redis_reports_an_unknown_outcome_and_never_sends_it_twice() {
    let url = redis_url();
    let proxy = CuttingProxy::start(upstream(&url, 6379)).await.unwrap();
    let prefix = format!("{}:", unique_name("unknown"));
    let build = |url: &str| {
        latchkey::redis::RedisStore::builder(url)
            .prefix(&prefix)
            .command_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let through_proxy = build(&format!("redis://127.0.0.1:{}", proxy.port()));
    let direct = build(&url);
    let (status, n) = bump_twice(AnyStore::new(through_proxy), AnyStore::new(direct), &proxy).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the outcome is unknown"
    );
    assert_eq!(n, 2, "the cut save ran once, and only once");
}

#[actix_web::test]
async fn postgres_reports_an_unknown_outcome_and_never_sends_it_twice() {
    let url = database_url();
    let proxy = CuttingProxy::start(upstream(&url, 5432)).await.unwrap();
    let schema = unique_name("unknown");
    let build = |url: &str| {
        latchkey::postgres::PostgresStore::builder(url)
            .schema(&schema)
            .and_then(|b| b.pool_size(2).build())
            .unwrap()
    };
    let proxied_url = url.replace(
        &format!(":{}/", upstream(&url, 5432).port()),
        &format!(":{}/", proxy.port()),
    );
    let through_proxy = build(&proxied_url);
    let direct = build(&url);
    direct.migrate().await.unwrap();
    let (status, n) = bump_twice(AnyStore::new(through_proxy), AnyStore::new(direct), &proxy).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the outcome is unknown"
    );
    assert_eq!(n, 2, "the cut save ran once, and only once");
}
