//! The memory store passes the shared conformance suite.

#![allow(clippy::unwrap_used)]

async fn make_store() -> latchkey_memory::MemoryStore {
    latchkey_memory::MemoryStore::new()
}

latchkey_testkit::conformance_tests!(make_store);

#[test]
fn a_store_with_one_shard_also_conforms() {
    latchkey_testkit::block_on(latchkey_testkit::run_all(|| async {
        latchkey_memory::MemoryStore::builder().shards(1).build()
    }));
}
