//! The example flows over HTTP, the same test body on every store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, Key};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::{App, test, web};
use latchkey::{AnyStore, SessionMiddleware};
use latchkey_examples::devices::{self, Devices};
use latchkey_examples::{login, user};

/// A client that keeps the session cookie between requests, as a browser does,
/// and sends the CSRF token of the last page it read with every form, as the
/// page's forms would.
struct Client<'a, S> {
    app: &'a S,
    cookie: Option<Cookie<'static>>,
    csrf_token: Option<String>,
    /// The device's user agent and address, sent with every request.
    device: Option<(&'static str, std::net::SocketAddr)>,
}

/// The CSRF token a page's forms carry.
fn page_token(body: &str) -> Option<String> {
    let start = body.find(r#"name="csrf_token" value=""#)? + r#"name="csrf_token" value=""#.len();
    let len = body[start..].find('"')?;
    Some(body[start..start + len].to_owned())
}

impl<'a, S, B> Client<'a, S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    fn new(app: &'a S) -> Self {
        Self {
            app,
            cookie: None,
            csrf_token: None,
            device: None,
        }
    }

    /// A client on a device with this user agent, from this address.
    fn on_device(app: &'a S, agent: &'static str, address: &str) -> Self {
        Self {
            device: Some((agent, address.parse().unwrap())),
            ..Self::new(app)
        }
    }

    async fn send(&mut self, req: test::TestRequest) -> (StatusCode, Option<String>, String) {
        let req = match &self.cookie {
            Some(cookie) => req.cookie(cookie.clone()),
            None => req,
        };
        let req = match self.device {
            Some((agent, address)) => req
                .insert_header((header::USER_AGENT, agent))
                .peer_addr(address),
            None => req,
        };
        let res = test::call_service(self.app, req.to_request()).await;
        if let Some(cookie) = res.response().cookies().find(|c| c.name() == "id") {
            self.cookie = (!cookie.value().is_empty()).then(|| cookie.into_owned());
        }
        let status = res.status();
        let location = res
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
        if let Some(token) = page_token(&body) {
            self.csrf_token = Some(token);
        }
        (status, location, body)
    }

    async fn get(&mut self, path: &str) -> (StatusCode, Option<String>, String) {
        self.send(test::TestRequest::get().uri(path)).await
    }

    /// Posts `form` with the CSRF token of the page at `from`, read first.
    async fn post_form(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, String) {
        let from = if path == "/login" { "/" } else { path };
        // A logged-in user's "/" redirects to a page whose forms carry the
        // session's current token.
        if let (_, Some(location), _) = self.get(from).await {
            self.get(&location).await;
        }
        self.post_read_form(path, form).await
    }

    /// Posts `form` with the token of the page read last.
    async fn post_read_form(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, String) {
        let token = self.csrf_token.clone().unwrap_or_default();
        let mut fields: Vec<(&str, &str)> = vec![("csrf_token", &token)];
        fields.extend_from_slice(form);
        self.send(test::TestRequest::post().uri(path).set_form(&fields))
            .await
    }

    /// Posts an empty form but for the token of the page read last.
    async fn post(&mut self, path: &str) -> (StatusCode, Option<String>, String) {
        self.post_read_form(path, &[]).await
    }
}

fn middleware(store: AnyStore, idle: Duration) -> SessionMiddleware {
    SessionMiddleware::builder(store, Key::generate())
        .cookie_secure(false)
        .idle_timeout(idle)
        .build()
        .unwrap()
}

