//! Every interleaving of concurrent requests' store calls, on every store,
//! checked against the invariants of exact sessions (see
//! `latchkey_testkit::explorer`).
//!
//! The small scenarios are explored exhaustively; the larger ones by a seeded
//! sample. For a long run, raise the sample and change the seed:
//!
//! ```text
//! LATCHKEY_EXPLORER_SAMPLES=20000 LATCHKEY_EXPLORER_SEED=7 \
//!   cargo nextest run -p latchkey-tests --test interleavings --no-capture
//! ```

#![allow(clippy::panic)]

use latchkey::store::{Deadlines, DeleteOutcome, Record, SaveOutcome, SessionStore};
use latchkey::{AnyStore, SessionId, StoreError, Timestamp};
use latchkey_testkit::explorer::{Action, Exploration, Report, Scenario, Step, explore};
use latchkey_tests::stores::{postgres_store, redis_store};

/// Scenarios small enough to enumerate every interleaving.
fn exhaustive() -> Vec<Scenario> {
    use Step::*;
    vec![
        Scenario::new("two appends")
            .request([Append])
            .request([Append]),
        Scenario::new("append races renew")
            .request([Append])
            .request([Renew, Append]),
        Scenario::new("renew races an admin delete")
            .request([Renew, Append])
            .action(Action::Delete),
        Scenario::new("renew races log out everywhere")
            .request([Renew, Append])
            .action(Action::DeleteByOwner),
        Scenario::new("renew races expiry")
            .request([Renew])
            .action(Action::Expire),
        Scenario::new("append races purge")
            .request([Append])
            .request([Purge]),
        Scenario::new("renew races purge")
            .request([Renew, Append])
            .request([Purge]),
        Scenario::new("purge and refill races append")
            .request([Purge, Append])
            .request([Append]),
        Scenario::new("read races an admin delete")
            .request([Read])
            .action(Action::Delete),
        Scenario::new("read races expiry")
            .request([Read])
            .action(Action::Expire),
        Scenario::new("append races log out everywhere")
            .request([Append])
            .action(Action::DeleteByOwner),
        Scenario::new("no-op changes race append")
            .request([Remove("absent".into()), SetOwner])
            .request([Append]),
        Scenario::new("limits hold on merged changes")
            .request([Insert("a".into())])
            .request([Insert("b".into())])
            .max_keys(2),
        Scenario::new("two renewals")
            .request([Renew, Append])
            .request([Renew, Append]),
        Scenario::new("renewal races a limit")
            .request([Insert("a".into())])
            .request([Renew, Insert("b".into())])
            .max_keys(2),
        Scenario::new("size limit holds on merged changes")
            .request([Append, Insert("a".into())])
            .request([Append, Insert("b".into())])
            .max_bytes(40),
        Scenario::new("login races append and log out everywhere")
            .request([Login, Append])
            .request([Append])
            .action(Action::DeleteByOwner),
        Scenario::new("login races renew")
            .request([Login])
            .request([Renew, Append]),
        Scenario::new("three appends")
            .request([Append])
            .request([Append])
            .request([Append]),
        Scenario::new("append and renew race log out everywhere")
            .request([Append])
            .request([Renew, Append])
            .action(Action::DeleteByOwner),
        Scenario::new("append and read race expiry")
            .request([Append])
            .request([Read])
            .action(Action::Expire),
        Scenario::new("one-time token submitted twice")
            .request([ConsumeCsrf])
            .request([ConsumeCsrf]),
        Scenario::new("one-time token races append")
            .request([ConsumeCsrf, Append])
            .request([Append]),
        Scenario::new("one-time token races renew")
            .request([ConsumeCsrf])
            .request([Renew, Append]),
        Scenario::new("one-time token races log out everywhere")
            .request([ConsumeCsrf, Append])
            .action(Action::DeleteByOwner),
        Scenario::new("flash races show")
            .request([Flash])
            .request([TakeFlashes]),
        Scenario::new("flash races show and renew")
            .request([Flash, Append])
            .request([TakeFlashes])
            .request([Renew]),
        Scenario::new("two shows race a flash")
            .request([Flash])
            .request([TakeFlashes])
            .request([TakeFlashes, Append]),
        Scenario::new("revoke races append")
            .request([Revoke])
            .request([Append]),
        Scenario::new("revoke races renew")
            .request([Revoke])
            .request([Renew, Append]),
        Scenario::new("revoke races login and log out everywhere")
            .request([Revoke])
            .request([Login, Append])
            .action(Action::DeleteByOwner),
        Scenario::new("revoke races an owner change")
            .request([Revoke])
            .request([ChangeOwner, Append]),
        Scenario::new("one-time token consumed twice in one request")
            .request([ConsumeCsrf, ConsumeCsrf])
            .request([Append]),
        Scenario::new("one-time token consumed by a renewing request")
            .request([ConsumeCsrf, Renew, Append])
            .request([ConsumeCsrf]),
        Scenario::new("one-time token consumed after a login")
            .request([Login, ConsumeCsrf])
            .request([ConsumeCsrf]),
    ]
}

