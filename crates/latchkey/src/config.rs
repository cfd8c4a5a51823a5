//! Middleware configuration and its builder.

use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::{Key, SameSite};
use actix_web::http::StatusCode;
use latchkey_core::{AnyStore, SessionStore};

use crate::audit::{Audit, AuditSink};
use crate::cookie::{CookieCodec, CookieKeys};
use crate::device::DeviceMetadata;
use crate::middleware::SessionMiddleware;
use crate::shared::Shared;

/// How the session cookie's value is protected.
///
/// # Examples
///
/// ```
/// assert_eq!(latchkey::CookieContentSecurity::default(), latchkey::CookieContentSecurity::Signed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CookieContentSecurity {
    /// HMAC-SHA256 signature: the token is readable but cannot be forged or
    /// altered. The default: the token is random and reveals nothing.
    #[default]
    Signed,
    /// AES-256-GCM encryption: the token is neither readable nor alterable.
    Private,
}

/// How long the browser keeps the session cookie.
///
/// # Examples
///
/// ```
/// assert_eq!(latchkey::CookieLifetime::default(), latchkey::CookieLifetime::BrowserSession);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CookieLifetime {
    /// No `Max-Age`: the browser drops the cookie when it closes. The default,
    /// as it is the least surprising for a login on a shared computer. A
    /// session that asked to be [remembered](crate::Session::remember) gets a
    /// persistent cookie all the same.
    #[default]
    BrowserSession,
    /// `Max-Age` follows the session's server-side expiry and is refreshed when
    /// the idle deadline is extended.
    Persistent,
}

/// When the idle deadline moves, so that a session in use does not expire.
///
/// Whatever the policy, the absolute deadline ([`lifetime`]) never moves.
///
/// [`lifetime`]: SessionMiddlewareBuilder::lifetime
///
/// # Examples
///
/// ```
/// assert_eq!(latchkey::IdleExtension::default(), latchkey::IdleExtension::OnEveryRequest);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdleExtension {
    /// Every request that takes the session moves the deadline, at most once per
    /// [extension interval](SessionMiddlewareBuilder::idle_extension_interval)
    /// (and once more when the deadline can reach the absolute one): one that
    /// changes the session as part of its save, one that only reads it with a
    /// store touch. The
    /// default: a session used at least once per `idle_timeout − interval`
    /// lives until its absolute deadline. actix-session's `OnEveryRequest`;
    /// express-session's default store touch.
    #[default]
    OnEveryRequest,
    /// Only requests that change the session move the deadline, as part of
    /// their save and at most once per extension interval; reads never write. actix-session's `OnStateChanges`; express-session with
    /// `disableTouch: true`.
    OnChange,
    /// The idle deadline is set when the session is created and never moves: the
    /// session lives `idle_timeout` (or `lifetime`, if shorter) from its start.
    Never,
}

/// The longest idle timeout, lifetime or deadline `build` accepts: ten years.
/// Longer is a mistake (a stolen cookie that never expires) and would overflow
/// stores' expiry arithmetic.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The middleware's settings, as the builder checked them: plain values, no
/// state.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) codec: CookieCodec,
    pub(crate) cookie_lifetime: CookieLifetime,
    pub(crate) idle_timeout: Duration,
    pub(crate) lifetime: Duration,
    pub(crate) max_remembered_idle_timeout: Duration,
    pub(crate) idle_extension: IdleExtension,
    /// The interval set with `idle_extension_interval`, if any; see
    /// [`Settings::extension_interval_for`].
    pub(crate) extension_interval: Option<Duration>,
    pub(crate) session_deadline: Duration,
    pub(crate) store_error_status: StatusCode,
    pub(crate) max_conflict_retries: u32,
    pub(crate) max_session_bytes: usize,
    pub(crate) max_keys: usize,
    pub(crate) load_before_routing: bool,
    pub(crate) device_metadata: DeviceMetadata,
    pub(crate) audit: Audit,
}

