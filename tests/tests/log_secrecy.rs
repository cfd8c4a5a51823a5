//! Tokens never appear in logs or error messages: every log line of the login
//! flow, on every store and on a failing one, is captured at TRACE level and
//! searched for every token and cookie value the flow handed out or was sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::{App, test};
use latchkey::store::SessionToken;
use latchkey::{AnyStore, SessionMiddleware};
use latchkey_examples::login;
use latchkey_tests::stores::{FailingStore, all_backends};

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

#[actix_rt::test]
async fn no_token_reaches_the_logs_or_error_messages() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut secrets: Vec<String> = Vec::new();
    let mut bodies = String::new();
    let mut backends = all_backends().await;
    backends.push(("failing", AnyStore::new(FailingStore)));
    for (_backend, store) in backends {
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
        for (login_request, path) in [
            (false, "/"),
            (true, "/login"),
            (false, "/admin"),
            (true, "/login"),
            (false, "/admin"),
            (false, "/logout"),
        ] {
            let mut req = if login_request {
                test::TestRequest::post()
                    .uri(path)
                    .set_form([("email", "ann@example.com"), ("password", "pw")])
            } else if path == "/logout" {
                test::TestRequest::post().uri(path)
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
            bodies.push_str(&String::from_utf8_lossy(&test::read_body(res).await));
        }
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("session created"),
        "the capture works: {logs}"
    );
    assert!(
        logs.contains("session store failed"),
        "the failing store's errors were logged"
    );
    assert!(
        logs.lines().any(
            |line| line.contains("INFO") && line.contains("session cookie failed verification")
        ),
        "rejected cookies are logged at INFO"
    );
    assert!(
        secrets.len() > 8,
        "tokens were handed out: {}",
        secrets.len()
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a token or cookie value reached the logs"
        );
        assert!(
            !bodies.contains(secret.as_str()),
            "a token or cookie value reached a response body"
        );
    }
}
