//! The store over TLS, against a private PostgreSQL that accepts only TLS
//! connections, with a certificate from a throwaway certificate authority.

#![cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use latchkey_core::{
    Deadlines, Record, SaveOutcome, SessionStore, SessionToken, StoreError, Timestamp,
};
use latchkey_postgres::{PostgresConfigError, PostgresStore, PostgresStoreBuilder};
use latchkey_testkit::block_on;
use latchkey_testkit::servers::{PrivatePostgres, unique_name};
use latchkey_testkit::tls::TestCertificates;

/// Longest a refused connection may take to fail: a refusal must come from
/// the handshake or the server, not from the timeout running out.
const PROMPT: Duration = Duration::from_secs(5);

fn tls_server() -> (TestCertificates, PrivatePostgres) {
    let certs = TestCertificates::generate().expect("test certificates");
    let server = PrivatePostgres::start_tls(&certs).expect("a PostgreSQL with TLS");
    (certs, server)
}

/// A builder on `url` under a schema of its own.
fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
    PostgresStore::builder(url)
        .schema(&unique_name("tls"))
        .unwrap()
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

/// Whether the store's connections are encrypted, as the server sees them.
async fn encrypted(store: &PostgresStore) -> bool {
    let client = store.pool().get().await.unwrap();
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Migrates, then creates, loads and saves one session.
async fn round_trip(store: &PostgresStore) {
    store.migrate().await.expect("migrations over TLS");
    let now = Timestamp::now();
    let ttl = Duration::from_secs(60);
    let mut record = Record::new(now, Deadlines::starting_at(now, ttl, ttl * 2));
    record.data.insert("n".into(), 1.into());
    let id = SessionToken::generate().unwrap().id();
    store.create(&id, &record).await.unwrap();
    let mut loaded = store.load(&id).await.unwrap().expect("the session");
    assert_eq!(loaded.data, record.data);
    loaded.data.insert("n".into(), 2.into());
    let saved = store.save(&id, &loaded, loaded.version).await.unwrap();
    assert_eq!(saved, SaveOutcome::Saved(2));
    let saved = store.load(&id).await.unwrap().expect("the saved session");
    assert_eq!(saved.data.get("n"), Some(&2.into()));
    assert!(encrypted(store).await, "the connection is not encrypted");
}

/// Migrating `store` fails, promptly, with an error that is not a timeout.
async fn refused(store: PostgresStore) -> String {
    let started = Instant::now();
    let err = store.migrate().await.expect_err("the connection must fail");
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
        let store = builder(server.url())
            .tls_root_certificate(certs.ca_pem())
            .build()
            .expect("a store on the TLS server");
        store.migrate().await.expect("migrations over TLS");
        store
    }));
}

#[test]
fn every_tls_setting_connects() {
    let (certs, server) = tls_server();
    block_on(async {
        let store = builder(server.url())
            .tls_root_certificate(certs.ca_pem())
            .build()
            .unwrap();
        round_trip(&store).await;

        #[cfg(feature = "tls-rustls")]
        {
            use latchkey_postgres::rustls;
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;

            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(certs.ca_pem().as_bytes()).unwrap())
                .unwrap();
            let config = rustls::ClientConfig::builder_with_provider(
                rustls::crypto::ring::default_provider().into(),
            )
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            let store = builder(server.url()).rustls_config(config).build().unwrap();
            round_trip(&store).await;
        }

        #[cfg(feature = "tls-native-tls")]
        {
            use latchkey_postgres::native_tls;

            let ca = native_tls::Certificate::from_pem(certs.ca_pem().as_bytes()).unwrap();
            let connector = native_tls::TlsConnector::builder()
                .disable_built_in_roots(true)
                .add_root_certificate(ca)
                .build()
                .unwrap();
            let store = builder(server.url())
                .native_tls_connector(connector)
                .build()
                .unwrap();
            round_trip(&store).await;
        }
    });
}

#[test]
fn a_server_signed_by_an_untrusted_authority_is_refused() {
    let (_certs, server) = tls_server();
    let other = TestCertificates::generate().unwrap();
    block_on(async {
        let store = builder(server.url())
            .tls_root_certificate(other.ca_pem())
            .build()
            .unwrap();
        let message = refused(store).await;
        assert!(message.contains("certificate"), "{message}");

        // `sslmode=require` alone: TLS, verified against the platform's roots,
        // which do not hold the test authority.
        let store = builder(format!("{}?sslmode=require", server.url()))
            .build()
            .unwrap();
        let message = refused(store).await;
        assert!(message.contains("certificate"), "{message}");
    });
}

#[test]
fn without_tls_settings_or_sslmode_require_the_store_speaks_plain_text() {
    let (_certs, server) = tls_server();
    block_on(async {
        // `prefer` (the default) stays plain text, which this server refuses.
        for url in [server.url(), format!("{}?sslmode=disable", server.url())] {
            let message = refused(builder(url).build().unwrap()).await;
            assert!(message.contains("no encryption"), "{message}");
        }
    });
}

#[test]
fn tls_settings_that_cannot_apply_are_refused_by_build() {
    let certs = TestCertificates::generate().unwrap();
    let disabled = builder("postgres://app@127.0.0.1/app?sslmode=disable")
        .tls_root_certificate(certs.ca_pem())
        .build();
    assert!(
        matches!(&disabled, Err(PostgresConfigError::Tls { reason, .. }) if reason.contains("sslmode=disable")),
        "{disabled:?}"
    );
    let not_pem = builder("postgres://app@127.0.0.1/app")
        .tls_root_certificate("not a certificate")
        .build();
    assert!(
        matches!(&not_pem, Err(PostgresConfigError::Tls { .. })),
        "{not_pem:?}"
    );

    let config: tokio_postgres::Config = "postgres://app@127.0.0.1/app".parse().unwrap();
    let manager = latchkey_postgres::deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = latchkey_postgres::deadpool_postgres::Pool::builder(manager)
        .build()
        .unwrap();
    let on_pool = PostgresStore::builder_on_pool(pool)
        .tls_root_certificate(certs.ca_pem())
        .build();
    assert!(
        matches!(on_pool, Err(PostgresConfigError::PoolSetting("TLS"))),
        "{on_pool:?}"
    );
}
