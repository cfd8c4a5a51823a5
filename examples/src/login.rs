//! Log in with a form, see a greeting, change the email after confirming the
//! password, log out.
//!
//! | route | what it does |
//! | --- | --- |
//! | `GET /` | to `/admin` when logged in, otherwise the login form |
//! | `POST /login` | checks the CSRF token, stores the email, logs in (new session id, owner, "remember me" if ticked), to `/admin` |
//! | `GET /admin` | `Hello <email>`, the flash messages, a link to change the email and a logout button, or `Please login first.` |
//! | `GET /email`, `POST /email` | the change-email form and its handler; both demand a password confirmed within five minutes, else to `/confirm` |
//! | `GET /confirm`, `POST /confirm` | the confirm-password form and its handler, then to `/email` |
//! | `POST /logout` | checks the CSRF token, purges the session, to `/` |
//! | `GET /logout` | a page with the logout button (a link alone logs no one out) |
//!
//! Every form carries the session's CSRF token, checked before anything
//! changes. The example accepts any non-empty password: it shows the session
//! handling around a login, not credential checking.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use latchkey::{CsrfRejected, FlashLevel, RecentlyAuthenticated, Session, StepUpConfig};
use serde::Deserialize;

use crate::html::{escape, page, see_other};

/// The idle timeout of the login example unless overridden: the seed
/// tutorial's 260 seconds.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(260);

/// How long "remember me" keeps an unused session: the default lifetime,
/// which is also the default bound.
pub const REMEMBER_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// How recent a password confirmation the change-email page wants.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(5 * 60);

/// The session key holding the logged-in email.
pub const EMAIL_KEY: &str = "email";

/// Registers the login routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        StepUpConfig::default()
            .max_age(CONFIRM_WITHIN)
            .redirect_to("/confirm"),
    )
    .route("/", web::get().to(index))
    .route("/login", web::post().to(login))
    .route("/admin", web::get().to(admin))
    .route("/email", web::get().to(email_page))
    .route("/email", web::post().to(change_email))
    .route("/confirm", web::get().to(confirm_page))
    .route("/confirm", web::post().to(confirm))
    .route("/logout", web::post().to(logout))
    .route("/logout", web::get().to(logout_page));
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    /// The session's CSRF token, from the form.
    pub csrf_token: String,
    /// Who logs in.
    pub email: String,
    /// Accepted if non-empty; see the module docs.
    pub password: String,
    /// Present when "remember me" is ticked.
    pub remember: Option<String>,
}

/// A form that carries only the CSRF token (logout, revoke).
#[derive(Debug, Deserialize)]
pub struct TokenOnly {
    /// The session's CSRF token, from the form.
    pub csrf_token: String,
}

/// The change-email form's fields.
#[derive(Debug, Deserialize)]
pub struct NewEmail {
    /// The session's CSRF token, from the form.
    pub csrf_token: String,
    /// The new address.
    pub email: String,
}

/// The confirm-password form's fields.
#[derive(Debug, Deserialize)]
pub struct Confirmation {
    /// The session's CSRF token, from the form.
    pub csrf_token: String,
    /// Accepted if non-empty; see the module docs.
    pub password: String,
}

/// The hidden field every form carries.
pub fn csrf_field(token: &str) -> String {
    format!(
        r#"<input type="hidden" name="csrf_token" value="{}">"#,
        escape(token)
    )
}

/// The login form.
pub fn login_form(token: &str) -> String {
    format!(
        r#"<h1>Login</h1>
<form method="post" action="/login">
  {}
  <label>Email <input type="email" name="email" id="email" required></label>
  <label>Password <input type="password" name="password" id="password" required></label>
  <label><input type="checkbox" name="remember" id="remember"> Remember me</label>
  <button type="submit" id="login">Log in</button>
</form>"#,
        csrf_field(token)
    )
}

/// The logout button: a form, so only a same-site POST with the token logs out.
pub fn logout_form(token: &str) -> String {
    format!(
        r#"<form method="post" action="/logout">{}<button type="submit" id="logout">Log out</button></form>"#,
        csrf_field(token)
    )
}

fn refused() -> actix_web::Error {
    CsrfRejected.into()
}

async fn index(session: Session) -> Result<HttpResponse, latchkey::Error> {
    if session.get::<String>(EMAIL_KEY)?.is_some() {
        return Ok(see_other("/admin"));
    }
    Ok(page("Login", &login_form(&session.csrf_token()?)))
}

