//! `Authenticated`: an extractor for "a session with a signed-in user".

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};

use crate::session::Session;

/// The session of a signed-in user: one whose [owner](Session::owner) is set
/// (by [`Session::login`] or [`Session::set_owner`]).
///
/// Taking it instead of [`Session`] makes a handler reachable only by signed-in
/// users: without an owner the request is answered with [`NotAuthenticated`]
/// (401, or a redirect configured with [`AuthenticatedConfig`]) and the
/// handler does not run. A store failure while loading answers the middleware's
/// store-error status, as for `Session`.
///
/// # Examples
///
/// ```
/// use actix_web::{App, cookie::Key, test, web};
/// use latchkey::{Authenticated, SessionMiddleware, memory::MemoryStore};
///
/// async fn account(user: Authenticated) -> String {
///     format!("signed in as {}", user.owner())
/// }
///
/// # actix_web::rt::System::new().block_on(async {
/// let app = test::init_service(
///     App::new()
///         .wrap(SessionMiddleware::new(MemoryStore::new(), Key::generate()))
///         .route("/account", web::get().to(account)),
/// )
/// .await;
/// let res = test::call_service(&app, test::TestRequest::get().uri("/account").to_request()).await;
/// assert_eq!(res.status(), 401);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Authenticated {
    session: Session,
    owner: String,
}

impl Authenticated {
    /// The signed-in user: the session's owner.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn whoami(user: latchkey::Authenticated) -> String {
    ///     user.owner().to_owned()
    /// }
    /// # let _ = whoami;
    /// ```
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The session itself, to read or change it.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn cart(user: latchkey::Authenticated) -> Result<String, latchkey::Error> {
    ///     let items: Option<u32> = user.session().get("items")?;
    ///     Ok(items.unwrap_or(0).to_string())
    /// }
    /// # let _ = cart;
    /// ```
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, giving up the wrapper.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn logout(user: latchkey::Authenticated) -> &'static str {
    ///     user.into_session().purge();
    ///     "signed out"
    /// }
    /// # let _ = logout;
    /// ```
    pub fn into_session(self) -> Session {
        self.session
    }
}

/// How [`Authenticated`] answers a request without a signed-in user, registered
/// with `App::app_data` (or on a scope or resource), like actix-web's
/// `JsonConfig`.
///
/// Default: 401 Unauthorized, the answer an API client expects. Browser-facing
/// apps usually redirect to their login page instead.
///
/// # Examples
///
/// ```
/// use actix_web::{App, cookie::Key, http::header, test, web};
/// use latchkey::{Authenticated, AuthenticatedConfig, SessionMiddleware, memory::MemoryStore};
///
/// # actix_web::rt::System::new().block_on(async {
/// let app = test::init_service(
///     App::new()
///         .app_data(AuthenticatedConfig::default().redirect_to("/login"))
///         .wrap(SessionMiddleware::new(MemoryStore::new(), Key::generate()))
///         .route("/account", web::get().to(|user: Authenticated| async move {
///             user.owner().to_owned()
///         })),
/// )
/// .await;
/// let res = test::call_service(&app, test::TestRequest::get().uri("/account").to_request()).await;
/// assert_eq!(res.status(), 303);
/// assert_eq!(res.headers().get(header::LOCATION).unwrap(), "/login");
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct AuthenticatedConfig {
    redirect: Option<String>,
}

impl AuthenticatedConfig {
    /// Answer `303 See Other` to `location` instead of 401.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = latchkey::AuthenticatedConfig::default().redirect_to("/login");
    /// # drop(config);
    /// ```
    #[must_use]
    pub fn redirect_to(mut self, location: impl Into<String>) -> Self {
        self.redirect = Some(location.into());
        self
    }
}

/// The request has no signed-in user; see [`Authenticated`].
///
/// # Examples
///
/// ```
/// use actix_web::ResponseError as _;
///
/// let err = latchkey::NotAuthenticated::default();
/// assert_eq!(err.status_code(), actix_web::http::StatusCode::UNAUTHORIZED);
/// ```
#[derive(Clone, Debug, Default, thiserror::Error)]
#[error("authentication required")]
pub struct NotAuthenticated {
    redirect: Option<String>,
}

impl ResponseError for NotAuthenticated {
    fn status_code(&self) -> StatusCode {
        refusal_status(self.redirect.as_deref())
    }

    fn error_response(&self) -> HttpResponse {
        refusal(self.redirect.as_deref(), "Authentication required.")
    }
}

/// 303 See Other when the refusal redirects, 401 Unauthorized otherwise.
pub(crate) fn refusal_status(redirect: Option<&str>) -> StatusCode {
    if redirect.is_some() {
        StatusCode::SEE_OTHER
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// The answer of an extractor that refuses a request for want of a (recent
/// enough) signed-in user: a redirect to `redirect`, or 401 with `body`.
pub(crate) fn refusal(redirect: Option<&str>, body: &'static str) -> HttpResponse {
    let mut response = HttpResponse::build(refusal_status(redirect));
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(location) = redirect {
        response.insert_header((header::LOCATION, location));
    }
    response
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

/// The extractor configuration `T` registered for this request, directly or as
/// `web::Data<T>`, or the default.
pub(crate) fn registered<T: Clone + Default + 'static>(req: &HttpRequest) -> T {
    req.app_data::<T>()
        .or_else(|| req.app_data::<web::Data<T>>().map(|data| data.get_ref()))
        .cloned()
        .unwrap_or_default()
}

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let redirect = registered::<AuthenticatedConfig>(req).redirect;
        let session = Session::extract(req);
        Box::pin(async move {
            let session = session.await?;
            match session.owner() {
                Some(owner) => Ok(Authenticated { session, owner }),
                None => Err(NotAuthenticated { redirect }.into()),
            }
        })
    }
}
