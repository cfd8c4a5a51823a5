//! Redis commands per request kind, counted by the server (`INFO commandstats`)
//! on a private Redis so no other test's traffic is counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use actix_web::cookie::Key;
use actix_web::{App, test, web};
use latchkey::{Session, SessionMiddleware};
use latchkey_testkit::servers::{PrivateRedis, command_calls};

async fn command_counts(conn: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    command_calls(&info)
}

/// Commands the store sends, and the ones its session scripts run inside
/// (`get`, `set`, `del`), which Redis counts too but which cost no round trip.
const CLIENT_COMMANDS: [&str; 8] = [
    "evalsha", "eval", "get", "mget", "set", "del", "smembers", "srem",
];

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| CLIENT_COMMANDS.contains(&name.as_str()))
        .filter_map(|(name, &n)| {
            let d = n - before.get(name).copied().unwrap_or(0);
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

#[actix_rt::test]
async fn each_request_kind_costs_the_documented_redis_commands() {
    let server = PrivateRedis::start().unwrap();
    let store = latchkey::redis::RedisStore::builder(server.url())
        .build()
        .unwrap();
    store.ping().await.unwrap();
    let mut stats = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store, Key::generate())
                    .cookie_secure(false)
                    .build()
                    .unwrap(),
            )
            .configure(latchkey_examples::counter::routes)
            .route("/anon", web::get().to(|| async { "anon" }))
            .route(
                "/read",
                web::get().to(|s: Session| async move { format!("{:?}", s.get_value("counter")) }),
            ),
    )
    .await;

    // Warm up: the first request also loads the scripts into the server.
    let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    let cookie = res
        .response()
        .cookies()
        .find(|c| c.name() == "id")
        .unwrap()
        .into_owned();
    test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/")
            .cookie(cookie.clone())
            .to_request(),
    )
    .await;

    let mut measure = async |path: &str, with_cookie: bool| {
        let before = command_counts(&mut stats).await;
        let mut req = test::TestRequest::get().uri(path);
        if with_cookie {
            req = req.cookie(cookie.clone());
        }
        let res = test::call_service(&app, req.to_request()).await;
        assert!(res.status().is_success());
        let after = command_counts(&mut stats).await;
        delta(&before, &after)
    };

    let anon = measure("/anon", true).await;
    let new = measure("/", false).await;
    let changed = measure("/", true).await;
    let unchanged = measure("/read", true).await;
    println!(
        "redis commands per request: anon {anon:?}, new {new:?}, changed {changed:?}, unchanged {unchanged:?}"
    );

    assert!(
        anon.is_empty(),
        "a route without Session sends nothing: {anon:?}"
    );
    assert_eq!(
        new,
        BTreeMap::from([("set".to_owned(), 1)]),
        "a new session is one SET, no script"
    );
    // Redis counts the commands a script runs too: the compare-and-set
    // script reads the session with one GET and writes it with one SET.
    assert_eq!(
        changed,
        BTreeMap::from([
            ("get".to_owned(), 2),
            ("evalsha".to_owned(), 1),
            ("set".to_owned(), 1)
        ]),
        "a change is one load and one compare-and-set"
    );
    assert_eq!(
        unchanged,
        BTreeMap::from([("get".to_owned(), 1)]),
        "a read is one GET and no write"
    );
}
