//! Latency of each store operation against the real PostgreSQL at
//! `DATABASE_URL`, and the cost of cleaning up a million expired sessions.
//!
//! `cargo bench -p latchkey-postgres --bench postgres_store` (set `CLEANUP_ROWS`
//! to change the million). Works in a schema of its own and drops it after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latchkey_core::{
    Deadlines, Record, SaveOutcome, SessionId, SessionStore, SessionToken, Timestamp,
};
use latchkey_postgres::PostgresStore;
use serde_json::json;
use tokio_postgres::NoTls;

const SAMPLES: usize = 2_000;

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

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "postgres/{name:<8} p50 {:>7.1} µs   p99 {:>7.1} µs   ({} samples)",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

async fn timed<T>(work: impl std::future::Future<Output = T>) -> (Duration, T) {
    let started = Instant::now();
    let value = work.await;
    (started.elapsed(), value)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = format!("bench_{}", std::process::id());
    let store = PostgresStore::builder(&url)
        .schema(&schema)
        .unwrap()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    store.migrate().await.unwrap();

    let ids: Vec<SessionId> = (0..SAMPLES)
        .map(|_| SessionToken::generate().unwrap().id())
        .collect();
    let mut create = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        create.push(timed(store.create(id, &typical_record(n))).await.0);
    }
    let (mut load, mut save, mut touch) = (Vec::new(), Vec::new(), Vec::new());
    for id in &ids {
        let (elapsed, record) = timed(store.load(id)).await;
        load.push(elapsed);
        let mut record = record.unwrap().unwrap();
        record.data.insert("views".into(), json!(8));
        let (elapsed, outcome) = timed(store.save(id, &record, record.version)).await;
        assert!(matches!(outcome.unwrap(), SaveOutcome::Saved(_)));
        save.push(elapsed);
        touch.push(
            timed(store.touch(id, record.deadlines, Timestamp::now()))
                .await
                .0,
        );
    }
    report("create", create);
    report("load", load);
    report("save", save);
    report("touch", touch);

    let rows: i64 = std::env::var("CLEANUP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (admin, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let started = Instant::now();
    admin
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".latchkey_sessions (id, data, version, owner, created_at, idle_expires_at, absolute_expires_at) \
                 SELECT sha256(i::text::bytea), '{{\"user_id\": 1, \"views\": 7}}', 1, NULL, now() - interval '2 days', \
                        now() - interval '1 hour' - (i % 3600) * interval '1 second', now() + interval '1 day' \
                 FROM generate_series(1, $1::bigint) AS i"
            ),
            &[&rows],
        )
        .await
        .unwrap();
    admin
        .execute(&format!("ANALYZE \"{schema}\".latchkey_sessions"), &[])
        .await
        .unwrap();
    println!(
        "postgres/cleanup  inserted {rows} expired rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let size: String = admin
        .query_one(
            &format!(
                "SELECT pg_size_pretty(pg_total_relation_size('\"{schema}\".latchkey_sessions'))"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!("postgres/cleanup  table with indexes: {size}");

    // The batches themselves, timed one by one, as delete_expired runs them.
    let batch = latchkey_postgres::DEFAULT_CLEANUP_BATCH;
    let statement = format!(
        "DELETE FROM \"{schema}\".latchkey_sessions WHERE id IN ( \
           SELECT id FROM \"{schema}\".latchkey_sessions WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
    );
    let started = Instant::now();
    let mut batches = Vec::new();
    let mut deleted_by_batches = 0u64;
    for _ in 0..20 {
        let (elapsed, deleted) = timed(admin.execute(&statement, &[&batch])).await;
        batches.push(elapsed);
        deleted_by_batches += deleted.unwrap();
    }
    report("batch", batches);
    let (elapsed, deleted) = timed(store.delete_expired()).await;
    let deleted = deleted.unwrap() + deleted_by_batches;
    let total = started.elapsed();
    println!(
        "postgres/cleanup  delete_expired removed {deleted} rows in {:.1} s ({:.0} rows/s, batches of {batch}); the last {:.1} s were one delete_expired call",
        total.as_secs_f64(),
        deleted as f64 / total.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    admin
        .execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"), &[])
        .await
        .unwrap();
}