async fn login_renews_greets_escapes_and_logs_out(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let app = test::init_service(
        App::new()
            .wrap(middleware(store, login::DEFAULT_IDLE))
            .configure(login::routes),
    )
    .await;
    let mut browser = Client::new(&app);

    let (status, _, body) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK, "{backend}");
    assert!(
        body.contains(r#"<form method="post" action="/login">"#),
        "{backend}: login form"
    );
    assert!(body.contains(r#"name="email""#) && body.contains(r#"name="password""#));
    assert!(!body.contains("<script"), "no scripts on the page");
    let (status, _, _) = browser
        .send(test::TestRequest::post().uri("/login").set_form([
            ("csrf_token", "forged"),
            ("email", "ann@example.com"),
            ("password", "pw"),
        ]))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{backend}: a login form from another site is refused"
    );

    let (status, _, body) = browser.get("/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Please login first."), "{backend}");
    assert!(body.contains(r#"<a href="/">"#));

    let email = "<b>ann</b>@example.com";
    let (status, location, _) = browser
        .post_form("/login", &[("email", email), ("password", "pw")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{backend}");
    assert_eq!(location.as_deref(), Some("/admin"));
    let first_login = browser.cookie.clone().expect("logged in");
    // Logging in again (a privilege change on an existing session) renews the
    // id, and the id from before no longer works: no session fixation.
    browser
        .post_form("/login", &[("email", email), ("password", "pw")])
        .await;
    assert_ne!(
        browser.cookie.as_ref(),
        Some(&first_login),
        "{backend}: the session id is renewed on login"
    );
    let mut planted = Client::new(&app);
    planted.cookie = Some(first_login);
    assert!(
        planted
            .get("/admin")
            .await
            .2
            .contains("Please login first."),
        "{backend}: the old id is dead"
    );

    let (_, _, body) = browser.get("/admin").await;
    assert!(
        body.contains("Hello &lt;b&gt;ann&lt;/b&gt;@example.com"),
        "{backend}: escaped greeting: {body}"
    );
    assert!(
        !body.contains("<b>ann"),
        "{backend}: nothing echoed unescaped"
    );
    assert!(
        body.contains(r#"action="/logout""#),
        "{backend}: a logout button"
    );

    let (status, location, _) = browser.get("/").await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/admin")),
        "{backend}"
    );

    let logged_in = browser.cookie.clone().unwrap();
    // GET /logout only shows the button: a cross-site link logs no one out.
    let (_, _, body) = browser.get("/logout").await;
    assert!(
        body.contains(r#"<form method="post" action="/logout">"#),
        "{backend}"
    );
    assert!(
        browser.get("/admin").await.2.contains("Hello"),
        "{backend}: still logged in"
    );

    // A form without the session's token changes nothing.
    let mut forged = browser.csrf_token.replace("forged".into());
    let (status, _, _) = browser.post("/logout").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{backend}: no token, no logout"
    );
    std::mem::swap(&mut browser.csrf_token, &mut forged);
    assert!(
        browser.get("/admin").await.2.contains("Hello"),
        "{backend}: still logged in"
    );

    // Changing the email: allowed right after the login (a fresh proof of
    // identity), with the token; a flash message tells it worked, once.
    let (status, _, body) = browser.get("/email").await;
    assert_eq!(status, StatusCode::OK, "{backend}: {body}");
    let (status, location, _) = browser
        .post_read_form("/email", &[("email", "new@example.com")])
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/admin")),
        "{backend}"
    );
    let (_, _, body) = browser.get("/admin").await;
    assert!(body.contains("Email changed."), "{backend}: {body}");
    assert!(body.contains("Hello new@example.com"), "{backend}");
    assert!(
        !browser.get("/admin").await.2.contains("Email changed."),
        "{backend}: the flash shows once"
    );
    let mut stranger = Client::new(&app);
    let (status, location, _) = stranger.get("/email").await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/confirm")),
        "{backend}: no recent proof of identity"
    );

    browser.get("/logout").await;
    let (status, location, _) = browser.post("/logout").await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/")),
        "{backend}"
    );
    assert!(browser.cookie.is_none(), "{backend}: the cookie is expired");
    assert!(
        browser
            .get("/admin")
            .await
            .2
            .contains("Please login first."),
        "{backend}"
    );

    // The old cookie is worthless after logout: the state is gone server-side.
    let mut replay = Client::new(&app);
    replay.cookie = Some(logged_in);
    assert!(
        replay.get("/admin").await.2.contains("Please login first."),
        "{backend}"
    );

    let (status, _, _) = browser
        .post_form("/login", &[("email", " "), ("password", "pw")])
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{backend}: an empty email is refused"
    );
}

