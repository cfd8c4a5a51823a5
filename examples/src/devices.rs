//! "Your active devices": the login flow plus the user's sessions with what
//! they recorded about their device, signing one out or all the others, and
//! the user's audit trail.
//!
//! | route | what it does |
//! | --- | --- |
//! | the [`crate::login`] routes | log in and out |
//! | `GET /sessions` | the user's live sessions, most recently seen first: device, network, created, last seen, this one marked, a "Sign out" button on each other one |
//! | `POST /sessions/revoke` | signs out the session named by the form's `id`, if it is the user's, back to `/sessions` |
//! | `POST /sessions/revoke-others` | signs out every other session of the user, back to `/sessions` |
//! | `GET /audit` | the user's audit events: logins, logouts, revocations |
//!
//! The middleware records the first 256 bytes of each new session's user
//! agent and its client address truncated to the network ([`configure`]).
//! The audit trail is kept in memory here ([`AuditLog`]); an application
//! writes it to a table or a log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::{HttpResponse, web};
use latchkey::{
    AuditEvent, ClientIp, DeviceMetadata, FlashLevel, Session, SessionId, SessionMiddlewareBuilder,
    Timestamp,
};
use serde::Deserialize;

use crate::html::{escape, page, see_other};
use crate::login::{self, EMAIL_KEY};

/// How many audit events the example keeps.
const AUDIT_EVENTS_KEPT: usize = 1_000;

/// The example's audit trail: the latest events, in memory.
#[derive(Clone, Debug, Default)]
pub struct AuditLog(Arc<Mutex<VecDeque<AuditEvent>>>);

impl AuditLog {
    /// Keeps `event`, dropping the oldest beyond the bound.
    pub fn record(&self, event: &AuditEvent) {
        let mut events = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() == AUDIT_EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(event.clone());
    }

    /// The events concerning `owner`, newest first.
    pub fn of(&self, owner: &str) -> Vec<AuditEvent> {
        let events = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        events
            .iter()
            .rev()
            .filter(|event| event.owner.as_deref() == Some(owner))
            .cloned()
            .collect()
    }
}

/// What the device pages need besides the session.
#[derive(Clone, Debug, Default)]
pub struct Devices {
    /// Where the middleware sends its audit events.
    pub audit: AuditLog,
}

/// The middleware settings the device pages rely on: device metadata with
/// the network of the client's address, and audit events into `devices`' log.
pub fn configure(builder: SessionMiddlewareBuilder, devices: &Devices) -> SessionMiddlewareBuilder {
    let audit = devices.audit.clone();
    builder
        .device_metadata(DeviceMetadata::default().client_ip(ClientIp::Truncated))
        .audit(move |event: &AuditEvent| {
            tracing::info!(kind = event.kind.as_str(), owner = ?event.owner, "audit");
            audit.record(event);
        })
}

/// Registers the login routes and the device routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    login::routes(cfg);
    cfg.route("/sessions", web::get().to(list))
        .route("/sessions/revoke", web::post().to(revoke))
        .route("/sessions/revoke-others", web::post().to(revoke_others))
        .route("/audit", web::get().to(audit));
}

/// The sign-out-one form's fields.
#[derive(Debug, Deserialize)]
pub struct RevokeOne {
    /// The session's CSRF token, from the form.
    pub csrf_token: String,
    /// The id (hex) of the session to sign out.
    pub id: String,
}

