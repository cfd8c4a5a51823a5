//! "Your active devices": the login flow plus a list of the user's sessions and
//! a button that logs out every other device.
//!
//! | route | what it does |
//! | --- | --- |
//! | the [`crate::login`] routes | log in and out |
//! | `GET /sessions` | the user's live sessions: created, last seen, this one marked |
//! | `POST /sessions/revoke-others` | deletes every other session of the user, back to `/sessions` |

use std::time::Duration;

use actix_web::{HttpResponse, web};
use latchkey::{AnyStore, Session, SessionStore as _, Timestamp};

use crate::html::{escape, page, see_other};
use crate::login::{self, EMAIL_KEY};

/// What the device pages need besides the session: the store and the idle
/// timeout (to tell when a session was last seen).
#[derive(Clone, Debug)]
pub struct Devices {
    /// The store the middleware uses.
    pub store: AnyStore,
    /// The middleware's idle timeout.
    pub idle_timeout: Duration,
}

/// Registers the login routes and the device routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    login::routes(cfg);
    cfg.route("/sessions", web::get().to(list))
        .route("/sessions/revoke-others", web::post().to(revoke_others));
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

async fn list(
    session: Session,
    devices: web::Data<Devices>,
) -> Result<HttpResponse, latchkey::Error> {
    let (Some(owner), Some(email)) = (session.owner(), session.get::<String>(EMAIL_KEY)?) else {
        return Ok(page(
            "Sessions",
            r#"<p>Please login first.</p><p><a href="/">Log in</a></p>"#,
        ));
    };
    let mut sessions = devices.store.list_by_owner(&owner).await?;
    sessions.sort_by_key(|(_, record)| record.created_at);
    let current = session.id();
    let token = session.csrf_token()?;
    let rows: String = sessions
        .iter()
        .map(|(id, record)| {
            // The idle deadline is set to "last use + idle timeout" (capped by the
            // absolute deadline), so it tells when the session was last seen.
            let last_seen = Timestamp::from_millis(
                record.deadlines.idle.as_millis().saturating_sub(
                    record
                        .idle_timeout
                        .unwrap_or(devices.idle_timeout)
                        .as_millis() as u64,
                ),
            )
            .max(record.created_at);
            let marker = if Some(*id) == current {
                " (this device)"
            } else {
                ""
            };
            format!(
                "<tr class=\"session\"><td>{}</td><td>{}</td><td>{}{marker}</td></tr>\n",
                format_time(record.created_at),
                format_time(last_seen),
                escape(&id.to_string()),
            )
        })
        .collect();
    Ok(page(
        "Sessions",
        &format!(
            "<h1>Sessions of {}</h1>\n<table>\n<tr><th>Created</th><th>Last seen</th><th>Session</th></tr>\n{rows}</table>\n\
             <form method=\"post\" action=\"/sessions/revoke-others\">{}<button type=\"submit\" id=\"revoke\">Log out all other devices</button></form>\n{}",
            escape(&email),
            login::csrf_field(&token),
            login::logout_form(&token)
        ),
    ))
}

async fn revoke_others(
    session: Session,
    devices: web::Data<Devices>,
    form: web::Form<login::TokenOnly>,
) -> Result<HttpResponse, actix_web::Error> {
    if !session.verify_csrf(&form.csrf_token) {
        return Err(latchkey::CsrfRejected.into());
    }
    let Some(owner) = session.owner() else {
        return Ok(see_other("/"));
    };
    let revoked = devices
        .store
        .delete_by_owner(&owner, session.id().as_ref())
        .await
        .map_err(latchkey::Error::from)?;
    tracing::info!(revoked, "logged out other devices");
    Ok(see_other("/sessions"))
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