/// Configures a [`SessionMiddleware`]; made by [`SessionMiddleware::builder`].
///
/// Every setter says its default and why.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use actix_web::cookie::{Key, SameSite};
/// use latchkey::{CookieLifetime, SessionMiddleware, memory::MemoryStore};
///
/// let middleware = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
///     .cookie_name("sid")
///     .cookie_same_site(SameSite::Strict)
///     .cookie_lifetime(CookieLifetime::Persistent)
///     .idle_timeout(Duration::from_secs(30 * 60))
///     .lifetime(Duration::from_secs(8 * 3600))
///     .build()?;
/// # Ok::<(), latchkey::ConfigError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct SessionMiddlewareBuilder {
    store: AnyStore,
    keys: CookieKeys,
    security: CookieContentSecurity,
    cookie_name: String,
    cookie_path: String,
    cookie_domain: Option<String>,
    cookie_secure: bool,
    cookie_http_only: bool,
    cookie_same_site: SameSite,
    cookie_lifetime: CookieLifetime,
    idle_timeout: Duration,
    lifetime: Duration,
    max_remembered_idle_timeout: Option<Duration>,
    idle_extension: IdleExtension,
    extension_interval: Option<Duration>,
    session_deadline: Duration,
    store_error_status: StatusCode,
    max_conflict_retries: u32,
    max_session_bytes: usize,
    max_keys: usize,
    load_before_routing: bool,
    device_metadata: DeviceMetadata,
    audit: Audit,
}

/// A configuration the builder refuses, with what to fix.
///
/// # Examples
///
/// ```
/// use actix_web::cookie::Key;
/// use latchkey::{ConfigError, SessionMiddleware, memory::MemoryStore};
///
/// let err = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
///     .cookie_name("my session")
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, ConfigError::InvalidCookieName(_)));
/// println!("{err}"); // says which characters a cookie name may hold
/// ```
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie name is empty or has characters a cookie name cannot hold.
    #[error(
        "cookie name {0:?} is not a valid cookie name: use letters, digits and !#$%&'*+-.^_`|~"
    )]
    InvalidCookieName(String),
    /// A `__Host-` cookie must be `Secure`, have `Path=/` and no `Domain`.
    #[error("a cookie named `__Host-…` must be Secure, have path \"/\" and no domain")]
    HostPrefixViolated,
    /// A `__Secure-` cookie must be `Secure`.
    #[error("a cookie named `__Secure-…` must be Secure")]
    SecurePrefixViolated,
    /// Idle timeout, lifetime, session deadline or remembered idle timeout is zero.
    #[error(
        "idle timeout, lifetime, session deadline and remembered idle timeout must be longer than zero"
    )]
    ZeroTimeout,
    /// A duration is longer than the ten years `build` accepts.
    #[error("{setting} of {given:?} is longer than the {max:?} allowed")]
    DurationTooLong {
        /// The setting, e.g. `"lifetime"`.
        setting: &'static str,
        /// The duration given.
        given: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// An extension interval as long as the idle timeout never fires: sessions
    /// in use would expire. Shorten the interval, or choose
    /// [`IdleExtension::Never`] for an idle deadline fixed at creation.
    #[error(
        "idle extension interval {interval:?} is not shorter than the idle timeout {idle_timeout:?}, so it never fires; shorten it or use IdleExtension::Never"
    )]
    ExtensionIntervalNeverFires {
        /// The interval given.
        interval: Duration,
        /// The idle timeout it must be shorter than.
        idle_timeout: Duration,
    },
    /// The store-error status is not a 4xx or 5xx.
    #[error("the status for store errors must be a client or server error, got {0}")]
    NotAnErrorStatus(u16),
}

