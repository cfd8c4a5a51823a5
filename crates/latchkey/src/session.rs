//! The `Session` extractor: a synchronous view of one session, loaded on first use.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use latchkey_core::{
    Record, SaveOutcome, SessionData, SessionId, SessionStore as _, SessionToken, Timestamp,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::cookie::Incoming;
use crate::device::{Clues, Device};
use crate::error::Error;
use crate::ops::Op;
use crate::shared::Shared;

/// What a request has done to its session so far.
///
/// # Examples
///
/// ```
/// async fn handler(session: latchkey::Session) -> Result<(), latchkey::Error> {
///     session.insert("k", 1)?;
///     assert_eq!(session.status(), latchkey::SessionStatus::Changed);
///     Ok(())
/// }
/// # let _ = handler;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionStatus {
    /// Values and owner are as loaded (changes that change nothing, or that
    /// cancel out, do not count); the store will not be written (except for a
    /// due idle-deadline extension).
    Unchanged,
    /// Values or owner changed; the change is saved after the handler.
    Changed,
    /// [`Session::renew`] was called: a new token will replace the old one.
    Renewed,
    /// [`Session::purge`] was called: the session will be deleted.
    Purged,
}

/// Per-request session slot, put in the request's extensions by the middleware.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    pub(crate) config: Arc<Shared>,
    /// Filled by the first extractor; later ones, even concurrent ones, wait
    /// for that one load instead of loading again.
    pub(crate) loaded: OnceCell<Arc<Mutex<State>>>,
    /// Set once the middleware is past the inner service: a session taken
    /// after that could not be written back.
    closed: std::sync::atomic::AtomicBool,
}

/// What the request's cookie was worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IncomingCookie {
    /// No cookie of ours came with the request.
    Absent,
    /// A cookie of ours that failed verification: forged, tampered, malformed,
    /// or signed with a key no longer configured.
    Rejected,
    /// A verified cookie (its session may still be gone).
    Valid,
}

/// The stored session the request loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) token: SessionToken,
    /// The record as loaded, without its values (the working copy holds them).
    pub(crate) base: Record,
    /// The cookie was made with a previous key and should be re-issued.
    pub(crate) stale_key: bool,
}

/// What the handler asked to happen to the stored session as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Keep its token.
    Keep,
    /// Give it a new token; `new_lifetime` starts its lifetime over (login).
    Renew { new_lifetime: bool },
    /// End it.
    Purge,
}

/// The values a request wants stored, and the operations that made them, for
/// replay on a fresher copy.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) data: SessionData,
    pub(crate) owner: Option<String>,
    pub(crate) ops: Vec<Op>,
    /// The idle timeout [`Session::remember`] asked for.
    pub(crate) remember: Option<Duration>,
    /// What the request told about its device, described when the session
    /// is stored anew.
    pub(crate) clues: Clues,
    /// [`Session::login`] was called.
    pub(crate) logged_in: bool,
}

/// What the write-back has to do, decided once the handler is done.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// No stored session and nothing to store.
    Untouched { cookie: IncomingCookie },
    /// A stored session the request did not change.
    Unchanged(Loaded),
    /// A stored session whose values or owner differ from what was loaded.
    Changed(Loaded, Change),
    /// A new session with values or an owner.
    Created(Change),
    /// A stored session to move to a new token.
    Renewed {
        loaded: Loaded,
        change: Change,
        new_lifetime: bool,
    },
    /// A session ended by `purge()`, and what was put in it afterwards.
    Purged {
        ended: Option<Ended>,
        refill: Option<Change>,
    },
}