async fn login(
    session: Session,
    form: web::Form<Credentials>,
) -> Result<HttpResponse, actix_web::Error> {
    let Credentials {
        csrf_token,
        email,
        password,
        remember,
    } = form.into_inner();
    if !session.verify_csrf(&csrf_token) {
        return Err(refused());
    }
    let email = email.trim().to_owned();
    if email.is_empty() || password.is_empty() {
        return Ok(HttpResponse::BadRequest()
            .content_type(actix_web::http::header::ContentType::html())
            .body(format!(
                "<p>Email and password are required.</p>{}",
                login_form(&session.csrf_token()?)
            )));
    }
    // A new id on every privilege change, so a token planted before login is
    // useless, and a new lifetime, since the user just proved who they are.
    session.insert(EMAIL_KEY, &email)?;
    session.login(email);
    if remember.is_some() {
        session.remember(REMEMBER_FOR)?;
    }
    session.flash(FlashLevel::Success, "Logged in.")?;
    Ok(see_other("/admin"))
}

async fn admin(session: Session) -> Result<HttpResponse, latchkey::Error> {
    let Some(email) = session.get::<String>(EMAIL_KEY)? else {
        return Ok(page(
            "Admin",
            r#"<p>Please login first.</p><p><a href="/">Log in</a></p>"#,
        ));
    };
    let flashes: String = session
        .take_flashes()?
        .iter()
        .map(|flash| format!("<p class=\"flash\">{}</p>\n", escape(&flash.message)))
        .collect();
    Ok(page(
        "Admin",
        &format!(
            "{flashes}<h1>Hello {}</h1>\n<p><a href=\"/email\">Change email</a></p>\n{}",
            escape(&email),
            logout_form(&session.csrf_token()?)
        ),
    ))
}

async fn email_page(user: RecentlyAuthenticated) -> Result<HttpResponse, latchkey::Error> {
    let session = user.session();
    let current = session.get::<String>(EMAIL_KEY)?.unwrap_or_default();
    Ok(page(
        "Change email",
        &format!(
            r#"<h1>Change email</h1>
<form method="post" action="/email">
  {}
  <label>New email <input type="email" name="email" id="new-email" value="{}" required></label>
  <button type="submit" id="change">Change</button>
</form>"#,
            csrf_field(&session.csrf_token()?),
            escape(&current)
        ),
    ))
}

async fn change_email(
    user: RecentlyAuthenticated,
    form: web::Form<NewEmail>,
) -> Result<HttpResponse, actix_web::Error> {
    let session = user.session();
    if !session.verify_csrf(&form.csrf_token) {
        return Err(refused());
    }
    let email = form.email.trim();
    if email.is_empty() {
        return Ok(see_other("/email"));
    }
    session.insert(EMAIL_KEY, email)?;
    session.flash(FlashLevel::Success, "Email changed.")?;
    Ok(see_other("/admin"))
}

async fn confirm_page(session: Session) -> Result<HttpResponse, latchkey::Error> {
    if session.owner().is_none() {
        return Ok(see_other("/"));
    }
    Ok(page(
        "Confirm password",
        &format!(
            r#"<h1>Confirm your password</h1>
<form method="post" action="/confirm">
  {}
  <label>Password <input type="password" name="password" id="confirm-password" required></label>
  <button type="submit" id="confirm">Confirm</button>
</form>"#,
            csrf_field(&session.csrf_token()?)
        ),
    ))
}

async fn confirm(
    session: Session,
    form: web::Form<Confirmation>,
) -> Result<HttpResponse, actix_web::Error> {
    if !session.verify_csrf(&form.csrf_token) {
        return Err(refused());
    }
    if session.owner().is_none() {
        return Ok(see_other("/"));
    }
    if form.password.is_empty() {
        return Ok(see_other("/confirm"));
    }
    session.confirm_identity()?;
    Ok(see_other("/email"))
}

async fn logout(
    session: Session,
    form: web::Form<TokenOnly>,
) -> Result<HttpResponse, actix_web::Error> {
    if !session.verify_csrf(&form.csrf_token) {
        return Err(refused());
    }
    session.purge();
    Ok(see_other("/"))
}

async fn logout_page(session: Session) -> Result<HttpResponse, latchkey::Error> {
    Ok(page(
        "Log out",
        &format!(
            "<p>Log out of this session?</p>{}",
            logout_form(&session.csrf_token()?)
        ),
    ))
}
