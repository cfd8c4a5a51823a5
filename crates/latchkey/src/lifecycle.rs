//! A request's session from load to write-back, as a state machine.
//!
//! [`load`] turns the cookie into a [`State`]. After the handler, the state
//! becomes one [`Outcome`] and [`write_back`] runs the function for it:
//!
//! | outcome | store calls | cookie |
//! | --- | --- | --- |
//! | untouched | none | removed if it failed verification, else left alone |
//! | unchanged | `touch` when the idle extension is due | re-issued for a rotated key or a persistent cookie |
//! | changed | compare-and-set `save`, replayed on conflict | as for unchanged |
//! | created | `create` | set |
//! | renewed | `create` under a new token, then `delete_at_version` of the old one, replayed on conflict | set; left alone if the old session was gone |
//! | purged | `delete`, then `create` if values were put in afterwards | removed, or set to the refilled session |
//!
//! A stored session that vanished meanwhile (logged out elsewhere, expired) is
//! never written back, and its cookie is left alone: the browser may hold a
//! newer cookie set by a concurrent login, which a removal would wipe out.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::{Duration, Instant};

use latchkey_core::{
    Deadlines, DeleteOutcome, Record, SaveOutcome, SessionId, SessionStore as _, SessionToken,
    StoreError, Timestamp,
};

use crate::audit::{AuditEvent, AuditKind};
use crate::config::{CookieLifetime, IdleExtension};
use crate::cookie::Incoming;
use crate::device::{Clues, DEVICE_KEY, Device};
use crate::error::Error;
use crate::metrics::ObservedStore;
use crate::ops::replay;
use crate::session::{Change, Ended, IncomingCookie, Loaded, Outcome, State, check_limits};
use crate::shared::Shared;
use crate::write_queue::{Deposit, GroupAnswer, Joined, Turn};
use tokio::sync::oneshot;

/// How many fresh tokens to try when `create` reports a collision. With 256-bit
/// tokens a single collision is already astronomically unlikely.
const CREATE_ATTEMPTS: u32 = 3;

/// What the response's cookie should do.
#[derive(Debug)]
pub(crate) enum CookieAction {
    /// Leave the client's cookie as it is.
    Keep,
    /// Send this token, expiring with these deadlines; `persistent` when the
    /// cookie outlives the browser (see [`persistent_cookie`]).
    Set {
        token: SessionToken,
        deadlines: Deadlines,
        persistent: bool,
    },
    /// Tell the client to drop the cookie.
    Remove,
}

/// Reads the session the cookie names, within the session deadline.
pub(crate) async fn load(
    incoming: Incoming,
    clues: Clues,
    config: &Shared,
) -> Result<State, Error> {
    let mut state = read(incoming, &clues, config).await?;
    state.clues = clues;
    Ok(state)
}

async fn read(incoming: Incoming, clues: &Clues, config: &Shared) -> Result<State, Error> {
    let (token, stale_key) = match incoming {
        Incoming::Absent => return Ok(State::fresh(IncomingCookie::Absent)),
        Incoming::Invalid => {
            config.store.metrics().cookie_rejected();
            tracing::info!("session cookie failed verification; starting a new session");
            config.audit.emit(
                AuditEvent::new(AuditKind::VerificationFailed)
                    .device(config.device_metadata.describe(clues).as_ref()),
            );
            return Ok(State::fresh(IncomingCookie::Rejected));
        }
        Incoming::Token { token, stale_key } => (token, stale_key),
    };
    let started = Instant::now();
    let loading = async { Ok(config.store.load(&token.id()).await?) };
    let loaded = within(config.session_deadline, config, loading).await?;
    let mut state = match loaded {
        Some(record) if !record.is_expired_at(Timestamp::now()) => {
            State::existing(token, record, stale_key)
        }
        _ => {
            config.store.metrics().session_not_found();
            config.audit.emit(
                AuditEvent::new(AuditKind::SessionGone)
                    .session(token.id())
                    .device(config.device_metadata.describe(clues).as_ref()),
            );
            State::fresh(IncomingCookie::Valid)
        }
    };
    state.load_took = started.elapsed();
    Ok(state)
}

