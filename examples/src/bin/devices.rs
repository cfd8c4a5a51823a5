//! Your active devices: `cargo run -p latchkey-examples --bin devices`.

use actix_web::web;
use latchkey_examples::devices::{self, Devices};
use latchkey_examples::{login, support};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    support::serve(
        "devices",
        login::DEFAULT_IDLE,
        |cfg, store, idle_timeout| {
            cfg.app_data(web::Data::new(Devices {
                store: store.clone(),
                idle_timeout,
            }));
            devices::routes(cfg);
        },
    )
    .await
}
