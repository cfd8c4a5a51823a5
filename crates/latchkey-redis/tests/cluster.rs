//! The Redis store on a Redis Cluster of the test's own (six nodes, three
//! primaries with a replica each): the whole conformance suite, and a failover.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use latchkey_core::{Deadlines, Record, SaveOutcome, SessionStore, SessionToken, Timestamp};
use latchkey_redis::RedisStore;
use latchkey_testkit::servers::{PrivateRedisCluster, unique_name};
use latchkey_testkit::{block_on, run_all};
use support::flush_script_cache;

mod support;

fn record() -> Record {
    let now = Timestamp::now();
    let hour = Duration::from_secs(3600);
    let mut record = Record::new(now, Deadlines::starting_at(now, hour, hour));
    record.data.insert("n".into(), 1.into());
    record.owner = Some("cluster-owner".into());
    record
}

#[test]
fn the_conformance_suite_passes_on_a_cluster() {
    let cluster = PrivateRedisCluster::start().unwrap();
    block_on(async {
        let store = RedisStore::connect_cluster(cluster.urls(), Duration::from_secs(2))
            .await
            .unwrap();
        run_all(|| {
            let store = store
                .clone()
                .with_prefix(format!("{}:", unique_name("cluster")));
            async move { store }
        })
        .await;
    });
}

#[test]
fn the_store_recovers_when_a_primary_fails_over() {
    let mut cluster = PrivateRedisCluster::start().unwrap();
    block_on(async {
        let store = RedisStore::connect_cluster(cluster.urls(), Duration::from_secs(1))
            .await
            .unwrap();
        // Sessions spread over every slot range, one owner (whose index lives in one slot).
        let ids: Vec<_> = (0..60)
            .map(|_| SessionToken::generate().unwrap().id())
            .collect();
        for id in &ids {
            store.create(id, &record()).await.unwrap();
        }
        assert_eq!(
            store.list_by_owner("cluster-owner").await.unwrap().len(),
            ids.len()
        );
        // Let the replicas catch up before the crash.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let stopped = cluster.stop_a_primary().unwrap();
        let crashed = Instant::now();
        let mut last_error = String::new();
        let recovered = loop {
            let mut all = true;
            for id in &ids {
                match store.load(id).await {
                    Ok(Some(_)) => {}
                    other => {
                        last_error = format!("{other:?}");
                        all = false;
                        break;
                    }
                }
            }
            if all {
                break crashed.elapsed();
            }
            assert!(
                crashed.elapsed() < Duration::from_secs(30),
                "no recovery 30 s after stopping {stopped}: {last_error}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "cluster failover: every session readable again {recovered:?} after the primary stopped"
        );

        for id in &ids {
            let current = store.load(id).await.unwrap().unwrap();
            assert!(matches!(
                store.save(id, &current, current.version).await.unwrap(),
                SaveOutcome::Saved(_)
            ));
        }
        assert_eq!(
            store.delete_by_owner("cluster-owner", None).await.unwrap(),
            ids.len() as u64
        );
    });
}

#[test]
fn scripts_the_nodes_lost_are_reloaded() {
    let cluster = PrivateRedisCluster::start().unwrap();
    block_on(async {
        let store = RedisStore::connect_cluster(cluster.urls(), Duration::from_secs(1))
            .await
            .unwrap();
        let ids: Vec<_> = (0..20)
            .map(|_| SessionToken::generate().unwrap().id())
            .collect();
        for id in &ids {
            store.create(id, &record()).await.unwrap();
        }
        for url in cluster.urls() {
            flush_script_cache(&url).await;
        }
        for id in &ids {
            let current = store.load(id).await.unwrap().unwrap();
            assert_eq!(
                store.save(id, &current, current.version).await.unwrap(),
                SaveOutcome::Saved(current.version + 1)
            );
            assert_eq!(
                store.save(id, &current, current.version).await.unwrap(),
                SaveOutcome::Conflict,
                "a reloaded call is not applied twice"
            );
        }
        assert_eq!(
            store.delete_by_owner("cluster-owner", None).await.unwrap(),
            ids.len() as u64
        );
    });
}
