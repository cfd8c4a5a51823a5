//! The read-through cache: conformance on Redis with and without a staleness
//! bound, the bound across instances, stale copies never winning a write, and
//! the store round trips it saves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey::Timestamp;
use latchkey::cache::CachedStore;
use latchkey::store::{Deadlines, Record, SaveOutcome, SessionStore, SessionToken};
use latchkey_tests::stores::{Calls, CountingStore, PausingStore, redis_store};

fn record() -> Record {
    let now = Timestamp::now();
    let hour = Duration::from_secs(3600);
    let mut record = Record::new(now, Deadlines::starting_at(now, hour, hour));
    record.data.insert("n".into(), 1.into());
    record
}

#[actix_rt::test]
async fn the_cache_conforms_with_and_without_a_staleness_bound() {
    for bound in [Duration::ZERO, Duration::from_secs(5)] {
        latchkey_testkit::run_all(|| async move {
            CachedStore::new(redis_store().await).max_staleness(bound)
        })
        .await;
    }
}

#[actix_rt::test]
async fn changes_from_another_instance_show_within_the_bound() {
    let shared = redis_store().await;
    for (bound, served_stale) in [(Duration::ZERO, false), (Duration::from_millis(400), true)] {
        let (here, elsewhere) = (
            CachedStore::new(shared.clone()).max_staleness(bound),
            CachedStore::new(shared.clone()).max_staleness(bound),
        );
        let id = SessionToken::generate().unwrap().id();
        here.create(&id, &record()).await.unwrap();
        assert!(here.load(&id).await.unwrap().is_some());
        elsewhere.delete(&id).await.unwrap();
        assert_eq!(
            here.load(&id).await.unwrap().is_some(),
            served_stale,
            "bound {bound:?}"
        );
        tokio::time::sleep(bound + Duration::from_millis(50)).await;
        assert!(
            here.load(&id).await.unwrap().is_none(),
            "bound {bound:?}: revoked after the bound"
        );
    }
}

#[actix_rt::test]
async fn a_stale_copy_never_wins_a_write() {
    let shared = redis_store().await;
    let here = CachedStore::new(shared.clone()).max_staleness(Duration::from_secs(60));
    let elsewhere = CachedStore::new(shared.clone());
    let id = SessionToken::generate().unwrap().id();
    here.create(&id, &record()).await.unwrap();
    let stale = here.load(&id).await.unwrap().unwrap();
    let mut theirs = elsewhere.load(&id).await.unwrap().unwrap();
    theirs.data.insert("n".into(), 2.into());
    assert_eq!(
        elsewhere.save(&id, &theirs, theirs.version).await.unwrap(),
        SaveOutcome::Saved(2)
    );

    let mut ours = here.load(&id).await.unwrap().unwrap();
    assert_eq!(
        ours.version, stale.version,
        "within the bound the cached copy is served"
    );
    ours.data.insert("n".into(), 99.into());
    assert_eq!(
        here.save(&id, &ours, ours.version).await.unwrap(),
        SaveOutcome::Conflict
    );
    let fresh = here.load(&id).await.unwrap().unwrap();
    assert_eq!(fresh.version, 2, "a conflict drops the stale copy");
    assert_eq!(fresh.data["n"], serde_json::json!(2));
}

#[actix_rt::test]
async fn a_bound_saves_store_round_trips_on_reads() {
    let counting = CountingStore::new(redis_store().await);
    let calls = Arc::clone(&counting.calls);
    let id = SessionToken::generate().unwrap().id();
    counting.create(&id, &record()).await.unwrap();
    for (bound, expected_loads) in [(Duration::ZERO, 200), (Duration::from_secs(5), 1)] {
        let cached = CachedStore::new(counting.clone()).max_staleness(bound);
        let before = Calls::of(&calls.load);
        let started = Instant::now();
        for _ in 0..200 {
            assert!(cached.load(&id).await.unwrap().is_some());
        }
        let elapsed = started.elapsed();
        let loads = Calls::of(&calls.load) - before;
        assert_eq!(loads, expected_loads, "bound {bound:?}");
        println!(
            "cache bound {bound:?}: 200 loads, {loads} reached Redis, {:?} per load",
            elapsed / 200
        );
    }
}

/// A load that read the store before a delete through the cache, and finishes
/// after it, does not cache the deleted session.
#[actix_rt::test]
async fn a_load_overtaken_by_a_delete_caches_nothing() {
    let paused = PausingStore::new(redis_store().await);
    let cache = CachedStore::new(paused.clone()).max_staleness(Duration::from_secs(60));
    let id = SessionToken::generate().unwrap().id();
    paused.create(&id, &record()).await.unwrap();
    paused.arm();
    let load = cache.load(&id);
    let delete = async {
        paused.paused.notified().await;
        cache.delete(&id).await.unwrap();
        paused.release.notify_one();
    };
    let (loaded, ()) = tokio::join!(load, delete);
    assert!(
        loaded.unwrap().is_some(),
        "the load read the session before the delete"
    );
    assert!(
        cache.load(&id).await.unwrap().is_none(),
        "the deleted session is not served from the cache"
    );
}

/// A load that read an older version than a save through the cache made does
/// not replace the newer cached copy.
#[actix_rt::test]
async fn an_older_load_never_replaces_a_newer_cached_version() {
    let paused = PausingStore::new(redis_store().await);
    let cache = CachedStore::new(paused.clone()).max_staleness(Duration::from_secs(60));
    let id = SessionToken::generate().unwrap().id();
    paused.create(&id, &record()).await.unwrap();
    paused.arm();
    let load = cache.load(&id);
    let save = async {
        paused.paused.notified().await;
        let mut newer = record();
        newer.data.insert("n".into(), 2.into());
        assert_eq!(
            cache.save(&id, &newer, 1).await.unwrap(),
            SaveOutcome::Saved(2)
        );
        paused.release.notify_one();
    };
    let (loaded, ()) = tokio::join!(load, save);
    assert_eq!(
        loaded.unwrap().unwrap().version,
        1,
        "the load read version 1"
    );
    let cached = cache.load(&id).await.unwrap().unwrap();
    assert_eq!(cached.version, 2, "the cache still serves version 2");
    assert_eq!(cached.data["n"], 2);
}

/// A save through the cache that landed before a delete through the same cache,
/// and answers after it, does not cache the deleted session.
#[actix_rt::test]
async fn a_save_overtaken_by_a_delete_caches_nothing() {
    let paused = PausingStore::new(redis_store().await);
    let cache = CachedStore::new(paused.clone()).max_staleness(Duration::from_secs(60));
    let id = SessionToken::generate().unwrap().id();
    paused.create(&id, &record()).await.unwrap();
    paused.arm_save();
    let changed = record();
    let save = cache.save(&id, &changed, 1);
    let delete = async {
        paused.paused.notified().await;
        cache.delete(&id).await.unwrap();
        paused.release.notify_one();
    };
    let (saved, ()) = tokio::join!(save, delete);
    assert_eq!(saved.unwrap(), SaveOutcome::Saved(2));
    assert!(
        cache.load(&id).await.unwrap().is_none(),
        "the deleted session is not served from the cache"
    );
}
