//! Log in, see a greeting, log out: `cargo run -p latchkey-examples --bin login`.

use actix_web::{App, HttpServer};
use latchkey::SessionMiddleware;
use latchkey_examples::login;
use latchkey_examples::support::{self, Options};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let options = Options::parse(
        "login",
        "Log in with a CSRF-protected form (the session is renewed; \"remember me\" optional), see a greeting, change the email after confirming the password, log out.",
    );
    support::init_tracing();

    let store = options.store().await?;
    let sessions = SessionMiddleware::builder(store, options.key()?)
        .cookie_secure(options.secure_cookie)
        .idle_timeout(options.idle_timeout(login::DEFAULT_IDLE))
        .build()
        .map_err(std::io::Error::other)?;
    support::serve_metrics(options.metrics_port, sessions.metrics())?;

    tracing::info!("login listening on http://127.0.0.1:{}/", options.port);
    HttpServer::new(move || App::new().wrap(sessions.clone()).configure(login::routes))
        .bind(("127.0.0.1", options.port))?
        .run()
        .await
}
