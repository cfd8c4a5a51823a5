//! CSRF protection with a per-session synchronizer token.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use latchkey_core::{SessionToken, StoreError};
use subtle::ConstantTimeEq as _;

use crate::error::Error;
use crate::ops::Op;
use crate::session::Session;

/// The session key of the CSRF token. Keys starting with `latchkey.` are the
/// library's.
pub(crate) const CSRF_KEY: &str = "latchkey.csrf";

/// The session key of the single-use tokens not consumed yet.
pub(crate) const CSRF_ONCE_KEY: &str = "latchkey.csrf_once";

/// How many single-use tokens a session keeps; issuing more drops the oldest.
const MAX_ONE_TIME_TOKENS: usize = 16;

/// Where `submitted` is among `held`, comparing every token in constant time.
fn position_in_constant_time(held: &[String], submitted: &str) -> Option<usize> {
    let mut found = None;
    for (index, token) in held.iter().enumerate() {
        if bool::from(token.as_bytes().ct_eq(submitted.as_bytes())) {
            found = found.or(Some(index));
        }
    }
    found
}

/// The request header [`CsrfVerified`] reads the token from.
pub const CSRF_HEADER: &str = "x-csrf-token";

impl Session {
    /// The session's CSRF token, created the first time it is asked for: put
    /// it in every form (a hidden field) or send it as the [`CSRF_HEADER`]
    /// header, and check it with [`verify_csrf`](Self::verify_csrf) or the
    /// [`CsrfVerified`] extractor.
    ///
    /// The token is 256 random bits, one per session, and changes whenever
    /// the session gets a new id ([`renew`](Self::renew),
    /// [`login`](Self::login), [`remember`](Self::remember)), so a token seen
    /// before a login is worthless after it, also when another request stores
    /// one while the login is under way. Forms open in other tabs then need a
    /// reload.
    ///
    /// # Errors
    ///
    /// When the system's random source fails, or the session is past its
    /// limits or its write-back.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn form(session: latchkey::Session) -> Result<String, latchkey::Error> {
    ///     let token = session.csrf_token()?;
    ///     Ok(format!(r#"<form method="post"><input type="hidden" name="csrf_token" value="{token}">…</form>"#))
    /// }
    /// # let _ = form;
    /// ```
    pub fn csrf_token(&self) -> Result<String, Error> {
        if let Some(token) = self.get::<String>(CSRF_KEY).ok().flatten() {
            return Ok(token);
        }
        let fresh = SessionToken::generate()
            .map_err(|err| Error::Store(StoreError::backend("token generator", err)))?
            .encode();
        // Two first requests of one session racing each other keep the first
        // token stored; the other request's form then fails its check once.
        let token = self
            .apply(Op::update(
                CSRF_KEY.to_owned(),
                move |held: Option<String>| held.unwrap_or_else(|| fresh.clone()),
            ))?
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(token)
    }

    /// Whether `submitted` is this session's CSRF token, compared in constant
    /// time. A session that never issued one accepts nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::{HttpResponse, web};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct ChangeEmail { csrf_token: String, email: String }
    ///
    /// async fn change_email(
    ///     session: latchkey::Session,
    ///     form: web::Form<ChangeEmail>,
    /// ) -> Result<HttpResponse, actix_web::Error> {
    ///     if !session.verify_csrf(&form.csrf_token) {
    ///         return Err(latchkey::CsrfRejected.into());
    ///     }
    ///     session.insert("email", &form.email)?;
    ///     Ok(HttpResponse::SeeOther().insert_header(("Location", "/account")).finish())
    /// }
    /// # let _ = change_email;
    /// ```
    pub fn verify_csrf(&self, submitted: &str) -> bool {
        match self.get::<String>(CSRF_KEY).ok().flatten() {
            Some(held) if !held.is_empty() => {
                bool::from(held.as_bytes().ct_eq(submitted.as_bytes()))
            }
            _ => false,
        }
    }

    /// A fresh single-use CSRF token for one form: accepted by
    /// [`consume_csrf_token`](Self::consume_csrf_token) once, then never
    /// again. For forms whose double submission must not act twice (a
    /// payment, a transfer).
    ///
    /// Issuing one writes the session. The session keeps the
    /// 16 most recently issued tokens not yet consumed (older ones stop
    /// working: forms left open too long need a reload); a new session id
    /// ([`renew`](Self::renew), [`login`](Self::login)) drops them all.
    ///
    /// # Errors
    ///
    /// When the system's random source fails, or the session is past its
    /// limits or its write-back.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn payment_form(session: latchkey::Session) -> Result<String, latchkey::Error> {
    ///     let token = session.one_time_csrf_token()?;
    ///     Ok(format!(r#"<form method="post" action="/pay"><input type="hidden" name="csrf_token" value="{token}">…</form>"#))
    /// }
    /// # let _ = payment_form;
    /// ```
    pub fn one_time_csrf_token(&self) -> Result<String, Error> {
        let fresh = SessionToken::generate()
            .map_err(|err| Error::Store(StoreError::backend("token generator", err)))?
            .encode();
        let issued = fresh.clone();
        self.apply(Op::update(
            CSRF_ONCE_KEY.to_owned(),
            move |held: Option<Vec<String>>| {
                let mut held = held.unwrap_or_default();
                held.push(issued.clone());
                let surplus = held.len().saturating_sub(MAX_ONE_TIME_TOKENS);
                held.drain(..surplus);
                held
            },
        ))?;
        Ok(fresh)
    }

