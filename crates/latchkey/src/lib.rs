//! Server-side sessions for [actix-web](https://actix.rs): correct under
//! concurrency, lazy, and secure by default.
//!
//! # Getting started
//!
//! ```no_run
//! use actix_web::{App, HttpServer, cookie::Key, web};
//! use latchkey::{Session, SessionMiddleware, memory::MemoryStore};
//!
//! async fn index(session: Session) -> Result<String, latchkey::Error> {
//!     let views = session.update("views", |v: Option<u64>| v.unwrap_or(0) + 1)?;
//!     Ok(format!("Number of visits: {views}"))
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     // Load the key from configuration: a new key logs everyone out.
//!     let key = Key::generate();
//!     let store = MemoryStore::new();
//!     HttpServer::new(move || {
//!         App::new()
//!             .wrap(SessionMiddleware::new(store.clone(), key.clone()))
//!             .route("/", web::get().to(index))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! }
//! ```
//!
//! # Choosing a store
//!
//! | feature | what it adds | default? |
//! | --- | --- | --- |
//! | `memory` | `memory::MemoryStore`: in-process, no server; sessions end with the process | yes |
//! | `redis` | `redis::RedisStore`: one string per session, Lua compare-and-set, native TTL | no |
//! | `postgres` | `postgres::PostgresStore`: one row per session, `jsonb` data, compare-and-set `UPDATE` | no |
//! | `redis-rustls`, `redis-native-tls` | the Redis store over TLS (`rediss://`), through rustls (on ring) or the platform's TLS | no |
//! | `postgres-rustls`, `postgres-native-tls` | the PostgreSQL store over TLS (`sslmode=require`, or the builder's TLS settings), likewise | no |
//! | `actix-session` | `bridge::ActixSessionStore`: any latchkey store behind actix-session's middleware | no |
//! | `cache` | `cache::CachedStore`: a read-through cache in front of any store, with a staleness bound | no |
//! | `test-util` | `testing::TestSessions`: requests with seeded sessions, and the session as saved, for handler tests | no |
//! | `metrics` | every counter and a store-latency histogram through the `metrics` facade, with a `store` label | no |
//!
//! Every store implements [`store::SessionStore`] and passes the same conformance suite
//! (`latchkey-testkit`), so switching is one line. [`store_from_url`] picks one
//! from configuration at run time (`memory`, `redis://…`, `redis-cluster://…`,
//! `postgres://…`), as an [`AnyStore`].
//!
//! # What happens in a request
//!
//! 1. The middleware does nothing until something takes the [`Session`]: a
//!    request that never does costs no store access and gets no cookie.
//! 2. Taking the `Session` verifies the cookie's signature (or decrypts it) and
//!    the token's form, then loads the session, once per request however many
//!    extractors take it. A missing, malformed, forged, expired or unknown
//!    cookie yields a new, empty session; nothing invalid reaches the store.
//! 3. The handler reads and writes synchronously: [`Session::get`],
//!    [`insert`](Session::insert), [`remove`](Session::remove),
//!    [`update`](Session::update), [`clear`](Session::clear),
//!    [`renew`](Session::renew), [`purge`](Session::purge),
//!    [`set_owner`](Session::set_owner).
//! 4. After the handler, one outcome decides the store work: a session whose
//!    values and owner are as loaded writes nothing, except a `touch` when the
//!    [idle extension](SessionMiddlewareBuilder::idle_extension) is due; a
//!    changed one is saved with compare-and-set on its version; a new non-empty
//!    one is created; a renewed one is created under a new token and the old
//!    token retired only at the version loaded; a purged one is deleted and its
//!    cookie removed.
//! 5. If another request saved the session in between, this request's changes
//!    are replayed on the fresh copy (each `update` function runs again), up to
//!    [a bound](SessionMiddlewareBuilder::max_conflict_retries), with the limits
//!    checked again on the result. Two requests that change different keys both
//!    land; `n` concurrent `update(k, +1)` add `n`. A session deleted meanwhile
//!    (logged out elsewhere) is not written back, not renewed back to life, and
//!    its cookie is left alone. All of a request's session work is bounded by
//!    [one deadline](SessionMiddlewareBuilder::session_deadline).
//! 6. If the store fails, the response becomes the configured status (503 by
//!    default) with an opaque body; the error is logged, never the token. A
//!    handler that returns a [`latchkey::Error`](Error) (a limit exceeded, a
//!    value that would not serialize) keeps none of its session changes.
//!
//! # Beyond handlers
//!
//! - [`SessionExt`] gives the request's session to a `from_fn` middleware, a
//!   custom extractor or another crate's middleware: the same session the
//!   handler sees, loaded once.
//! - [`SessionGuardExt`] gives guards a session loaded before routing
//!   ([`load_before_routing`](SessionMiddlewareBuilder::load_before_routing)).
//! - [`Authenticated`] is the session of a signed-in user (one with an
//!   [owner](Session::owner)); without one the request is answered 401, or a
//!   redirect set with [`AuthenticatedConfig`], and the handler does not run.
//! - `testing::TestSessions` (feature `test-util`) seeds sessions and reads
//!   back what a request saved, for unit tests of handlers.
//!
//! # Security model in five lines
//!
//! - Tokens are 256 bits from a CSPRNG seeded by the OS; stores hold only their SHA-256.
//! - Cookies are signed (or encrypted) with the first of a list of keys; all verify.
//! - Defaults: `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`; `__Host-` names are checked.
//! - Idle timeout and absolute lifetime are enforced by the server, not the cookie.
//! - [`Session::renew`] on login defeats fixation; [`Session::purge`] logs out for real.

