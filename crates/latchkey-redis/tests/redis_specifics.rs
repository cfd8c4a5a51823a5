//! Behaviour specific to Redis: key layout, hashing, TTLs, script-cache loss,
//! and surviving an outage of a private server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use latchkey_core::{
    Deadlines, Record, SaveOutcome, SessionStore, SessionToken, StoreError, Timestamp,
};
use latchkey_redis::layout::StoredSession;
use latchkey_redis::{RedisSetupError, RedisStore};
use latchkey_testkit::block_on;
use latchkey_testkit::servers::{PrivateRedis, redis_url, unique_name};
use redis::AsyncCommands as _;
use support::flush_script_cache;

mod support;

fn record(ttl: Duration) -> Record {
    let now = Timestamp::now();
    let mut record = Record::new(now, Deadlines::starting_at(now, ttl, ttl * 2));
    record.data.insert("n".into(), 1.into());
    record
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Rewrites a session's stored value in place, keeping its TTL: what another
/// writer, a half-finished write or a skewed clock leaves behind.
async fn rewrite(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    change: impl FnOnce(&mut StoredSession),
) {
    let bytes: Vec<u8> = conn.get(key).await.unwrap();
    let mut stored = StoredSession::decode(&bytes).unwrap();
    change(&mut stored);
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(stored.encode().unwrap())
        .arg("KEEPTTL")
        .query_async(conn)
        .await
        .unwrap();
}

/// A result with how long it took to arrive.
struct Timed<T>(Duration, T);

impl<T> Timed<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Timed<U> {
        Timed(self.0, f(self.1))
    }

    fn into_parts(self) -> (Duration, T) {
        (self.0, self.1)
    }
}

async fn timed<T>(work: impl std::future::Future<Output = T>) -> Timed<T> {
    let started = Instant::now();
    let value = work.await;
    Timed(started.elapsed(), value)
}