/// One loaded session as the request sees it.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) cookie: IncomingCookie,
    /// The stored session, `None` for a session not stored (yet).
    pub(crate) loaded: Option<Loaded>,
    pub(crate) data: SessionData,
    pub(crate) owner: Option<String>,
    /// Values and owner before the request's first change: a change that
    /// changes nothing, or changes that cancel out, write nothing.
    original: Option<(SessionData, Option<String>)>,
    /// Every change, in order, for replay on a fresher copy after a conflict.
    pub(crate) ops: Vec<Op>,
    /// The idle timeout [`Session::remember`] asked for.
    remember: Option<Duration>,
    pub(crate) intent: Intent,
    /// The stored session `purge()` ended, deleted after the handler.
    pub(crate) ended: Option<Ended>,
    /// What the request told about its device.
    pub(crate) clues: Clues,
    /// [`Session::login`] was called.
    logged_in: bool,
    /// What loading took, charged to the session deadline.
    pub(crate) load_took: Duration,
    /// Left behind by the write-back for `Session` handles kept past it:
    /// their changes could not be saved, so they are refused.
    sealed: bool,
}

/// A stored session `purge()` ended: its token, and its owner for the audit
/// trail.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) token: SessionToken,
    pub(crate) owner: Option<String>,
    pub(crate) clues: Clues,
}

/// The prefix of the keys the library keeps in a session's values (flash
/// messages, the CSRF token, the last proof of identity).
pub(crate) const RESERVED_PREFIX: &str = "latchkey.";

