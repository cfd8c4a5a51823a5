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