/// Writes the request's session back and says what to do with the cookie.
pub(crate) async fn write_back(
    state: State,
    config: &Shared,
    now: Timestamp,
) -> Result<CookieAction, Error> {
    let budget = config.session_deadline.saturating_sub(state.load_took);
    within(budget, config, async {
        match state.into_outcome() {
            Outcome::Untouched { cookie } => Ok(untouched(cookie)),
            Outcome::Unchanged(loaded) => unchanged(loaded, config, now).await,
            Outcome::Changed(loaded, change) => changed(loaded, change, config, now).await,
            Outcome::Created(change) => created(change, config, now).await,
            Outcome::Renewed {
                loaded,
                change,
                new_lifetime,
            } => renewed(loaded, change, new_lifetime, config, now).await,
            Outcome::Purged { ended, refill } => purged(ended, refill, config, now).await,
        }
    })
    .await
}

fn untouched(cookie: IncomingCookie) -> CookieAction {
    if cookie == IncomingCookie::Rejected {
        CookieAction::Remove
    } else {
        CookieAction::Keep
    }
}

async fn unchanged(loaded: Loaded, config: &Shared, now: Timestamp) -> Result<CookieAction, Error> {
    let deadlines = loaded.base.deadlines;
    let idle_timeout = idle_timeout_of(&loaded.base, config);
    if !touch_due(&loaded.base, idle_timeout, config, now) {
        return Ok(refreshed(loaded, deadlines, config));
    }
    let extended = deadlines.extended(now, idle_timeout);
    if !config
        .store
        .touch(&loaded.token.id(), extended, now)
        .await?
    {
        tracing::debug!(session = %loaded.token.id(), "session gone before its idle deadline moved");
        return Ok(CookieAction::Keep);
    }
    Ok(refreshed(loaded, extended, config))
}

async fn changed(
    loaded: Loaded,
    change: Change,
    config: &Shared,
    now: Timestamp,
) -> Result<CookieAction, Error> {
    let id = loaded.token.id();
    let answer = match config
        .runtime
        .write_queue
        .join(id, loaded.base.clone(), change)
        .await
    {
        Joined::Answered(answer) => answer,
        Joined::Lead {
            mut turn,
            group,
            own,
        } => {
            commit_group(id, &mut turn, group, config, now).await;
            drop(turn);
            own.await.unwrap_or_else(|_| {
                GroupAnswer::Failed(Error::Store(StoreError::backend(
                    "write group",
                    std::io::Error::other("the change was not answered"),
                )))
            })
        }
    };
    match answer {
        GroupAnswer::Saved(deadlines) => Ok(refreshed(loaded, deadlines, config)),
        GroupAnswer::Gone => {
            tracing::debug!(session = %id, "session gone during the request; change dropped");
            Ok(CookieAction::Keep)
        }
        GroupAnswer::Refused(err) | GroupAnswer::Failed(err) => Err(err),
    }
}

