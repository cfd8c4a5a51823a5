//! Micro-benchmarks of the memory store: load, compare-and-set save, create,
//! sharded against a single lock under two threads, and bytes per session.
//!
//! `cargo bench -p latchkey-memory`; figures are recorded in docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use latchkey_core::{
    Deadlines, Record, SaveOutcome, SessionId, SessionStore, SessionToken, Timestamp,
};
use latchkey_memory::MemoryStore;
use serde_json::json;

const POPULATION: usize = 100_000;

fn typical_record(n: usize) -> Record {
    let now = Timestamp::now();
    let hour = Duration::from_secs(3600);
    let mut record = Record::new(now, Deadlines::starting_at(now, hour, hour * 24));
    record.owner = Some(format!("user-{n}"));
    record.data.insert("user_id".into(), json!(n));
    record
        .data
        .insert("email".into(), json!(format!("user{n}@example.com")));
    record.data.insert("views".into(), json!(7));
    record
}

fn populate(store: &MemoryStore, count: usize) -> Vec<SessionId> {
    let runtime = runtime();
    (0..count)
        .map(|n| {
            let id = SessionToken::generate().unwrap().id();
            runtime
                .block_on(store.create(&id, &typical_record(n)))
                .unwrap();
            id
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn single_thread(c: &mut Criterion) {
    let runtime = runtime();
    let store = MemoryStore::new();
    let ids = populate(&store, POPULATION);
    let mut group = c.benchmark_group("memory");
    let mut i = 0usize;
    group.bench_function("load", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            black_box(runtime.block_on(store.load(&ids[i])).unwrap())
        })
    });
    group.bench_function("load_save", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            let mut record = runtime.block_on(store.load(&ids[i])).unwrap().unwrap();
            let expected = record.version;
            record.data.insert("views".into(), json!(expected));
            let outcome = runtime
                .block_on(store.save(&ids[i], &record, expected))
                .unwrap();
            assert!(matches!(outcome, SaveOutcome::Saved(_)));
        })
    });
    group.bench_function("create", |b| {
        let record = typical_record(1);
        b.iter(|| {
            let id = SessionToken::generate().unwrap().id();
            runtime.block_on(store.create(&id, &record)).unwrap();
        })
    });
    group.finish();
}

/// Two threads loading and saving random sessions: the case sharding is for.
fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_two_threads");
    for shards in [1usize, 16, 64] {
        let store = MemoryStore::builder().shards(shards).build();
        let ids = Arc::new(populate(&store, 10_000));
        group.bench_with_input(BenchmarkId::new("load_save", shards), &shards, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for thread in 0..2usize {
                        let (store, ids) = (store.clone(), Arc::clone(&ids));
                        scope.spawn(move || {
                            let runtime = runtime();
                            let mut i = thread * 5003;
                            for _ in 0..iters.div_ceil(2) {
                                i = (i + 7919) % ids.len();
                                let mut record =
                                    runtime.block_on(store.load(&ids[i])).unwrap().unwrap();
                                let expected = record.version;
                                record.data.insert("views".into(), json!(expected));
                                let _ = runtime
                                    .block_on(store.save(&ids[i], &record, expected))
                                    .unwrap();
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Resident memory per stored session at 100k sessions, typical data and owner.
fn bytes_per_session() {
    let before = resident_bytes();
    let store = MemoryStore::new();
    let ids = populate(&store, POPULATION);
    let after = resident_bytes();
    if let (Some(before), Some(after)) = (before, after) {
        let per_session = (after.saturating_sub(before)) / POPULATION as u64;
        println!(
            "memory/bytes_per_session: {per_session} bytes ({} sessions, {} MiB resident growth)",
            POPULATION,
            (after - before) / (1024 * 1024)
        );
    }
    black_box((store, ids));
}

criterion_group!(benches, single_thread, contended);

fn main() {
    bytes_per_session();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
