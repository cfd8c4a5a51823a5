//! The route shape of the classic session tutorial, with its state changes
//! behind `POST` (a link or a prefetch must not change a session).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /user/{name}` | a form that sets the name |
//! | `POST /user/{name}` | renews the session (a new identity is a privilege change) and stores the name: `Session Set: <a href="/user">View Here</a>` |
//! | `GET /user` | the name and a logout form, or `user logged out!` |
//! | `POST /logout` | destroys the session: `logged out!` and a link back to `/user` |

use actix_web::{HttpResponse, web};
use latchkey::Session;

use crate::html::{escape, page};

/// The session key holding the name.
pub const NAME_KEY: &str = "user";

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/user/{name}", web::get().to(set_user_form))
        .route("/user/{name}", web::post().to(set_user))
        .route("/user", web::get().to(show_user))
        .route("/logout", web::post().to(logout));
}

async fn set_user_form(name: web::Path<String>) -> HttpResponse {
    let name = escape(&name);
    page(
        "User",
        &format!(
            r#"<form method="post" action="/user/{name}"><button>Set the name to {name}</button></form>"#
        ),
    )
}

async fn set_user(
    session: Session,
    name: web::Path<String>,
) -> Result<HttpResponse, latchkey::Error> {
    session.renew();
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
            &format!(
                r#"{} <form method="post" action="/logout"><button>Logout</button></form>"#,
                escape(&name)
            ),
        ),
        None => page("User", "user logged out!"),
    })
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    page("User", r#"logged out! <a href="/user">Back to /user</a>"#)
}
