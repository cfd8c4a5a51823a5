//! The conformance cases, each a function taking a fresh store.
//!
//! Each case panics with a message naming the broken rule when the store breaks
//! the contract.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::{
    Deadlines, DeleteOutcome, Record, SaveOutcome, SessionId, SessionStore, SessionToken,
    StoreError, Timestamp,
};
use serde_json::{Value, json};

use crate::TestClock;

/// Deadlines long enough that no case sees them pass.
const LONG: Duration = Duration::from_secs(3600);
/// Deadlines short enough to wait out in a test, long enough to outlast a slow
/// round trip before the wait.
const SHORT: Duration = Duration::from_millis(600);
/// How long to wait for [`SHORT`] deadlines to pass, with margin for clock skew
/// between the test and a server.
const PAST_SHORT: Duration = Duration::from_millis(1_300);

tokio::task_local! {
    /// The clock of the store under test, when it reads a [`TestClock`].
    static CLOCK: TestClock;
}

/// Runs `case` with `clock` as the store's time: the case's deadlines are set
/// from it, and its waits move it rather than sleep.
#[doc(hidden)]
pub async fn on_clock<F: Future>(clock: TestClock, case: F) -> F::Output {
    CLOCK.scope(clock, case).await
}

/// The time by the store's clock: the system's unless the case runs
/// [`on_clock`]. Tasks a case spawns do not inherit the task-local, so they
/// must not read the time here.
fn now() -> Timestamp {
    CLOCK
        .try_with(TestClock::now)
        .unwrap_or_else(|_| Timestamp::now())
}

/// Lets [`PAST_SHORT`] pass: on the store's [`TestClock`] at once, otherwise
/// by waiting.
async fn let_short_deadlines_pass() {
    if CLOCK.try_with(|clock| clock.advance(PAST_SHORT)).is_err() {
        tokio::time::sleep(PAST_SHORT).await;
    }
}

fn new_id() -> SessionId {
    #[allow(clippy::expect_used)]
    SessionToken::generate().expect("OS randomness").id()
}

fn new_owner() -> String {
    format!("owner-{}", new_id().to_hex())
}

fn record_with(idle: Duration, lifetime: Duration) -> Record {
    let now = now();
    Record::new(now, Deadlines::starting_at(now, idle, lifetime))
}

fn live_record() -> Record {
    record_with(LONG, LONG)
}

async fn create<S: SessionStore>(store: &S, record: &Record) -> SessionId {
    let id = new_id();
    store
        .create(&id, record)
        .await
        .unwrap_or_else(|e| panic!("create failed: {e:?}"));
    id
}

async fn load<S: SessionStore>(store: &S, id: &SessionId) -> Option<Record> {
    store
        .load(id)
        .await
        .unwrap_or_else(|e| panic!("load failed: {e:?}"))
}

async fn save<S: SessionStore>(
    store: &S,
    id: &SessionId,
    record: &Record,
    expected: u64,
) -> SaveOutcome {
    store
        .save(id, record, expected)
        .await
        .unwrap_or_else(|e| panic!("save failed: {e:?}"))
}

async fn owned<S: SessionStore>(store: &S, owner: &str) -> Vec<SessionId> {
    let mut ids: Vec<SessionId> = store
        .list_by_owner(owner)
        .await
        .unwrap_or_else(|e| panic!("list_by_owner failed: {e:?}"))
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<SessionId>) -> Vec<SessionId> {
    ids.sort();
    ids
}

/// Typed JSON values, the owner, the creation time and the deadlines come back as
/// written, at version 1 whatever version was passed in.
pub async fn round_trip_keeps_typed_json<S: SessionStore>(store: S) {
    let mut record = live_record();
    record.version = 41;
    record.owner = Some(new_owner());
    let values = json!({
        "count": 7,
        "big": u64::MAX,
        "negative": -12,
        "ratio": 0.25,
        "flag": true,
        "nothing": null,
        "text": "héllo \"quoted\" \\ <b>€</b> 🦀",
        "list": [1, "two", {"three": 3}],
        "nested": {"a": {"b": [true, false]}},
        "json_looking_string": "{\"not\":\"parsed\"}",
    });
    if let Value::Object(map) = values {
        record.data = map;
    }
    let id = create(&store, &record).await;
    let loaded = load(&store, &id).await.expect("a created session loads");
    assert_eq!(loaded.version, 1, "create stores version 1");
    assert_eq!(loaded.data, record.data, "data round-trips as typed JSON");
    assert_eq!(loaded.owner, record.owner, "owner round-trips");
    assert_eq!(
        loaded.created_at, record.created_at,
        "created_at round-trips"
    );
    assert_eq!(
        loaded.deadlines, record.deadlines,
        "deadlines round-trip to the millisecond"
    );
}