fn format_time(at: Timestamp) -> String {
    let secs = at.as_millis() / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

fn please_login() -> HttpResponse {
    page(
        "Sessions",
        r#"<p>Please login first.</p><p><a href="/">Log in</a></p>"#,
    )
}

async fn list(session: Session) -> Result<HttpResponse, latchkey::Error> {
    let Some(email) = session
        .get::<String>(EMAIL_KEY)?
        .filter(|_| session.owner().is_some())
    else {
        return Ok(please_login());
    };
    let token = session.csrf_token()?;
    let notices: String = session
        .take_flashes()?
        .into_iter()
        .map(|flash| format!("<p class=\"flash\">{}</p>\n", escape(&flash.message)))
        .collect();
    let rows: String = session
        .devices()
        .await?
        .into_iter()
        .map(|device| {
            let described = device.device.clone().unwrap_or_default();
            let action = if device.current {
                "this device".to_owned()
            } else {
                format!(
                    "<form method=\"post\" action=\"/sessions/revoke\">{}<input type=\"hidden\" name=\"id\" value=\"{}\"><button type=\"submit\" class=\"revoke\">Sign out</button></form>",
                    login::csrf_field(&token),
                    device.id.to_hex(),
                )
            };
            format!(
                "<tr class=\"session\"><td class=\"agent\">{}</td><td class=\"network\">{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>\n",
                escape(described.user_agent.as_deref().unwrap_or("unknown device")),
                escape(described.ip.as_deref().unwrap_or("")),
                format_time(device.created_at),
                format_time(device.last_seen),
                action,
                if device.remembered { " (remembered)" } else { "" },
            )
        })
        .collect();
    Ok(page(
        "Sessions",
        &format!(
            "<h1>Sessions of {}</h1>\n{notices}<table>\n<tr><th>Device</th><th>Network</th><th>Created</th><th>Last seen</th><th></th></tr>\n{rows}</table>\n\
             <form method=\"post\" action=\"/sessions/revoke-others\">{}<button type=\"submit\" id=\"revoke\">Log out all other devices</button></form>\n\
             <p><a href=\"/audit\">Security log</a></p>\n{}",
            escape(&email),
            login::csrf_field(&token),
            login::logout_form(&token)
        ),
    ))
}

async fn revoke(
    session: Session,
    form: web::Form<RevokeOne>,
) -> Result<HttpResponse, actix_web::Error> {
    if !session.verify_csrf(&form.csrf_token) {
        return Err(latchkey::CsrfRejected.into());
    }
    // The id names a session of this user or of nobody: `revoke` checks.
    let revoked = match SessionId::from_hex(&form.id) {
        Some(id) => session.revoke(&id).await?,
        None => false,
    };
    let notice = if revoked {
        "That device is signed out."
    } else {
        "That device was already signed out."
    };
    session.flash(FlashLevel::Info, notice)?;
    Ok(see_other("/sessions"))
}

async fn revoke_others(
    session: Session,
    form: web::Form<login::TokenOnly>,
) -> Result<HttpResponse, actix_web::Error> {
    if !session.verify_csrf(&form.csrf_token) {
        return Err(latchkey::CsrfRejected.into());
    }
    if session.owner().is_none() {
        return Ok(see_other("/"));
    }
    let revoked = session.revoke_others().await?;
    session.flash(
        FlashLevel::Info,
        format!("{revoked} other device(s) signed out."),
    )?;
    Ok(see_other("/sessions"))
}

async fn audit(
    session: Session,
    devices: web::Data<Devices>,
) -> Result<HttpResponse, latchkey::Error> {
    let Some(owner) = session.owner() else {
        return Ok(please_login());
    };
    let rows: String = devices
        .audit
        .of(&owner)
        .iter()
        .map(|event| {
            let device = event.device.clone().unwrap_or_default();
            format!(
                "<tr class=\"event\"><td>{}</td><td class=\"kind\">{}</td><td>{}</td><td>{}</td></tr>\n",
                format_time(event.at),
                event.kind.as_str(),
                escape(device.user_agent.as_deref().unwrap_or("")),
                escape(device.ip.as_deref().unwrap_or("")),
            )
        })
        .collect();
    Ok(page(
        "Security log",
        &format!(
            "<h1>Security log</h1>\n<table>\n<tr><th>When</th><th>What</th><th>Device</th><th>Network</th></tr>\n{rows}</table>\n<p><a href=\"/sessions\">Sessions</a></p>"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(
            format_time(Timestamp::from_millis(0)),
            "1970-01-01 00:00:00 UTC"
        );
        assert_eq!(
            format_time(Timestamp::from_millis(1_795_354_656_205)),
            "2026-11-22 13:37:36 UTC"
        );
        assert_eq!(
            format_time(Timestamp::from_millis(951_782_400_000)),
            "2000-02-29 00:00:00 UTC"
        );
    }
}