async fn user_sets_shows_and_destroys_the_name(store: latchkey::AnyStore) {
    let backend = latchkey::store::SessionStore::name(&store);
    let app = test::init_service(
        App::new()
            .wrap(middleware(store, Duration::from_secs(60)))
            .configure(user::routes),
    )
    .await;
    let mut browser = Client::new(&app);
    assert!(
        browser.get("/user").await.2.contains("user logged out!"),
        "{backend}"
    );
    let (_, _, body) = browser.get("/user/%3Ci%3Ezoe%3C%2Fi%3E").await;
    assert!(
        body.contains(r#"<form method="post""#) && browser.cookie.is_none(),
        "{backend}: a GET only shows the form, and changes nothing"
    );
    assert!(browser.get("/user").await.2.contains("user logged out!"));
    browser.post("/user/anna").await;
    let first = browser.cookie.clone().expect("a session");
    let (_, _, body) = browser.post("/user/%3Ci%3Ezoe%3C%2Fi%3E").await;
    assert!(
        body.contains(r#"Session Set: <a href="/user">View Here</a>"#),
        "{backend}"
    );
    assert_ne!(
        browser.cookie.as_ref().map(Cookie::value),
        Some(first.value()),
        "{backend}: setting the name renews the session id"
    );
    let (_, _, body) = browser.get("/user").await;
    assert!(
        body.contains("&lt;i&gt;zoe&lt;/i&gt;"),
        "{backend}: escaped name: {body}"
    );
    assert!(
        body.contains(r#"<form method="post" action="/logout">"#),
        "{backend}"
    );
    assert_eq!(
        browser.get("/logout").await.0,
        StatusCode::NOT_FOUND,
        "{backend}: no GET logs out"
    );
    let (_, _, body) = browser.post("/logout").await;
    assert!(
        body.contains("logged out!") && body.contains(r#"<a href="/user">"#),
        "{backend}"
    );
    assert!(
        browser.get("/user").await.2.contains("user logged out!"),
        "{backend}"
    );
}

latchkey_tests::on_every_store!(
    login_renews_greets_escapes_and_logs_out,
    user_sets_shows_and_destroys_the_name,
    devices_lists_sessions_signs_out_one_or_the_others_and_logs_it,
);

async fn devices_lists_sessions_signs_out_one_or_the_others_and_logs_it(store: latchkey::AnyStore) {
    let data = Devices::default();
    let builder = SessionMiddleware::builder(store, Key::generate())
        .cookie_secure(false)
        .idle_timeout(login::DEFAULT_IDLE);
    let sessions = devices::configure(builder, &data).build().unwrap();
    let app = test::init_service(
        App::new()
            .wrap(sessions)
            .app_data(web::Data::new(data))
            .configure(devices::routes),
    )
    .await;
    let email = format!(
        "dev-{}@example.com",
        latchkey_testkit::servers::unique_name("u")
    );
    let mut laptop = Client::on_device(&app, "Laptop <Firefox>", "198.51.100.23:5000");
    let mut phone = Client::on_device(&app, "Phone Safari", "[2001:db8:5:6::9]:443");
    let mut tablet = Client::on_device(&app, "Tablet", "192.0.2.200:1");
    let mut other_user = Client::new(&app);
    for client in [&mut laptop, &mut phone, &mut tablet] {
        client
            .post_form("/login", &[("email", &email), ("password", "pw")])
            .await;
    }
    other_user
        .post_form(
            "/login",
            &[("email", "someone-else@example.com"), ("password", "pw")],
        )
        .await;

    let (_, _, body) = laptop.get("/sessions").await;
    assert_eq!(body.matches("<tr class=\"session\">").count(), 3, "{body}");
    assert_eq!(
        body.matches("this device").count(),
        1,
        "the current one is marked"
    );
    assert!(
        body.contains("Laptop &lt;Firefox&gt;"),
        "agents, escaped: {body}"
    );
    assert!(body.contains("Phone Safari"), "{body}");
    assert!(
        body.contains("198.51.100.0"),
        "networks, not addresses: {body}"
    );
    assert!(body.contains("2001:db8:5::"), "{body}");
    assert!(!body.contains("198.51.100.23"), "{body}");
    assert!(body.contains("UTC"), "created and last-seen times");

    // Sign out the phone by the id its row posts.
    let row = body
        .lines()
        .find(|line| line.contains("Phone Safari"))
        .expect("the phone's row");
    let id_at =
        row.find(r#"name="id" value=""#).expect("a sign-out form") + r#"name="id" value=""#.len();
    let phone_id = row[id_at..id_at + 64].to_owned();
    let (status, location, _) = laptop
        .post_read_form("/sessions/revoke", &[("id", &phone_id)])
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/sessions"))
    );
    assert!(
        laptop
            .get("/sessions")
            .await
            .2
            .contains("That device is signed out.")
    );
    assert!(
        phone.get("/admin").await.2.contains("Please login first."),
        "the phone is out"
    );
    // The other user cannot sign out the laptop by naming one of its ids.
    let (_, _, body) = laptop.get("/sessions").await;
    let tablet_row = body
        .lines()
        .find(|line| line.contains("Tablet"))
        .expect("the tablet's row");
    let id_at = tablet_row.find(r#"name="id" value=""#).unwrap() + r#"name="id" value=""#.len();
    let tablet_id = tablet_row[id_at..id_at + 64].to_owned();
    other_user.get("/admin").await;
    other_user
        .post_read_form("/sessions/revoke", &[("id", &tablet_id)])
        .await;
    assert!(
        tablet.get("/admin").await.2.contains("Hello"),
        "not someone else's to end"
    );

    let (status, location, _) = laptop.post_form("/sessions/revoke-others", &[]).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/sessions"))
    );
    assert!(tablet.get("/admin").await.2.contains("Please login first."));
    assert!(
        laptop.get("/admin").await.2.contains("Hello"),
        "the laptop stays"
    );
    assert!(
        other_user.get("/admin").await.2.contains("Hello"),
        "other users stay"
    );
    let (_, _, body) = laptop.get("/sessions").await;
    assert_eq!(body.matches("<tr class=\"session\">").count(), 1);

    let (_, _, log) = laptop.get("/audit").await;
    let kinds: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("class=\"kind\""))
        .filter_map(|line| line.split("class=\"kind\">").nth(1)?.split('<').next())
        .collect();
    assert_eq!(
        kinds,
        ["revoked_others", "revoked_one", "login", "login", "login"],
        "newest first: {log}"
    );
    assert!(!log.contains("someone-else"), "only this user's events");

    assert!(
        Client::new(&app)
            .get("/sessions")
            .await
            .2
            .contains("Please login first.")
    );
}