#[test]
fn sessions_live_under_the_token_hash_with_a_millisecond_ttl() {
    block_on(async {
        let prefix = format!("{}:", unique_name("layout"));
        let store = RedisStore::builder(redis_url())
            .prefix(&prefix)
            .build()
            .unwrap();
        let token = SessionToken::generate().unwrap();
        let mut rec = record(Duration::from_secs(30));
        rec.owner = Some("ann".into());
        store.create(&token.id(), &rec).await.unwrap();

        let mut conn = raw().await;
        let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
        let session_key = format!("{prefix}s:{}", token.id().to_hex());
        assert!(keys.contains(&session_key), "{keys:?}");
        assert!(keys.contains(&format!("{prefix}o:ann")), "{keys:?}");
        assert!(
            keys.iter().all(|k| !k.contains(&token.encode())),
            "the raw token never appears in a key"
        );
        let value: Vec<u8> = conn.get(&session_key).await.unwrap();
        let stored = StoredSession::decode(&value).unwrap();
        assert_eq!(stored.record.owner.as_deref(), Some("ann"));
        assert_eq!(
            stored.indexed_by,
            ["ann"],
            "the value records its index entry"
        );
        assert!(
            value.ends_with(br#"3:ann{"n":1}"#),
            "data is stored as typed JSON after the owner: {}",
            String::from_utf8_lossy(&value)
        );
        let pttl: i64 = conn.pttl(&session_key).await.unwrap();
        assert!(
            (29_000..=30_000).contains(&pttl),
            "TTL follows the idle deadline to the millisecond: {pttl}"
        );
        let index_ttl: i64 = conn.pttl(format!("{prefix}o:ann")).await.unwrap();
        assert!(
            index_ttl > 59_000,
            "the index lives until the latest absolute deadline: {index_ttl}"
        );
    });
}

#[test]
fn a_flushed_script_cache_is_reloaded_transparently() {
    block_on(async {
        // A private server, so flushing its script cache disturbs no one.
        let server = PrivateRedis::start().unwrap();
        let store = RedisStore::builder(server.url()).build().unwrap();
        let id = SessionToken::generate().unwrap().id();
        store
            .create(&id, &record(Duration::from_secs(60)))
            .await
            .unwrap();
        flush_script_cache(&server.url()).await;
        let loaded = store.load(&id).await.unwrap().unwrap();
        assert_eq!(
            store.save(&id, &loaded, 1).await.unwrap(),
            SaveOutcome::Saved(2)
        );
        assert_eq!(
            store.save(&id, &loaded, 1).await.unwrap(),
            SaveOutcome::Conflict,
            "not applied twice"
        );
    });
}

#[test]
fn a_flushed_script_cache_is_reloaded_for_pipelined_calls() {
    block_on(async {
        let server = PrivateRedis::start().unwrap();
        let store = RedisStore::builder(server.url()).build().unwrap();
        let ids: Vec<_> = (0..3)
            .map(|_| SessionToken::generate().unwrap().id())
            .collect();
        for id in &ids {
            let mut owned = record(Duration::from_secs(60));
            owned.owner = Some("flushed".into());
            store.create(id, &owned).await.unwrap();
        }
        flush_script_cache(&server.url()).await;
        // One pipeline of three deletes, every one answered NOSCRIPT.
        assert_eq!(store.delete_by_owner("flushed", None).await.unwrap(), 3);
        for id in &ids {
            assert!(store.load(id).await.unwrap().is_none());
        }
        assert!(store.list_by_owner("flushed").await.unwrap().is_empty());
    });
}

#[test]
fn a_corrupt_value_is_an_error_not_a_panic() {
    block_on(async {
        let prefix = format!("{}:", unique_name("corrupt"));
        let store = RedisStore::builder(redis_url())
            .prefix(&prefix)
            .build()
            .unwrap();
        let id = SessionToken::generate().unwrap().id();
        let mut conn = raw().await;
        let key = store.session_key(&id);
        let _: () = conn
            .set(&key, r#"2:1:1:2:3:0:1:0:-1:{broken"#)
            .await
            .unwrap();
        let _: () = conn.pexpire(&key, 60_000).await.unwrap();
        assert!(matches!(
            store.load(&id).await,
            Err(StoreError::Corrupt { .. })
        ));
    });
}

/// Stops a private Redis under a store, checks every operation fails within the
/// timeout, starts it again on the same port and checks the same store recovers.
#[test]
fn operations_fail_fast_during_an_outage_and_recover_after_it() {
    block_on(async {
        let mut server = PrivateRedis::start().unwrap();
        let timeout = Duration::from_millis(500);
        let store = RedisStore::builder(server.url())
            .command_timeout(timeout)
            .build()
            .unwrap();
        let id = SessionToken::generate().unwrap().id();
        let rec = record(Duration::from_secs(60));
        store.create(&id, &rec).await.unwrap();
        assert!(store.load(&id).await.unwrap().is_some());

        server.stop();
        let mut worst = Duration::ZERO;
        for _ in 0..3 {
            let other = SessionToken::generate().unwrap().id();
            let results = [
                ("load", timed(store.load(&id)).await.map(|r| r.map(drop))),
                ("create", timed(store.create(&other, &rec)).await),
                (
                    "save",
                    timed(store.save(&id, &rec, 1)).await.map(|r| r.map(drop)),
                ),
                (
                    "touch",
                    timed(store.touch(&id, rec.deadlines, Timestamp::now()))
                        .await
                        .map(|r| r.map(drop)),
                ),
                ("delete", timed(store.delete(&other)).await),
                (
                    "list_by_owner",
                    timed(store.list_by_owner("ann")).await.map(|r| r.map(drop)),
                ),
            ];
            for (name, (elapsed, result)) in results.into_iter().map(|(n, r)| (n, r.into_parts())) {
                let err = result.expect_err(name);
                assert!(
                    matches!(err, StoreError::Backend { .. } | StoreError::Timeout { .. }),
                    "{name}: {err:?}"
                );
                assert!(
                    elapsed <= timeout + Duration::from_millis(250),
                    "{name} took {elapsed:?} during the outage"
                );
                worst = worst.max(elapsed);
            }
        }
        println!("outage: slowest failing operation took {worst:?} (timeout {timeout:?})");

        server.restart().unwrap();
        let restarted = Instant::now();
        let recovered = loop {
            // The private server kept nothing, so the session is gone: recovery
            // means the same store answers again.
            if store.load(&id).await.is_ok() {
                break restarted.elapsed();
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(10),
                "no recovery within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!("outage: recovered {recovered:?} after the restart");
        store.create(&id, &rec).await.unwrap();
        assert!(
            store.load(&id).await.unwrap().is_some(),
            "the store serves again without a restart"
        );
    });
}

/// A peer that accepts connections but never answers (a hung server, a black-holed
/// network) yields `Timeout` within the configured bound, not a hang.
#[test]
fn a_server_that_never_answers_times_out() {
    block_on(async {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", silent.local_addr().unwrap());
        let timeout = Duration::from_millis(300);
        let store = RedisStore::builder(url)
            .command_timeout(timeout)
            .build()
            .unwrap();
        let id = SessionToken::generate().unwrap().id();
        let (elapsed, result) = timed(store.load(&id)).await.into_parts();
        assert!(
            matches!(result, Err(StoreError::Timeout { .. })),
            "{result:?}"
        );
        assert!(
            elapsed < timeout + Duration::from_millis(250),
            "took {elapsed:?}"
        );
        drop(silent);
    });
}

#[test]
fn a_url_that_is_not_a_redis_url_is_refused_by_build() {
    for url in ["http://127.0.0.1:6379", "redis://127.0.0.1:notaport", ""] {
        let refused = RedisStore::builder(url).build();
        assert!(
            matches!(&refused, Err(RedisSetupError::Url(_))),
            "{url}: {refused:?}"
        );
    }
}

#[test]
fn connect_checks_the_server_at_once() {
    block_on(async {
        let store = RedisStore::connect(&redis_url()).await.unwrap();
        let id = SessionToken::generate().unwrap().id();
        store
            .create(&id, &record(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(store.load(&id).await.unwrap().is_some());
        let closed = latchkey_testkit::servers::free_port().unwrap();
        let err = RedisStore::connect(&format!("redis://127.0.0.1:{closed}"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RedisSetupError::CheckFailed(
                    StoreError::Backend { .. } | StoreError::Timeout { .. }
                )
            ),
            "{err:?}"
        );
        // A server that answers, but refuses: here a password it was never given.
        let server = PrivateRedis::start().unwrap();
        let wrong_password = server.url().replacen("redis://", "redis://:wrong@", 1);
        let err = RedisStore::connect(&wrong_password).await.unwrap_err();
        assert!(
            matches!(
                err,
                RedisSetupError::CheckFailed(StoreError::Backend { .. })
            ),
            "{err:?}"
        );
    });
}

#[test]
fn cluster_nodes_are_checked_before_connecting() {
    block_on(async {
        let timeout = Duration::from_secs(1);
        let none: [&str; 0] = [];
        let err = RedisStore::connect_cluster(none, timeout)
            .await
            .unwrap_err();
        assert!(matches!(err, RedisSetupError::Cluster(_)), "{err:?}");
        let err = RedisStore::connect_cluster(["http://127.0.0.1:7000"], timeout)
            .await
            .unwrap_err();
        assert!(matches!(err, RedisSetupError::Url(_)), "{err:?}");
        for nodes in [
            ["redis://:one@127.0.0.1:7000", "redis://:two@127.0.0.1:7001"],
            ["redis://127.0.0.1:7000", "rediss://127.0.0.1:7001"],
        ] {
            let err = RedisStore::connect_cluster(nodes, timeout)
                .await
                .unwrap_err();
            assert!(
                matches!(err, RedisSetupError::Cluster(_)),
                "{nodes:?}: {err:?}"
            );
        }
    });
}

/// A session whose deadlines have passed by the application's clock is gone to
/// every write, even while Redis (whose clock may lag) still holds its key.
#[test]
fn writes_see_a_session_expired_by_the_application_clock_as_missing() {
    block_on(async {
        let prefix = format!("{}:", unique_name("clock"));
        let store = RedisStore::builder(redis_url())
            .prefix(&prefix)
            .build()
            .unwrap();
        let id = SessionToken::generate().unwrap().id();
        let rec = record(Duration::from_secs(30));
        store.create(&id, &rec).await.unwrap();
        // Deadlines in the past, the key's TTL still a minute away: what a
        // Redis clock running behind the application's looks like.
        let past = Timestamp::now().as_millis() - 1_000;
        let mut conn = raw().await;
        let key = store.session_key(&id);
        rewrite(&mut conn, &key, |stored| {
            stored.record.deadlines.idle = Timestamp::from_millis(past);
            stored.record.deadlines.absolute = Timestamp::from_millis(past);
        })
        .await;
        let _: () = conn.pexpire(&key, 60_000).await.unwrap();

        assert_eq!(store.load(&id).await.unwrap(), None);
        assert_eq!(
            store.save(&id, &rec, 1).await.unwrap(),
            SaveOutcome::Missing
        );
        assert!(
            !store
                .touch(&id, rec.deadlines, Timestamp::now())
                .await
                .unwrap()
        );
        assert_eq!(
            store.delete_at_version(&id, 1).await.unwrap(),
            latchkey_core::DeleteOutcome::Missing
        );
        let _: () = conn.del(&key).await.unwrap();
    });
}

fn owned_by(owner: &str) -> Record {
    let mut rec = record(Duration::from_secs(30));
    rec.owner = Some(owner.into());
    rec
}

async fn indexed(
    conn: &mut redis::aio::MultiplexedConnection,
    index: &str,
    id: &latchkey_core::SessionId,
) -> bool {
    conn.sismember(index, id.to_hex()).await.unwrap()
}

/// The owner index: entries are added only after a successful write, pruned
/// only when the session is gone (never because its owner looks
/// different or its deadline looks passed to this process), removed by a
/// delete, and repaired by a touch.
#[test]
fn the_owner_index_follows_writes_and_is_pruned_only_of_absent_sessions() {
    block_on(async {
        let prefix = format!("{}:", unique_name("index"));
        let store = RedisStore::builder(redis_url())
            .prefix(&prefix)
            .build()
            .unwrap();
        let mut conn = raw().await;
        let (ann, bob) = (store.owner_key("ann"), store.owner_key("bob"));
        let id = SessionToken::generate().unwrap().id();
        store.create(&id, &owned_by("ann")).await.unwrap();
        assert!(indexed(&mut conn, &ann, &id).await);

        // A save that answers conflict or missing touches no index.
        let to_bob = owned_by("bob");
        assert_eq!(
            store.save(&id, &to_bob, 7).await.unwrap(),
            SaveOutcome::Conflict
        );
        let unknown = SessionToken::generate().unwrap().id();
        assert_eq!(
            store.save(&unknown, &to_bob, 1).await.unwrap(),
            SaveOutcome::Missing
        );
        let bob_exists: bool = conn.exists(&bob).await.unwrap();
        assert!(!bob_exists, "no index for a write that did not happen");

        // While a session is mid-way through an owner change (its value says bob,
        // the index work not done yet), listing ann's sessions leaves its entry.
        let key = store.session_key(&id);
        rewrite(&mut conn, &key, |stored| {
            stored.record.owner = Some("bob".into())
        })
        .await;
        assert!(store.list_by_owner("ann").await.unwrap().is_empty());
        assert!(
            indexed(&mut conn, &ann, &id).await,
            "not pruned on an owner mismatch"
        );
        rewrite(&mut conn, &key, |stored| {
            stored.record.owner = Some("ann".into())
        })
        .await;
        assert_eq!(store.list_by_owner("ann").await.unwrap().len(), 1);

        // Nor when it looks expired by this process's clock.
        let past = Timestamp::now().as_millis() - 1_000;
        let mut idle = Timestamp::from_millis(0);
        rewrite(&mut conn, &key, |stored| {
            idle = stored.record.deadlines.idle;
            stored.record.deadlines.idle = Timestamp::from_millis(past);
        })
        .await;
        assert!(store.list_by_owner("ann").await.unwrap().is_empty());
        assert!(
            indexed(&mut conn, &ann, &id).await,
            "not pruned on a client clock"
        );
        rewrite(&mut conn, &key, |stored| {
            stored.record.deadlines.idle = idle
        })
        .await;

        // An owner change adds the entry to the new owner's index; the old
        // owner's entry stays (removing it could race a change back) and is
        // skipped by readers.
        assert!(matches!(
            store.save(&id, &to_bob, 1).await.unwrap(),
            SaveOutcome::Saved(2)
        ));
        assert!(indexed(&mut conn, &bob, &id).await);
        assert!(store.list_by_owner("ann").await.unwrap().is_empty());
        assert_eq!(store.delete_by_owner("ann", None).await.unwrap(), 0);
        assert!(
            store.load(&id).await.unwrap().is_some(),
            "bob's session survives ann's revocation"
        );
        // And a change back needs no index work to be found again.
        let mut back = owned_by("ann");
        back.data = to_bob.data.clone();
        assert!(matches!(
            store.save(&id, &back, 2).await.unwrap(),
            SaveOutcome::Saved(3)
        ));
        assert_eq!(store.list_by_owner("ann").await.unwrap().len(), 1);
        assert!(matches!(
            store.save(&id, &to_bob, 3).await.unwrap(),
            SaveOutcome::Saved(4)
        ));

        // A touch repairs an entry a failed index write left missing.
        let _: () = conn.srem(&bob, id.to_hex()).await.unwrap();
        rewrite(&mut conn, &key, |stored| {
            stored.indexed_by.retain(|o| o != "bob")
        })
        .await;
        assert!(
            store
                .touch(&id, to_bob.deadlines, Timestamp::now())
                .await
                .unwrap()
        );
        assert!(indexed(&mut conn, &bob, &id).await, "touch re-adds");

        // A delete removes it; a listing prunes entries of sessions that are gone.
        store.delete(&id).await.unwrap();
        assert!(
            !indexed(&mut conn, &bob, &id).await,
            "delete removes the entry"
        );
        let other = SessionToken::generate().unwrap().id();
        store.create(&other, &owned_by("bob")).await.unwrap();
        let _: () = conn.del(store.session_key(&other)).await.unwrap();
        assert!(store.list_by_owner("bob").await.unwrap().is_empty());
        assert!(
            !indexed(&mut conn, &bob, &other).await,
            "absent session pruned"
        );
    });
}

/// Each thread that uses the store's default connection gets a connection of
/// its own, on its own runtime: a worker's commands never hop to the thread
/// that built the store.
#[test]
fn each_thread_gets_its_own_connection() {
    let client = redis::Client::open(redis_url()).unwrap();
    let conn = latchkey_redis::PerThreadConnection::new(
        client,
        redis::aio::ConnectionManagerConfig::new(),
    );
    let ping = |conn: latchkey_redis::PerThreadConnection| {
        std::thread::spawn(move || {
            assert!(!conn.connected_here(), "a new thread has no connection yet");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut here = conn.clone();
                let pong: String = redis::cmd("PING").query_async(&mut here).await.unwrap();
                assert_eq!(pong, "PONG");
            });
            conn.connected_here()
        })
    };
    assert!(
        ping(conn.clone()).join().unwrap(),
        "the thread made its own"
    );
    assert!(
        ping(conn.clone()).join().unwrap(),
        "and so did the next one"
    );
    assert!(
        !conn.connected_here(),
        "none was made on the thread that built it"
    );
}

/// The scripts find every field by its length, not by looking for separators:
/// owners made of the layout's own characters, or of multi-byte ones, survive
/// a save, a touch, the index bookkeeping and a listing, byte for byte.
#[test]
fn owners_made_of_separators_and_digits_survive_every_script() {
    block_on(async {
        let prefix = format!("{}:", unique_name("owners"));
        let store = RedisStore::builder(redis_url())
            .prefix(&prefix)
            .build()
            .unwrap();
        let mut conn = raw().await;
        for owner in ["1:2:", "-1:", "ünï:cödé 🗝", ""] {
            let id = SessionToken::generate().unwrap().id();
            let mut rec = owned_by(owner);
            rec.data.insert("text".into(), "1:0:-1:{}".into());
            store.create(&id, &rec).await.unwrap();
            rec.data.insert("n".into(), 2.into());
            assert_eq!(
                store.save(&id, &rec, 1).await.unwrap(),
                SaveOutcome::Saved(2)
            );
            assert!(
                store
                    .touch(&id, rec.deadlines, Timestamp::now())
                    .await
                    .unwrap()
            );
            let loaded = store.load(&id).await.unwrap().unwrap();
            assert_eq!(loaded.owner.as_deref(), Some(owner));
            assert_eq!(loaded.data, rec.data);
            let value: Vec<u8> = conn.get(store.session_key(&id)).await.unwrap();
            assert_eq!(StoredSession::decode(&value).unwrap().indexed_by, [owner]);
            assert_eq!(store.list_by_owner(owner).await.unwrap().len(), 1);
            assert_eq!(store.delete_by_owner(owner, None).await.unwrap(), 1);
            assert!(store.load(&id).await.unwrap().is_none());
        }
    });
}

/// A value no script can read (another writer's, another layout, a key of
/// another type) fails every operation as corrupt and is left as it was.
#[test]
fn a_value_in_another_layout_fails_writes_and_is_kept() {
    block_on(async {
        let prefix = format!("{}:", unique_name("foreign"));
        let store = RedisStore::builder(redis_url())
            .prefix(&prefix)
            .build()
            .unwrap();
        let id = SessionToken::generate().unwrap().id();
        let key = store.session_key(&id);
        let mut conn = raw().await;
        let rec = record(Duration::from_secs(30));
        // Another writer's JSON, and a value of the pre-release layout 1
        // (no last seen), whose fields the scripts must not misread.
        for foreign in [
            "{\"user\":\"ann\"}",
            "1:3:1764620000000:4764706400000:4765224800000:1:3:ann0:3:ann{\"n\":1}",
        ] {
            let _: () = conn.set_ex(&key, foreign, 60).await.unwrap();
            assert!(matches!(
                store.load(&id).await,
                Err(StoreError::Corrupt { .. })
            ));
            for (name, result) in [
                ("save", store.save(&id, &rec, 1).await.map(drop)),
                (
                    "touch",
                    store
                        .touch(&id, rec.deadlines, Timestamp::now())
                        .await
                        .map(drop),
                ),
                ("delete", store.delete(&id).await),
            ] {
                let err = result.expect_err(name);
                assert!(matches!(err, StoreError::Corrupt { .. }), "{name}: {err:?}");
            }
            let kept: String = conn.get(&key).await.unwrap();
            assert_eq!(kept, foreign);
            assert!(
                matches!(store.create(&id, &rec).await, Err(StoreError::IdCollision)),
                "create never overwrites"
            );
            let _: () = conn.del(&key).await.unwrap();
        }

        // A key of another type, such as a hash.
        let _: () = conn.hset(&key, "v", "1").await.unwrap();
        for (name, result) in [
            ("load", store.load(&id).await.map(drop)),
            ("save", store.save(&id, &rec, 1).await.map(drop)),
            ("delete", store.delete(&id).await),
        ] {
            let err = result.expect_err(name);
            assert!(matches!(err, StoreError::Corrupt { .. }), "{name}: {err:?}");
        }
        let _: () = conn.del(&key).await.unwrap();
    });
}

/// The owner's index lives as long as the latest absolute deadline of its
/// sessions, also when a save or a touch moves a session's absolute deadline
/// later after it was indexed.
#[test]
fn the_owner_index_outlives_a_session_whose_absolute_deadline_moved_later() {
    block_on(async {
        let prefix = format!("{}:", unique_name("index-ttl"));
        let store = RedisStore::builder(redis_url())
            .prefix(&prefix)
            .build()
            .unwrap();
        let mut conn = raw().await;
        let index = store.owner_key("ann");
        let id = SessionToken::generate().unwrap().id();
        let mut rec = owned_by("ann");
        store.create(&id, &rec).await.unwrap();
        let first: i64 = conn.pttl(&index).await.unwrap();
        assert!(first <= 60_000, "{first}");

        rec.deadlines.absolute = rec.deadlines.absolute + Duration::from_secs(600);
        assert_eq!(
            store.save(&id, &rec, 1).await.unwrap(),
            SaveOutcome::Saved(2)
        );
        let after_save: i64 = conn.pttl(&index).await.unwrap();
        assert!(after_save > 600_000, "the save moved it: {after_save}");

        let later = Deadlines {
            idle: rec.deadlines.idle,
            absolute: rec.deadlines.absolute + Duration::from_secs(600),
        };
        assert!(store.touch(&id, later, Timestamp::now()).await.unwrap());
        let after_touch: i64 = conn.pttl(&index).await.unwrap();
        assert!(after_touch > 1_200_000, "the touch moved it: {after_touch}");
    });
}

/// A touch repairs a missing index entry for every owner, the empty one too.
#[test]
fn a_touch_repairs_the_index_of_an_empty_owner() {
    block_on(async {
        let prefix = format!("{}:", unique_name("empty-owner"));
        let store = RedisStore::builder(redis_url())
            .prefix(&prefix)
            .build()
            .unwrap();
        let mut conn = raw().await;
        let id = SessionToken::generate().unwrap().id();
        let rec = owned_by("");
        store.create(&id, &rec).await.unwrap();
        let index = store.owner_key("");
        let key = store.session_key(&id);
        let _: () = conn.srem(&index, id.to_hex()).await.unwrap();
        rewrite(&mut conn, &key, |stored| stored.indexed_by.clear()).await;
        assert!(
            store
                .touch(&id, rec.deadlines, Timestamp::now())
                .await
                .unwrap()
        );
        assert!(indexed(&mut conn, &index, &id).await, "touch re-adds");
        assert_eq!(store.list_by_owner("").await.unwrap().len(), 1);
    });
}
