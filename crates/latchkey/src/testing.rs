//! Unit tests for handlers that use sessions (feature `test-util`): a request
//! that carries a session with chosen values and owner, and the session as the
//! middleware saves it afterwards.
//!
//! [`TestSessions`] wraps the same middleware configuration the application
//! uses, so a test exercises the real load, limits, compare-and-set and cookie
//! handling; only the login round trip is skipped. Two ways to use it:
//!
//! - **Through a service** (routing, extractors, other middleware included):
//!   wrap a test app in [`TestSessions::middleware`], send a request carrying a
//!   [seeded](TestSessions::seed) cookie, then read what was saved with
//!   [`TestSessions::saved`].
//! - **Calling the handler directly**: [`TestSessions::request`] gives the
//!   request and its [`Session`], the test calls the handler with them, and
//!   [`TestSessions::finish`] writes the session back as the middleware would.
//!
//! # Examples
//!
//! ```
//! use actix_web::{App, test, web};
//! use latchkey::testing::TestSessions;
//! use latchkey::{Authenticated, Session};
//! use serde_json::json;
//!
//! async fn add_to_cart(user: Authenticated) -> Result<String, latchkey::Error> {
//!     let items = user.session().update("items", |n: Option<u32>| n.unwrap_or(0) + 1)?;
//!     Ok(format!("{} has {items} items", user.owner()))
//! }
//!
//! async fn forget(session: Session) -> &'static str {
//!     session.remove("items");
//!     "forgotten"
//! }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let sessions = TestSessions::new();
//! let cookie = sessions.seed(json!({ "items": 2 }), Some("ann")).await?;
//!
//! // Through a service.
//! let app = test::init_service(
//!     App::new()
//!         .wrap(sessions.middleware())
//!         .route("/cart", web::post().to(add_to_cart)),
//! )
//! .await;
//! let req = test::TestRequest::post().uri("/cart").cookie(cookie.clone()).to_request();
//! let res = test::call_service(&app, req).await;
//! assert_eq!(test::read_body(res).await, "ann has 3 items");
//! let saved = sessions.saved(&cookie).await?.expect("still stored");
//! assert_eq!(saved.data["items"], 3);
//!
//! // Calling the handler directly.
//! let (req, session) = sessions
//!     .request(test::TestRequest::default().cookie(cookie.clone()))
//!     .await?;
//! assert_eq!(forget(session).await, "forgotten");
//! assert_eq!(sessions.finish(&req).await?, None, "same token: no new cookie");
//! let saved = sessions.saved(&cookie).await?.expect("still stored");
//! assert!(saved.data.get("items").is_none());
//! # Ok::<(), latchkey::Error>(())
//! # }).unwrap();
//! ```

use std::sync::Arc;

use actix_web::cookie::Cookie;
use actix_web::dev::ServiceResponse;
use actix_web::test::TestRequest;
use actix_web::{FromRequest as _, HttpMessage as _, HttpRequest};
use latchkey_core::{Deadlines, Record, SessionData, SessionStore as _, Timestamp};
use serde::Serialize;

use crate::cookie::Incoming;
use crate::error::Error;
use crate::lifecycle::{CookieAction, create_with_fresh_token, persistent_cookie};
use crate::middleware::{SessionMiddleware, cookie_for, finish};
use crate::session::{Session, SessionSlot, check_limits};
use crate::shared::Shared;

/// Sessions for tests, on one middleware configuration; see the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct TestSessions {
    config: Arc<Shared>,
}

#[cfg(feature = "memory")]
impl Default for TestSessions {
    fn default() -> Self {
        Self::new()
    }
}

impl TestSessions {
    /// Sessions in a fresh [`MemoryStore`](crate::memory::MemoryStore), cookies
    /// signed with a generated key, every other setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// let sessions = latchkey::testing::TestSessions::new();
    /// # drop(sessions);
    /// ```
    #[cfg(feature = "memory")]
    pub fn new() -> Self {
        Self::for_middleware(&SessionMiddleware::new(
            crate::memory::MemoryStore::new(),
            actix_web::cookie::Key::generate(),
        ))
    }

