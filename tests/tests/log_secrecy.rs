//! Tokens never appear in logs or error messages: every log line of the login
//! flow, on every store and on a failing one, is captured at TRACE level (by a
//! subscriber set for the test's thread alone) and searched for every token
//! and cookie value the flow handed out or was sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::{App, test};
use latchkey::store::SessionToken;
use latchkey::{AnyStore, SessionMiddleware};
use latchkey_examples::login;
use latchkey_tests::on_every_store;
use latchkey_tests::stores::FailingStore;

/// Collects everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn token_in(cookie: &Cookie<'static>, key: &Key) -> Option<String> {
    let verified = CookieJar::new().signed(key).verify(cookie.clone())?;
    SessionToken::decode(verified.value())
        .ok()
        .map(|t| t.encode())
}

/// What one run of the login flow left: the log lines, every token and
/// cookie value it handed out or was sent, and the response bodies.
struct Flow {
    logs: String,
    secrets: Vec<String>,
    bodies: String,
}

impl Flow {
    fn assert_no_secret_leaked(&self) {
        for secret in &self.secrets {
            assert!(
                !self.logs.contains(secret.as_str()),
                "a token or cookie value reached the logs"
            );
            assert!(
                !self.bodies.contains(secret.as_str()),
                "a token or cookie value reached a response body"
            );
        }
    }
}

/// The CSRF token of the first form on a page.
fn csrf_token_in(page: &str) -> Option<String> {
    let marker = r#"name="csrf_token" value=""#;
    let start = page.find(marker)? + marker.len();
    let len = page[start..].find('"')?;
    Some(page[start..start + len].to_owned())
}

/// A forged cookie, then two logins, the admin page after each, and a logout.
async fn login_flow(store: AnyStore) -> Flow {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _only_this_thread = tracing::subscriber::set_default(subscriber);

    let mut secrets: Vec<String> = Vec::new();
    let mut bodies = String::new();
    let key = Key::generate();
    let app = test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store, key.clone())
                    .cookie_secure(false)
                    .build()
                    .unwrap(),
            )
            .configure(login::routes),
    )
    .await;
    // A forged cookie carrying a well-formed token: rejected, and never logged.
    let forged_token = SessionToken::generate().unwrap().encode();
    secrets.push(forged_token.clone());
    let mut cookie: Option<Cookie<'static>> = Some(Cookie::new("id", forged_token));
    // Each form's CSRF token, from the page before it.
    let mut csrf = String::new();
    for (login_request, path) in [
        (false, "/"),
        (true, "/login"),
        (false, "/admin"),
        (true, "/login"),
        (false, "/admin"),
        (false, "/logout"),
    ] {
        let mut req = if login_request {
            test::TestRequest::post().uri(path).set_form([
                ("csrf_token", csrf.as_str()),
                ("email", "ann@example.com"),
                ("password", "pw"),
            ])
        } else if path == "/logout" {
            test::TestRequest::post()
                .uri(path)
                .set_form([("csrf_token", csrf.as_str())])
        } else {
            test::TestRequest::get().uri(path)
        };
        if let Some(c) = &cookie {
            req = req.cookie(c.clone());
        }
        let res = test::call_service(&app, req.to_request()).await;
        for issued in res.response().cookies().filter(|c| c.name() == "id") {
            let issued = issued.into_owned();
            if issued.value().is_empty() {
                cookie = None;
                continue;
            }
            secrets.push(issued.value().to_owned());
            secrets.extend(token_in(&issued, &key));
            cookie = Some(issued);
        }
        let body = String::from_utf8_lossy(&test::read_body(res).await).into_owned();
        if let Some(token) = csrf_token_in(&body) {
            csrf = token;
        }
        bodies.push_str(&body);
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    Flow {
        logs,
        secrets,
        bodies,
    }
}

on_every_store!(no_token_reaches_the_logs_or_error_messages);

async fn no_token_reaches_the_logs_or_error_messages(store: AnyStore) {
    let flow = login_flow(store).await;
    assert!(
        flow.logs.contains("session created"),
        "the capture works: {}",
        flow.logs
    );
    assert!(
        flow.logs.lines().any(
            |line| line.contains("INFO") && line.contains("session cookie failed verification")
        ),
        "rejected cookies are logged at INFO"
    );
    // The forged token, and the cookie value and token of the new session and
    // of each login.
    assert!(
        flow.secrets.len() >= 7,
        "tokens were handed out: {}",
        flow.secrets.len()
    );
    assert_eq!(
        (
            flow.logs.matches(r#"kind="login""#).count(),
            flow.logs.matches(r#"kind="logout""#).count()
        ),
        (2, 1),
        "both logins and the logout went through: {}",
        flow.logs
    );
    flow.assert_no_secret_leaked();
}

#[actix_rt::test]
async fn no_token_reaches_the_logs_or_error_messages_of_a_failing_store() {
    let flow = login_flow(AnyStore::new(FailingStore)).await;
    assert!(
        flow.logs.contains("session store failed"),
        "the failing store's errors were logged: {}",
        flow.logs
    );
    flow.assert_no_secret_leaked();
}
