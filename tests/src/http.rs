//! Requests through a test service, and reading their session cookies.

// Test support reports a broken expectation by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use latchkey::store::SessionToken;

/// The cookie name the flow tests use (the middleware's default).
pub const COOKIE: &str = "id";

/// The session cookie a response set or removed, if any.
pub fn session_cookie<B>(res: &ServiceResponse<B>) -> Option<Cookie<'static>> {
    res.response()
        .cookies()
        .find(|c| c.name() == COOKIE)
        .map(|c| c.into_owned())
}

/// The response body as text.
///
/// # Panics
///
/// When the body is not UTF-8.
pub async fn body<B: MessageBody>(res: ServiceResponse<B>) -> String {
    String::from_utf8(test::read_body(res).await.to_vec()).unwrap()
}

/// A GET of `path`, with `cookie` if given.
pub async fn get<B>(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    path: &str,
    cookie: Option<&Cookie<'static>>,
) -> ServiceResponse<B> {
    let mut req = test::TestRequest::get().uri(path);
    if let Some(cookie) = cookie {
        req = req.cookie(cookie.clone());
    }
    test::call_service(app, req.to_request()).await
}

/// A POST to `path`, with `cookie` if given.
pub async fn post<B>(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    path: &str,
    cookie: Option<&Cookie<'static>>,
) -> ServiceResponse<B> {
    let mut req = test::TestRequest::post().uri(path);
    if let Some(cookie) = cookie {
        req = req.cookie(cookie.clone());
    }
    test::call_service(app, req.to_request()).await
}

/// The token inside a signed cookie, read with the server's key.
///
/// # Panics
///
/// When the cookie does not verify.
pub fn token_of(cookie: &Cookie<'static>, key: &Key) -> SessionToken {
    let verified = CookieJar::new()
        .signed(key)
        .verify(cookie.clone())
        .expect("our cookie verifies");
    SessionToken::decode(verified.value()).expect("a well-formed token")
}

/// The counting handler many tests route at `/count`: adds one to the
/// session's `n` and answers the new count.
///
/// # Errors
///
/// When the session cannot be read or written.
pub async fn count(session: latchkey::Session) -> Result<String, latchkey::Error> {
    session
        .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
        .map(|n| n.to_string())
}
