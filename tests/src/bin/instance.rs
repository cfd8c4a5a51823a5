//! One application instance for the multi-instance tests: the login, devices
//! and counter flows (counter under `/counter/`) on the store named by
//! `LATCHKEY_STORE`, listening on `PORT`, signing with `LATCHKEY_KEY`.

use actix_web::web;
use latchkey_examples::devices::{self, Devices};
use latchkey_examples::{counter, login, support};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    support::serve(
        "instance",
        login::DEFAULT_IDLE,
        |cfg, store, idle_timeout| {
            cfg.app_data(web::Data::new(Devices {
                store: store.clone(),
                idle_timeout,
            }));
            cfg.service(web::scope("/counter").configure(counter::routes));
            devices::routes(cfg);
        },
    )
    .await
}