/// Loading an id nothing was stored under gives `None`, not an error.
pub async fn load_of_unknown_id_is_none<S: SessionStore>(store: S) {
    assert!(load(&store, &new_id()).await.is_none());
}

/// A second `create` under a live id fails with `IdCollision` and changes nothing.
pub async fn create_reports_collision_and_keeps_original<S: SessionStore>(store: S) {
    let mut first = live_record();
    first.data.insert("who".into(), json!("first"));
    let id = create(&store, &first).await;
    let mut second = live_record();
    second.data.insert("who".into(), json!("second"));
    let err = store
        .create(&id, &second)
        .await
        .expect_err("a second create under one id fails");
    assert!(
        matches!(err, StoreError::IdCollision),
        "collision is reported as such, got {err:?}"
    );
    let loaded = load(&store, &id).await.expect("the original survives");
    assert_eq!(loaded.data["who"], json!("first"));
    assert_eq!(loaded.version, 1);
}

/// A session is not served, saved or touched once its idle deadline has passed.
pub async fn idle_deadline_expires_session<S: SessionStore>(store: S) {
    let record = record_with(SHORT, LONG);
    let id = create(&store, &record).await;
    assert!(
        load(&store, &id).await.is_some(),
        "live before the idle deadline"
    );
    let_short_deadlines_pass().await;
    assert!(
        load(&store, &id).await.is_none(),
        "an idle-expired session is never returned"
    );
    assert_eq!(
        save(&store, &id, &record, 1).await,
        SaveOutcome::Missing,
        "saving an expired session does not revive it"
    );
    assert!(
        load(&store, &id).await.is_none(),
        "still gone after the save attempt"
    );
    let touched = store
        .touch(&id, Deadlines::starting_at(now(), LONG, LONG), now())
        .await
        .expect("touch");
    assert!(!touched, "touching an expired session does not revive it");
    assert!(
        load(&store, &id).await.is_none(),
        "still gone after the touch attempt"
    );
}

/// The absolute deadline ends a session even while its idle deadline is far off.
pub async fn absolute_deadline_expires_session<S: SessionStore>(store: S) {
    let now = now();
    let mut record = Record::new(
        now,
        Deadlines {
            idle: now + LONG,
            absolute: now + SHORT,
        },
    );
    record.data.insert("k".into(), json!(1));
    let id = create(&store, &record).await;
    assert!(load(&store, &id).await.is_some());
    let_short_deadlines_pass().await;
    assert!(
        load(&store, &id).await.is_none(),
        "the absolute deadline is enforced"
    );
}

/// An expired session does not block a new `create` under its id.
pub async fn expired_session_id_can_be_created_again<S: SessionStore>(store: S) {
    let id = create(&store, &record_with(SHORT, SHORT)).await;
    let_short_deadlines_pass().await;
    let mut fresh = live_record();
    fresh.data.insert("fresh".into(), json!(true));
    store
        .create(&id, &fresh)
        .await
        .expect("an expired id is free again");
    let loaded = load(&store, &id).await.expect("the new session loads");
    assert_eq!(loaded.data["fresh"], json!(true));
    assert_eq!(loaded.version, 1);
}

