//! Behaviour specific to PostgreSQL: migrations, hashing at rest, batched
//! cleanup, broken connections and unreachable servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use latchkey_core::{Deadlines, Record, SessionStore, SessionToken, StoreError, Timestamp};
use latchkey_postgres::PostgresStore;
use latchkey_testkit::block_on;
use latchkey_testkit::servers::{database_url, unique_name};
use tokio_postgres::NoTls;

fn record(ttl: Duration) -> Record {
    let now = Timestamp::now();
    let mut record = Record::new(now, Deadlines::starting_at(now, ttl, ttl));
    record.data.insert("n".into(), 1.into());
    record
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Terminates every backend of the application `name`, returning how many.
async fn terminate(admin: &tokio_postgres::Client, name: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

fn store_in(schema: &str) -> PostgresStore {
    PostgresStore::builder(database_url())
        .schema(schema)
        .unwrap()
        .pool_size(4)
        .build()
        .unwrap()
}

#[test]
fn migrate_is_idempotent_and_safe_when_instances_start_together() {
    block_on(async {
        let schema = unique_name("migrate");
        let stores: Vec<_> = (0..4).map(|_| store_in(&schema)).collect();
        let results = futures_util::future::join_all(stores.iter().map(|s| s.migrate())).await;
        for result in results {
            result.unwrap();
        }
        stores[0].migrate().await.unwrap();
        let client = admin().await;
        let applied: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM \"{schema}\".\"latchkey_sessions_migrations\""),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            applied,
            latchkey_postgres::MIGRATIONS.len() as i64,
            "each migration recorded once"
        );
        let indexes: Vec<String> = client
            .query(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1 ORDER BY 1",
                &[&schema],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            indexes,
            [
                "latchkey_sessions_expires_at_idx",
                "latchkey_sessions_migrations_pkey",
                "latchkey_sessions_owner_idx",
                "latchkey_sessions_pkey"
            ]
        );
    });
}

#[test]
fn rows_are_keyed_by_the_token_hash_with_typed_jsonb() {
    block_on(async {
        let schema = unique_name("layout");
        let store = store_in(&schema);
        store.migrate().await.unwrap();
        let token = SessionToken::generate().unwrap();
        store
            .create(&token.id(), &record(Duration::from_secs(60)))
            .await
            .unwrap();
        let row = admin()
            .await
            .query_one(&format!("SELECT id, data->'n', jsonb_typeof(data->'n') FROM \"{schema}\".latchkey_sessions"), &[])
            .await
            .unwrap();
        let id: Vec<u8> = row.get(0);
        assert_eq!(
            id,
            token.id().as_bytes().to_vec(),
            "the primary key is the SHA-256 of the token"
        );
        assert_ne!(id, token.encode().into_bytes());
        let kind: String = row.get(2);
        assert_eq!(kind, "number", "values are typed JSON, not strings");
    });
}

