//! Log in with a form, see a greeting, log out.
//!
//! | route | what it does |
//! | --- | --- |
//! | `GET /` | to `/admin` when logged in, otherwise the login form |
//! | `POST /login` | stores the email, renews the session id, sets the owner, to `/admin` |
//! | `GET /admin` | `Hello <email>` and a logout button, or `Please login first.` |
//! | `POST /logout` | purges the session, to `/` |
//! | `GET /logout` | a page with the logout button (a link alone logs no one out) |
//!
//! The example accepts any non-empty password: it shows the session handling
//! around a login, not credential checking.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use latchkey::Session;
use serde::Deserialize;

use crate::html::{escape, page, see_other};

/// The idle timeout of the login example unless overridden: the seed
/// tutorial's 260 seconds.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(260);

/// The session key holding the logged-in email.
pub const EMAIL_KEY: &str = "email";

/// Registers the login routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::post().to(login))
        .route("/admin", web::get().to(admin))
        .route("/logout", web::post().to(logout))
        .route("/logout", web::get().to(logout_page));
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    /// Who logs in.
    pub email: String,
    /// Accepted if non-empty; see the module docs.
    pub password: String,
}

/// The login form.
pub const LOGIN_FORM: &str = r#"<h1>Login</h1>
<form method="post" action="/login">
  <label>Email <input type="email" name="email" id="email" required></label>
  <label>Password <input type="password" name="password" id="password" required></label>
  <button type="submit" id="login">Log in</button>
</form>"#;

/// The logout button: a form, so only a same-site POST logs out.
pub const LOGOUT_FORM: &str = r#"<form method="post" action="/logout"><button type="submit" id="logout">Log out</button></form>"#;

async fn index(session: Session) -> Result<HttpResponse, latchkey::Error> {
    if session.get::<String>(EMAIL_KEY)?.is_some() {
        return Ok(see_other("/admin"));
    }
    Ok(page("Login", LOGIN_FORM))
}

async fn login(
    session: Session,
    form: web::Form<Credentials>,
) -> Result<HttpResponse, latchkey::Error> {
    let Credentials { email, password } = form.into_inner();
    let email = email.trim().to_owned();
    if email.is_empty() || password.is_empty() {
        return Ok(HttpResponse::BadRequest()
            .content_type(actix_web::http::header::ContentType::html())
            .body(format!(
                "<p>Email and password are required.</p>{LOGIN_FORM}"
            )));
    }
    // A new id on every privilege change, so a token planted before login is
    // useless, and a new lifetime, since the user just proved who they are.
    session.insert(EMAIL_KEY, &email)?;
    session.login(email);
    Ok(see_other("/admin"))
}

async fn admin(session: Session) -> Result<HttpResponse, latchkey::Error> {
    Ok(match session.get::<String>(EMAIL_KEY)? {
        Some(email) => page(
            "Admin",
            &format!("<h1>Hello {}</h1>\n{LOGOUT_FORM}", escape(&email)),
        ),
        None => page(
            "Admin",
            r#"<p>Please login first.</p><p><a href="/">Log in</a></p>"#,
        ),
    })
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    see_other("/")
}

async fn logout_page() -> HttpResponse {
    page(
        "Log out",
        &format!("<p>Log out of this session?</p>{LOGOUT_FORM}"),
    )
}