/// Commits the changes waiting in a session's queue in one compare-and-set,
/// replayed on the newest record known, and answers each. A change that does
/// not fit (a limit, a value of the wrong type) is answered with its error and
/// left out; the others go on.
async fn commit_group(
    id: SessionId,
    turn: &mut Turn<'_>,
    group: Vec<Deposit>,
    config: &Shared,
    now: Timestamp,
) {
    let mut members: Vec<(Vec<crate::ops::Op>, oneshot::Sender<GroupAnswer>)> = Vec::new();
    // A change whose request stopped waiting (its deadline passed, and it
    // answered the store-error status) is left out.
    let group: Vec<Deposit> = group
        .into_iter()
        .filter(|deposit| !deposit.answer.is_closed())
        .collect();
    // Start from the newest record: the one this process saved last, or the
    // newest a member loaded (its own change already applied to it).
    let newest = group
        .iter()
        .enumerate()
        .max_by_key(|(_, deposit)| deposit.base.version)
        .map(|(index, _)| index);
    let latest = turn.latest().cloned();
    let mut record = None;
    let mut replays = Vec::new();
    for (index, deposit) in group.into_iter().enumerate() {
        let Deposit {
            base,
            change,
            answer,
        } = deposit;
        let from_here = Some(index) == newest
            && latest
                .as_ref()
                .is_none_or(|latest| latest.version <= base.version);
        if from_here {
            record = Some(Record {
                data: change.data,
                owner: change.owner,
                ..base
            });
            members.push((change.ops, answer));
        } else {
            replays.push((change.ops, answer));
        }
    }
    let mut record = match (record, latest) {
        (Some(record), _) => record,
        (None, Some(latest)) => latest,
        // Unreachable (a group holds at least one change); commit nothing.
        (None, None) => return,
    };
    for (ops, answer) in replays {
        match apply_member(&record, &ops, config) {
            Ok(next) => {
                record = next;
                members.push((ops, answer));
            }
            Err(err) => {
                let _ = answer.send(GroupAnswer::Refused(err));
            }
        }
    }
    let outcome = save_group(id, &mut record, &mut members, config, now).await;
    let saved = match &outcome {
        Ok(Some(deadlines)) => Some(*deadlines),
        _ => None,
    };
    if saved.is_some() {
        turn.saved(record);
    }
    for (_, answer) in members {
        let reply = match &outcome {
            Ok(Some(deadlines)) => GroupAnswer::Saved(*deadlines),
            Ok(None) => GroupAnswer::Gone,
            Err(err) => GroupAnswer::Failed(group_failure(err)),
        };
        let _ = answer.send(reply);
    }
}

/// The record with one member's change replayed on it, within the limits.
fn apply_member(record: &Record, ops: &[crate::ops::Op], config: &Shared) -> Result<Record, Error> {
    let (data, owner) = replay(ops, record.data.clone(), record.owner.clone())?;
    check_limits(&data, config)?;
    Ok(Record {
        data,
        owner,
        ..record.clone()
    })
}

/// Saves the group's record with compare-and-set, reloading and replaying every
/// member after a conflict: the deadlines saved, or `None` when the session is
/// gone or no member is left to save.
async fn save_group(
    id: SessionId,
    record: &mut Record,
    members: &mut Vec<(Vec<crate::ops::Op>, oneshot::Sender<GroupAnswer>)>,
    config: &Shared,
    now: Timestamp,
) -> Result<Option<Deadlines>, Error> {
    for attempt in 0..=config.max_conflict_retries {
        // A member whose request stopped waiting (its deadline passed) is left
        // out of every save from then on: it answered an error already.
        members.retain(|(_, answer)| !answer.is_closed());
        if members.is_empty() {
            // Every change was refused or given up on: nothing to write.
            return Ok(None);
        }
        let idle_timeout = idle_timeout_of(record, config);
        record.deadlines = saved_deadlines(record.deadlines, idle_timeout, config, now);
        if seen_due(record, idle_timeout, config, now) {
            record.last_seen = now;
        }
        match config.store.save(&id, record, record.version).await? {
            SaveOutcome::Saved(version) => {
                record.version = version;
                return Ok(Some(record.deadlines));
            }
            SaveOutcome::Missing => return Ok(None),
            SaveOutcome::Conflict => {
                tracing::debug!(session = %id, attempt, members = members.len(), "compare-and-set conflict; replaying");
                config.store.metrics().conflict_replayed();
                if attempt > 0 && attempt < config.max_conflict_retries {
                    actix_web::rt::time::sleep(backoff(attempt)).await;
                }
                let Some(mut fresh) = config.store.load(&id).await? else {
                    return Ok(None);
                };
                let mut kept = Vec::with_capacity(members.len());
                for (ops, answer) in members.drain(..) {
                    match apply_member(&fresh, &ops, config) {
                        Ok(next) => {
                            fresh = next;
                            kept.push((ops, answer));
                        }
                        Err(err) => {
                            let _ = answer.send(GroupAnswer::Refused(err));
                        }
                    }
                }
                *members = kept;
                *record = fresh;
            }
        }
    }
    Err(gave_up(&id, config))
}