/// `touch` moves the deadlines, keeps data and version, and keeps the session alive.
pub async fn touch_extends_without_rewriting<S: SessionStore>(store: S) {
    let mut record = record_with(SHORT, SHORT);
    record.data.insert("kept".into(), json!("yes"));
    let id = create(&store, &record).await;
    let extended = Deadlines::starting_at(now(), LONG, LONG);
    assert!(
        store
            .touch(&id, extended, record.last_seen)
            .await
            .expect("touch"),
        "touching a live session succeeds"
    );
    let_short_deadlines_pass().await;
    let loaded = load(&store, &id)
        .await
        .expect("a touched session outlives its old deadlines");
    assert_eq!(loaded.deadlines, extended);
    assert_eq!(loaded.data["kept"], json!("yes"));
    assert_eq!(loaded.version, 1, "touch does not bump the version");
    assert!(
        !store
            .touch(&new_id(), extended, now())
            .await
            .expect("touch"),
        "touching an unknown id reports false"
    );
}

/// `last_seen` is kept as `create` writes it and moved by `touch` and `save`,
/// never back: a writer that loaded before a touch must not undo it, and a
/// touch carrying an older visit than the stored one (it was overtaken) leaves
/// the later visit.
pub async fn last_seen_moves_forward_only<S: SessionStore>(store: S) {
    let record = record_with(LONG, 2 * LONG);
    let created = record.last_seen;
    let id = create(&store, &record).await;
    assert_eq!(load(&store, &id).await.expect("created").last_seen, created);
    let later = created + Duration::from_secs(30);
    assert!(
        store
            .touch(&id, record.deadlines, later)
            .await
            .expect("touch")
    );
    assert_eq!(
        load(&store, &id).await.expect("live").last_seen,
        later,
        "a touch moves it"
    );
    assert!(
        store
            .touch(&id, record.deadlines, created)
            .await
            .expect("touch")
    );
    assert_eq!(
        load(&store, &id).await.expect("live").last_seen,
        later,
        "an older touch leaves the later visit"
    );
    let mut stale = record.clone();
    stale.data.insert("written".into(), json!(true));
    assert_eq!(save(&store, &id, &stale, 1).await, SaveOutcome::Saved(2));
    let loaded = load(&store, &id).await.expect("live");
    assert_eq!(loaded.data["written"], json!(true), "the save landed");
    assert_eq!(
        loaded.last_seen, later,
        "a stale save leaves the later visit"
    );
    let mut newer = loaded.clone();
    newer.last_seen = later + Duration::from_secs(30);
    assert_eq!(save(&store, &id, &newer, 2).await, SaveOutcome::Saved(3));
    assert_eq!(
        load(&store, &id).await.expect("live").last_seen,
        newer.last_seen,
        "a save moves it"
    );
    let owned = {
        let mut owned = record_with(LONG, 2 * LONG);
        owned.owner = Some(format!("seen-{}", new_id()));
        owned
    };
    let owned_id = create(&store, &owned).await;
    let seen = owned.last_seen + Duration::from_secs(5);
    assert!(
        store
            .touch(&owned_id, owned.deadlines, seen)
            .await
            .expect("touch")
    );
    let listed = store
        .list_by_owner(owned.owner.as_deref().unwrap_or_default())
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|(_, r)| r.last_seen).collect::<Vec<_>>(),
        vec![seen],
        "listing returns it"
    );
}

/// A save never moves the idle deadline earlier than it is stored: a touch
/// since the writer's load moved it later without a new version, and the
/// writer's older deadline must not undo that.
pub async fn save_never_moves_the_idle_deadline_earlier<S: SessionStore>(store: S) {
    let record = record_with(LONG, 2 * LONG);
    let id = create(&store, &record).await;
    let later = Deadlines {
        idle: record.deadlines.idle + Duration::from_secs(60),
        absolute: record.deadlines.absolute,
    };
    assert!(
        store
            .touch(&id, later, record.last_seen)
            .await
            .expect("touch"),
        "touched"
    );
    let mut stale = record.clone();
    stale.data.insert("written".into(), json!(true));
    assert_eq!(save(&store, &id, &stale, 1).await, SaveOutcome::Saved(2));
    let loaded = load(&store, &id).await.expect("still there");
    assert_eq!(loaded.data["written"], json!(true), "the save landed");
    assert_eq!(
        loaded.deadlines.idle, later.idle,
        "the touch's later idle deadline stays"
    );
    // A save that moves it later still moves it.
    let mut extended = loaded.clone();
    extended.deadlines.idle = later.idle + Duration::from_secs(60);
    assert_eq!(
        save(&store, &id, &extended, loaded.version).await,
        SaveOutcome::Saved(3)
    );
    let loaded = load(&store, &id).await.expect("still there");
    assert_eq!(loaded.deadlines.idle, later.idle + Duration::from_secs(60));
    // Nor past the absolute deadline, when a save lowers that one.
    let mut shortened = loaded.clone();
    shortened.deadlines.absolute = record.deadlines.idle;
    assert_eq!(
        save(&store, &id, &shortened, loaded.version).await,
        SaveOutcome::Saved(4)
    );
    let loaded = load(&store, &id).await.expect("still there");
    assert_eq!(loaded.deadlines.absolute, record.deadlines.idle);
    assert_eq!(
        loaded.deadlines.idle, loaded.deadlines.absolute,
        "the idle deadline is capped at the absolute one"
    );
}

