//! Any latchkey store as an `actix_session` store (feature `actix-session`).
//!
//! An application that keeps actix-session's middleware and `Session` API can
//! swap only its store:
//!
//! ```no_run
//! use actix_web::{App, cookie::Key};
//! use latchkey::bridge::ActixSessionStore;
//! use latchkey::memory::MemoryStore;
//!
//! let store = ActixSessionStore::new(MemoryStore::new());
//! let app = App::new().wrap(actix_session::SessionMiddleware::new(store, Key::generate()));
//! # drop(app);
//! ```
//!
//! What carries over: tokens hashed at rest, typed JSON values in the store, the
//! owner-free parts of every backend (memory, Redis, PostgreSQL, or your own).
//!
//! What the bridge cannot give, because actix-session's middleware drives it:
//! lazy loading (actix-session loads the session on every request that carries
//! a cookie), conflict replay (actix-session sends the whole state, so the last
//! writer wins, as with its own stores), separate idle and absolute timeouts
//! (actix-session has one TTL, used for both), and the owner index (the
//! actix-session API has no owner). Use latchkey's own middleware for those.
//!
//! A session that is gone when actix-session writes it back (logged out by a
//! concurrent request, deleted, expired) is not recreated from the request's
//! copy: the write is dropped, and the next request starts a new session.
//! actix-session's own stores would recreate it, undoing the logout.
//!
//! An update costs one store round trip: the bridge remembers the latest record
//! a load or update of the session returned and writes with compare-and-set on
//! its version, loading again only after a conflict (then the last writer wins,
//! as with actix-session's own stores).

use std::collections::HashMap;
use std::time::Duration;

use actix_session::storage::{
    LoadError, SaveError, SessionKey, SessionStore as ActixStore, UpdateError,
};
use actix_web::cookie::time::Duration as CookieDuration;
use latchkey_core::{
    AnyStore, Deadlines, Record, SaveOutcome, SessionData, SessionId, SessionStore, SessionToken,
    StoreError, Timestamp,
};
use serde_json::Value;

/// How often `update` retries when another request changed the session between
/// its load and its save.
const UPDATE_ATTEMPTS: usize = 8;

/// A latchkey store serving as an [`actix_session::storage::SessionStore`].
///
/// The session key actix-session puts in its cookie is a latchkey token; the
/// store sees only its SHA-256, as with latchkey's own middleware.
///
/// # Examples
///
/// ```
/// use latchkey::bridge::ActixSessionStore;
/// use latchkey::memory::MemoryStore;
///
/// let store = ActixSessionStore::new(MemoryStore::new());
/// # drop(store);
/// ```
#[derive(Clone)]
pub struct ActixSessionStore {
    store: AnyStore,
    /// The record each recent load saw (without its values), so that `update`
    /// can compare-and-set without loading again.
    loaded: std::sync::Arc<quick_cache::sync::Cache<SessionId, Record>>,
}

impl std::fmt::Debug for ActixSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActixSessionStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// How many loaded records the bridge remembers for one-round-trip updates; past
/// it, an update of a forgotten session loads it first.
const REMEMBERED_LOADS: usize = 100_000;

impl ActixSessionStore {
    /// Wraps any latchkey store.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey::AnyStore;
    /// use latchkey::bridge::ActixSessionStore;
    ///
    /// let chosen = AnyStore::new(latchkey::memory::MemoryStore::new());
    /// let store = ActixSessionStore::new(chosen);
    /// # drop(store);
    /// ```
    pub fn new<S: SessionStore>(store: S) -> Self {
        Self {
            store: AnyStore::new(store),
            loaded: std::sync::Arc::new(quick_cache::sync::Cache::new(REMEMBERED_LOADS)),
        }
    }
}

fn ttl_deadlines(now: Timestamp, ttl: &CookieDuration) -> Deadlines {
    let ttl = Duration::from_secs(u64::try_from(ttl.whole_seconds()).unwrap_or(0));
    Deadlines::starting_at(now, ttl, ttl)
}

/// actix-session's state holds each value as a JSON string; latchkey stores typed JSON.
fn to_data(state: HashMap<String, String>) -> Result<SessionData, serde_json::Error> {
    state
        .into_iter()
        .map(|(key, json)| Ok((key, serde_json::from_str::<Value>(&json)?)))
        .collect()
}

fn to_state(data: SessionData) -> HashMap<String, String> {
    data.into_iter()
        .map(|(key, value)| (key, value.to_string()))
        .collect()
}

fn token_of(key: &SessionKey) -> Option<SessionToken> {
    SessionToken::decode(key.as_ref()).ok()
}