impl SessionMiddlewareBuilder {
    pub(crate) fn new<S: SessionStore>(store: S, key: Key) -> Self {
        Self {
            store: AnyStore::new(store),
            keys: CookieKeys(vec![key]),
            security: CookieContentSecurity::default(),
            cookie_name: "id".to_owned(),
            cookie_path: "/".to_owned(),
            cookie_domain: None,
            cookie_secure: true,
            cookie_http_only: true,
            cookie_same_site: SameSite::Lax,
            cookie_lifetime: CookieLifetime::default(),
            idle_timeout: Duration::from_secs(24 * 3600),
            lifetime: Duration::from_secs(7 * 24 * 3600),
            max_remembered_idle_timeout: None,
            idle_extension: IdleExtension::default(),
            extension_interval: None,
            session_deadline: Duration::from_secs(10),
            store_error_status: StatusCode::SERVICE_UNAVAILABLE,
            max_conflict_retries: 16,
            max_session_bytes: 64 * 1024,
            max_keys: 256,
            load_before_routing: false,
            device_metadata: DeviceMetadata::default(),
            audit: Audit::default(),
        }
    }

    /// Older keys that still verify cookies but no longer sign them.
    ///
    /// Rotation: put the new key first (in `new`/`builder`) and the old ones
    /// here. A cookie made with an old key is accepted and re-issued with the new
    /// one, so clients move over as they visit; drop an old key once its cookies
    /// have expired. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .previous_keys([Key::generate()])
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn previous_keys(mut self, keys: impl IntoIterator<Item = Key>) -> Self {
        self.keys.0.truncate(1);
        self.keys.0.extend(keys);
        self
    }