/// A session's own idle timeout ("remember me") is kept as `create` and `save`
/// write it, and a touch leaves it alone.
pub async fn the_session_idle_timeout_is_kept<S: SessionStore>(store: S) {
    let remembered = Duration::from_secs(30 * 24 * 3600);
    let mut record = record_with(LONG, 2 * LONG);
    record.idle_timeout = Some(remembered);
    let id = create(&store, &record).await;
    let loaded = load(&store, &id).await.expect("created");
    assert_eq!(loaded.idle_timeout, Some(remembered), "create keeps it");
    assert!(
        store
            .touch(&id, loaded.deadlines, loaded.last_seen)
            .await
            .expect("touch"),
        "touched"
    );
    let loaded = load(&store, &id).await.expect("still there");
    assert_eq!(loaded.idle_timeout, Some(remembered), "a touch keeps it");
    let mut forgotten = loaded.clone();
    forgotten.idle_timeout = None;
    assert_eq!(
        save(&store, &id, &forgotten, 1).await,
        SaveOutcome::Saved(2)
    );
    let loaded = load(&store, &id).await.expect("still there");
    assert_eq!(loaded.idle_timeout, None, "a save writes it");
    let mut odd = loaded.clone();
    odd.idle_timeout = Some(Duration::from_millis(1_500));
    assert_eq!(save(&store, &id, &odd, 2).await, SaveOutcome::Saved(3));
    assert_eq!(
        load(&store, &id).await.expect("still there").idle_timeout,
        Some(Duration::from_millis(1_500)),
        "kept to the millisecond"
    );
    let unowned = record_with(LONG, 2 * LONG);
    let plain = create(&store, &unowned).await;
    assert_eq!(
        load(&store, &plain).await.expect("created").idle_timeout,
        None,
        "a session that did not opt in has none"
    );
}

/// `save` writes only at the expected version and bumps it; a stale writer gets
/// `Conflict` and changes nothing.
pub async fn save_is_compare_and_set<S: SessionStore>(store: S) {
    let record = live_record();
    let id = create(&store, &record).await;
    let mut first = record.clone();
    first.data.insert("writer".into(), json!("first"));
    assert_eq!(save(&store, &id, &first, 1).await, SaveOutcome::Saved(2));
    let mut stale = record.clone();
    stale.data.insert("writer".into(), json!("stale"));
    assert_eq!(
        save(&store, &id, &stale, 1).await,
        SaveOutcome::Conflict,
        "a stale version conflicts"
    );
    assert_eq!(
        save(&store, &id, &stale, 7).await,
        SaveOutcome::Conflict,
        "a future version conflicts"
    );
    let loaded = load(&store, &id).await.expect("still there");
    assert_eq!(
        loaded.data["writer"],
        json!("first"),
        "the conflicting write changed nothing"
    );
    assert_eq!(loaded.version, 2);
    let mut second = loaded.clone();
    second.data.insert("writer".into(), json!("second"));
    second.deadlines = Deadlines::starting_at(now(), LONG, LONG);
    assert_eq!(save(&store, &id, &second, 2).await, SaveOutcome::Saved(3));
    let loaded = load(&store, &id).await.expect("still there");
    assert_eq!(loaded.data["writer"], json!("second"));
    assert_eq!(
        loaded.deadlines, second.deadlines,
        "save writes the deadlines too"
    );
}