    /// Sessions as `middleware` keeps them: its store, keys, limits and
    /// expiry. Build it as the application does to test its configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore, testing::TestSessions};
    ///
    /// let middleware = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .max_keys(4)
    ///     .build()?;
    /// let sessions = TestSessions::for_middleware(&middleware);
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn for_middleware(middleware: &SessionMiddleware) -> Self {
        Self {
            config: middleware.config(),
        }
    }

    /// The middleware to wrap a test app in.
    ///
    /// # Examples
    ///
    /// ```
    /// let sessions = latchkey::testing::TestSessions::new();
    /// let app = actix_web::App::new().wrap(sessions.middleware());
    /// # drop(app);
    /// ```
    pub fn middleware(&self) -> SessionMiddleware {
        SessionMiddleware::from_config(Arc::clone(&self.config))
    }

    /// Stores a session holding `values` (anything that serializes to a JSON
    /// object) and `owner`, as if earlier requests had built it, and returns
    /// the cookie a browser would send for it.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`] when `values` is not a JSON object, a limit error
    /// when it exceeds the configured limits, a store error when the store
    /// fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # actix_web::rt::System::new().block_on(async {
    /// let sessions = latchkey::testing::TestSessions::new();
    /// let cookie = sessions.seed(serde_json::json!({ "theme": "dark" }), None).await?;
    /// let stored = sessions.saved(&cookie).await?.expect("stored");
    /// assert_eq!(stored.data["theme"], "dark");
    /// # Ok::<(), latchkey::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn seed(
        &self,
        values: impl Serialize,
        owner: Option<&str>,
    ) -> Result<Cookie<'static>, Error> {
        let data = to_session_data(values)?;
        check_limits(&data, &self.config)?;
        let now = Timestamp::now();
        let mut record = Record::new(
            now,
            Deadlines::starting_at(now, self.config.idle_timeout, self.config.lifetime),
        );
        record.data = data;
        record.owner = owner.map(str::to_owned);
        // Set-up is not the application's work: it stays out of its metrics.
        let token = create_with_fresh_token(self.config.store.unobserved(), &record).await?;
        let action = CookieAction::Set {
            token,
            deadlines: record.deadlines,
            persistent: persistent_cookie(&record, &self.config),
        };
        cookie_for(action, &self.config, now)
            .ok_or_else(|| Error::Store(latchkey_core::StoreError::corrupt("no cookie issued")))
    }

    /// Turns `req` into a request inside the middleware and takes its
    /// [`Session`], loaded from the cookie the request carries (none: a new,
    /// empty session). Pass both to the handler under test, then call
    /// [`finish`](Self::finish).
    ///
    /// # Errors
    ///
    /// A store error when the session cannot be loaded.
    ///
    /// # Examples
    ///
    /// ```
    /// # actix_web::rt::System::new().block_on(async {
    /// let sessions = latchkey::testing::TestSessions::new();
    /// let (req, session) = sessions.request(actix_web::test::TestRequest::default()).await?;
    /// assert!(session.is_new());
    /// # drop(req);
    /// # Ok::<(), latchkey::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn request(&self, req: TestRequest) -> Result<(HttpRequest, Session), Error> {
        let req = req.to_http_request();
        req.extensions_mut()
            .insert(Arc::new(SessionSlot::new(Arc::clone(&self.config))));
        let session = Session::extract(&req).await?;
        Ok((req, session))
    }

    /// Writes back the session of a request made by [`request`](Self::request),
    /// as the middleware does after a handler that succeeded, and returns the
    /// cookie the response would set: `None` when the browser keeps its cookie,
    /// a new one after a creation or `renew()`, a removal cookie after
    /// `purge()`. (After a handler that returned a [`latchkey::Error`](Error),
    /// the middleware keeps none of its changes: do not call `finish` then, or
    /// test through a service.)
    ///
    /// # Errors
    ///
    /// [`Error::MissingMiddleware`] for a request not made by `request`;
    /// otherwise what the middleware would answer: a store error, a limit
    /// exceeded once merged with a concurrent change.
    ///
    /// # Examples
    ///
    /// ```
    /// # actix_web::rt::System::new().block_on(async {
    /// let sessions = latchkey::testing::TestSessions::new();
    /// let (req, session) = sessions.request(actix_web::test::TestRequest::default()).await?;
    /// session.insert("seen", true)?;
    /// let cookie = sessions.finish(&req).await?.expect("a new session sets a cookie");
    /// assert_eq!(sessions.saved(&cookie).await?.expect("stored").data["seen"], true);
    /// # Ok::<(), latchkey::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn finish(&self, req: &HttpRequest) -> Result<Option<Cookie<'static>>, Error> {
        let slot = req
            .extensions()
            .get::<Arc<SessionSlot>>()
            .cloned()
            .ok_or(Error::MissingMiddleware)?;
        match slot.take_loaded() {
            Some(state) => finish(state, &self.config).await,
            None => Ok(None),
        }
    }

    /// The stored session a cookie names, as the next request would load it;
    /// `None` when there is none (deleted, expired, or a cookie that does not
    /// verify).
    ///
    /// # Errors
    ///
    /// A store error when the store fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # actix_web::rt::System::new().block_on(async {
    /// let sessions = latchkey::testing::TestSessions::new();
    /// let forged = actix_web::cookie::Cookie::new("id", "forged");
    /// assert!(sessions.saved(&forged).await?.is_none());
    /// # Ok::<(), latchkey::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn saved(&self, cookie: &Cookie<'_>) -> Result<Option<Record>, Error> {
        let cookie = cookie.clone().into_owned();
        let Incoming::Token { token, .. } = self.config.codec.read(std::iter::once(&cookie)) else {
            return Ok(None);
        };
        let now = Timestamp::now();
        Ok(self
            .config
            .store
            .unobserved()
            .load(&token.id())
            .await?
            .filter(|record| !record.is_expired_at(now)))
    }

    /// The session cookie a response sets, if any: after a creation or a
    /// renewal the cookie to send next, after a purge the removal cookie.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::{App, test, web};
    /// use latchkey::Session;
    ///
    /// # actix_web::rt::System::new().block_on(async {
    /// let sessions = latchkey::testing::TestSessions::new();
    /// let app = test::init_service(App::new().wrap(sessions.middleware()).route(
    ///     "/",
    ///     web::post().to(|s: Session| async move { s.insert("k", 1).map(|()| "ok") }),
    /// ))
    /// .await;
    /// let res = test::call_service(&app, test::TestRequest::post().uri("/").to_request()).await;
    /// let cookie = sessions.cookie_of(&res).expect("a new session");
    /// assert_eq!(sessions.saved(&cookie).await?.expect("stored").data["k"], 1);
    /// # Ok::<(), latchkey::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn cookie_of<B>(&self, res: &ServiceResponse<B>) -> Option<Cookie<'static>> {
        res.response()
            .cookies()
            .find(|cookie| cookie.name() == self.config.codec.name)
            .map(Cookie::into_owned)
    }
}

fn to_session_data(values: impl Serialize) -> Result<SessionData, Error> {
    let not_an_object = |source| Error::Serialize {
        key: "(session values)".to_owned(),
        source,
    };
    match serde_json::to_value(values).map_err(not_an_object)? {
        serde_json::Value::Object(data) => Ok(data),
        other => Err(not_an_object(serde::de::Error::custom(format!(
            "session values must be a JSON object, not {other}"
        )))),
    }
}
