//! The PostgreSQL store passes the shared conformance suite against the real
//! server at `DATABASE_URL`, each case in its own schema.

#![allow(clippy::expect_used, clippy::panic)]

use latchkey_postgres::PostgresStore;
use latchkey_testkit::servers::{database_url, unique_name};

async fn make_store() -> PostgresStore {
    let store = PostgresStore::builder(database_url())
        .schema(&unique_name("conformance"))
        .expect("a valid schema name")
        .pool_size(4)
        .build()
        .expect("a valid DATABASE_URL");
    store.migrate().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} is not usable ({e}: {:?}); start it or run scripts/test.sh",
            database_url(),
            std::error::Error::source(&e)
        )
    });
    store
}

latchkey_testkit::conformance_tests!(make_store);