/// A session deleted between load and save is not brought back by the save.
pub async fn save_after_delete_is_missing_and_does_not_resurrect<S: SessionStore>(store: S) {
    let mut record = live_record();
    record.owner = Some(new_owner());
    let id = create(&store, &record).await;
    let loaded = load(&store, &id).await.expect("loads");
    store.delete(&id).await.expect("delete");
    let mut changed = loaded.clone();
    changed.data.insert("late".into(), json!("write"));
    assert_eq!(
        save(&store, &id, &changed, loaded.version).await,
        SaveOutcome::Missing
    );
    assert!(
        load(&store, &id).await.is_none(),
        "a deleted session stays deleted"
    );
    assert!(
        owned(&store, record.owner.as_deref().unwrap_or_default())
            .await
            .is_empty(),
        "and out of the owner index"
    );
}

/// `delete_at_version` deletes only at the expected version: a stale version is a
/// conflict that leaves the session as it is, and a deleted or expired session is
/// missing and stays gone.
pub async fn delete_at_version_is_compare_and_delete<S: SessionStore>(store: S) {
    let mut record = live_record();
    let owner = new_owner();
    record.owner = Some(owner.clone());
    record.data.insert("k".into(), json!(1));
    let id = create(&store, &record).await;
    let saved = save(&store, &id, &record, 1).await;
    assert_eq!(saved, SaveOutcome::Saved(2));

    let stale = store
        .delete_at_version(&id, 1)
        .await
        .expect("delete_at_version");
    assert_eq!(stale, DeleteOutcome::Conflict, "version 1 is stale");
    assert!(
        load(&store, &id).await.is_some(),
        "a conflict leaves the session in place"
    );

    let current = store
        .delete_at_version(&id, 2)
        .await
        .expect("delete_at_version");
    assert_eq!(current, DeleteOutcome::Deleted);
    assert!(load(&store, &id).await.is_none(), "deleted at its version");
    assert!(
        owned(&store, &owner).await.is_empty(),
        "and out of the owner index"
    );

    let again = store
        .delete_at_version(&id, 2)
        .await
        .expect("delete_at_version");
    assert_eq!(
        again,
        DeleteOutcome::Missing,
        "a deleted session is missing"
    );
    let unknown = store
        .delete_at_version(&new_id(), 1)
        .await
        .expect("delete_at_version of an unknown id");
    assert_eq!(unknown, DeleteOutcome::Missing);
    assert_eq!(
        save(&store, &id, &record, 2).await,
        SaveOutcome::Missing,
        "and is not brought back by a save at the deleted version"
    );
}

/// An expired session is missing to `delete_at_version`, even at its version.
pub async fn delete_at_version_of_expired_session_is_missing<S: SessionStore>(store: S) {
    let id = create(&store, &record_with(SHORT, LONG)).await;
    let_short_deadlines_pass().await;
    let outcome = store
        .delete_at_version(&id, 1)
        .await
        .expect("delete_at_version");
    assert_eq!(outcome, DeleteOutcome::Missing);
}

/// Deleting twice, or deleting what never existed, is not an error.
pub async fn delete_is_idempotent<S: SessionStore>(store: S) {
    let id = create(&store, &live_record()).await;
    store.delete(&id).await.expect("first delete");
    store.delete(&id).await.expect("second delete");
    store
        .delete(&new_id())
        .await
        .expect("delete of an unknown id");
    assert!(load(&store, &id).await.is_none());
}

