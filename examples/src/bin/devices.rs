//! Your active devices: `cargo run -p latchkey-examples --bin devices`.

use actix_web::{App, HttpServer, web};
use latchkey::SessionMiddleware;
use latchkey_examples::devices::{self, Devices};
use latchkey_examples::login;
use latchkey_examples::support::{self, Options};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let options = Options::parse(
        "devices",
        "Log in from several clients, list your sessions, log out the others.",
    );
    support::init_tracing();

    let store = options.store().await?;
    let idle_timeout = options.idle_timeout(login::DEFAULT_IDLE);
    let devices = Devices::default();
    let builder = SessionMiddleware::builder(store, options.key()?)
        .cookie_secure(options.secure_cookie)
        .idle_timeout(idle_timeout);
    let sessions = devices::configure(builder, &devices)
        .build()
        .map_err(std::io::Error::other)?;
    support::serve_metrics(options.metrics_port, sessions.metrics())?;
    let devices = web::Data::new(devices);

    tracing::info!("devices listening on http://127.0.0.1:{}/", options.port);
    HttpServer::new(move || {
        App::new()
            .wrap(sessions.clone())
            .app_data(devices.clone())
            .configure(devices::routes)
    })
    .bind(("127.0.0.1", options.port))?
    .run()
    .await
}
