//! What every example binary shares: store, key, port and logging from the environment.

use std::fmt;
use std::time::Duration;

use actix_web::cookie::Key;
use actix_web::{App, HttpServer, web};
use latchkey::{AnyStore, SessionMiddleware, SessionMiddlewareBuilder, SessionStore};

/// Why an example could not start.
#[derive(Debug)]
pub struct StartError(String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<StartError> for std::io::Error {
    fn from(err: StartError) -> Self {
        std::io::Error::other(err.0)
    }
}

/// The store named by `LATCHKEY_STORE` (default `memory`).
///
/// # Errors
///
/// When the variable names a store this build does not know.
pub async fn store_from_env() -> Result<AnyStore, StartError> {
    let spec = std::env::var("LATCHKEY_STORE").unwrap_or_else(|_| "memory".to_owned());
    store_from_spec(&spec).await
}

/// The store named by `spec`: `memory`, a `redis://` / `rediss://` URL, a
/// Redis Cluster as `redis-cluster://host:port,host:port,…`, or a `postgres://`
/// URL (its migrations are applied); see [`latchkey::store_from_url`].
///
/// # Errors
///
/// When `spec` names a store this build does not know, or its server does not answer.
pub async fn store_from_spec(spec: &str) -> Result<AnyStore, StartError> {
    latchkey::store_from_url(spec).await.map_err(|err| {
        let mut message = format!("LATCHKEY_STORE={spec:?}: {err}");
        let mut cause = std::error::Error::source(&err);
        while let Some(inner) = cause {
            message.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        StartError(message)
    })
}

/// The cookie key from `LATCHKEY_KEY`, or a fresh one with a warning.
///
/// # Errors
///
/// When `LATCHKEY_KEY` is set but shorter than 64 bytes.
pub fn key_from_env() -> Result<Key, StartError> {
    match std::env::var("LATCHKEY_KEY") {
        Ok(secret) => Key::try_from(secret.as_bytes()).map_err(|_| {
            StartError(format!(
                "LATCHKEY_KEY is {} bytes; it must be at least 64 (e.g. `openssl rand -base64 64`)",
                secret.len()
            ))
        }),
        Err(_) => {
            tracing::warn!(
                "LATCHKEY_KEY is not set: using a random key, so sessions end when the process does"
            );
            Ok(Key::generate())
        }
    }
}

/// The port from `PORT` (default 8080).
///
/// # Errors
///
/// When `PORT` is not a port number.
pub fn port() -> Result<u16, StartError> {
    match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| StartError(format!("PORT={port:?} is not a port number"))),
        Err(_) => Ok(8080),
    }
}

/// The middleware settings every example shares.
///
/// `Secure` is off unless `LATCHKEY_SECURE_COOKIE=1`, because the examples serve
/// plain HTTP on 127.0.0.1; see the crate docs.
pub fn session_builder(store: impl SessionStore, key: Key) -> SessionMiddlewareBuilder {
    let secure = std::env::var("LATCHKEY_SECURE_COOKIE").is_ok_and(|v| v == "1");
    SessionMiddleware::builder(store, key).cookie_secure(secure)
}

/// The idle timeout: `--idle SECONDS` on the command line, else
/// `LATCHKEY_IDLE_SECS`, else `default`.
///
/// # Errors
///
/// When the value given is not a whole number of seconds.
pub fn idle_timeout(default: Duration) -> Result<Duration, StartError> {
    let mut args = std::env::args().skip_while(|arg| arg != "--idle").skip(1);
    let given = args
        .next()
        .or_else(|| std::env::var("LATCHKEY_IDLE_SECS").ok());
    match given {
        Some(text) => text.parse().map(Duration::from_secs).map_err(|_| {
            StartError(format!(
                "idle timeout {text:?} is not a whole number of seconds"
            ))
        }),
        None => Ok(default),
    }
}

/// Serves an example on 127.0.0.1:`PORT` with the store, key and idle timeout
/// from the environment; `configure` adds the example's routes and data.
///
/// # Errors
///
/// When the configuration is unusable or the port cannot be bound.
pub async fn serve<F>(name: &str, default_idle: Duration, configure: F) -> std::io::Result<()>
where
    F: Fn(&mut web::ServiceConfig, &AnyStore, Duration) + Clone + Send + 'static,
{
    init_tracing();
    let store = store_from_env().await?;
    let key = key_from_env()?;
    let port = port()?;
    let idle = idle_timeout(default_idle)?;
    let sessions = session_builder(store.clone(), key)
        .idle_timeout(idle)
        .build()
        .map_err(std::io::Error::other)?;
    tracing::info!(
        "{name} listening on http://127.0.0.1:{port}/ (idle timeout {idle:?}; counters at /metrics)"
    );
    let metrics = web::Data::from(sessions.metrics());
    HttpServer::new(move || {
        let configure = configure.clone();
        let store = store.clone();
        App::new()
            .wrap(sessions.clone())
            .app_data(metrics.clone())
            .route("/metrics", web::get().to(metrics_text))
            .configure(move |cfg| configure(cfg, &store, idle))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}

/// The session counters in Prometheus' text format.
pub async fn metrics_text(metrics: web::Data<latchkey::SessionMetrics>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.snapshot().to_prometheus("latchkey"))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
