//! The memory store passes the shared conformance suite: on a test clock the
//! suite moves past deadlines instead of waiting, and once more on the system
//! clock, with a single shard.

#![allow(clippy::unwrap_used)]

async fn make_store(clock: latchkey_testkit::TestClock) -> latchkey_memory::MemoryStore {
    latchkey_memory::MemoryStore::builder()
        .clock(move || clock.now())
        .build()
}

latchkey_testkit::conformance_tests!(make_store, clock);

#[test]
fn a_store_with_one_shard_on_the_system_clock_also_conforms() {
    latchkey_testkit::block_on(latchkey_testkit::run_all(|| async {
        latchkey_memory::MemoryStore::builder().shards(1).build()
    }));
}

#[test]
fn delete_expired_follows_the_given_clock() {
    use latchkey_core::{Deadlines, Record, SessionStore as _, SessionToken};
    use std::time::Duration;

    latchkey_testkit::block_on(async {
        let clock = latchkey_testkit::TestClock::new();
        let store = make_store(clock.clone()).await;
        let now = clock.now();
        let minute = Duration::from_secs(60);
        let record = Record::new(now, Deadlines::starting_at(now, minute, minute));
        store
            .create(&SessionToken::generate().unwrap().id(), &record)
            .await
            .unwrap();
        assert_eq!(
            store.delete_expired().await.unwrap(),
            0,
            "live by the clock"
        );
        assert_eq!(store.len(), 1);
        clock.advance(minute * 2);
        assert_eq!(
            store.delete_expired().await.unwrap(),
            1,
            "expired by the clock"
        );
        assert_eq!(store.len(), 0);
    });
}