/// The error each member of a failed group gets: the same kind, not the same
/// value (errors keep their source and are not cloned).
fn group_failure(err: &Error) -> Error {
    match err {
        Error::ConflictRetriesExhausted { retries } => {
            Error::ConflictRetriesExhausted { retries: *retries }
        }
        other => Error::Store(StoreError::backend(
            "write group",
            std::io::Error::other(other.to_string()),
        )),
    }
}

async fn created(change: Change, config: &Shared, now: Timestamp) -> Result<CookieAction, Error> {
    let idle_timeout = change.remember.unwrap_or(config.idle_timeout);
    let mut record = Record::new(
        now,
        Deadlines::starting_at(now, idle_timeout, config.lifetime),
    );
    record.data = change.data;
    record.owner = change.owner;
    record.idle_timeout = change.remember;
    let device = config.device_metadata.describe(&change.clues);
    describe_device(&mut record, device.as_ref());
    let token = create(&config.store, &record).await?;
    if change.logged_in {
        config.audit.emit(
            AuditEvent::new(AuditKind::Login)
                .owner(record.owner.as_deref())
                .session(token.id())
                .device(device.as_ref()),
        );
    }
    Ok(CookieAction::Set {
        token,
        deadlines: record.deadlines,
        persistent: persistent_cookie(&record, config),
    })
}

/// Moves the session to a new token: the new session is created first, then
/// the old one retired only at the version this request built on. Creating
/// first means a "log out everywhere" running in between finds the new session
/// in the owner index; retiring at a version means a session deleted meanwhile
/// is reported missing (the new one is then deleted: nothing comes back), and
/// one changed meanwhile is reloaded and the change replayed on it.
async fn renewed(
    loaded: Loaded,
    change: Change,
    new_lifetime: bool,
    config: &Shared,
    now: Timestamp,
) -> Result<CookieAction, Error> {
    let store = &config.store;
    let old = loaded.token.id();
    let mut turn = config.runtime.write_queue.enter(old).await;
    let remember = change.remember;
    let device = config.device_metadata.describe(&change.clues);
    let mut pending = Pending::new(&loaded, change, &turn, config)?;
    let successor = |pending: &Pending| {
        let mut record = pending.record.clone();
        // A new session id is a write of its own: it records the visit.
        record.last_seen = now;
        if new_lifetime {
            // A login starts over: remembered only if this request asks, on
            // the device it comes from (none recorded when it tells nothing:
            // never the description of whoever made the session before).
            record.data.remove(DEVICE_KEY);
            describe_device(&mut record, device.as_ref());
            record.created_at = now;
            record.idle_timeout = remember;
            record.deadlines =
                Deadlines::starting_at(now, idle_timeout_of(&record, config), config.lifetime);
        } else {
            // The absolute deadline and creation time stay: renewing never
            // extends a session's life.
            record.deadlines = match remember {
                // Asked for in this request: the session's idle deadline runs
                // from now on its new timeout, whatever the extension policy.
                Some(timeout) => {
                    record.idle_timeout = Some(timeout);
                    record.deadlines.extended(now, timeout)
                }
                None => saved_deadlines(
                    record.deadlines,
                    idle_timeout_of(&record, config),
                    config,
                    now,
                ),
            };
        }
        record
    };
    let record = successor(&pending);
    let persistent = persistent_cookie(&record, config);
    let token = create(store, &record).await?;
    let new = token.id();
    // Until the old session is retired the new one is an orphan no client
    // knows: it goes on every exit but success, and on cancellation too.
    let orphan = Orphan::new(store, new);
    let retired = retire(old, new, record, &mut pending, successor, config).await;
    orphan.disarm();
    match retired {
        Ok(Some(deadlines)) => {
            turn.retired();
            store.metrics().session_destroyed();
            tracing::debug!(from = %old, to = %new, "session renewed");
            if new_lifetime {
                config.audit.emit(
                    AuditEvent::new(AuditKind::Login)
                        .owner(pending.record.owner.as_deref())
                        .session(new)
                        .device(device.as_ref()),
                );
            }
            Ok(CookieAction::Set {
                token,
                deadlines,
                persistent,
            })
        }
        Ok(None) => {
            store.delete(&new).await?;
            Ok(CookieAction::Keep)
        }
        Err(err) => {
            let _ = store.delete(&new).await;
            Err(err)
        }
    }
}

