//! `store_from_url` over TLS: a `rediss://` URL and a PostgreSQL URL with
//! `sslmode=require` connect to private TLS servers, trusting the platform's
//! root certificates, which `SSL_CERT_FILE` replaces here with a throwaway
//! certificate authority.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use latchkey::Timestamp;
use latchkey::store::{Deadlines, Record, SessionStore as _, SessionToken};
use latchkey_testkit::servers::{PrivatePostgres, PrivateRedis, unique_name};
use latchkey_testkit::tls::TestCertificates;

/// Set in the process the test starts for the check itself: its URLs.
const URLS: &str = "LATCHKEY_TEST_TLS_STORE_URLS";

#[test]
fn rediss_and_sslmode_require_urls_connect_over_tls() {
    if let Ok(urls) = std::env::var(URLS) {
        connect_through(&urls);
        return;
    }
    let certs = TestCertificates::generate().unwrap();
    let redis = PrivateRedis::start_tls(&certs).unwrap();
    let postgres = PrivatePostgres::start_tls(&certs).unwrap();
    let urls = [
        format!("{}?prefix={}:", redis.url(), unique_name("tls_url")),
        format!(
            "{}?sslmode=require&schema={}",
            postgres.url(),
            unique_name("tls_url")
        ),
    ];
    // The trust store is read from the environment, which a test may not
    // change while other threads run: this test runs again, in a process of
    // its own, to do the check.
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rediss_and_sslmode_require_urls_connect_over_tls",
        ])
        .env("SSL_CERT_FILE", certs.ca_file())
        .env(URLS, urls.join(" "))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the check did not run: {stdout}"
    );
}

/// `store_from_url` on each of `urls` (separated by spaces) gives a store
/// that keeps a session.
fn connect_through(urls: &str) {
    actix_rt::System::new().block_on(async {
        for url in urls.split(' ') {
            let store = latchkey::store_from_url(url)
                .await
                .unwrap_or_else(|err| panic!("{url}: {err:?}"));
            let now = Timestamp::now();
            let ttl = Duration::from_secs(60);
            let mut record = Record::new(now, Deadlines::starting_at(now, ttl, ttl * 2));
            record.data.insert("n".into(), 1.into());
            let id = SessionToken::generate().unwrap().id();
            store.create(&id, &record).await.unwrap();
            let loaded = store.load(&id).await.unwrap().expect("the session");
            assert_eq!(loaded.data, record.data, "{url}");
        }
    });
}