    /// Signed (default) or private (encrypted) cookie values.
    ///
    /// Default: [`CookieContentSecurity::Signed`]; the token is random, so
    /// encrypting it hides nothing and costs a little per request.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_content_security(latchkey::CookieContentSecurity::Private)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn cookie_content_security(mut self, security: CookieContentSecurity) -> Self {
        self.security = security;
        self
    }

    /// The cookie's name. Default: `id`, short and revealing no framework.
    ///
    /// A name starting with `__Host-` makes the browser enforce `Secure`,
    /// `Path=/` and no `Domain`; `build` checks that the configuration agrees.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_name("__Host-session")
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// The cookie's `Path`. Default: `/`, so every route sees the session.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_path("/app")
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.cookie_path = path.into();
        self
    }

    /// The cookie's `Domain`. Default: none, so the cookie goes back only to the
    /// exact host that set it, not to its subdomains.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_domain("example.com")
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie_domain = Some(domain.into());
        self
    }

    /// The cookie's `Secure` flag. Default: `true`, so the token never travels
    /// over plain HTTP. Turn it off only for local development over `http://`.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_secure(false) // local development over http:// only
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn cookie_secure(mut self, secure: bool) -> Self {
        self.cookie_secure = secure;
        self
    }

    /// The cookie's `HttpOnly` flag. Default: `true`, so page scripts (and
    /// injected ones) cannot read the token.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_http_only(true)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn cookie_http_only(mut self, http_only: bool) -> Self {
        self.cookie_http_only = http_only;
        self
    }

    /// The cookie's `SameSite`. Default: `Lax`, which withholds the cookie from
    /// cross-site sub-requests and POSTs (a CSRF defence) yet keeps users
    /// logged in when they follow a link to the site.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_same_site(actix_web::cookie::SameSite::Strict)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn cookie_same_site(mut self, same_site: SameSite) -> Self {
        self.cookie_same_site = same_site;
        self
    }

    /// The longest idle timeout [`Session::remember`](crate::Session::remember)
    /// may give a session ("remember me"). Default: the
    /// [lifetime](Self::lifetime), which caps every session anyway.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # let store = latchkey::memory::MemoryStore::new();
    /// let day = Duration::from_secs(24 * 3600);
    /// let middleware = latchkey::SessionMiddleware::builder(store, actix_web::cookie::Key::generate())
    ///     .idle_timeout(Duration::from_secs(3600))
    ///     .lifetime(90 * day)
    ///     .max_remembered_idle_timeout(30 * day)
    ///     .build()?;
    /// # drop(middleware);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn max_remembered_idle_timeout(mut self, timeout: Duration) -> Self {
        self.max_remembered_idle_timeout = Some(timeout);
        self
    }

    /// Browser-session (default) or persistent cookie; see [`CookieLifetime`].
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_lifetime(latchkey::CookieLifetime::Persistent)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn cookie_lifetime(mut self, lifetime: CookieLifetime) -> Self {
        self.cookie_lifetime = lifetime;
        self
    }

    /// How long a session lives without being used, enforced by the server.
    ///
    /// Default: 24 hours, the same as actix-session's default TTL. Shorten it
    /// for high-value applications (OWASP suggests 15–30 minutes).
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .idle_timeout(std::time::Duration::from_secs(30 * 60))
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a session lives however often it is used, enforced by the
    /// server. Default: 7 days, so a stolen cookie stops working within a week
    /// even if it is kept in use.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .lifetime(std::time::Duration::from_secs(8 * 3600))
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// When the idle deadline moves; see [`IdleExtension`].
    ///
    /// Default: [`IdleExtension::OnEveryRequest`], so a session in use lasts
    /// its whole absolute lifetime.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{IdleExtension, SessionMiddleware, memory::MemoryStore};
    ///
    /// // Like actix-session's `OnStateChanges`: reads never write.
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .idle_extension(IdleExtension::OnChange)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn idle_extension(mut self, policy: IdleExtension) -> Self {
        self.idle_extension = policy;
        self
    }

    /// How far the idle deadline must move before a request moves it: a
    /// read-only request (under [`IdleExtension::OnEveryRequest`]) touches the
    /// store at most once per interval, and a save keeps the deadlines it
    /// loaded until the interval has passed. It must be shorter than the idle
    /// timeout; `build` refuses one that could never fire.
    ///
    /// Default: a tenth of the idle timeout, so a read-only request costs a store
    /// write at most once per that interval, and a save rewrites the expiry (on
    /// PostgreSQL, an indexed column) no more often, while the deadline stays
    /// within 10% of exact. A [remembered](crate::Session::remember) session
    /// uses a tenth of its own idle timeout, or this interval if set and
    /// shorter than that timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .idle_extension_interval(std::time::Duration::from_secs(60))
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn idle_extension_interval(mut self, interval: Duration) -> Self {
        self.extension_interval = Some(interval);
        self
    }

    /// The most time one request may spend on its session's store work: the
    /// load, the wait for its turn behind other writers of the same session, and
    /// the write-back with every replay. Past it, the request answers the
    /// [store-error status](Self::store_error_status) and the change is not saved
    /// (a write already sent may still land: its outcome is unknown).
    ///
    /// Default: 10 seconds, well past a healthy store's latency yet short
    /// enough that a stalled store cannot hold requests open indefinitely.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .session_deadline(std::time::Duration::from_secs(2))
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn session_deadline(mut self, deadline: Duration) -> Self {
        self.session_deadline = deadline;
        self
    }

    /// The status of the response when the store fails.
    ///
    /// Default: `503 Service Unavailable`, which tells clients and load
    /// balancers to retry later. The body is always an opaque message.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .store_error_status(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn store_error_status(mut self, status: StatusCode) -> Self {
        self.store_error_status = status;
        self
    }

    /// How often a change is replayed on a freshly loaded session after a
    /// compare-and-set conflict before the request fails.
    ///
    /// Default: 16, enough for dozens of concurrent writers to one session; each
    /// retry waits a little longer, with jitter, so writers spread out.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .max_conflict_retries(32)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn max_conflict_retries(mut self, retries: u32) -> Self {
        self.max_conflict_retries = retries;
        self
    }

    /// The largest a session's data may be, in bytes of JSON.
    ///
    /// Default: 64 KiB; sessions are read on every request, so large ones cost
    /// every request. `insert` or `update` beyond it fails and changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .max_session_bytes(16 * 1024)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn max_session_bytes(mut self, bytes: usize) -> Self {
        self.max_session_bytes = bytes;
        self
    }

    /// The most keys a session may hold. Default: 256.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .max_keys(64)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// Loads every request's session before routing, so that guards can read
    /// it (see [`SessionGuardExt`](crate::SessionGuardExt)); a store failure
    /// then answers the store-error status before any handler runs.
    ///
    /// Default: off. Sessions load only when something takes them, so routes
    /// that never use the session (health checks, static files) cost no store
    /// access. When on, every request with a session cookie counts as using
    /// the session: it loads it, may move its idle deadline (a touch, when the
    /// extension is due) and may re-send the cookie (persistent cookies, a
    /// rotated key), on every route. Turn it on only for apps whose guards need the session; on a
    /// scope that needs it, a `from_fn` middleware using
    /// [`SessionExt`](crate::SessionExt) loads it for that scope alone.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .load_before_routing(true)
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn load_before_routing(mut self, load: bool) -> Self {
        self.load_before_routing = load;
        self
    }

    /// What new sessions record about their device (user agent, client
    /// address), shown by [`Session::devices`](crate::Session::devices) and
    /// returned with every record by
    /// [`list_by_owner`](latchkey_core::SessionStore::list_by_owner).
    ///
    /// Default: [`DeviceMetadata::default`], the first 256 bytes of the user
    /// agent and no address. The description is written with the session's
    /// first store write and again at each [`login`](crate::Session::login),
    /// never by a request that only reads.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{ClientIp, DeviceMetadata, SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .device_metadata(DeviceMetadata::default().client_ip(ClientIp::Truncated))
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn device_metadata(mut self, metadata: DeviceMetadata) -> Self {
        self.device_metadata = metadata;
        self
    }

    /// Sends every [`AuditEvent`](crate::AuditEvent) (logins, logouts,
    /// revocations, failed verifications…) to `sink` as well as to `tracing`.
    ///
    /// Default: `tracing` only.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{AuditEvent, SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .audit(|event: &AuditEvent| println!("{} {:?}", event.kind.as_str(), event.owner))
    ///     .build()?;
    /// # drop(sessions);
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn audit(mut self, sink: impl AuditSink) -> Self {
        self.audit = Audit::new(Some(Arc::new(sink)));
        self
    }

    /// Checks the configuration and builds the middleware.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] saying what to fix.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{ConfigError, SessionMiddleware, memory::MemoryStore};
    ///
    /// let refused = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_name("__Host-id")
    ///     .cookie_secure(false)
    ///     .build();
    /// assert_eq!(refused.unwrap_err(), ConfigError::HostPrefixViolated);
    /// ```
    pub fn build(self) -> Result<SessionMiddleware, ConfigError> {
        if !is_cookie_name(&self.cookie_name) {
            return Err(ConfigError::InvalidCookieName(self.cookie_name));
        }
        if self.cookie_name.starts_with("__Host-")
            && (!self.cookie_secure || self.cookie_path != "/" || self.cookie_domain.is_some())
        {
            return Err(ConfigError::HostPrefixViolated);
        }
        if self.cookie_name.starts_with("__Secure-") && !self.cookie_secure {
            return Err(ConfigError::SecurePrefixViolated);
        }
        let max_remembered = self.max_remembered_idle_timeout.unwrap_or(self.lifetime);
        if self.idle_timeout.is_zero()
            || self.lifetime.is_zero()
            || self.session_deadline.is_zero()
            || max_remembered.is_zero()
        {
            return Err(ConfigError::ZeroTimeout);
        }
        for (setting, given) in [
            ("idle timeout", self.idle_timeout),
            ("lifetime", self.lifetime),
            ("session deadline", self.session_deadline),
            ("remembered idle timeout", max_remembered),
        ] {
            if given > MAX_DURATION {
                return Err(ConfigError::DurationTooLong {
                    setting,
                    given,
                    max: MAX_DURATION,
                });
            }
        }
        if let Some(interval) = self.extension_interval
            && self.idle_extension != IdleExtension::Never
            && interval >= self.idle_timeout
        {
            return Err(ConfigError::ExtensionIntervalNeverFires {
                interval,
                idle_timeout: self.idle_timeout,
            });
        }
        if !(self.store_error_status.is_client_error() || self.store_error_status.is_server_error())
        {
            return Err(ConfigError::NotAnErrorStatus(
                self.store_error_status.as_u16(),
            ));
        }
        Ok(self.build_unchecked())
    }

    pub(crate) fn build_unchecked(self) -> SessionMiddleware {
        let codec = CookieCodec {
            keys: self.keys,
            security: self.security,
            name: self.cookie_name,
            path: self.cookie_path,
            domain: self.cookie_domain,
            secure: self.cookie_secure,
            http_only: self.cookie_http_only,
            same_site: self.cookie_same_site,
        };
        let settings = Settings {
            codec,
            cookie_lifetime: self.cookie_lifetime,
            idle_timeout: self.idle_timeout,
            lifetime: self.lifetime,
            max_remembered_idle_timeout: self.max_remembered_idle_timeout.unwrap_or(self.lifetime),
            idle_extension: self.idle_extension,
            extension_interval: self.extension_interval,
            session_deadline: self.session_deadline,
            store_error_status: self.store_error_status,
            max_conflict_retries: self.max_conflict_retries,
            max_session_bytes: self.max_session_bytes,
            max_keys: self.max_keys,
            load_before_routing: self.load_before_routing,
            device_metadata: self.device_metadata,
            audit: self.audit,
        };
        SessionMiddleware::from_config(Arc::new(Shared::new(self.store, settings)))
    }
}

