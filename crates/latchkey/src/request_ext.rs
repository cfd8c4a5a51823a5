//! `SessionExt`: the request's session from places that are not handlers:
//! `from_fn` middleware, other middleware, custom extractors.

use std::future::Future;

use std::sync::Arc;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::guard::GuardContext;
use actix_web::{FromRequest as _, HttpRequest};

use crate::error::Error;
use crate::session::{Session, SessionSlot};

/// Gives the request's [`Session`] to code that holds the request rather than
/// an extractor argument: a `from_fn` middleware, a custom extractor, another
/// crate's middleware (identity, flash messages).
///
/// The session is the same one the handler sees: it is loaded once per request
/// (the first caller loads it, later ones get the loaded copy), and every change
/// made through it is written back after the handler, like a handler's. Loading
/// can wait on the store, hence `async`. The code must run inside
/// [`SessionMiddleware`](crate::SessionMiddleware): register it with `wrap`
/// *before* the session middleware (actix-web runs the last `wrap` first).
/// Otherwise the future answers [`Error::MissingMiddleware`], or, in a
/// middleware outside it once the session was written back,
/// [`Error::WrittenBack`] (and a `Session` kept past the write-back refuses
/// changes with that error).
///
/// Guards (`actix_web::guard::Guard`) are synchronous and cannot load; they
/// read a session loaded before routing with [`SessionGuardExt`].
///
/// # Examples
///
/// A middleware that sends visitors without a signed-in user to `/login`:
///
/// ```
/// use actix_web::body::{BoxBody, MessageBody};
/// use actix_web::dev::{ServiceRequest, ServiceResponse};
/// use actix_web::middleware::{Next, from_fn};
/// use actix_web::{App, HttpResponse, cookie::Key, http::header, test, web};
/// use latchkey::{SessionExt as _, SessionMiddleware, memory::MemoryStore};
///
/// async fn require_login(
///     req: ServiceRequest,
///     next: Next<impl MessageBody + 'static>,
/// ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
///     if req.session().await?.owner().is_none() {
///         let to_login = HttpResponse::SeeOther()
///             .insert_header((header::LOCATION, "/login"))
///             .finish();
///         return Ok(req.into_response(to_login));
///     }
///     Ok(next.call(req).await?.map_into_boxed_body())
/// }
///
/// # actix_web::rt::System::new().block_on(async {
/// let app = test::init_service(
///     App::new()
///         .wrap(from_fn(require_login))
///         .wrap(SessionMiddleware::new(MemoryStore::new(), Key::generate()))
///         .route("/account", web::get().to(|| async { "your account" })),
/// )
/// .await;
/// let res = test::call_service(&app, test::TestRequest::get().uri("/account").to_request()).await;
/// assert_eq!(res.status(), 303);
/// assert_eq!(res.headers().get(header::LOCATION).unwrap(), "/login");
/// # });
/// ```
pub trait SessionExt {
    /// The request's session, loaded on first use.
    ///
    /// # Errors
    ///
    /// [`Error::MissingMiddleware`] outside [`SessionMiddleware`](crate::SessionMiddleware);
    /// a store error when the session cannot be loaded (returned from a
    /// middleware or handler, it answers the configured store-error status).
    fn session(&self) -> impl Future<Output = Result<Session, Error>> + 'static;
}

impl SessionExt for HttpRequest {
    fn session(&self) -> impl Future<Output = Result<Session, Error>> + 'static {
        Session::extract(self)
    }
}

impl SessionExt for ServiceRequest {
    fn session(&self) -> impl Future<Output = Result<Session, Error>> + 'static {
        Session::extract(self.request())
    }
}

/// After the handler, in a middleware inside `SessionMiddleware`: the session
/// as the handler left it, still to be written back (changes made here are
/// written back too).
impl<B> SessionExt for ServiceResponse<B> {
    fn session(&self) -> impl Future<Output = Result<Session, Error>> + 'static {
        Session::extract(self.request())
    }
}

/// Gives guards the request's session, when it was loaded before routing:
/// build the middleware with
/// [`load_before_routing(true)`](crate::SessionMiddlewareBuilder::load_before_routing)
/// (guards are synchronous, so they cannot load it themselves).
///
/// # Examples
///
/// ```
/// use actix_web::{App, HttpResponse, cookie::Key, guard, test, web};
/// use latchkey::{Session, SessionGuardExt as _, SessionMiddleware, memory::MemoryStore};
///
/// # actix_web::rt::System::new().block_on(async {
/// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
///     .load_before_routing(true)
///     .build()?;
/// let signed_in = guard::fn_guard(|ctx| {
///     ctx.loaded_session().is_some_and(|session| session.owner().is_some())
/// });
/// let app = test::init_service(
///     App::new().wrap(sessions).service(
///         web::resource("/")
///             .route(web::get().guard(signed_in).to(|| async { "dashboard" }))
///             .route(web::get().to(|| async { "welcome, stranger" })),
///     ),
/// )
/// .await;
/// let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
/// assert_eq!(test::read_body(res).await, "welcome, stranger");
/// # Ok::<(), latchkey::ConfigError>(())
/// # }).unwrap();
/// ```
pub trait SessionGuardExt {
    /// The request's session if it is loaded already; `None` before it is (the
    /// middleware does not load before routing) or outside the middleware.
    fn loaded_session(&self) -> Option<Session>;
}

impl SessionGuardExt for GuardContext<'_> {
    fn loaded_session(&self) -> Option<Session> {
        let slot = self.req_data().get::<Arc<SessionSlot>>().cloned()?;
        slot.loaded_session()
    }
}