/// The owner index lists exactly the owner's sessions and follows owner changes,
/// deletes and owner removal.
pub async fn owner_index_lists_and_follows_changes<S: SessionStore>(store: S) {
    let (ann, bob) = (new_owner(), new_owner());
    let mut owned_by_ann = live_record();
    owned_by_ann.owner = Some(ann.clone());
    let a1 = create(&store, &owned_by_ann).await;
    let a2 = create(&store, &owned_by_ann).await;
    let a3 = create(&store, &owned_by_ann).await;
    let mut owned_by_bob = live_record();
    owned_by_bob.owner = Some(bob.clone());
    let b1 = create(&store, &owned_by_bob).await;
    let _anonymous = create(&store, &live_record()).await;

    assert_eq!(owned(&store, &ann).await, sorted(vec![a1, a2, a3]));
    assert_eq!(owned(&store, &bob).await, vec![b1]);
    let listed = store.list_by_owner(&ann).await.expect("list");
    assert!(
        listed
            .iter()
            .all(|(_, r)| r.owner.as_deref() == Some(ann.as_str())),
        "listed records carry their owner"
    );

    // a2 moves from ann to bob.
    let mut moved = load(&store, &a2).await.expect("a2");
    moved.owner = Some(bob.clone());
    assert_eq!(save(&store, &a2, &moved, 1).await, SaveOutcome::Saved(2));
    assert_eq!(owned(&store, &ann).await, sorted(vec![a1, a3]));
    assert_eq!(owned(&store, &bob).await, sorted(vec![b1, a2]));

    // a3 loses its owner.
    let mut unowned = load(&store, &a3).await.expect("a3");
    unowned.owner = None;
    assert_eq!(save(&store, &a3, &unowned, 1).await, SaveOutcome::Saved(2));
    assert_eq!(owned(&store, &ann).await, vec![a1]);

    // A conflicting save does not touch the index.
    let mut stale = owned_by_ann.clone();
    stale.owner = Some(bob.clone());
    assert_eq!(save(&store, &a1, &stale, 9).await, SaveOutcome::Conflict);
    assert_eq!(owned(&store, &ann).await, vec![a1]);

    store.delete(&b1).await.expect("delete");
    assert_eq!(owned(&store, &bob).await, vec![a2]);
    assert!(
        owned(&store, &new_owner()).await.is_empty(),
        "an unknown owner has no sessions"
    );
}

/// Expired sessions are not listed for their owner, nor counted as deleted.
pub async fn owner_index_skips_expired_sessions<S: SessionStore>(store: S) {
    let owner = new_owner();
    let mut short = record_with(SHORT, SHORT);
    short.owner = Some(owner.clone());
    let mut long = live_record();
    long.owner = Some(owner.clone());
    let _expiring = create(&store, &short).await;
    let live = create(&store, &long).await;
    let_short_deadlines_pass().await;
    assert_eq!(
        owned(&store, &owner).await,
        vec![live],
        "only live sessions are listed"
    );
    let deleted = store
        .delete_by_owner(&owner, None)
        .await
        .expect("delete_by_owner");
    assert_eq!(deleted, 1, "only live sessions count as deleted");
    assert!(owned(&store, &owner).await.is_empty());
}

/// "Log out everywhere else": every session of the owner goes but the kept one;
/// other owners' sessions stay.
pub async fn delete_by_owner_keeps_the_named_session<S: SessionStore>(store: S) {
    let (owner, other) = (new_owner(), new_owner());
    let mut mine = live_record();
    mine.owner = Some(owner.clone());
    let current = create(&store, &mine).await;
    let elsewhere1 = create(&store, &mine).await;
    let elsewhere2 = create(&store, &mine).await;
    let mut theirs = live_record();
    theirs.owner = Some(other.clone());
    let foreign = create(&store, &theirs).await;

    let deleted = store
        .delete_by_owner(&owner, Some(&current))
        .await
        .expect("delete_by_owner");
    assert_eq!(deleted, 2);
    assert!(
        load(&store, &current).await.is_some(),
        "the kept session survives"
    );
    assert!(load(&store, &elsewhere1).await.is_none());
    assert!(load(&store, &elsewhere2).await.is_none());
    assert!(
        load(&store, &foreign).await.is_some(),
        "other owners are untouched"
    );
    assert_eq!(owned(&store, &owner).await, vec![current]);

    assert_eq!(
        store
            .delete_by_owner(&owner, None)
            .await
            .expect("delete_by_owner"),
        1
    );
    assert!(load(&store, &current).await.is_none());
    assert_eq!(
        store
            .delete_by_owner(&owner, None)
            .await
            .expect("delete_by_owner"),
        0,
        "nothing left"
    );
}