#[test]
fn invalid_names_never_reach_sql() {
    for bad in ["public; DROP TABLE x", "Sessions", "a\"b", ""] {
        assert!(
            PostgresStore::builder(database_url()).schema(bad).is_err(),
            "{bad:?}"
        );
        assert!(
            PostgresStore::builder(database_url()).table(bad).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn cleanup_deletes_expired_rows_in_batches_and_keeps_live_ones() {
    block_on(async {
        let schema = unique_name("cleanup");
        let store = PostgresStore::builder(database_url())
            .schema(&schema)
            .unwrap()
            .cleanup_batch(7)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        for _ in 0..25 {
            store
                .create(
                    &SessionToken::generate().unwrap().id(),
                    &record(Duration::from_millis(200)),
                )
                .await
                .unwrap();
        }
        let live = SessionToken::generate().unwrap().id();
        store
            .create(&live, &record(Duration::from_secs(60)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            store.delete_expired().await.unwrap(),
            25,
            "all expired rows, over several batches of 7"
        );
        assert_eq!(store.delete_expired().await.unwrap(), 0);
        assert!(store.load(&live).await.unwrap().is_some());
    });
}

#[test]
fn the_cleanup_task_runs_until_stopped() {
    block_on(async {
        let schema = unique_name("cleanup_task");
        let store = store_in(&schema);
        store.migrate().await.unwrap();
        store
            .create(
                &SessionToken::generate().unwrap().id(),
                &record(Duration::from_millis(100)),
            )
            .await
            .unwrap();
        let handle = store.spawn_cleanup(Duration::from_millis(100)).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let remaining: i64 = admin()
            .await
            .query_one(
                &format!("SELECT count(*) FROM \"{schema}\".latchkey_sessions"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(remaining, 0, "the task deleted the expired row");
        handle.stop();
    });
}

/// Terminates every connection of the store's pool with `pg_terminate_backend`;
/// the next operations succeed on fresh connections.
#[test]
fn terminated_connections_are_replaced_and_the_next_request_succeeds() {
    block_on(async {
        let schema = unique_name("terminate");
        let application = unique_name("latchkey_terminate");
        let store = PostgresStore::builder(database_url())
            .schema(&schema)
            .unwrap()
            .application_name(&application)
            .pool_size(4)
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let id = SessionToken::generate().unwrap().id();
        store
            .create(&id, &record(Duration::from_secs(60)))
            .await
            .unwrap();
        // Open several pooled connections.
        futures_util::future::join_all((0..4).map(|_| store.load(&id))).await;

        let admin = admin().await;
        let terminated = terminate(&admin, &application).await;
        assert!(terminated >= 1, "the store had connections to terminate");
        tokio::time::sleep(Duration::from_millis(100)).await;

        for _ in 0..8 {
            let loaded = store
                .load(&id)
                .await
                .expect("the next request succeeds on a fresh connection");
            assert!(loaded.is_some());
        }
        let mut rec = store.load(&id).await.unwrap().unwrap();
        rec.data.insert("after".into(), true.into());
        assert!(matches!(
            store.save(&id, &rec, rec.version).await.unwrap(),
            latchkey_core::SaveOutcome::Saved(_)
        ));

        // A write, which is never sent twice, still gets a live connection when
        // the pooled ones died before it was sent.
        futures_util::future::join_all((0..4).map(|_| store.load(&id))).await;
        assert!(terminate(&admin, &application).await >= 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let current = rec.version + 1;
        assert!(matches!(
            store.save(&id, &rec, current).await.unwrap(),
            latchkey_core::SaveOutcome::Saved(_)
        ));
    });
}

#[test]
fn an_unreachable_server_is_an_error_within_the_timeout() {
    block_on(async {
        let closed_port = latchkey_testkit::servers::free_port().unwrap();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let timeout = Duration::from_millis(500);
        for (what, port) in [("refusing", closed_port), ("silent", silent_port)] {
            let store =
                PostgresStore::builder(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
                    .timeout(timeout)
                    .build()
                    .unwrap();
            let started = Instant::now();
            let err = store
                .load(&SessionToken::generate().unwrap().id())
                .await
                .unwrap_err();
            let elapsed = started.elapsed();
            assert!(
                matches!(err, StoreError::Backend { .. } | StoreError::Timeout { .. }),
                "{what}: {err:?}"
            );
            assert!(
                elapsed < timeout + Duration::from_millis(300),
                "{what}: took {elapsed:?}"
            );
            println!("unreachable ({what}): {err} after {elapsed:?}");
        }
        drop(silent);
    });
}

#[test]
fn a_store_on_an_application_pool_works_and_validates_names() {
    block_on(async {
        let config: tokio_postgres::Config = database_url().parse().unwrap();
        let manager = latchkey_postgres::deadpool_postgres::Manager::new(config, NoTls);
        let pool = latchkey_postgres::deadpool_postgres::Pool::builder(manager)
            .max_size(2)
            .build()
            .unwrap();
        assert!(PostgresStore::from_pool(pool.clone(), "bad schema", "t").is_err());
        let store =
            PostgresStore::from_pool(pool.clone(), &unique_name("from_pool"), "sessions").unwrap();
        store.migrate().await.unwrap();
        let id = SessionToken::generate().unwrap().id();
        store
            .create(&id, &record(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            store.load(&id).await.unwrap().unwrap().data["n"],
            serde_json::json!(1)
        );

        // The builder on the same pool: every store setting applies, and the
        // settings that belong to the pool are refused, not ignored.
        let schema = unique_name("on_pool");
        let configured = PostgresStore::builder_on_pool(pool.clone())
            .schema(&schema)
            .unwrap()
            .table("app_sessions")
            .unwrap()
            .timeout(Duration::from_millis(700))
            .cleanup_batch(10)
            .build()
            .unwrap();
        assert_eq!(
            (configured.schema(), configured.table()),
            (schema.as_str(), "app_sessions")
        );
        assert!(
            format!("{configured:?}").contains("700ms"),
            "{configured:?}"
        );
        configured.migrate().await.unwrap();
        configured
            .create(&id, &record(Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(configured.load(&id).await.unwrap().is_some());
        for (refused, builder) in [
            (
                "pool_size",
                PostgresStore::builder_on_pool(pool.clone()).pool_size(4),
            ),
            (
                "statement_timeout",
                PostgresStore::builder_on_pool(pool.clone())
                    .statement_timeout(Duration::from_secs(1)),
            ),
            (
                "application_name",
                PostgresStore::builder_on_pool(pool.clone()).application_name("x"),
            ),
        ] {
            let refusal = builder.build().unwrap_err();
            assert!(
                matches!(
                    refusal,
                    latchkey_postgres::PostgresConfigError::PoolSetting(setting) if setting == refused
                ),
                "{refusal:?}"
            );
        }
    });
}

/// "Log out everywhere" racing a renewal: the renewal creates its new session,
/// then retires the old one while `delete_by_owner`'s statement waits on a row
/// lock with a snapshot too old to see the new session. The store's next
/// statement finds it: no session of the owner survives.
#[test]
fn delete_by_owner_finds_a_session_renewed_while_it_ran() {
    block_on(async {
        let schema = unique_name("revoke_race");
        let store = store_in(&schema);
        store.migrate().await.unwrap();
        let owner = "x";
        let owned = |ttl| {
            let mut r = record(ttl);
            r.owner = Some(owner.into());
            r
        };
        let (first, renewed) = (
            SessionToken::generate().unwrap().id(),
            SessionToken::generate().unwrap().id(),
        );
        store
            .create(&first, &owned(Duration::from_secs(60)))
            .await
            .unwrap();
        store
            .create(&renewed, &owned(Duration::from_secs(60)))
            .await
            .unwrap();

        // Another transaction holds the first session's row lock.
        let mut locker = admin().await;
        let lock = locker.transaction().await.unwrap();
        lock.execute(
            &format!(
                "SELECT 1 FROM \"{schema}\".\"{}\" WHERE id = $1 FOR UPDATE",
                store.table()
            ),
            &[&first.as_bytes().as_slice()],
        )
        .await
        .unwrap();
        let revoke = {
            let store = store.clone();
            tokio::spawn(async move { store.delete_by_owner(owner, None).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!revoke.is_finished(), "delete_by_owner waits on the lock");

        // The renewal: new session first, then the old one retired at its version.
        let successor = SessionToken::generate().unwrap().id();
        store
            .create(&successor, &owned(Duration::from_secs(60)))
            .await
            .unwrap();
        let retired = store.delete_at_version(&renewed, 1).await.unwrap();
        assert_eq!(retired, latchkey_core::DeleteOutcome::Deleted);

        lock.commit().await.unwrap();
        revoke.await.unwrap().unwrap();
        assert!(
            store.list_by_owner(owner).await.unwrap().is_empty(),
            "no session of the owner survives"
        );
        assert!(store.load(&successor).await.unwrap().is_none());
    });
}

/// `migrate` takes the connection it used out of the pool, on success as on
/// failure: a connection made on the start-up thread would otherwise serve the
/// workers' statements from that thread.
#[test]
fn migrate_leaves_no_connection_in_the_pool() {
    block_on(async {
        let store = store_in(&unique_name("migrate_pool"));
        store.migrate().await.unwrap();
        assert_eq!(store.pool().status().size, 0, "after a migration");
        store.migrate().await.unwrap();
        assert_eq!(store.pool().status().size, 0, "after a second one");
    });
}

/// `create` over an expired row that cleanup deletes while the insert waits
/// on it: the id is free, so this is no collision.
#[test]
fn create_over_an_expired_row_that_cleanup_deletes_meanwhile_is_no_collision() {
    block_on(async {
        let schema = unique_name("reuse");
        let store = store_in(&schema);
        store.migrate().await.unwrap();
        let id = SessionToken::generate().unwrap().id();
        let key = id.as_bytes().to_vec();
        // An expired row still under the id, not yet cleaned up.
        store
            .create(&id, &record(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Cleanup has locked the row (`FOR UPDATE SKIP LOCKED`) and deletes it.
        let mut cleaner = admin().await;
        let tx = cleaner.transaction().await.unwrap();
        let table = format!("\"{schema}\".latchkey_sessions");
        tx.execute(
            &format!("SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE"),
            &[&key],
        )
        .await
        .unwrap();
        let cleanup = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&key])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        };
        let fresh = record(Duration::from_secs(600));
        let (created, ()) = tokio::join!(store.create(&id, &fresh), cleanup);
        assert!(
            created.is_ok(),
            "no live session held the id, yet create said {created:?}"
        );
        assert!(store.load(&id).await.unwrap().is_some(), "and it wrote it");
    });
}

/// A database migrated before the idle-timeout and last-seen columns existed
/// keeps its sessions through the next `migrate`, which does not rewrite the
/// table: they load as not remembered and last seen at creation, and new
/// sessions can be remembered.
#[test]
fn sessions_from_before_migrations_two_and_three_survive_them() {
    block_on(async {
        let schema = unique_name("upgrade");
        let store = store_in(&schema);
        store.migrate().await.unwrap();
        let client = admin().await;
        // Back to what migration 1 left.
        client
            .batch_execute(&format!(
                "ALTER TABLE \"{schema}\".latchkey_sessions DROP COLUMN idle_timeout_ms; \
                 ALTER TABLE \"{schema}\".latchkey_sessions DROP COLUMN last_seen_at; \
                 DELETE FROM \"{schema}\".latchkey_sessions_migrations WHERE version >= 2"
            ))
            .await
            .unwrap();
        let old = SessionToken::generate().unwrap().id();
        let now = Timestamp::now();
        let idle = now + Duration::from_secs(60);
        let to_time = |t: Timestamp| std::time::UNIX_EPOCH + Duration::from_millis(t.as_millis());
        client
            .execute(
                &format!(
                    "INSERT INTO \"{schema}\".latchkey_sessions \
                     (id, data, version, owner, created_at, idle_expires_at, absolute_expires_at) \
                     VALUES ($1, '{{\"n\": 1}}', 1, NULL, $2, $3, $3)"
                ),
                &[&old.as_bytes().as_slice(), &to_time(now), &to_time(idle)],
            )
            .await
            .unwrap();

        let file_node =
            format!("SELECT pg_relation_filenode('\"{schema}\".latchkey_sessions')::bigint");
        let before: i64 = client.query_one(&file_node, &[]).await.unwrap().get(0);
        store_in(&schema).migrate().await.unwrap();
        let after: i64 = client.query_one(&file_node, &[]).await.unwrap().get(0);
        assert_eq!(before, after, "the table was rewritten");
        let loaded = store.load(&old).await.unwrap().expect("kept");
        assert_eq!(loaded.idle_timeout, None);
        assert_eq!(loaded.last_seen, loaded.created_at);
        assert_eq!(loaded.data["n"], 1);
        let new = SessionToken::generate().unwrap().id();
        let mut remembered = record(Duration::from_secs(60));
        remembered.idle_timeout = Some(Duration::from_secs(3600));
        store.create(&new, &remembered).await.unwrap();
        assert_eq!(
            store.load(&new).await.unwrap().unwrap().idle_timeout,
            Some(Duration::from_secs(3600))
        );
    });
}
