//! Where tests find their servers, and names that keep parallel tests apart.
//!
//! Tests read `REDIS_URL` and `DATABASE_URL`, defaulting to the usual loopback
//! addresses. Every test isolates its data with [`unique_name`] (a key prefix, a
//! schema) so that tests share one server and still run in parallel.

use std::sync::atomic::{AtomicU64, Ordering};

/// Default Redis for tests when `REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Default PostgreSQL for tests when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The Redis tests use: `REDIS_URL`, or [`DEFAULT_REDIS_URL`].
///
/// # Examples
///
/// ```
/// assert!(latchkey_testkit::servers::redis_url().starts_with("redis"));
/// ```
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// The PostgreSQL tests use: `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
///
/// # Examples
///
/// ```
/// assert!(latchkey_testkit::servers::database_url().starts_with("postgres"));
/// ```
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A name no other test in this or any concurrent run uses: `prefix`, the process
/// id, a counter and the clock, all lower-case ASCII letters, digits and `_`, so
/// it is valid as a Redis key prefix and a PostgreSQL identifier.
///
/// # Examples
///
/// ```
/// let a = latchkey_testkit::servers::unique_name("t");
/// let b = latchkey_testkit::servers::unique_name("t");
/// assert_ne!(a, b);
/// assert!(a.starts_with("t_"));
/// ```
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a private server.
///
/// # Errors
///
/// When no port can be bound.
///
/// # Examples
///
/// ```
/// let port = latchkey_testkit::servers::free_port()?;
/// assert!(port > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