/// Retires `old` at the version `pending` builds on, replaying onto `new` after
/// each conflict: the successor's deadlines once retired, `None` when the
/// session turned out to be gone (deleted, or logged out everywhere).
async fn retire(
    old: SessionId,
    new: SessionId,
    mut record: Record,
    pending: &mut Pending,
    successor: impl Fn(&Pending) -> Record,
    config: &Shared,
) -> Result<Option<Deadlines>, Error> {
    let store = &config.store;
    let mut new_version = 1;
    for attempt in 0..=config.max_conflict_retries {
        match store.delete_at_version(&old, pending.expected).await? {
            DeleteOutcome::Deleted => return Ok(Some(record.deadlines)),
            DeleteOutcome::Missing => {
                tracing::debug!(session = %old, "renewal abandoned: session gone");
                return Ok(None);
            }
            DeleteOutcome::Conflict => {
                if !pending.reload(&old, attempt, config).await? {
                    tracing::debug!(session = %old, "renewal abandoned: session gone");
                    return Ok(None);
                }
                record = successor(pending);
                match store.save(&new, &record, new_version).await? {
                    SaveOutcome::Saved(version) => new_version = version,
                    // Only a "log out everywhere" can have reached the new
                    // session, which no client knows yet.
                    SaveOutcome::Missing | SaveOutcome::Conflict => {
                        tracing::debug!(session = %old, "renewal abandoned: new session deleted");
                        return Ok(None);
                    }
                }
            }
        }
    }
    Err(gave_up(&old, config))
}

/// A session created for a renewal that has not been handed out yet: deleted
/// if the request is cancelled (by its deadline) before it is.
struct Orphan {
    store: Option<ObservedStore>,
    id: SessionId,
}

impl Orphan {
    fn new(store: &ObservedStore, id: SessionId) -> Self {
        Self {
            store: Some(store.clone()),
            id,
        }
    }

    /// The renewal finished (either way) and dealt with the session itself.
    fn disarm(mut self) {
        self.store = None;
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        let (Some(store), Ok(runtime)) = (self.store.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let id = self.id;
        tracing::debug!(session = %id, "renewal cancelled; deleting its new session");
        runtime.spawn(async move {
            let _ = store.delete(&id).await;
        });
    }
}

async fn purged(
    ended: Option<Ended>,
    refill: Option<Change>,
    config: &Shared,
    now: Timestamp,
) -> Result<CookieAction, Error> {
    if let Some(ended) = ended {
        let id = ended.token.id();
        config.store.delete(&id).await?;
        config.store.metrics().session_destroyed();
        tracing::debug!(session = %id, "session purged");
        config.audit.emit(
            AuditEvent::new(AuditKind::Logout)
                .owner(ended.owner.as_deref())
                .session(id)
                .device(config.device_metadata.describe(&ended.clues).as_ref()),
        );
    }
    match refill {
        Some(change) => created(change, config, now).await,
        None => Ok(CookieAction::Remove),
    }
}

/// A change on its way into a stored session: the record to write and the
/// version it must find, rebuilt on a fresher record after each conflict.
struct Pending {
    record: Record,
    expected: u64,
    ops: Vec<crate::ops::Op>,
}

impl Pending {
    /// The change on the loaded record, or on the record another writer of this
    /// process saved since, if that is newer.
    fn new(
        loaded: &Loaded,
        change: Change,
        turn: &Turn<'_>,
        config: &Shared,
    ) -> Result<Self, Error> {
        let mut record = loaded.base.clone();
        record.data = change.data;
        record.owner = change.owner;
        let mut pending = Self {
            expected: record.version,
            record,
            ops: change.ops,
        };
        if let Some(latest) = turn
            .latest()
            .filter(|latest| latest.version > pending.expected)
        {
            pending.rebase(latest.clone(), config)?;
        }
        Ok(pending)
    }

