//! Writing a request's session back to the store after the handler.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

use latchkey_core::{
    Deadlines, Record, SaveOutcome, SessionStore as _, SessionToken, StoreError, Timestamp,
};

use crate::config::Config;
use crate::error::Error;
use crate::metrics::ObservedStore;
use crate::ops::replay;
use crate::session::State;

/// How many fresh tokens to try when `create` reports a collision. With 256-bit
/// tokens a single collision is already astronomically unlikely.
const CREATE_ATTEMPTS: u32 = 3;

/// What the response's cookie should do.
#[derive(Debug)]
pub(crate) enum CookieAction {
    /// Leave the client's cookie as it is.
    Keep,
    /// Send this token, expiring with these deadlines.
    Set(SessionToken, Deadlines),
    /// Tell the client to drop the cookie.
    Remove,
}

/// Writes `state` back, following the request lifecycle of the crate docs, and
/// says what to do with the cookie.
pub(crate) async fn persist(
    state: State,
    config: &Config,
    now: Timestamp,
) -> Result<CookieAction, Error> {
    let store = &config.store;
    let needs_new_token = state.token.is_none() || state.renewed;
    if needs_new_token {
        let has_content = !state.data.is_empty() || state.owner.is_some();
        let action = if has_content {
            let mut record = Record::new(
                now,
                Deadlines::starting_at(now, config.idle_timeout, config.lifetime),
            );
            record.data = state.data;
            record.owner = state.owner;
            let token = create(store, &record).await?;
            store.metrics().session_created();
            tracing::debug!(session = %token.id(), "session created");
            CookieAction::Set(token, record.deadlines)
        } else if state.had_cookie || state.retire.is_some() || state.token.is_some() {
            CookieAction::Remove
        } else {
            CookieAction::Keep
        };
        let replaced = if state.renewed { state.token } else { None };
        for old in state.retire.into_iter().chain(replaced) {
            store.delete(&old.id()).await?;
            store.metrics().session_destroyed();
            tracing::debug!(session = %old.id(), "session deleted");
        }
        return Ok(action);
    }

    let (Some(token), Some(base)) = (state.token, state.base) else {
        return Ok(CookieAction::Keep);
    };
    let id = token.id();

    if state.ops.is_empty() {
        let reissue = |deadlines| {
            if state.stale_key {
                CookieAction::Set(token.clone(), deadlines)
            } else {
                CookieAction::Keep
            }
        };
        if !extension_due(&base.deadlines, config, now) {
            return Ok(reissue(base.deadlines));
        }
        let deadlines = base.deadlines.extended(now, config.idle_timeout);
        if !store.touch(&id, deadlines).await? {
            return Ok(CookieAction::Remove);
        }
        return Ok(match config.cookie_lifetime {
            crate::CookieLifetime::Persistent => CookieAction::Set(token.clone(), deadlines),
            _ => reissue(deadlines),
        });
    }

    let mut turn = config.write_gate.enter(id).await;
    let mut current = base;
    let (mut data, mut owner) = (state.data, state.owner);
    if let Some(latest) = turn
        .latest()
        .filter(|latest| latest.version > current.version)
    {
        // Another request of this process saved after we loaded: build on its
        // record rather than on our stale copy.
        (data, owner) = replay(&state.ops, latest.data.clone(), latest.owner.clone())?;
        current = latest.clone();
    }
    for attempt in 0..=config.max_conflict_retries {
        let mut record = current.clone();
        record.data = data;
        record.owner = owner;
        // Like reads, writes move the idle deadline only once it is due: that
        // leaves the indexed expiry column alone on most saves.
        if extension_due(&current.deadlines, config, now) {
            record.deadlines = current.deadlines.extended(now, config.idle_timeout);
        }
        match store.save(&id, &record, current.version).await? {
            SaveOutcome::Saved(version) => {
                let deadlines = record.deadlines;
                record.version = version;
                turn.saved(record);
                let refresh =
                    state.stale_key || config.cookie_lifetime == crate::CookieLifetime::Persistent;
                return Ok(if refresh {
                    CookieAction::Set(token, deadlines)
                } else {
                    CookieAction::Keep
                });
            }
            SaveOutcome::Missing => {
                tracing::debug!(session = %id, "session deleted during the request; change dropped");
                return Ok(CookieAction::Remove);
            }
            SaveOutcome::Conflict => {
                tracing::debug!(session = %id, attempt, "compare-and-set conflict; replaying");
                store.metrics().conflict_replayed();
                // The first conflict usually means our copy was loaded before a
                // save we could not know of: reload at once. Repeated ones mean
                // other processes are writing too: spread out.
                if attempt > 0 && attempt < config.max_conflict_retries {
                    actix_web::rt::time::sleep(backoff(attempt)).await;
                }
                let Some(mut fresh) = store.load(&id).await? else {
                    return Ok(CookieAction::Remove);
                };
                (data, owner) = replay(
                    &state.ops,
                    std::mem::take(&mut fresh.data),
                    fresh.owner.clone(),
                )?;
                current = fresh;
            }
        }
    }
    store.metrics().conflict_given_up();
    tracing::warn!(session = %id, retries = config.max_conflict_retries, "gave up replaying a session change");
    Err(Error::ConflictRetriesExhausted {
        retries: config.max_conflict_retries,
    })
}

/// Whether a request that changed nothing should move the idle deadline: when
/// at least the extension interval has passed since it was last moved, and the
/// absolute deadline leaves room to move it.
fn extension_due(deadlines: &Deadlines, config: &Config, now: Timestamp) -> bool {
    let extended = deadlines.extended(now, config.idle_timeout);
    extended.idle.saturating_since(deadlines.idle) >= config.extension_interval
}

async fn create(store: &ObservedStore, record: &Record) -> Result<SessionToken, Error> {
    let mut attempts = 0;
    loop {
        let token =
            SessionToken::generate().map_err(|e| StoreError::backend("token generator", e))?;
        match store.create(&token.id(), record).await {
            Ok(()) => return Ok(token),
            Err(StoreError::IdCollision) if attempts + 1 < CREATE_ATTEMPTS => attempts += 1,
            Err(err) => return Err(err.into()),
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

    #[test]
    fn backoff_stays_under_its_ceiling() {
        for attempt in 0..20 {
            assert!(backoff(attempt) < Duration::from_micros(200 << attempt.min(6)));
        }
    }
}