/// Scenarios sampled rather than enumerated.
fn sampled() -> Vec<Scenario> {
    use Step::*;
    vec![
        Scenario::new("three appends, one renewing")
            .request([Append])
            .request([Append])
            .request([Renew, Append]),
        Scenario::new("renew and append race delete and log out everywhere")
            .request([Append])
            .request([Renew, Append])
            .action(Action::Delete)
            .action(Action::DeleteByOwner),
        Scenario::new("two revokes race an append")
            .request([Revoke])
            .request([Revoke])
            .request([Append]),
        Scenario::new("everything at once")
            .request([Append, Insert("a".into())])
            .request([Renew, Append])
            .request([Read])
            .action(Action::Expire)
            .max_keys(4),
    ]
}

/// A store with one flaw, to show the explorer notices it.
#[derive(Clone, Debug)]
struct Flawed {
    inner: latchkey::memory::MemoryStore,
    flaw: Flaw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    /// `save` writes whatever version is stored: the last writer wins.
    BlindSave,
    /// `delete_at_version` deletes unconditionally and reports success.
    BlindRetire,
}

impl SessionStore for Flawed {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.inner.load(id).await
    }
    async fn create(&self, id: &SessionId, record: &Record) -> Result<(), StoreError> {
        self.inner.create(id, record).await
    }
    async fn save(
        &self,
        id: &SessionId,
        record: &Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let expected = match (self.flaw, self.inner.load(id).await?) {
            (Flaw::BlindSave, Some(stored)) => stored.version,
            _ => expected,
        };
        self.inner.save(id, record, expected).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        deadlines: Deadlines,
        seen_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.touch(id, deadlines, seen_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn delete_at_version(
        &self,
        id: &SessionId,
        expected: u64,
    ) -> Result<DeleteOutcome, StoreError> {
        if self.flaw == Flaw::BlindRetire {
            self.inner.delete(id).await?;
            return Ok(DeleteOutcome::Deleted);
        }
        self.inner.delete_at_version(id, expected).await
    }
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, StoreError> {
        self.inner.list_by_owner(owner).await
    }
    async fn delete_by_owner(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.inner.delete_by_owner(owner, keep).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }
}

async fn violation_with(flaw: Flaw, scenario: &Scenario) -> String {
    let store = Flawed {
        inner: latchkey::memory::MemoryStore::new(),
        flaw,
    };
    match explore(
        &store,
        scenario,
        Exploration::Exhaustive { max_runs: 1_000 },
    )
    .await
    {
        Ok(report) => panic!("{flaw:?} went unnoticed over {} runs", report.runs),
        Err(violation) => violation.rule,
    }
}

#[actix_web::test]
async fn the_explorer_notices_a_store_that_loses_updates() {
    let scenario = Scenario::new("two appends")
        .request([Step::Append])
        .request([Step::Append]);
    let rule = violation_with(Flaw::BlindSave, &scenario).await;
    assert!(rule.contains("the log holds"), "{rule}");
}

#[actix_web::test]
async fn the_explorer_notices_a_one_time_token_accepted_twice() {
    let scenario = Scenario::new("one-time token submitted twice")
        .request([Step::ConsumeCsrf])
        .request([Step::ConsumeCsrf]);
    let rule = violation_with(Flaw::BlindSave, &scenario).await;
    assert!(rule.contains("more than once"), "{rule}");
}

#[actix_web::test]
async fn the_explorer_notices_a_revoke_of_a_session_given_to_another_owner() {
    let scenario = Scenario::new("revoke races an owner change")
        .request([Step::Revoke])
        .request([Step::ChangeOwner]);
    let rule = violation_with(Flaw::BlindRetire, &scenario).await;
    assert!(rule.contains("another owner"), "{rule}");
}

#[actix_web::test]
async fn the_explorer_notices_a_store_that_resurrects_on_renewal() {
    let scenario = Scenario::new("renew races an admin delete")
        .request([Step::Renew])
        .action(Action::Delete);
    let rule = violation_with(Flaw::BlindRetire, &scenario).await;
    assert!(rule.contains("resurrection"), "{rule}");
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

async fn explore_all(backend: &str, store: AnyStore) {
    let mut reports: Vec<Report> = Vec::new();
    for scenario in exhaustive() {
        let report = explore(
            &store,
            &scenario,
            Exploration::Exhaustive { max_runs: 20_000 },
        )
        .await
        .unwrap_or_else(|violation| panic!("{backend}: {violation}"));
        assert!(
            report.complete,
            "{backend}: {:?} has more interleavings than the bound; sample it instead",
            scenario.name
        );
        reports.push(report);
    }
    let samples = env_number("LATCHKEY_EXPLORER_SAMPLES", 400);
    let seed = env_number("LATCHKEY_EXPLORER_SEED", 1);
    for scenario in sampled() {
        let exploration = Exploration::Sampled {
            runs: samples,
            seed,
        };
        let report = explore(&store, &scenario, exploration)
            .await
            .unwrap_or_else(|violation| panic!("{backend}: {violation}"));
        reports.push(report);
    }
    let total: u64 = reports.iter().map(|r| r.runs).sum();
    for report in &reports {
        println!(
            "{backend}: {:>6} interleavings{} of {:?}",
            report.runs,
            if report.complete { " (all)" } else { "" },
            report.scenario
        );
    }
    println!("{backend}: {total} interleavings, no invariant broken");
}

#[actix_web::test]
async fn every_interleaving_on_memory() {
    explore_all(
        "memory",
        AnyStore::new(latchkey::memory::MemoryStore::new()),
    )
    .await;
}

#[actix_web::test]
async fn every_interleaving_on_redis() {
    explore_all("redis", AnyStore::new(redis_store().await)).await;
}

/// A private six-node Redis Cluster, where a session and its owner index live
/// on different nodes.
#[actix_web::test]
async fn every_interleaving_on_a_redis_cluster() {
    let cluster = latchkey_testkit::servers::PrivateRedisCluster::start().unwrap();
    let store = latchkey::redis::RedisStore::connect_cluster(
        cluster.urls(),
        std::time::Duration::from_secs(2),
    )
    .await
    .unwrap()
    .with_prefix(latchkey_testkit::servers::unique_name("explore"));
    explore_all("redis cluster", AnyStore::new(store)).await;
}

/// One process's cache in front of Redis, with a long staleness bound: every
/// write goes through the cache, so no staleness may show.
#[actix_web::test]
async fn every_interleaving_on_a_cached_store() {
    let cached = latchkey::cache::CachedStore::new(redis_store().await)
        .max_staleness(std::time::Duration::from_secs(60));
    explore_all("cached redis", AnyStore::new(cached)).await;
}

#[actix_web::test]
async fn every_interleaving_on_postgres() {
    explore_all("postgres", AnyStore::new(postgres_store().await)).await;
}
