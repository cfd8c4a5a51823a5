//! The Redis store passes the shared conformance suite against the real Redis at
//! `REDIS_URL` (default `redis://127.0.0.1:6379`), each case under its own prefix.

#![allow(clippy::expect_used, clippy::panic)]

use latchkey_redis::RedisStore;
use latchkey_testkit::servers::{redis_url, unique_name};

async fn make_store() -> RedisStore {
    let store = RedisStore::builder(redis_url())
        .prefix(format!("{}:", unique_name("conformance")))
        .build()
        .expect("a valid REDIS_URL");
    store.ping().await.unwrap_or_else(|e| {
        panic!(
            "Redis at {} is not answering ({e}); start it or run scripts/test.sh",
            redis_url()
        )
    });
    store
}

latchkey_testkit::conformance_tests!(make_store);
