//! The route shape of the classic session tutorial.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /user/{name}` | stores the name: `Session Set: <a href="/user">View Here</a>` |
//! | `GET /user` | the name and a logout link, or `user logged out!` |
//! | `GET /logout` | destroys the session: `logged out!` and a link back to `/user` |

use actix_web::{HttpResponse, web};
use latchkey::Session;

use crate::html::{escape, page};

/// The session key holding the name.
pub const NAME_KEY: &str = "user";

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/user/{name}", web::get().to(set_user))
        .route("/user", web::get().to(show_user))
        .route("/logout", web::get().to(logout));
}

async fn set_user(
    session: Session,
    name: web::Path<String>,
) -> Result<HttpResponse, latchkey::Error> {
    session.insert(NAME_KEY, name.into_inner())?;
    Ok(page(
        "User",
        r#"Session Set: <a href="/user">View Here</a>"#,
    ))
}

async fn show_user(session: Session) -> Result<HttpResponse, latchkey::Error> {
    Ok(match session.get::<String>(NAME_KEY)? {
        Some(name) => page(
            "User",
            &format!(r#"{} <a href="/logout">Logout</a>"#, escape(&name)),
        ),
        None => page("User", "user logged out!"),
    })
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    page("User", r#"logged out! <a href="/user">Back to /user</a>"#)
}