    /// Replays the change on `fresh`, within the limits.
    fn rebase(&mut self, mut fresh: Record, config: &Shared) -> Result<(), Error> {
        let (data, owner) = replay(
            &self.ops,
            std::mem::take(&mut fresh.data),
            fresh.owner.clone(),
        )?;
        check_limits(&data, config)?;
        self.expected = fresh.version;
        self.record = Record {
            data,
            owner,
            ..fresh
        };
        Ok(())
    }

    /// After a conflict: reloads `id` and rebases on it; `false` when the session
    /// is gone.
    async fn reload(
        &mut self,
        id: &SessionId,
        attempt: u32,
        config: &Shared,
    ) -> Result<bool, Error> {
        tracing::debug!(session = %id, attempt, "compare-and-set conflict; replaying");
        config.store.metrics().conflict_replayed();
        // The first conflict usually means our copy was loaded before a save we
        // could not know of: reload at once. Repeated ones mean other processes
        // are writing too: spread out.
        if attempt > 0 && attempt < config.max_conflict_retries {
            actix_web::rt::time::sleep(backoff(attempt)).await;
        }
        match config.store.load(id).await? {
            Some(fresh) => self.rebase(fresh, config).map(|()| true),
            None => Ok(false),
        }
    }
}

/// The cookie after a write that kept the token: re-issued when it was made with
/// a rotated key, or when a persistent cookie's expiry moved.
fn refreshed(loaded: Loaded, deadlines: Deadlines, config: &Shared) -> CookieAction {
    let persistent = persistent_cookie(&loaded.base, config);
    let persistent_moved = deadlines != loaded.base.deadlines && persistent;
    if loaded.stale_key {
        config.audit.emit(
            AuditEvent::new(AuditKind::CookieResigned)
                .owner(loaded.base.owner.as_deref())
                .session(loaded.token.id()),
        );
    }
    if loaded.stale_key || persistent_moved {
        CookieAction::Set {
            token: loaded.token,
            deadlines,
            persistent,
        }
    } else {
        CookieAction::Keep
    }
}

/// Records the request's device in a session stored anew.
fn describe_device(record: &mut Record, device: Option<&Device>) {
    if let Some(value) = device.and_then(Device::to_value) {
        record.data.insert(DEVICE_KEY.to_owned(), value);
    }
}

/// The idle timeout that applies to `record`: its own, when it is remembered,
/// or the middleware's.
pub(crate) fn idle_timeout_of(record: &Record, config: &Shared) -> Duration {
    record.idle_timeout.unwrap_or(config.idle_timeout)
}

/// Whether the session's cookie outlives the browser: always with
/// [`CookieLifetime::Persistent`], and for a remembered session.
pub(crate) fn persistent_cookie(record: &Record, config: &Shared) -> bool {
    config.cookie_lifetime == CookieLifetime::Persistent || record.idle_timeout.is_some()
}

/// Whether a request that changed nothing should touch the session: under
/// [`IdleExtension::OnEveryRequest`], when the idle deadline is
/// [due](extension_due) to move or the last visit recorded is
/// [stale](seen_due).
fn touch_due(record: &Record, idle_timeout: Duration, config: &Shared, now: Timestamp) -> bool {
    config.idle_extension == IdleExtension::OnEveryRequest
        && (extension_due(&record.deadlines, idle_timeout, config, now).is_some()
            || seen_due(record, idle_timeout, config, now))
}

/// Whether [`Record::last_seen`] is an extension interval or more behind
/// `now`: a request writes it only then (requests loading the session at once
/// may each do so).
pub(crate) fn seen_due(
    record: &Record,
    idle_timeout: Duration,
    config: &Shared,
    now: Timestamp,
) -> bool {
    now.saturating_since(record.last_seen) >= config.extension_interval_for(idle_timeout)
}

/// The extended deadlines, once extending would move the idle deadline by the
/// extension interval, or, near the end of the session's life, when it would
/// reach the absolute deadline (moving by less), so that a session in use lasts
/// its whole lifetime. Moving it by less is not worth a store write, nor, on
/// PostgreSQL, an update of the indexed expiry column.
fn extension_due(
    deadlines: &Deadlines,
    idle_timeout: Duration,
    config: &Shared,
    now: Timestamp,
) -> Option<Deadlines> {
    let extended = deadlines.extended(now, idle_timeout);
    let moved = extended.idle.saturating_since(deadlines.idle);
    let due = moved >= config.extension_interval_for(idle_timeout)
        || (extended.idle == extended.absolute && extended.idle > deadlines.idle);
    due.then_some(extended)
}

/// The deadlines a save writes: the idle one moved when the policy extends on
/// changes and the extension is due (so most saves leave the deadlines as
/// loaded); the absolute one never.
pub(crate) fn saved_deadlines(
    deadlines: Deadlines,
    idle_timeout: Duration,
    config: &Shared,
    now: Timestamp,
) -> Deadlines {
    match config.idle_extension {
        IdleExtension::OnEveryRequest | IdleExtension::OnChange => {
            extension_due(&deadlines, idle_timeout, config, now).unwrap_or(deadlines)
        }
        IdleExtension::Never => deadlines,
    }
}

/// Stores `record` under a fresh token, drawing another on the rare collision.
async fn create(store: &ObservedStore, record: &Record) -> Result<SessionToken, Error> {
    let token = create_with_fresh_token(store, record).await?;
    store.metrics().session_created();
    tracing::debug!(session = %token.id(), "session created");
    Ok(token)
}

/// Stores `record` in `store` under a fresh token, drawing another on the rare
/// collision.
pub(crate) async fn create_with_fresh_token(
    store: &impl latchkey_core::SessionStore,
    record: &Record,
) -> Result<SessionToken, StoreError> {
    let mut attempts = 0;
    loop {
        let token =
            SessionToken::generate().map_err(|e| StoreError::backend("token generator", e))?;
        match store.create(&token.id(), record).await {
            Ok(()) => return Ok(token),
            Err(StoreError::IdCollision) if attempts + 1 < CREATE_ATTEMPTS => attempts += 1,
            Err(err) => return Err(err),
        }
    }
}

fn gave_up(id: &SessionId, config: &Shared) -> Error {
    config.store.metrics().conflict_given_up();
    tracing::warn!(session = %id, retries = config.max_conflict_retries, "gave up replaying a session change");
    Error::ConflictRetriesExhausted {
        retries: config.max_conflict_retries,
    }
}

/// Runs a request's session work within `budget`.
async fn within<T>(
    budget: Duration,
    config: &Shared,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match actix_web::rt::time::timeout(budget, work).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(deadline = ?config.session_deadline, "session work exceeded its deadline");
            Err(Error::DeadlineExceeded {
                deadline: config.session_deadline,
            })
        }
    }
}