/// Refuses application writes to the library's keys: a client that could
/// choose one (through a handler that stores form fields as they come) could
/// otherwise set its own CSRF token or proof of identity.
fn refuse_reserved(key: &str) -> Result<(), Error> {
    if key.starts_with(RESERVED_PREFIX) {
        return Err(Error::ReservedKey {
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// Checks the limits on values about to be kept. The device description the
/// library keeps with them does not count: it is bounded by its own settings.
pub(crate) fn check_limits(data: &SessionData, config: &Shared) -> Result<(), Error> {
    let exempt_keys = usize::from(crate::device::exempt(data, &config.device_metadata));
    if data.len() - exempt_keys > config.max_keys {
        return Err(Error::TooManyKeys {
            limit: config.max_keys,
        });
    }
    let size = serde_json::to_vec(data)
        .map_or(usize::MAX, |bytes| bytes.len())
        .saturating_sub(crate::device::entry_bytes(data, &config.device_metadata));
    if size > config.max_session_bytes {
        return Err(Error::TooLarge {
            size,
            limit: config.max_session_bytes,
        });
    }
    Ok(())
}

impl State {
    pub(crate) fn fresh(cookie: IncomingCookie) -> Self {
        Self {
            cookie,
            loaded: None,
            data: SessionData::new(),
            owner: None,
            original: None,
            ops: Vec::new(),
            remember: None,
            intent: Intent::Keep,
            ended: None,
            clues: Clues::default(),
            logged_in: false,
            load_took: Duration::ZERO,
            sealed: false,
        }
    }

    pub(crate) fn existing(token: SessionToken, mut record: Record, stale_key: bool) -> Self {
        // The working copy takes the values; `base` keeps version, owner and
        // deadlines, which is all the write-back needs from it.
        let data = std::mem::take(&mut record.data);
        Self {
            owner: record.owner.clone(),
            data,
            loaded: Some(Loaded {
                token,
                base: record,
                stale_key,
            }),
            ..Self::fresh(IncomingCookie::Valid)
        }
    }

    fn has_content(&self) -> bool {
        !self.data.is_empty() || self.owner.is_some() || self.remember.is_some()
    }

    /// Whether values or owner differ from what was loaded.
    fn differs(&self) -> bool {
        self.original
            .as_ref()
            .is_some_and(|(data, owner)| *data != self.data || *owner != self.owner)
    }

    fn status(&self) -> SessionStatus {
        match self.intent {
            Intent::Purge => SessionStatus::Purged,
            Intent::Renew { .. } => SessionStatus::Renewed,
            Intent::Keep if self.differs() => SessionStatus::Changed,
            Intent::Keep => SessionStatus::Unchanged,
        }
    }

    /// Applies `op` to the working copy if the result stays within the limits,
    /// and records it for replay; on error the session is left as it was.
    fn apply(&mut self, op: Op, config: &Shared) -> Result<Option<Value>, Error> {
        if self.sealed {
            tracing::warn!(
                ?op,
                "session changed after it was written back; the change is lost"
            );
            return Err(Error::WrittenBack);
        }
        let mut data = self.data.clone();
        let mut owner = self.owner.clone();
        let result = op.apply(&mut data, &mut owner)?;
        // Only a change that can grow the session is checked: one that shrinks
        // a session over a lowered limit must still go through.
        if op.can_grow() {
            check_limits(&data, config)?;
        }
        let before_data = std::mem::replace(&mut self.data, data);
        let before_owner = std::mem::replace(&mut self.owner, owner);
        self.original.get_or_insert((before_data, before_owner));
        self.ops.push(op);
        Ok(result)
    }

    /// Decides what the write-back does.
    pub(crate) fn into_outcome(self) -> Outcome {
        let has_content = self.has_content();
        let differs = self.differs();
        let change = Change {
            data: self.data,
            owner: self.owner,
            ops: self.ops,
            remember: self.remember,
            clues: self.clues,
            logged_in: self.logged_in,
        };
        match (self.intent, self.loaded) {
            (Intent::Purge, _) => Outcome::Purged {
                ended: self.ended,
                refill: has_content.then_some(change),
            },
            (_, None) if has_content => Outcome::Created(change),
            (_, None) => Outcome::Untouched {
                cookie: self.cookie,
            },
            (Intent::Renew { new_lifetime }, Some(loaded)) => Outcome::Renewed {
                loaded,
                change,
                new_lifetime,
            },
            (Intent::Keep, Some(loaded)) if differs => Outcome::Changed(loaded, change),
            (Intent::Keep, Some(loaded)) => Outcome::Unchanged(loaded),
        }
    }
}

/// The current request's session.
///
/// Taking a `Session` in a handler (or any extractor) loads it from the store;
/// a request that never takes one costs no store access and sends no cookie.
/// Reads and writes are synchronous on the loaded copy; the middleware writes
/// the changes back after the handler, replaying them on a fresh copy if another
/// request changed the session meanwhile (see the crate documentation).
///
/// `Session` is cheap to clone, and `Send + Sync`.
///
/// # Examples
///
/// ```
/// use actix_web::{web, App};
/// use latchkey::Session;
///
/// async fn visit(session: Session) -> Result<String, latchkey::Error> {
///     let visits = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)?;
///     Ok(format!("visit {visits}"))
/// }
///
/// let app = App::new().route("/", web::get().to(visit));
/// # drop(app);
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    state: Arc<Mutex<State>>,
    config: Arc<Shared>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every mutation below completes or leaves the state untouched, so a panic
    // in another holder cannot leave it half-written.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// Applies `op` to the working copy, within the limits, for the modules
    /// that build on the session's operations.
    pub(crate) fn apply(&self, op: Op) -> Result<Option<Value>, Error> {
        self.state().apply(op, &self.config)
    }

    /// Applies `edit` to the stored session at once, in one compare-and-set,
    /// rather than after the handler: for a change that must be decided by
    /// the store before the handler goes on (consuming a one-time token).
    /// `edit` returns `None` when there is nothing to do on the record it is
    /// given (the token is not there), which is then the answer; a session
    /// not stored, gone or deleted meanwhile answers `None` too. On success
    /// the request's working copy gets the same edit.
    ///
    /// The first attempt builds on the record as loaded, with none of this
    /// request's pending changes; a conflict reloads it. Only after a
    /// first-attempt success may the request's base version move to the one
    /// written, since only then is the stored record the loaded one plus
    /// `edit` (the write-back then needs no replay).
    pub(crate) async fn write_through<R>(
        &self,
        edit: impl Fn(&mut SessionData) -> Option<R>,
    ) -> Result<Option<R>, Error> {
        let (id, mut record) = {
            let state = self.state();
            if state.sealed {
                return Err(Error::WrittenBack);
            }
            let Some(loaded) = state.loaded.as_ref() else {
                return Ok(None);
            };
            let (data, owner) = state
                .original
                .clone()
                .unwrap_or_else(|| (state.data.clone(), state.owner.clone()));
            (
                loaded.token.id(),
                Record {
                    data,
                    owner,
                    ..loaded.base.clone()
                },
            )
        };
        let store = &self.config.store;
        for attempt in 0..=self.config.max_conflict_retries {
            let mut next = record.clone();
            let Some(answer) = edit(&mut next.data) else {
                return Ok(None);
            };
            // A change like any other: it extends the session as a save would.
            let now = Timestamp::now();
            let idle_timeout = crate::lifecycle::idle_timeout_of(&next, &self.config);
            next.deadlines =
                crate::lifecycle::saved_deadlines(next.deadlines, idle_timeout, &self.config, now);
            if crate::lifecycle::seen_due(&next, idle_timeout, &self.config, now) {
                next.last_seen = now;
            }
            match store.save(&id, &next, record.version).await? {
                SaveOutcome::Saved(version) => {
                    let mut state = self.state();
                    let _ = edit(&mut state.data);
                    if let Some((data, _)) = state.original.as_mut() {
                        let _ = edit(data);
                    }
                    if attempt == 0
                        && let Some(loaded) = state.loaded.as_mut()
                        && loaded.base.version == record.version
                    {
                        loaded.base.version = version;
                        loaded.base.deadlines = next.deadlines;
                        loaded.base.last_seen = next.last_seen;
                    }
                    return Ok(Some(answer));
                }
                SaveOutcome::Missing => return Ok(None),
                SaveOutcome::Conflict => {
                    store.metrics().conflict_replayed();
                    match store.load(&id).await? {
                        Some(fresh) => record = fresh,
                        None => return Ok(None),
                    }
                }
            }
        }
        Err(Error::ConflictRetriesExhausted {
            retries: self.config.max_conflict_retries,
        })
    }

    /// The middleware's configuration, for the modules that reach the store.
    pub(crate) fn config(&self) -> &Shared {
        &self.config
    }

    /// The owner as loaded, before this request's changes.
    pub(crate) fn loaded_owner(&self) -> Option<String> {
        self.state()
            .loaded
            .as_ref()
            .and_then(|loaded| loaded.base.owner.clone())
    }

    /// The request's device, as the configuration allows it to be recorded.
    pub(crate) fn request_device(&self) -> Option<Device> {
        self.config.device_metadata.describe(&self.state().clues)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The value under `key`, deserialized as `T`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Deserialize`] when the stored value is not a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> Result<String, latchkey::Error> {
    ///     let name: Option<String> = session.get("name")?;
    ///     Ok(name.unwrap_or_else(|| "stranger".into()))
    /// }
    /// # let _ = handler;
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        // Deserialize from the stored value in place rather than from a copy.
        self.state()
            .data
            .get(key)
            .map(|value| {
                T::deserialize(value).map_err(|source| Error::Deserialize {
                    key: key.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// The raw JSON value under `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> String {
    ///     format!("{:?}", session.get_value("cart"))
    /// }
    /// # let _ = handler;
    /// ```
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.state().data.get(key).cloned()
    }

    /// Whether the session holds a value under `key`, without copying or
    /// deserializing it.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> &'static str {
    ///     if session.contains_key("cart") { "shopping" } else { "browsing" }
    /// }
    /// # let _ = handler;
    /// ```
    pub fn contains_key(&self, key: &str) -> bool {
        self.state().data.contains_key(key)
    }

    /// A copy of all the session's values.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> String {
    ///     session.entries().keys().cloned().collect::<Vec<_>>().join(",")
    /// }
    /// # let _ = handler;
    /// ```
    pub fn entries(&self) -> SessionData {
        self.state().data.clone()
    }

    /// Stores `value` under `key`, replacing what was there.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`] when `value` does not serialize to JSON;
    /// [`Error::TooLarge`] or [`Error::TooManyKeys`] beyond the configured bounds;
    /// [`Error::ReservedKey`] for a key starting with `latchkey.`.
    /// On error the session is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> Result<&'static str, latchkey::Error> {
    ///     session.insert("theme", "dark")?;
    ///     Ok("saved")
    /// }
    /// # let _ = handler;
    /// ```
    pub fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<(), Error> {
        let key = key.into();
        refuse_reserved(&key)?;
        let value = serde_json::to_value(value).map_err(|source| Error::Serialize {
            key: key.clone(),
            source,
        })?;
        self.state()
            .apply(Op::Insert(key, value), &self.config)
            .map(drop)
    }

    /// Removes `key`, returning its value.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> String {
    ///     format!("{:?}", session.remove("flash"))
    /// }
    /// # let _ = handler;
    /// ```
    pub fn remove(&self, key: &str) -> Option<Value> {
        if refuse_reserved(key).is_err() {
            return None;
        }
        let op = Op::Remove(key.to_owned());
        self.state().apply(op, &self.config).ok().flatten()
    }

    /// Removes `key` and returns its value as a `T` (a flash message);
    /// `Ok(None)` when absent. A value that is not a `T` is left in place.
    ///
    /// If another request changed the session meanwhile, only the value taken
    /// is removed: a newer value another request wrote under `key` stays. Two
    /// requests that load the session at once can both take the same value,
    /// so `take` does not make a value single-use.
    ///
    /// # Errors
    ///
    /// [`Error::Deserialize`] when the stored value is not a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> Result<String, latchkey::Error> {
    ///     let notice: Option<String> = session.take("notice")?;
    ///     Ok(notice.unwrap_or_default())
    /// }
    /// # let _ = handler;
    /// ```
    pub fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        refuse_reserved(key)?;
        let mut state = self.state();
        let Some(value) = state.data.get(key) else {
            return Ok(None);
        };
        let typed = T::deserialize(value).map_err(|source| Error::Deserialize {
            key: key.to_owned(),
            source,
        })?;
        let taken = value.clone();
        state.apply(Op::Take(key.to_owned(), taken), &self.config)?;
        Ok(Some(typed))
    }

    /// Replaces the value under `key` with `f(current)`, returning the new value.
    ///
    /// Unlike a `get` followed by an `insert`, the change is kept as the function
    /// itself: if another request changed the session meanwhile, `f` is run again
    /// on the fresh value before saving, so concurrent increments all count. `f`
    /// may therefore run more than once and should have no other effects. The
    /// value returned here is the one computed in this request.
    ///
    /// # Errors
    ///
    /// [`Error::Deserialize`] when the current value is not a `T`, and the
    /// errors of [`Session::insert`].
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> Result<String, latchkey::Error> {
    ///     let n = session.update("views", |v: Option<u64>| v.unwrap_or(0) + 1)?;
    ///     Ok(format!("Number of visits: {n}"))
    /// }
    /// # let _ = handler;
    /// ```
    pub fn update<T, F>(&self, key: impl Into<String>, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(Option<T>) -> T + Send + Sync + 'static,
    {
        let key = key.into();
        refuse_reserved(&key)?;
        let op = Op::update(key.clone(), f);
        let value = self.state().apply(op, &self.config)?.unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|source| Error::Deserialize { key, source })
    }

    /// Removes every value (the owner stays; see [`Session::purge`] to end the session).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> &'static str {
    ///     session.clear();
    ///     "cleared"
    /// }
    /// # let _ = handler;
    /// ```
    pub fn clear(&self) {
        let _ = self.state().apply(Op::Clear, &self.config);
    }

    /// Gives the session a new token, keeping its values, owner, creation time
    /// and absolute deadline, and deletes the old token's session. The
    /// [CSRF token](Self::csrf_token) is replaced too. Call it
    /// whenever privileges change, so a token planted before (session fixation)
    /// is worthless; on login, [`login`](Self::login) also starts a new lifetime.
    ///
    /// The old session is retired only at the version this request loaded: if
    /// another request changed it meanwhile, this request's changes are
    /// replayed on top; if it was deleted meanwhile (logged out elsewhere),
    /// nothing is written and no new cookie is sent.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn login(session: latchkey::Session) -> Result<&'static str, latchkey::Error> {
    ///     session.renew();
    ///     session.set_owner("user-42");
    ///     session.insert("user_id", 42)?;
    ///     Ok("welcome")
    /// }
    /// # let _ = login;
    /// ```
    pub fn renew(&self) {
        {
            let mut state = self.state();
            if state.intent == Intent::Keep {
                state.intent = Intent::Renew {
                    new_lifetime: false,
                };
            }
        }
        self.rotate_csrf();
    }

    /// Logs `owner` in: [`renew`](Self::renew)s the session, sets its
    /// [owner](Self::set_owner), and starts its lifetime over, so the absolute
    /// deadline runs from now. It also records the moment as the last proof of
    /// identity ([`authenticated_at`](Self::authenticated_at)) and, like every
    /// renewal, replaces the [CSRF token](Self::csrf_token).
    ///
    /// `renew()` alone keeps the session's creation time and absolute deadline:
    /// renewing periodically never extends a stolen cookie's life. Proving the
    /// user's identity again (a password, a second factor) is what may start a
    /// new lifetime, and `login` is that explicit choice.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn login(session: latchkey::Session) -> &'static str {
    ///     // ... after checking the password of ann@example.com:
    ///     session.login("ann@example.com");
    ///     "welcome"
    /// }
    /// # let _ = login;
    /// ```
    pub fn login(&self, owner: impl Into<String>) {
        {
            let mut state = self.state();
            if state.intent != Intent::Purge && state.loaded.is_some() {
                state.intent = Intent::Renew { new_lifetime: true };
            }
            let op = Op::SetOwner(Some(owner.into()));
            if state.apply(op, &self.config).is_ok() {
                state.logged_in = true;
            }
        }
        self.rotate_csrf();
        let _ = self.confirm_identity();
    }

    /// Keeps the session across browser restarts ("remember me"): it gets a
    /// persistent cookie and expires after `idle_timeout` without use instead
    /// of the middleware's idle timeout, its idle deadline running from now.
    /// The session is [renewed](Self::renew) to carry the change (unless it is
    /// remembered for this timeout already); the absolute
    /// [lifetime](crate::SessionMiddlewareBuilder::lifetime) still caps it.
    ///
    /// A session stays remembered through saves and renewals. A
    /// [`login`](Self::login) starts it over: call `remember` in the same
    /// request for the new session to be remembered too.
    ///
    /// # Errors
    ///
    /// [`Error::RememberOutOfBounds`] when `idle_timeout` is under a
    /// millisecond or longer than the configured
    /// [bound](crate::SessionMiddlewareBuilder::max_remembered_idle_timeout);
    /// [`Error::WrittenBack`] after the write-back.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// async fn login(session: latchkey::Session) -> Result<&'static str, latchkey::Error> {
    ///     // ... after checking the password, with "remember me" ticked (the
    ///     // bound is the lifetime by default, 7 days unless set):
    ///     session.login("ann@example.com");
    ///     session.remember(Duration::from_secs(7 * 24 * 3600))?;
    ///     Ok("welcome")
    /// }
    /// # let _ = login;
    /// ```
    pub fn remember(&self, idle_timeout: Duration) -> Result<(), Error> {
        let max = self.config.max_remembered_idle_timeout;
        // Stores keep deadlines to the millisecond.
        if idle_timeout < Duration::from_millis(1) || idle_timeout > max {
            return Err(Error::RememberOutOfBounds {
                requested: idle_timeout,
                max,
            });
        }
        let mut state = self.state();
        if state.sealed {
            return Err(Error::WrittenBack);
        }
        let already = state
            .loaded
            .as_ref()
            .is_some_and(|loaded| loaded.base.idle_timeout == Some(idle_timeout));
        if already && state.intent == Intent::Keep {
            // Nothing to change: no new token on every request that asks again.
            return Ok(());
        }
        state.remember = Some(idle_timeout);
        let renews = state.intent == Intent::Keep && state.loaded.is_some();
        if renews {
            state.intent = Intent::Renew {
                new_lifetime: false,
            };
        }
        drop(state);
        if renews {
            self.rotate_csrf();
        }
        Ok(())
    }

    /// The session's own idle timeout when it is remembered (see
    /// [`remember`](Self::remember)), including one asked for in this request.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn settings(session: latchkey::Session) -> String {
    ///     match session.remembered() {
    ///         Some(idle) => format!("signed in on this device for {} days of inactivity", idle.as_secs() / 86_400),
    ///         None => "signed in until the browser closes".into(),
    ///     }
    /// }
    /// # let _ = settings;
    /// ```
    pub fn remembered(&self) -> Option<Duration> {
        let state = self.state();
        let login = matches!(state.intent, Intent::Renew { new_lifetime: true });
        state.remember.or_else(|| {
            state
                .loaded
                .as_ref()
                .filter(|_| !login)
                .and_then(|loaded| loaded.base.idle_timeout)
        })
    }

    /// Ends the session: deletes it from the store and tells the browser to drop
    /// the cookie. Values inserted afterwards start a brand-new session.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn logout(session: latchkey::Session) -> &'static str {
    ///     session.purge();
    ///     "bye"
    /// }
    /// # let _ = logout;
    /// ```
    pub fn purge(&self) {
        let mut state = self.state();
        let clues = state.clues.clone();
        let ended = state.loaded.take().map(|loaded| Ended {
            token: loaded.token,
            owner: loaded.base.owner,
            clues,
        });
        *state = State {
            ended: ended.or(state.ended.take()),
            intent: Intent::Purge,
            load_took: state.load_took,
            clues: std::mem::take(&mut state.clues),
            ..State::fresh(state.cookie)
        };
    }

    /// Records which user the session belongs to, for
    /// [`list_by_owner`](latchkey_core::SessionStore::list_by_owner) ("your
    /// devices") and [`delete_by_owner`](latchkey_core::SessionStore::delete_by_owner)
    /// ("log out everywhere").
    ///
    /// # Examples
    ///
    /// ```
    /// async fn login(session: latchkey::Session) -> &'static str {
    ///     session.renew();
    ///     session.set_owner("ann@example.com");
    ///     "ok"
    /// }
    /// # let _ = login;
    /// ```
    pub fn set_owner(&self, owner: impl Into<String>) {
        let _ = self
            .state()
            .apply(Op::SetOwner(Some(owner.into())), &self.config);
    }

    /// Removes the owner, taking the session out of the owner index.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) {
    ///     session.clear_owner();
    ///     assert_eq!(session.owner(), None);
    /// }
    /// # let _ = handler;
    /// ```
    pub fn clear_owner(&self) {
        let _ = self.state().apply(Op::SetOwner(None), &self.config);
    }

    /// The user the session belongs to, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn whoami(session: latchkey::Session) -> String {
    ///     session.owner().unwrap_or_else(|| "nobody".into())
    /// }
    /// # let _ = whoami;
    /// ```
    pub fn owner(&self) -> Option<String> {
        self.state().owner.clone()
    }

    /// What this request has done to the session so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey::SessionStatus;
    ///
    /// async fn handler(session: latchkey::Session) {
    ///     assert_eq!(session.status(), SessionStatus::Unchanged);
    ///     session.purge();
    ///     assert_eq!(session.status(), SessionStatus::Purged);
    /// }
    /// # let _ = handler;
    /// ```
    pub fn status(&self) -> SessionStatus {
        self.state().status()
    }

    /// Whether no session was stored for this request before it began.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn greet(session: latchkey::Session) -> &'static str {
    ///     if session.is_new() { "Welcome!" } else { "Welcome back!" }
    /// }
    /// # let _ = greet;
    /// ```
    pub fn is_new(&self) -> bool {
        self.state().loaded.is_none()
    }

    /// The store id (the token's SHA-256) of the stored session this request
    /// loaded, to recognise it in [`list_by_owner`](latchkey_core::SessionStore::list_by_owner).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> String {
    ///     session.id().map(|id| id.to_string()).unwrap_or_default()
    /// }
    /// # let _ = handler;
    /// ```
    pub fn id(&self) -> Option<SessionId> {
        self.state().loaded.as_ref().map(|loaded| loaded.token.id())
    }

    /// When the stored session was created; `None` for a new one.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn handler(session: latchkey::Session) -> String {
    ///     format!("{:?}", session.created_at())
    /// }
    /// # let _ = handler;
    /// ```
    pub fn created_at(&self) -> Option<Timestamp> {
        self.state()
            .loaded
            .as_ref()
            .map(|loaded| loaded.base.created_at)
    }

    /// How long until the stored session expires, as loaded, if nothing moves
    /// its idle deadline; `None` for a session not stored yet. Reading it
    /// changes nothing and writes nothing, so a "you will be logged out in…"
    /// display does not itself keep the session alive.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn remaining(session: latchkey::Session) -> String {
    ///     match session.expires_in() {
    ///         Some(left) => format!("{} seconds left", left.as_secs()),
    ///         None => "no session".into(),
    ///     }
    /// }
    /// # let _ = remaining;
    /// ```
    pub fn expires_in(&self) -> Option<Duration> {
        self.state().loaded.as_ref().map(|loaded| {
            loaded
                .base
                .deadlines
                .expires_at()
                .saturating_since(Timestamp::now())
        })
    }
}

impl SessionSlot {
    pub(crate) fn new(config: Arc<Shared>) -> Self {
        Self {
            config,
            loaded: OnceCell::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Loads the session named by the request's cookie, once per request.
    pub(crate) async fn session(&self, req: &HttpRequest) -> Result<Session, Error> {
        if self.is_closed() {
            return Err(Error::WrittenBack);
        }
        let state = self
            .loaded
            .get_or_try_init(|| async {
                let incoming = match req.cookies() {
                    Ok(cookies) => self.config.codec.read(cookies.iter()),
                    Err(_) => Incoming::Invalid,
                };
                let clues = self.config.device_metadata.clues(req);
                crate::lifecycle::load(incoming, clues, &self.config)
                    .await
                    .map(|state| Arc::new(Mutex::new(state)))
            })
            .await?;
        Ok(Session {
            state: Arc::clone(state),
            config: Arc::clone(&self.config),
        })
    }

    /// Refuses every later `session()`: the write-back is about to run.
    pub(crate) fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The session, if something loaded it already during the request.
    pub(crate) fn loaded_session(&self) -> Option<Session> {
        self.loaded.get().map(|state| Session {
            state: Arc::clone(state),
            config: Arc::clone(&self.config),
        })
    }

    /// The state, if any extractor loaded it during the request.
    pub(crate) fn take_loaded(&self) -> Option<State> {
        self.close();
        let shared = self.loaded.get()?;
        let mut state = lock(shared);
        let mut written_back = State::fresh(state.cookie);
        written_back.sealed = true;
        Some(std::mem::replace(&mut *state, written_back))
    }
}

impl FromRequest for Session {
    type Error = Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let slot = req.extensions().get::<Arc<SessionSlot>>().cloned();
        let req = req.clone();
        Box::pin(async move {
            let slot = slot.ok_or(Error::MissingMiddleware)?;
            slot.session(&req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn session_is_send_and_sync() {
        assert_send_sync::<Session>();
    }
}