/// `delete_expired` removes what has expired and nothing else.
pub async fn delete_expired_keeps_live_sessions<S: SessionStore>(store: S) {
    let mut live = live_record();
    live.data.insert("live".into(), json!(true));
    let expiring = create(&store, &record_with(SHORT, SHORT)).await;
    let live_id = create(&store, &live).await;
    let_short_deadlines_pass().await;
    store.delete_expired().await.expect("delete_expired");
    assert!(load(&store, &expiring).await.is_none());
    let kept = load(&store, &live_id)
        .await
        .expect("live sessions survive cleanup");
    assert_eq!(kept.data["live"], json!(true));
    assert_eq!(kept.version, 1);
}

/// 64 tasks each add one to a counter with load / compare-and-set / retry; the
/// result is exactly 64 and every successful save bumped the version once.
pub async fn concurrent_updates_on_one_session_are_exact<S: SessionStore>(store: S) {
    const TASKS: u64 = 64;
    let store = Arc::new(store);
    let mut record = live_record();
    record.data.insert("n".into(), json!(0));
    let id = create(&*store, &record).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                loop {
                    let current = load(&*store, &id).await.expect("the session stays live");
                    let mut next = current.clone();
                    let n = current.data.get("n").and_then(Value::as_u64).unwrap_or(0);
                    next.data.insert("n".into(), json!(n + 1));
                    match save(&*store, &id, &next, current.version).await {
                        SaveOutcome::Saved(_) => break,
                        SaveOutcome::Conflict => tokio::task::yield_now().await,
                        SaveOutcome::Missing => panic!("the session vanished during the updates"),
                    }
                }
            })
        })
        .collect();
    for task in futures_util::future::join_all(tasks).await {
        task.expect("an updating task panicked");
    }
    let loaded = load(&*store, &id).await.expect("still there");
    assert_eq!(loaded.data["n"], json!(TASKS), "no update was lost");
    assert_eq!(loaded.version, TASKS + 1, "one version per successful save");
}

/// The owner index under churn: while tasks move a session between two owners
/// with compare-and-set saves, others list both owners' sessions. Whatever the
/// interleaving, the owner the session ends with lists it, the other does not,
/// and `delete_by_owner` removes it.
pub async fn owner_index_survives_owner_churn_and_concurrent_listing<S: SessionStore>(store: S) {
    let store = Arc::new(store);
    let (first, second) = (new_owner(), new_owner());
    let mut record = live_record();
    record.owner = Some(first.clone());
    let id = create(&*store, &record).await;
    let movers = (0..4).map(|task| {
        let (store, first, second) = (Arc::clone(&store), first.clone(), second.clone());
        tokio::spawn(async move {
            for round in 0..10 {
                let Some(mut current) = load(&*store, &id).await else {
                    panic!("the session vanished during owner churn");
                };
                let next = if (task + round) % 2 == 0 {
                    &first
                } else {
                    &second
                };
                current.owner = Some(next.clone());
                let version = current.version;
                let _ = save(&*store, &id, &current, version).await;
            }
        })
    });
    let listers = (0..2).map(|_| {
        let (store, first, second) = (Arc::clone(&store), first.clone(), second.clone());
        tokio::spawn(async move {
            for _ in 0..20 {
                let _ = owned(&*store, &first).await;
                let _ = owned(&*store, &second).await;
            }
        })
    });
    let tasks: Vec<_> = movers.chain(listers).collect();
    for task in futures_util::future::join_all(tasks).await {
        task.unwrap_or_else(|e| panic!("a task failed: {e}"));
    }
    // Whichever owner the session ended with lists it, the other does not,
    // and revoking that owner removes it.
    let Some(settled) = load(&*store, &id).await else {
        panic!("the session vanished during owner churn");
    };
    let (owner, other) = if settled.owner.as_deref() == Some(first.as_str()) {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        owned(&*store, &owner).await,
        vec![id],
        "listed under its owner"
    );
    assert!(owned(&*store, &other).await.is_empty(), "and not the other");
    let deleted = store
        .delete_by_owner(&owner, None)
        .await
        .unwrap_or_else(|e| panic!("delete_by_owner failed: {e:?}"));
    assert_eq!(deleted, 1, "delete_by_owner finds it");
    assert!(load(&*store, &id).await.is_none());
}
