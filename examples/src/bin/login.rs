//! Log in, see a greeting, log out: `cargo run -p latchkey-examples --bin login`.

use latchkey_examples::{login, support};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    support::serve("login", login::DEFAULT_IDLE, |cfg, _, _| login::routes(cfg)).await
}