/// A random wait that grows with the attempt, so conflicting writers spread out
/// instead of colliding again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let ceiling_micros = 200u64 << attempt.min(6);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_micros(random % ceiling_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_memory::MemoryStore;

    fn config(idle: Duration, interval: Duration) -> std::sync::Arc<Shared> {
        let middleware = crate::SessionMiddleware::builder(
            MemoryStore::new(),
            actix_web::cookie::Key::generate(),
        )
        .idle_timeout(idle)
        .idle_extension_interval(interval)
        .build();
        match middleware {
            Ok(middleware) => middleware.config(),
            Err(err) => panic!("{err}"),
        }
    }

    /// A record last seen at `seen` with these deadlines.
    fn seen_at(seen: u64, idle: u64, absolute: u64) -> Record {
        let at = Timestamp::from_millis;
        let mut record = Record::new(
            at(0),
            Deadlines {
                idle: at(idle),
                absolute: at(absolute),
            },
        );
        record.last_seen = at(seen);
        record
    }

    #[test]
    fn reads_extend_once_per_interval_and_up_to_the_absolute_deadline() {
        let config = config(Duration::from_secs(100), Duration::from_secs(10));
        let at = Timestamp::from_millis;
        let fresh = seen_at(0, 100_000, 1_000_000);
        assert!(
            !touch_due(&fresh, config.idle_timeout, &config, at(5_000)),
            "moved 5 s only"
        );
        assert!(
            touch_due(&fresh, config.idle_timeout, &config, at(10_000)),
            "moved by the interval"
        );
        // 3 s before the absolute deadline the extension is capped: it moves the
        // idle deadline by less than the interval, and is due all the same.
        let near_end = seen_at(947_000, 997_000, 1_000_000);
        assert!(touch_due(
            &near_end,
            config.idle_timeout,
            &config,
            at(950_000)
        ));
        let at_end = seen_at(945_000, 1_000_000, 1_000_000);
        assert!(
            !touch_due(&at_end, config.idle_timeout, &config, at(950_000)),
            "nothing left to move, last seen 5 s ago"
        );
        assert!(
            touch_due(&at_end, config.idle_timeout, &config, at(955_000)),
            "nothing left to move, but last seen an interval ago"
        );
    }

    #[test]
    fn saves_record_the_visit_once_per_interval() {
        let config = config(Duration::from_secs(100), Duration::from_secs(10));
        let at = Timestamp::from_millis;
        let record = seen_at(1_000, 101_000, 1_000_000);
        assert!(!seen_due(&record, config.idle_timeout, &config, at(10_999)));
        assert!(seen_due(&record, config.idle_timeout, &config, at(11_000)));
    }

    #[test]
    fn saves_move_the_idle_deadline_once_per_interval() {
        let config = config(Duration::from_secs(100), Duration::from_secs(10));
        let at = Timestamp::from_millis;
        let loaded = Deadlines {
            idle: at(100_000),
            absolute: at(1_000_000),
        };
        assert_eq!(
            saved_deadlines(loaded, config.idle_timeout, &config, at(9_999)),
            loaded,
            "a save 9.999 s in keeps the deadlines it loaded"
        );
        assert_eq!(
            saved_deadlines(loaded, config.idle_timeout, &config, at(10_000)),
            Deadlines {
                idle: at(110_000),
                absolute: at(1_000_000),
            },
            "a save one interval in moves the idle deadline"
        );
        let near_end = Deadlines {
            idle: at(997_000),
            absolute: at(1_000_000),
        };
        assert_eq!(
            saved_deadlines(near_end, config.idle_timeout, &config, at(950_000)).idle,
            at(1_000_000),
            "near the end a save reaches the absolute deadline"
        );
    }

    #[test]
    fn backoff_stays_under_its_ceiling() {
        for attempt in 0..20 {
            assert!(backoff(attempt) < Duration::from_micros(200 << attempt.min(6)));
        }
    }
}
