//! Flows through a real bound server with several workers and a real HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::cookie::Key;
use actix_web::{App, HttpServer};
use latchkey::SessionMiddleware;

latchkey_tests::on_every_store!(concurrent_increments_on_one_session_are_exact,);

const CONCURRENT: usize = 64;

async fn concurrent_increments_on_one_session_are_exact(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let sessions = SessionMiddleware::builder(store, Key::generate())
        .cookie_secure(false)
        .build()
        .unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(sessions.clone())
            .configure(latchkey_examples::counter::routes)
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(CONCURRENT))
        .finish();
    let url = format!("http://{addr}/");
    let mut first = client.get(&url).send().await.unwrap();
    assert_eq!(
        first.body().await.unwrap(),
        latchkey_examples::counter::FIRST_VISIT
    );
    let cookie = first.cookie("id").expect("session cookie").into_owned();

    let requests = (0..CONCURRENT).map(|_| {
        let request = client.get(&url).cookie(cookie.clone());
        async move {
            let mut res = request.send().await.unwrap();
            assert!(res.status().is_success(), "status {}", res.status());
            res.body().await.unwrap()
        }
    });
    futures_util::future::join_all(requests).await;

    let mut last = client.get(&url).cookie(cookie).send().await.unwrap();
    let text = String::from_utf8(last.body().await.unwrap().to_vec()).unwrap();
    assert_eq!(
        text,
        format!("Number of visits: {}", CONCURRENT + 2),
        "{backend}: every concurrent increment counted"
    );
    handle.stop(true).await;
}
