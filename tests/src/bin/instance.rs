//! One application instance for the multi-instance tests: the login, devices
//! and counter flows (counter under `/counter/`) on the store named by
//! `LATCHKEY_STORE`, listening on `PORT`, signing with `LATCHKEY_KEY`.

use actix_web::{App, HttpServer, web};
use latchkey::SessionMiddleware;
use latchkey_examples::devices::{self, Devices};
use latchkey_examples::support::{self, Options};
use latchkey_examples::{counter, login};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let options = Options::parse("instance", "One instance of the multi-instance tests.");
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
    HttpServer::new(move || {
        App::new()
            .wrap(sessions.clone())
            .app_data(devices.clone())
            .service(web::scope("/counter").configure(counter::routes))
            .configure(devices::routes)
    })
    .bind(("127.0.0.1", options.port))?
    .run()
    .await
}
