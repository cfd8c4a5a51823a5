//! Counts a visitor's requests: `cargo run -p latchkey-examples --bin counter`.

use std::time::Duration;

use actix_web::{App, HttpServer};
use latchkey::SessionMiddleware;
use latchkey_examples::counter;
use latchkey_examples::support::{self, Options};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let options = Options::parse("counter", "Counts a visitor's requests in their session.");
    support::init_tracing();

    // The store is made once, outside the worker closure, and shared by every worker.
    let store = options.store().await?;
    let sessions = SessionMiddleware::builder(store, options.key()?)
        .cookie_secure(options.secure_cookie)
        .idle_timeout(options.idle_timeout(Duration::from_secs(24 * 3600)))
        .build()
        .map_err(std::io::Error::other)?;
    support::serve_metrics(options.metrics_port, sessions.metrics())?;

    tracing::info!("counter listening on http://127.0.0.1:{}/", options.port);
    HttpServer::new(move || App::new().wrap(sessions.clone()).configure(counter::routes))
        .bind(("127.0.0.1", options.port))?
        .run()
        .await
}
