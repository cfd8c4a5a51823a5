//! The store over TLS, against a private `redis-server` that serves only TLS
//! with a certificate from a throwaway certificate authority.

#![cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use latchkey_core::{Deadlines, Record, SessionStore as _, SessionToken, StoreError, Timestamp};
use latchkey_redis::{RedisSetupError, RedisStore};
use latchkey_testkit::block_on;
use latchkey_testkit::servers::{PrivateRedis, unique_name};
use latchkey_testkit::tls::TestCertificates;

/// Longest a refused connection may take to fail: a refusal must come from
/// the handshake, not from the command timeout running out.
const PROMPT: Duration = Duration::from_secs(5);

fn tls_server() -> (TestCertificates, PrivateRedis) {
    let certs = TestCertificates::generate().expect("test certificates");
    let server = PrivateRedis::start_tls(&certs).expect("a redis-server with TLS");
    (certs, server)
}

/// The error and its sources, one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `store`'s `PING` fails, promptly, with an error that is not a timeout.
async fn refused(store: RedisStore) -> String {
    let started = Instant::now();
    let err = store.ping().await.expect_err("the connection must fail");
    let message = chain(&err);
    assert!(
        started.elapsed() < PROMPT,
        "failed only after {:?}: {message}",
        started.elapsed()
    );
    assert!(
        matches!(err, StoreError::Backend { .. }),
        "not a backend error: {message}"
    );
    message
}

#[test]
fn the_conformance_suite_passes_over_tls() {
    let (certs, server) = tls_server();
    block_on(latchkey_testkit::run_all(|| async {
        let store = RedisStore::builder(server.url())
            .prefix(format!("{}:", unique_name("tls")))
            .tls_root_certificate(certs.ca_pem())
            .build()
            .expect("a store on the TLS server");
        store.ping().await.expect("a PING over TLS");
        store
    }));
}

#[test]
fn a_session_round_trips_over_tls() {
    let (certs, server) = tls_server();
    block_on(async {
        let store = RedisStore::builder(server.url())
            .prefix(format!("{}:", unique_name("tls")))
            .tls_root_certificate(certs.ca_pem())
            .build()
            .unwrap();
        let now = Timestamp::now();
        let ttl = Duration::from_secs(60);
        let mut record = Record::new(now, Deadlines::starting_at(now, ttl, ttl * 2));
        record.data.insert("n".into(), 1.into());
        let id = SessionToken::generate().unwrap().id();
        store.create(&id, &record).await.unwrap();
        let loaded = store.load(&id).await.unwrap().expect("the session");
        assert_eq!(loaded.data, record.data);
    });
}

#[test]
fn a_server_signed_by_an_untrusted_authority_is_refused() {
    let (_certs, server) = tls_server();
    let other = TestCertificates::generate().unwrap();
    block_on(async {
        let store = RedisStore::builder(server.url())
            .tls_root_certificate(other.ca_pem())
            .build()
            .unwrap();
        let message = refused(store).await;
        assert!(message.contains("certificate"), "{message}");

        // The platform's roots do not hold the test authority either.
        let store = RedisStore::builder(server.url()).build().unwrap();
        let message = refused(store).await;
        assert!(message.contains("certificate"), "{message}");
    });
}

#[test]
fn plain_text_to_the_tls_port_is_refused() {
    let (_certs, server) = tls_server();
    block_on(async {
        let plain = format!("redis://127.0.0.1:{}", server.port());
        refused(RedisStore::builder(plain).build().unwrap()).await;
    });
}

#[test]
fn a_root_certificate_must_parse_and_needs_a_rediss_url() {
    let certs = TestCertificates::generate().unwrap();
    let not_pem = RedisStore::builder("rediss://127.0.0.1:6380")
        .tls_root_certificate("not a certificate")
        .build();
    assert!(
        matches!(
            &not_pem,
            Err(err @ RedisSetupError::Tls { .. }) if chain(err).contains("no PEM CERTIFICATE")
        ),
        "{not_pem:?}"
    );
    let plain = RedisStore::builder("redis://127.0.0.1:6379")
        .tls_root_certificate(certs.ca_pem())
        .build();
    assert!(
        matches!(&plain, Err(err @ RedisSetupError::Tls { .. }) if chain(err).contains("rediss")),
        "{plain:?}"
    );
}
