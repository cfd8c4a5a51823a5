//! "Your devices": the signed-in user's sessions, and revoking them safely.
//!
//! Every operation here works on the sessions of the current session's owner
//! only: an id taken from a form is checked against that owner in the store,
//! so a user can never list or end someone else's session by naming it.

use latchkey_core::{DeleteOutcome, SessionId, SessionStore as _, Timestamp};

use crate::audit::{AuditEvent, AuditKind};
use crate::device::Device;
use crate::error::Error;
use crate::session::Session;

/// One of the owner's live sessions, for a "your devices" page.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceSession {
    /// The session's id: the hash the store keys by, safe to show and to post
    /// back to [`Session::revoke`] (it cannot be turned into a cookie).
    pub id: SessionId,
    /// When it was created (or last logged in).
    pub created_at: Timestamp,
    /// When it was last used, to one extension interval.
    pub last_seen: Timestamp,
    /// What it recorded about its device.
    pub device: Option<Device>,
    /// Whether it is the session of the current request.
    pub current: bool,
    /// Whether it is remembered ("remember me").
    pub remembered: bool,
}

impl Session {
    /// The live sessions of this session's owner, the most recently seen
    /// first; empty when the session has no owner.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn devices(session: latchkey::Session) -> Result<String, latchkey::Error> {
    ///     let mut page = String::new();
    ///     for device in session.devices().await? {
    ///         let agent = device.device.and_then(|d| d.user_agent).unwrap_or_default();
    ///         page += &format!("{agent} {}\n", if device.current { "(this one)" } else { "" });
    ///     }
    ///     Ok(page)
    /// }
    /// # let _ = devices;
    /// ```
    pub async fn devices(&self) -> Result<Vec<DeviceSession>, Error> {
        let Some(owner) = self.owner() else {
            return Ok(Vec::new());
        };
        let current = self.id();
        let now = Timestamp::now();
        let mut sessions: Vec<DeviceSession> = self
            .config()
            .store
            .list_by_owner(&owner)
            .await?
            .into_iter()
            .filter(|(_, record)| !record.is_expired_at(now))
            .map(|(id, record)| DeviceSession {
                id,
                created_at: record.created_at,
                last_seen: record.last_seen,
                device: Device::of(&record),
                current: Some(id) == current,
                remembered: record.idle_timeout.is_some(),
            })
            .collect();
        sessions.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        Ok(sessions)
    }

    /// Ends the session `id` if, and only if, it belongs to this session's
    /// owner: `true` when it was deleted, `false` when there is no such
    /// session of the owner's (never was, already gone, someone else's, or
    /// this session has no owner). The check and the delete are one
    /// compare-and-delete: a session whose owner changes in between is not
    /// deleted.
    ///
    /// The current session must itself still be stored for its owner (or
    /// have been given it by this request's login) when the call starts: one
    /// revoked or logged out elsewhere since this request loaded it (a stolen
    /// cookie the user just signed out) ends nothing. The check is a load
    /// (through a `CachedStore`, as fresh as its staleness
    /// bound), so a sign-out landing between it and the delete is not seen. An id stays valid until
    /// its session gets a new one ([`renew`](Self::renew),
    /// [`login`](Self::login)): list the devices again after `false`.
    /// Revoking the current session's own id ends it like
    /// [`purge`](Self::purge), but keeps the cookie: prefer `purge` for that.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails;
    /// [`Error::ConflictRetriesExhausted`] when the session kept changing.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn revoke(session: latchkey::Session, posted: String) -> Result<&'static str, latchkey::Error> {
    ///     let Some(id) = latchkey::SessionId::from_hex(&posted) else {
    ///         return Ok("no such device");
    ///     };
    ///     Ok(if session.revoke(&id).await? { "signed out" } else { "no such device" })
    /// }
    /// # let _ = revoke;
    /// ```
    pub async fn revoke(&self, id: &SessionId) -> Result<bool, Error> {
        let Some(owner) = self.still_signed_in().await? else {
            return Ok(false);
        };
        let config = self.config();
        for _ in 0..=config.max_conflict_retries {
            let Some(record) = config.store.load(id).await? else {
                return Ok(false);
            };
            // Told apart from "absent" by nobody: an id of someone else's
            // answers exactly like an unknown one.
            if record.owner.as_deref() != Some(owner.as_str()) {
                return Ok(false);
            }
            match config.store.delete_at_version(id, record.version).await? {
                DeleteOutcome::Deleted => {
                    config.store.metrics().session_destroyed();
                    config.audit.emit(
                        AuditEvent::new(AuditKind::RevokedOne)
                            .owner(Some(&owner))
                            .session(*id)
                            .device(self.request_device().as_ref()),
                    );
                    return Ok(true);
                }
                DeleteOutcome::Missing => return Ok(false),
                // Changed since the load (perhaps its owner): look again.
                DeleteOutcome::Conflict => {}
            }
        }
        Err(Error::ConflictRetriesExhausted {
            retries: config.max_conflict_retries,
        })
    }

    /// Ends every other session of this session's owner ("log out everywhere
    /// else"), returning how many went; `0` when the session has no owner, or
    /// is no longer stored for it (revoked or logged out elsewhere since this
    /// request loaded it).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn everywhere_else(session: latchkey::Session) -> Result<String, latchkey::Error> {
    ///     Ok(format!("{} other devices signed out", session.revoke_others().await?))
    /// }
    /// # let _ = everywhere_else;
    /// ```
    pub async fn revoke_others(&self) -> Result<u64, Error> {
        let Some(owner) = self.still_signed_in().await? else {
            return Ok(0);
        };
        let config = self.config();
        let count = config
            .store
            .delete_by_owner(&owner, self.id().as_ref())
            .await?;
        config.audit.emit(
            AuditEvent::new(AuditKind::RevokedOthers)
                .owner(Some(&owner))
                .device(self.request_device().as_ref())
                .count(count),
        );
        Ok(count)
    }

    /// The owner, when the current session is still stored for that owner, or
    /// was given that owner by this request (a login, checked by the
    /// application just now): the check a request loaded before a
    /// revocation cannot pass.
    async fn still_signed_in(&self) -> Result<Option<String>, Error> {
        let Some(owner) = self.owner() else {
            return Ok(None);
        };
        let signed_in_here = self.loaded_owner().as_ref() != Some(&owner);
        let Some(id) = self.id() else {
            // Not stored yet: its owner can only come from this request.
            return Ok(Some(owner));
        };
        let stored = self.config().store.load(&id).await?;
        Ok(stored
            .filter(|record| signed_in_here || record.owner.as_deref() == Some(owner.as_str()))
            .map(|_| owner))
    }
}
