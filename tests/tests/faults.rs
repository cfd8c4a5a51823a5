//! Faults under load: the counter example served by a real server with two
//! workers, 16 clients each incrementing their own session, while Redis is
//! stopped and restarted, or PostgreSQL's connections are terminated.
//!
//! Every response must be a success or the configured store-error status, no
//! failure may take much longer than the store timeout, service must come back
//! by itself, and every session's counter must afterwards account for every
//! successful increment (nothing lost) and never have gone backwards (nothing
//! rolled back). The figures are printed for docs/security.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::cookie::Key;
use actix_web::http::StatusCode;
use actix_web::{App, HttpServer};
use latchkey::{AnyStore, SessionMiddleware};
use latchkey_examples::counter;
use latchkey_testkit::servers::{PrivateRedis, database_url, unique_name};

const CLIENTS: usize = 16;
const STORE_TIMEOUT: Duration = Duration::from_millis(300);

/// What one client saw.
#[derive(Debug, Default)]
struct ClientLog {
    successes: u64,
    failures: u64,
    last_count: u64,
    slowest_failure: Duration,
    statuses: BTreeMap<u16, u64>,
    first_success_after: Option<Instant>,
}

fn visits(body: &str) -> Option<u64> {
    if body == counter::FIRST_VISIT {
        return Some(1);
    }
    body.strip_prefix("Number of visits: ")?.parse().ok()
}