    /// Consumes a token from [`one_time_csrf_token`](Self::one_time_csrf_token):
    /// `true` the first time it is submitted, `false` for any other token and
    /// for every later submission of this one. A token issued in this same
    /// request is not stored yet, and answers `false`.
    ///
    /// The token is removed from the stored session right away, in one
    /// compare-and-set, before this returns: of requests submitting one token
    /// at once, on any instances, at most one gets `true`, and one does unless
    /// the session gets a new id, ends or keeps changing meanwhile (the
    /// retries run out). When the store fails or times out the answer is an
    /// error, and the token may be spent or not: it is never accepted twice.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails;
    /// [`Error::ConflictRetriesExhausted`] when the session kept changing;
    /// [`Error::WrittenBack`] after the write-back.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::{HttpResponse, web};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Payment { csrf_token: String, cents: u64 }
    ///
    /// async fn pay(session: latchkey::Session, form: web::Form<Payment>) -> Result<HttpResponse, actix_web::Error> {
    ///     if !session.consume_csrf_token(&form.csrf_token).await? {
    ///         return Err(latchkey::CsrfRejected.into());
    ///     }
    ///     // ... charge form.cents, once.
    ///     Ok(HttpResponse::SeeOther().insert_header(("Location", "/receipt")).finish())
    /// }
    /// # let _ = pay;
    /// ```
    pub async fn consume_csrf_token(&self, submitted: &str) -> Result<bool, Error> {
        if submitted.is_empty() {
            return Ok(false);
        }
        let consumed = self
            .write_through(|data| {
                let held: Vec<String> = data
                    .get(CSRF_ONCE_KEY)
                    .and_then(|value| serde_json::from_value(value.clone()).ok())?;
                let at = position_in_constant_time(&held, submitted)?;
                let mut rest = held;
                rest.remove(at);
                if rest.is_empty() {
                    data.remove(CSRF_ONCE_KEY);
                } else {
                    data.insert(CSRF_ONCE_KEY.to_owned(), rest.into());
                }
                Some(())
            })
            .await?;
        Ok(consumed.is_some())
    }

    /// Drops the CSRF token, so that the next [`csrf_token`](Self::csrf_token)
    /// makes a new one: part of every renewal and login. Recorded even when
    /// no token is held now, so that a token another request stores before
    /// this one's write-back is dropped by the replay too.
    pub(crate) fn rotate_csrf(&self) {
        let _ = self.apply(Op::Remove(CSRF_KEY.to_owned()));
        let _ = self.apply(Op::Remove(CSRF_ONCE_KEY.to_owned()));
    }
}

/// The session of a request that passed the CSRF check: safe methods (`GET`,
/// `HEAD`, `OPTIONS`, `TRACE`) always do; any other method must carry the
/// session's [token](Session::csrf_token) in the [`CSRF_HEADER`] header, or is
/// answered [`CsrfRejected`] (403) before the handler runs.
///
/// For HTML forms, which cannot set headers, check the form field with
/// [`Session::verify_csrf`] instead.
///
/// # Examples
///
/// ```
/// use actix_web::{App, cookie::Key, test, web};
/// use latchkey::{CsrfVerified, SessionMiddleware, memory::MemoryStore};
///
/// async fn delete_account(checked: CsrfVerified) -> &'static str {
///     checked.into_session().purge();
///     "deleted"
/// }
///
/// # actix_web::rt::System::new().block_on(async {
/// let app = test::init_service(
///     App::new()
///         .wrap(SessionMiddleware::new(MemoryStore::new(), Key::generate()))
///         .route("/account", web::delete().to(delete_account)),
/// )
/// .await;
/// let res = test::call_service(&app, test::TestRequest::delete().uri("/account").to_request()).await;
/// assert_eq!(res.status(), 403);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct CsrfVerified(Session);

impl CsrfVerified {
    /// The session, to read or change it.
    pub fn session(&self) -> &Session {
        &self.0
    }

    /// The session, giving up the wrapper.
    pub fn into_session(self) -> Session {
        self.0
    }
}

impl FromRequest for CsrfVerified {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let safe =
            [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(req.method());
        let submitted = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let session = Session::extract(req);
        Box::pin(async move {
            let session = session.await?;
            let passed = safe
                || submitted
                    .as_deref()
                    .is_some_and(|token| session.verify_csrf(token));
            if passed {
                Ok(CsrfVerified(session))
            } else {
                tracing::info!("request refused: missing or wrong CSRF token");
                Err(CsrfRejected.into())
            }
        })
    }
}

/// A state-changing request without the session's CSRF token: 403 Forbidden.
///
/// # Examples
///
/// ```
/// use actix_web::ResponseError as _;
///
/// assert_eq!(latchkey::CsrfRejected.status_code(), actix_web::http::StatusCode::FORBIDDEN);
/// ```
#[derive(Clone, Copy, Debug, Default, thiserror::Error)]
#[error("missing or wrong CSRF token")]
pub struct CsrfRejected;

impl ResponseError for CsrfRejected {
    fn status_code(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/plain; charset=utf-8")
            .body("The form expired or did not come from this site; reload the page and try again.")
    }
}
