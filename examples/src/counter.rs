//! The seed flow: `GET /` counts a visitor's requests.

use actix_web::web;
use latchkey::Session;

/// The greeting on a visitor's first request.
pub const FIRST_VISIT: &str = "Welcome! This is your first visit.";

/// Registers the counter's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index));
}

async fn index(session: Session) -> Result<String, latchkey::Error> {
    let visits = session.update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)?;
    Ok(if visits == 1 {
        FIRST_VISIT.to_owned()
    } else {
        format!("Number of visits: {visits}")
    })
}
