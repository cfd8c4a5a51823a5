//! Counts a visitor's requests: `cargo run -p latchkey-examples --bin counter`.

use std::time::Duration;

use latchkey_examples::{counter, support};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    support::serve("counter", Duration::from_secs(24 * 3600), |cfg, _, _| {
        counter::routes(cfg)
    })
    .await
}