mod audit;
mod authenticated;
#[cfg(feature = "actix-session")]
pub mod bridge;
#[cfg(feature = "cache")]
pub mod cache;
mod config;
mod cookie;
mod csrf;
mod device;
mod devices;
mod error;
mod flash;
mod lifecycle;
mod metrics;
mod middleware;
mod ops;
mod request_ext;
mod session;
mod shared;
mod step_up;
mod store_url;
#[cfg(feature = "test-util")]
pub mod testing;
mod write_queue;

pub use self::audit::{AuditEvent, AuditKind, AuditSink};
pub use self::authenticated::{Authenticated, AuthenticatedConfig, NotAuthenticated};
pub use self::config::{
    ConfigError, CookieContentSecurity, CookieLifetime, IdleExtension, SessionMiddlewareBuilder,
};
pub use self::csrf::{CSRF_HEADER, CsrfRejected, CsrfVerified};
pub use self::device::{ClientIp, Device, DeviceMetadata};
pub use self::devices::DeviceSession;
pub use self::error::Error;
pub use self::flash::{Flash, FlashLevel};
pub use self::metrics::{MetricsSnapshot, SessionMetrics};
pub use self::middleware::SessionMiddleware;
// Named by actix-web's `Transform` impl; applications never write it.
#[doc(hidden)]
pub use self::middleware::SessionService;
pub use self::request_ext::{SessionExt, SessionGuardExt};
pub use self::session::{Session, SessionStatus};
pub use self::step_up::{RecentlyAuthenticated, StepUpConfig, StepUpRequired};
pub use self::store_url::{StoreUrlError, store_from_url};

pub use latchkey_core::{AnyStore, SessionId, StoreError, Timestamp};

/// The store contract: what a session backend implements, and the types it
/// trades in.
///
/// Applications pick a store (`memory`, `redis`, `postgres`, or
/// [`store_from_url`]) and rarely need this module;
/// a crate adding a backend implements [`SessionStore`](latchkey_core::SessionStore) and checks it with
/// `latchkey-testkit`'s conformance suite, which runs every promise of the
/// contract against a real instance.
pub mod store {
    pub use latchkey_core::{
        AnyStore, Deadlines, DeleteOutcome, Record, RuntimeSlot, SaveOutcome, SessionData,
        SessionId, SessionStore, SessionToken, StoreError, Timestamp, TokenError,
    };
}

/// The guides of the repository's `docs/` folder, here so that their examples
/// are compiled and tested with the crate.
// The repository's top-level `docs/` is the source of these pages; the crate
// includes its own copies because a published tarball holds only the crate's
// folder, and `tests/tests/packaged_copies.rs` fails when the two differ.
pub mod guides {
    #[doc = include_str!("../docs/guide.md")]
    #[cfg(feature = "memory")]
    pub mod guide {}

    #[doc = include_str!("../docs/redis.md")]
    #[cfg(feature = "redis")]
    pub mod redis {}

    #[doc = include_str!("../docs/postgres.md")]
    #[cfg(feature = "postgres")]
    pub mod postgres {}

    #[doc = include_str!("../docs/scaling.md")]
    pub mod scaling {}

    #[doc = include_str!("../docs/security.md")]
    #[cfg(feature = "memory")]
    pub mod security {}

    #[doc = include_str!("../docs/observability.md")]
    #[cfg(feature = "memory")]
    pub mod observability {}

    #[doc = include_str!("../docs/migrate-actix-session.md")]
    #[cfg(all(feature = "actix-session", feature = "redis"))]
    pub mod migrate_actix_session {}

    #[doc = include_str!("../docs/migrate-express-session.md")]
    #[cfg(feature = "redis")]
    pub mod migrate_express_session {}
}

/// The in-process store (feature `memory`, on by default).
#[cfg(feature = "memory")]
pub mod memory {
    pub use latchkey_memory::*;
}

/// The Redis store (feature `redis`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use latchkey_redis::*;
}

/// The PostgreSQL store (feature `postgres`).
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use latchkey_postgres::*;
}