impl Settings {
    /// How far the idle deadline of a session with `idle_timeout` must move
    /// before a touch or a save moves it: the configured interval when it is
    /// shorter than that timeout, otherwise a tenth of it. A remembered
    /// session's own, longer or shorter, timeout thus gets an interval that
    /// fires.
    pub(crate) fn extension_interval_for(&self, idle_timeout: Duration) -> Duration {
        match self.extension_interval {
            Some(interval) if interval < idle_timeout => interval,
            _ => idle_timeout / 10,
        }
    }
}

/// RFC 6265 `token`: visible ASCII except separators.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_memory::MemoryStore;

    fn builder() -> SessionMiddlewareBuilder {
        SessionMiddlewareBuilder::new(MemoryStore::new(), Key::generate())
    }

    #[test]
    fn defaults_are_secure() {
        let b = builder();
        assert!(b.cookie_secure && b.cookie_http_only);
        assert_eq!(b.cookie_same_site, SameSite::Lax);
        assert_eq!(b.cookie_path, "/");
        assert_eq!(b.store_error_status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b.security, CookieContentSecurity::Signed);
    }

    #[test]
    fn rejects_invalid_names_and_prefix_violations() {
        assert_eq!(
            builder().cookie_name("a b").build().unwrap_err(),
            ConfigError::InvalidCookieName("a b".into())
        );
        assert!(matches!(
            builder().cookie_name("").build(),
            Err(ConfigError::InvalidCookieName(_))
        ));
        assert_eq!(
            builder()
                .cookie_name("__Host-id")
                .cookie_domain("example.com")
                .build()
                .unwrap_err(),
            ConfigError::HostPrefixViolated
        );
        assert_eq!(
            builder()
                .cookie_name("__Host-id")
                .cookie_secure(false)
                .build()
                .unwrap_err(),
            ConfigError::HostPrefixViolated
        );
        assert_eq!(
            builder()
                .cookie_name("__Secure-id")
                .cookie_secure(false)
                .build()
                .unwrap_err(),
            ConfigError::SecurePrefixViolated
        );
        assert!(builder().cookie_name("__Host-id").build().is_ok());
    }

    #[test]
    fn rejects_durations_past_ten_years() {
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(matches!(
            builder().lifetime(Duration::MAX).build(),
            Err(ConfigError::DurationTooLong {
                setting: "lifetime",
                ..
            })
        ));
        assert!(matches!(
            builder().idle_timeout(century).build(),
            Err(ConfigError::DurationTooLong {
                setting: "idle timeout",
                ..
            })
        ));
        assert!(builder().lifetime(MAX_DURATION).build().is_ok());
    }

    #[test]
    fn a_remembered_timeout_gets_an_extension_interval_that_fires() {
        let day = Duration::from_secs(24 * 3600);
        let default = builder().build_unchecked().config();
        assert_eq!(default.extension_interval_for(day), day / 10);
        assert_eq!(default.extension_interval_for(30 * day), 3 * day);
        let minute = Duration::from_secs(60);
        let set = builder()
            .idle_extension_interval(minute)
            .build_unchecked()
            .config();
        assert_eq!(set.extension_interval_for(30 * day), minute);
        assert_eq!(
            set.extension_interval_for(minute),
            minute / 10,
            "an interval as long as the timeout would never fire"
        );
    }

    #[test]
    fn rejects_a_zero_or_endless_remembered_bound() {
        assert_eq!(
            builder()
                .max_remembered_idle_timeout(Duration::ZERO)
                .build()
                .unwrap_err(),
            ConfigError::ZeroTimeout
        );
        assert!(matches!(
            builder()
                .max_remembered_idle_timeout(Duration::MAX)
                .build()
                .unwrap_err(),
            ConfigError::DurationTooLong {
                setting: "remembered idle timeout",
                ..
            }
        ));
        let lifetime = Duration::from_secs(3600);
        let config = builder().lifetime(lifetime).build_unchecked().config();
        assert_eq!(
            config.max_remembered_idle_timeout, lifetime,
            "the default bound is the lifetime"
        );
    }

    #[test]
    fn rejects_an_extension_interval_that_never_fires() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            builder()
                .idle_timeout(hour)
                .idle_extension_interval(hour)
                .build()
                .unwrap_err(),
            ConfigError::ExtensionIntervalNeverFires {
                interval: hour,
                idle_timeout: hour
            }
        );
        // Saves extend on the same interval, so it must fire under OnChange too.
        assert_eq!(
            builder()
                .idle_timeout(hour)
                .idle_extension_interval(hour)
                .idle_extension(IdleExtension::OnChange)
                .build()
                .unwrap_err(),
            ConfigError::ExtensionIntervalNeverFires {
                interval: hour,
                idle_timeout: hour
            }
        );
        // The interval matters only where something extends the deadline.
        assert!(
            builder()
                .idle_timeout(hour)
                .idle_extension_interval(hour)
                .idle_extension(IdleExtension::Never)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn middleware_built_per_worker_shares_one_runtime() {
        let store = MemoryStore::new();
        let key = Key::generate();
        let first = SessionMiddlewareBuilder::new(store.clone(), key.clone()).build();
        let second = SessionMiddlewareBuilder::new(store, key).build();
        let (Ok(first), Ok(second)) = (first, second) else {
            panic!("default configuration builds");
        };
        assert!(Arc::ptr_eq(&first.metrics(), &second.metrics()));
        let other = SessionMiddlewareBuilder::new(MemoryStore::new(), Key::generate())
            .build()
            .map(|m| m.metrics());
        assert!(
            other.is_ok_and(|m| !Arc::ptr_eq(&m, &first.metrics())),
            "another store has its own"
        );
    }

    #[test]
    fn rejects_zero_timeouts_and_success_statuses() {
        assert_eq!(
            builder().idle_timeout(Duration::ZERO).build().unwrap_err(),
            ConfigError::ZeroTimeout
        );
        assert_eq!(
            builder()
                .store_error_status(StatusCode::OK)
                .build()
                .unwrap_err(),
            ConfigError::NotAnErrorStatus(200)
        );
    }
}
