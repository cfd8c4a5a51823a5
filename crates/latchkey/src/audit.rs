//! Security-relevant moments in a session's life, for an audit trail.
//!
//! Every event goes out as a `tracing` event (target `latchkey::audit`, level
//! `INFO`, `WARN` for a failed verification) and, when the application
//! configured one, to its [`AuditSink`]. Events name sessions by
//! [`SessionId`] (the hash the store keys by), never by token.

use std::sync::Arc;

use latchkey_core::{SessionId, Timestamp};

use crate::device::Device;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// [`Session::login`](crate::Session::login) stored a session for its
    /// owner under a new token.
    Login,
    /// [`Session::purge`](crate::Session::purge) deleted a stored session.
    Logout,
    /// [`Session::revoke`](crate::Session::revoke) deleted one of the owner's
    /// other sessions.
    RevokedOne,
    /// [`Session::revoke_others`](crate::Session::revoke_others) deleted the
    /// owner's other sessions; the event's `count` says how many.
    RevokedOthers,
    /// A verified cookie named a session that is no longer stored: it expired,
    /// or was revoked or logged out elsewhere.
    SessionGone,
    /// A cookie signed with a previous key was accepted and signed again with
    /// the current one.
    CookieResigned,
    /// A cookie of ours failed verification: forged, tampered with, malformed,
    /// or signed with a key no longer configured.
    VerificationFailed,
}

impl AuditKind {
    /// A stable name for logs and tables, e.g. `"login"`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(latchkey::AuditKind::RevokedOthers.as_str(), "revoked_others");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Login => "login",
            AuditKind::Logout => "logout",
            AuditKind::RevokedOne => "revoked_one",
            AuditKind::RevokedOthers => "revoked_others",
            AuditKind::SessionGone => "session_gone",
            AuditKind::CookieResigned => "cookie_resigned",
            AuditKind::VerificationFailed => "verification_failed",
        }
    }
}

/// One audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// When.
    pub at: Timestamp,
    /// The user concerned, when known.
    pub owner: Option<String>,
    /// The session concerned, when there is one: the new session of a login,
    /// the deleted one of a logout or a revocation.
    pub session: Option<SessionId>,
    /// The device of the request, as [`DeviceMetadata`](crate::DeviceMetadata)
    /// allows it to be recorded.
    pub device: Option<Device>,
    /// How many sessions [`AuditKind::RevokedOthers`] deleted.
    pub count: Option<u64>,
}

impl AuditEvent {
    pub(crate) fn new(kind: AuditKind) -> Self {
        Self {
            kind,
            at: Timestamp::now(),
            owner: None,
            session: None,
            device: None,
            count: None,
        }
    }

    pub(crate) fn owner(mut self, owner: Option<&str>) -> Self {
        self.owner = owner.map(str::to_owned);
        self
    }

    pub(crate) fn session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }

    pub(crate) fn device(mut self, device: Option<&Device>) -> Self {
        self.device = device.cloned();
        self
    }

    pub(crate) fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }
}

/// Where the application wants audit events: a table, a log, a queue.
///
/// `record` runs on the request's task, after the store call it reports
/// succeeded: keep it quick (hand the event to a channel for slow work). Any
/// `Fn(&AuditEvent)` closure is a sink.
///
/// # Examples
///
/// ```
/// use actix_web::cookie::Key;
/// use latchkey::{AuditEvent, SessionMiddleware, memory::MemoryStore};
///
/// let (events, received) = std::sync::mpsc::channel::<AuditEvent>();
/// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
///     .audit(move |event: &AuditEvent| {
///         let _ = events.send(event.clone());
///     })
///     .build()?;
/// # drop((sessions, received));
/// # Ok::<(), latchkey::ConfigError>(())
/// ```
pub trait AuditSink: Send + Sync + 'static {
    /// Takes one event.
    fn record(&self, event: &AuditEvent);
}

impl<F: Fn(&AuditEvent) + Send + Sync + 'static> AuditSink for F {
    fn record(&self, event: &AuditEvent) {
        self(event);
    }
}

/// The configured sink, if any, behind the tracing events every event makes.
#[derive(Clone, Default)]
pub(crate) struct Audit(Option<Arc<dyn AuditSink>>);

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Audit(sink)"
        } else {
            "Audit(tracing)"
        })
    }
}

impl Audit {
    pub(crate) fn new(sink: Option<Arc<dyn AuditSink>>) -> Self {
        Self(sink)
    }

    /// Sends `event` to tracing and to the sink.
    pub(crate) fn emit(&self, event: AuditEvent) {
        let session = event.session.map(|id| id.to_string());
        let ip = event.device.as_ref().and_then(|d| d.ip.as_deref());
        if event.kind == AuditKind::VerificationFailed {
            tracing::warn!(target: "latchkey::audit", kind = event.kind.as_str(), ip, "session audit");
        } else {
            tracing::info!(
                target: "latchkey::audit",
                kind = event.kind.as_str(),
                owner = event.owner.as_deref(),
                session = session.as_deref(),
                ip,
                count = event.count,
                "session audit"
            );
        }
        if let Some(sink) = &self.0 {
            sink.record(&event);
        }
    }
}
