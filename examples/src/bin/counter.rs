//! Counts a visitor's requests: `cargo run -p latchkey-examples --bin counter`.

use actix_web::{App, HttpServer};
use latchkey_examples::{counter, support};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    support::init_tracing();
    let store = support::store_from_env().await?;
    let key = support::key_from_env()?;
    let port = support::port()?;
    let sessions = support::session_builder(store, key)
        .build()
        .map_err(std::io::Error::other)?;
    tracing::info!("counter listening on http://127.0.0.1:{port}/");
    HttpServer::new(move || App::new().wrap(sessions.clone()).configure(counter::routes))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
