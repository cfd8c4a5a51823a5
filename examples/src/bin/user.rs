//! The classic tutorial's routes: `cargo run -p latchkey-examples --bin user`.

use std::time::Duration;

use latchkey_examples::{support, user};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    support::serve("user", Duration::from_secs(24 * 3600), |cfg, _, _| {
        user::routes(cfg)
    })
    .await
}