/// Runs the load for `duration` while `fault` does its damage, then checks and
/// reports.
async fn load_with_fault(
    name: &str,
    store: AnyStore,
    duration: Duration,
    expect_failures: bool,
    fault: impl std::future::Future<Output = Instant>,
) {
    let sessions = SessionMiddleware::builder(store, Key::generate())
        .cookie_secure(false)
        .build()
        .unwrap();
    let server =
        HttpServer::new(move || App::new().wrap(sessions.clone()).configure(counter::routes))
            .workers(2)
            .bind(("127.0.0.1", 0))
            .unwrap();
    let url = format!("http://{}/", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let mut cookies = Vec::new();
    for _ in 0..CLIENTS {
        let mut res = client.get(&url).send().await.unwrap();
        assert_eq!(res.body().await.unwrap(), counter::FIRST_VISIT);
        cookies.push(res.cookie("id").unwrap().into_owned());
    }

    let logs: Vec<Rc<RefCell<ClientLog>>> = (0..CLIENTS).map(|_| Rc::default()).collect();
    let started = Instant::now();
    let recovered_at: Rc<RefCell<Option<Instant>>> = Rc::default();
    let load = futures_util::future::join_all(cookies.iter().zip(&logs).map(|(cookie, log)| {
        let (client, url, cookie, log) =
            (client.clone(), url.clone(), cookie.clone(), Rc::clone(log));
        async move {
            log.borrow_mut().last_count = 1;
            while started.elapsed() < duration {
                let sent = Instant::now();
                let result = client.get(&url).cookie(cookie.clone()).send().await;
                let elapsed = sent.elapsed();
                let response = match result {
                    Ok(mut res) => {
                        let body = res.body().await.unwrap_or_default();
                        Ok((res.status(), String::from_utf8_lossy(&body).into_owned()))
                    }
                    Err(err) => Err(err),
                };
                {
                    let mut log = log.borrow_mut();
                    match response {
                        Ok((status, body)) => {
                            *log.statuses.entry(status.as_u16()).or_default() += 1;
                            if status == StatusCode::OK {
                                let count = visits(&body)
                                    .unwrap_or_else(|| panic!("unexpected body {body:?}"));
                                assert!(
                                    count > log.last_count,
                                    "the counter went from {} back to {count}",
                                    log.last_count
                                );
                                log.last_count = count;
                                log.successes += 1;
                                log.first_success_after.get_or_insert(Instant::now());
                            } else {
                                assert_eq!(
                                    status,
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "only the configured status: {body}"
                                );
                                assert!(
                                    !body.contains("redis") && !body.contains("postgres"),
                                    "opaque body: {body}"
                                );
                                log.failures += 1;
                                log.first_success_after = None;
                                log.slowest_failure = log.slowest_failure.max(elapsed);
                            }
                        }
                        Err(err) => panic!("the server did not answer: {err}"),
                    }
                }
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }));
    let fault_over = {
        let recovered_at = Rc::clone(&recovered_at);
        async move {
            let at = fault.await;
            *recovered_at.borrow_mut() = Some(at);
        }
    };
    futures_util::future::join(load, fault_over).await;

    // Afterwards: one more visit per client must show every success counted.
    let mut totals: BTreeMap<u16, u64> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let mut ambiguous = 0;
    let fault_end = recovered_at.borrow().unwrap();
    let mut recovery = Duration::ZERO;
    for (cookie, log) in cookies.iter().zip(&logs) {
        let (successes, failures) = {
            let log = log.borrow();
            for (status, n) in &log.statuses {
                *totals.entry(*status).or_default() += n;
            }
            slowest = slowest.max(log.slowest_failure);
            if let Some(first) = log.first_success_after {
                recovery = recovery.max(first.saturating_duration_since(fault_end));
            }
            (log.successes, log.failures)
        };
        let mut res = client
            .get(&url)
            .cookie(cookie.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}: service came back");
        let final_count = visits(&String::from_utf8_lossy(&res.body().await.unwrap())).unwrap() - 1;
        // 1 for the first visit, one per success; a failure may or may not have
        // landed (the store can fail after applying a write).
        assert!(
            final_count > successes,
            "{name}: increments lost: {final_count} < 1 + {successes}"
        );
        assert!(
            final_count <= 1 + successes + failures,
            "{name}: phantom increments"
        );
        ambiguous += final_count - 1 - successes;
    }
    if expect_failures {
        assert!(
            totals.get(&503).copied().unwrap_or(0) > 0,
            "{name}: the fault was felt"
        );
    }
    assert!(
        totals.get(&200).copied().unwrap_or(0) > 0,
        "{name}: requests succeeded"
    );
    assert!(
        slowest <= STORE_TIMEOUT * 2 + Duration::from_millis(500),
        "{name}: a failure took {slowest:?}"
    );
    println!(
        "{name}: statuses {totals:?}; slowest failure {slowest:?} (timeout {STORE_TIMEOUT:?}); \
         all clients succeeding again {recovery:?} after the fault ended; \
         {ambiguous} failed requests had landed; every session consistent",
    );
    handle.stop(true).await;
}

#[actix_rt::test]
async fn redis_stopped_and_restarted_under_load() {
    let mut redis = PrivateRedis::start_persistent().unwrap();
    let store = latchkey::redis::RedisStore::builder(redis.url())
        .command_timeout(STORE_TIMEOUT)
        .build()
        .unwrap();
    let fault = async {
        actix_rt::time::sleep(Duration::from_millis(1_500)).await;
        redis.stop();
        actix_rt::time::sleep(Duration::from_secs(3)).await;
        redis.restart().unwrap();
        Instant::now()
    };
    load_with_fault(
        "redis stop/start",
        AnyStore::new(store),
        Duration::from_millis(7_000),
        true,
        fault,
    )
    .await;
}

#[actix_rt::test]
async fn postgres_connections_terminated_under_load() {
    let application = unique_name("latchkey_faults");
    let store = latchkey::postgres::PostgresStore::builder(database_url())
        .schema(&unique_name("faults"))
        .unwrap()
        .application_name(&application)
        .timeout(STORE_TIMEOUT)
        .pool_size(4)
        .build()
        .unwrap();
    store.migrate().await.unwrap();
    let fault = async move {
        let (admin, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        actix_rt::spawn(async move {
            let _ = connection.await;
        });
        let mut last = Instant::now();
        for _ in 0..3 {
            actix_rt::time::sleep(Duration::from_millis(1_000)).await;
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                    &[&application],
                )
                .await
                .unwrap();
            last = Instant::now();
        }
        last
    };
    // Connections found closed are retried on fresh ones, so terminations may
    // cost no failed request at all.
    load_with_fault(
        "postgres terminate",
        AnyStore::new(store),
        Duration::from_millis(5_000),
        false,
        fault,
    )
    .await;
}