fn other(err: StoreError) -> anyhow::Error {
    anyhow::Error::new(err)
}

impl ActixSessionStore {
    async fn create(
        &self,
        data: SessionData,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, StoreError> {
        let now = Timestamp::now();
        let mut record = Record::new(now, ttl_deadlines(now, ttl));
        record.data = data;
        let token = crate::lifecycle::create_with_fresh_token(&self.store, &record).await?;
        SessionKey::try_from(token.encode()).map_err(StoreError::encode)
    }
}

impl ActixStore for ActixSessionStore {
    async fn load(
        &self,
        session_key: &SessionKey,
    ) -> Result<Option<HashMap<String, String>>, LoadError> {
        let Some(token) = token_of(session_key) else {
            // Not a key this store issued: no lookup, as with latchkey's middleware.
            return Ok(None);
        };
        let id = token.id();
        let record = self
            .store
            .load(&id)
            .await
            .map_err(|e| LoadError::Other(other(e)))?;
        Ok(record.map(|mut record| {
            let data = std::mem::take(&mut record.data);
            self.loaded.insert(id, record);
            to_state(data)
        }))
    }

    async fn save(
        &self,
        session_state: HashMap<String, String>,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        let data =
            to_data(session_state).map_err(|e| SaveError::Serialization(anyhow::Error::new(e)))?;
        self.create(data, ttl)
            .await
            .map_err(|e| SaveError::Other(other(e)))
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: HashMap<String, String>,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let data = to_data(session_state)
            .map_err(|e| UpdateError::Serialization(anyhow::Error::new(e)))?;
        let Some(token) = token_of(&session_key) else {
            return self
                .create(data, ttl)
                .await
                .map_err(|e| UpdateError::Other(other(e)));
        };
        let id = token.id();
        let mut known = self.loaded.get(&id);
        for _ in 0..UPDATE_ATTEMPTS {
            let current = match known.take() {
                Some(current) => current,
                None => match self
                    .store
                    .load(&id)
                    .await
                    .map_err(|e| UpdateError::Other(other(e)))?
                {
                    Some(current) => current,
                    None => return Ok(self.dropped(session_key, &id)),
                },
            };
            let now = Timestamp::now();
            let mut record = current.clone();
            record.data = data.clone();
            record.deadlines = ttl_deadlines(now, ttl);
            record.last_seen = now;
            match self.store.save(&id, &record, current.version).await {
                Ok(SaveOutcome::Saved(version)) => {
                    record.data = SessionData::new();
                    record.version = version;
                    self.loaded.insert(id, record);
                    return Ok(session_key);
                }
                // Changed since it was loaded: actix-session sends the whole
                // state, so the last writer wins, as with its own stores.
                Ok(SaveOutcome::Conflict) => continue,
                Ok(SaveOutcome::Missing) => return Ok(self.dropped(session_key, &id)),
                Err(err) => {
                    self.loaded.remove(&id);
                    return Err(UpdateError::Other(other(err)));
                }
            }
        }
        Err(UpdateError::Other(anyhow::anyhow!(
            "session changed concurrently {UPDATE_ATTEMPTS} times; update not saved"
        )))
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        if let Some(token) = token_of(session_key) {
            let now = Timestamp::now();
            self.store
                .touch(&token.id(), ttl_deadlines(now, ttl), now)
                .await
                .map_err(other)?;
        }
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        if let Some(token) = token_of(session_key) {
            self.loaded.remove(&token.id());
            self.store.delete(&token.id()).await.map_err(other)?;
        }
        Ok(())
    }
}

impl ActixSessionStore {
    /// The answer to an update of a session that is gone: nothing written, the
    /// key handed back; the next request finds no session and starts anew.
    fn dropped(&self, session_key: SessionKey, id: &SessionId) -> SessionKey {
        self.loaded.remove(id);
        tracing::debug!(session = %id, "session gone before actix-session wrote it back; change dropped");
        session_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_strings_become_typed_values_and_back() {
        let state = HashMap::from([
            ("n".to_owned(), "3".to_owned()),
            ("name".to_owned(), "\"ann\"".to_owned()),
            ("obj".to_owned(), r#"{"a":[1,2]}"#.to_owned()),
        ]);
        let data = to_data(state.clone()).unwrap();
        assert_eq!(data["n"], serde_json::json!(3));
        assert_eq!(data["name"], serde_json::json!("ann"));
        assert_eq!(to_state(data), state);
        assert!(to_data(HashMap::from([("bad".to_owned(), "{".to_owned())])).is_err());
    }
}
