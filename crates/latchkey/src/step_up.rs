//! Step-up authentication: "confirm your password to continue".

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use latchkey_core::Timestamp;

use crate::authenticated::{refusal, refusal_status, registered};
use crate::error::Error;
use crate::ops::Op;
use crate::session::Session;

/// The session key of the time the user last proved their identity. Keys
/// starting with `latchkey.` are the library's. An owner change drops it
/// (see `Op::SetOwner`): the proof belongs to the user who gave it.
pub(crate) const AUTHENTICATED_AT_KEY: &str = "latchkey.authenticated_at";

/// How far ahead of this process's clock a recorded proof may be (another
/// instance's clock running ahead) and still count.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Whether a proof of identity given `at` is within `max_age` of `now`. One
/// from further in the future than clocks drift apart is not: it could only
/// have been written to last.
fn is_recent(at: Timestamp, now: Timestamp, max_age: Duration) -> bool {
    at <= now + CLOCK_SKEW && now.saturating_since(at) <= max_age
}

impl Session {
    /// Records that the user proved their identity just now (a password typed
    /// again, a second factor), for [`RecentlyAuthenticated`].
    /// [`login`](Self::login) records it too.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] or [`Error::TooManyKeys`] when the session is at its
    /// bounds; [`Error::WrittenBack`] after the write-back.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn confirm_password(session: latchkey::Session) -> Result<&'static str, latchkey::Error> {
    ///     // ... after checking the password again:
    ///     session.confirm_identity()?;
    ///     Ok("confirmed")
    /// }
    /// # let _ = confirm_password;
    /// ```
    pub fn confirm_identity(&self) -> Result<(), Error> {
        self.apply(Op::Insert(
            AUTHENTICATED_AT_KEY.to_owned(),
            Timestamp::now().as_millis().into(),
        ))?;
        Ok(())
    }

    /// When the user last proved their identity in this session: the
    /// [`login`](Self::login) or the last
    /// [`confirm_identity`](Self::confirm_identity); `None` before either.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn account(session: latchkey::Session) -> String {
    ///     match session.authenticated_at() {
    ///         Some(at) => format!("signed in at {} ms", at.as_millis()),
    ///         None => "not signed in".into(),
    ///     }
    /// }
    /// # let _ = account;
    /// ```
    pub fn authenticated_at(&self) -> Option<Timestamp> {
        self.get::<u64>(AUTHENTICATED_AT_KEY)
            .ok()
            .flatten()
            .map(Timestamp::from_millis)
    }
}

/// The session of a signed-in user who proved their identity recently: within
/// [`StepUpConfig`]'s maximum age (default 10 minutes) of the
/// [login](Session::login) or of the last
/// [`confirm_identity`](Session::confirm_identity).
///
/// Take it in handlers of sensitive changes (email, password, payment
/// details); otherwise the request is answered [`StepUpRequired`] (401, or a
/// redirect to the confirmation page) and the handler does not run.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use actix_web::{App, cookie::Key, test, web};
/// use latchkey::{RecentlyAuthenticated, SessionMiddleware, StepUpConfig, memory::MemoryStore};
///
/// async fn change_email(user: RecentlyAuthenticated) -> String {
///     format!("{} may change the email now", user.owner())
/// }
///
/// # actix_web::rt::System::new().block_on(async {
/// let app = test::init_service(
///     App::new()
///         .app_data(StepUpConfig::default().max_age(Duration::from_secs(300)).redirect_to("/confirm"))
///         .wrap(SessionMiddleware::new(MemoryStore::new(), Key::generate()))
///         .route("/email", web::post().to(change_email)),
/// )
/// .await;
/// let res = test::call_service(&app, test::TestRequest::post().uri("/email").to_request()).await;
/// assert_eq!(res.status(), 303);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct RecentlyAuthenticated {
    session: Session,
    owner: String,
    at: Timestamp,
}

impl RecentlyAuthenticated {
    /// The signed-in user: the session's owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// When they last proved their identity.
    pub fn authenticated_at(&self) -> Timestamp {
        self.at
    }

    /// The session, to read or change it.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, giving up the wrapper.
    pub fn into_session(self) -> Session {
        self.session
    }
}

/// How recent [`RecentlyAuthenticated`] wants the proof of identity, and how
/// it answers when it is older; registered with `App::app_data`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let config = latchkey::StepUpConfig::default()
///     .max_age(Duration::from_secs(5 * 60))
///     .redirect_to("/confirm-password");
/// # drop(config);
/// ```
#[derive(Clone, Debug)]
pub struct StepUpConfig {
    max_age: Duration,
    redirect: Option<String>,
}

impl Default for StepUpConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(10 * 60),
            redirect: None,
        }
    }
}

impl StepUpConfig {
    /// The oldest proof of identity accepted. Default: 10 minutes.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Answer `303 See Other` to `location` (the confirmation page) instead of 401.
    #[must_use]
    pub fn redirect_to(mut self, location: impl Into<String>) -> Self {
        self.redirect = Some(location.into());
        self
    }
}

/// The user must prove their identity again; see [`RecentlyAuthenticated`].
///
/// # Examples
///
/// ```
/// use actix_web::ResponseError as _;
///
/// let err = latchkey::StepUpRequired::default();
/// assert_eq!(err.status_code(), actix_web::http::StatusCode::UNAUTHORIZED);
/// ```
#[derive(Clone, Debug, Default, thiserror::Error)]
#[error("recent authentication required")]
pub struct StepUpRequired {
    redirect: Option<String>,
}

impl ResponseError for StepUpRequired {
    fn status_code(&self) -> StatusCode {
        refusal_status(self.redirect.as_deref())
    }

    fn error_response(&self) -> HttpResponse {
        refusal(
            self.redirect.as_deref(),
            "Please confirm your identity to continue.",
        )
    }
}

impl FromRequest for RecentlyAuthenticated {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let config = registered::<StepUpConfig>(req);
        let session = Session::extract(req);
        Box::pin(async move {
            let session = session.await?;
            let recent = match (session.owner(), session.authenticated_at()) {
                (Some(owner), Some(at)) if is_recent(at, Timestamp::now(), config.max_age) => {
                    Some((owner, at))
                }
                _ => None,
            };
            match recent {
                Some((owner, at)) => Ok(RecentlyAuthenticated { session, owner, at }),
                None => Err(StepUpRequired {
                    redirect: config.redirect,
                }
                .into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_recent_within_its_age_and_a_little_clock_skew() {
        let now = Timestamp::from_millis(1_000_000);
        let age = Duration::from_secs(300);
        assert!(is_recent(now, now, age));
        assert!(is_recent(Timestamp::from_millis(700_000), now, age));
        assert!(!is_recent(Timestamp::from_millis(699_999), now, age));
        assert!(
            is_recent(now + Duration::from_secs(30), now, age),
            "another instance's clock a little ahead"
        );
        assert!(
            !is_recent(Timestamp::from_millis(u64::MAX), now, age),
            "a proof from the far future is not recent forever"
        );
    }
}
