//! The classic tutorial's routes: `cargo run -p latchkey-examples --bin user`.

use std::time::Duration;

use actix_web::{App, HttpServer};
use latchkey::SessionMiddleware;
use latchkey_examples::support::{self, Options};
use latchkey_examples::user;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let options = Options::parse(
        "user",
        "The classic tutorial's routes: set a name (renewing the session), show it, log out.",
    );
    support::init_tracing();

    let store = options.store().await?;
    let sessions = SessionMiddleware::builder(store, options.key()?)
        .cookie_secure(options.secure_cookie)
        .idle_timeout(options.idle_timeout(Duration::from_secs(24 * 3600)))
        .build()
        .map_err(std::io::Error::other)?;
    support::serve_metrics(options.metrics_port, sessions.metrics())?;

    tracing::info!("user listening on http://127.0.0.1:{}/", options.port);
    HttpServer::new(move || App::new().wrap(sessions.clone()).configure(user::routes))
        .bind(("127.0.0.1", options.port))?
        .run()
        .await
}
